//! Driver-controlled inputs: an in-memory log per named input, read by a [`Source`] that the
//! real runtime polls like any other.
//!
//! The log plays the broker: the driver appends to it, the source's position is an index into
//! it, so a restored pipeline replays exactly what its checkpoint had not covered. Knowing when
//! everything sent has been processed needs no timing: the driver asks the source to request a
//! checkpoint, and the checkpoint that completes with the source's position at (or past) the end
//! of the log has seen every entry processed by every operator and pre-committed by every sink.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use watershed_core::{BoxError, CheckpointId, EventTime, Record, Source, SourceEvent, SplitId};

/// Records handed to the runtime per poll, as a broker consumer would batch them.
const MAX_BATCH: usize = 1024;

/// The delay of the watermark strategy of a hand-driven input: so large that records never move
/// the watermark (`max_ts − delay − 1` stays far below any real event time), only the driver's
/// `Progress` events, which add it back.
pub(crate) const MANUAL_DELAY_MS: i64 = 1 << 61;

/// One entry of an input's log.
pub(crate) enum Entry<T> {
    Record(T, EventTime),
    /// The input's watermark is this time.
    Watermark(EventTime),
    /// End of input.
    End,
}

/// Where the driver and the source meet about checkpoints (untyped, so the driver can sync
/// every input without knowing its type).
#[derive(Default)]
pub(crate) struct SyncState {
    /// The log length a checkpoint must cover; `None` when no sync is pending.
    pub target: Option<u64>,
    /// The source has asked the runtime for a checkpoint for the pending sync.
    requested: bool,
    /// The newest completed checkpoint that covered a sync target.
    pub covered_by: Option<CheckpointId>,
}

pub(crate) struct Control {
    pub sync: Mutex<SyncState>,
    /// Wakes the source when the log grows or a sync is wanted.
    pub wake: Notify,
    /// Bumped whenever a checkpoint completes or an output commits, for the waiting driver.
    pub progress: watch::Sender<u64>,
}

impl Control {
    pub fn sync(&self) -> MutexGuard<'_, SyncState> {
        // A poisoned lock only means a panic elsewhere, which the pipeline reports itself.
        self.sync.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An input's log and its control, shared by the driver and every run's source.
pub(crate) struct InputLog<T> {
    entries: Mutex<Vec<Entry<T>>>,
    pub control: Arc<Control>,
}

impl<T> InputLog<T> {
    pub fn new(progress: watch::Sender<u64>) -> Self {
        InputLog {
            entries: Mutex::new(Vec::new()),
            control: Arc::new(Control {
                sync: Mutex::new(SyncState::default()),
                wake: Notify::new(),
                progress,
            }),
        }
    }

    fn entries(&self) -> MutexGuard<'_, Vec<Entry<T>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn append(&self, entries: impl IntoIterator<Item = Entry<T>>) {
        self.entries().extend(entries);
        self.control.wake.notify_one();
    }

    pub fn len(&self) -> u64 {
        self.entries().len() as u64
    }
}

/// What the driver does to every input alike, whatever its record type.
pub(crate) trait AnyLog: Send + Sync {
    fn len(&self) -> u64;
    fn append_watermark(&self, to: EventTime);
    fn append_end(&self);
    fn control(&self) -> &Arc<Control>;
}

impl<T: Send> AnyLog for InputLog<T> {
    fn len(&self) -> u64 {
        InputLog::len(self)
    }

    fn append_watermark(&self, to: EventTime) {
        self.append([Entry::Watermark(to)]);
    }

    fn append_end(&self) {
        self.append([Entry::End]);
    }

    fn control(&self) -> &Arc<Control> {
        &self.control
    }
}

/// Position of a [`LogSource`]: the index of the next log entry.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LogPosition {
    next: u64,
}

/// The source of one named input: reads its log from its position.
pub(crate) struct LogSource<T> {
    log: Arc<InputLog<T>>,
    split: SplitId,
    next: u64,
    delay_ms: i64,
    announced: bool,
}

impl<T> LogSource<T> {
    pub fn new(name: &str, log: Arc<InputLog<T>>, delay_ms: i64) -> Self {
        LogSource {
            log,
            split: SplitId::new(name),
            next: 0,
            delay_ms,
            announced: false,
        }
    }

    /// The next event from the log, if it has unread entries.
    fn read(&mut self) -> Option<SourceEvent<T>>
    where
        T: Clone,
    {
        let entries = self.log.entries();
        let start = self.next as usize;
        match entries.get(start)? {
            Entry::Record(..) => {
                let records: Vec<Record<T>> = entries[start..]
                    .iter()
                    .take(MAX_BATCH)
                    .map_while(|e| match e {
                        Entry::Record(v, t) => Some(Record::new(v.clone(), *t)),
                        _ => None,
                    })
                    .collect();
                self.next += records.len() as u64;
                Some(SourceEvent::Batch {
                    split: self.split.clone(),
                    records,
                })
            }
            Entry::Watermark(w) => {
                self.next += 1;
                // The runtime sets the split's watermark to `time − delay − 1`.
                let time = EventTime(w.0.saturating_add(self.delay_ms).saturating_add(1));
                Some(SourceEvent::Progress {
                    split: self.split.clone(),
                    time,
                })
            }
            Entry::End => {
                self.next += 1;
                Some(SourceEvent::Finished)
            }
        }
    }
}

#[async_trait]
impl<T: Clone + Send + 'static> Source for LogSource<T> {
    type Item = T;
    type Position = LogPosition;

    async fn open(&mut self, restored: Option<LogPosition>) -> Result<(), BoxError> {
        if let Some(p) = restored {
            let len = self.log.len();
            if p.next > len {
                return Err(format!(
                    "restored position {} is past the end of input `{}` ({len} entries)",
                    p.next, self.split
                )
                .into());
            }
            self.next = p.next;
        }
        Ok(())
    }

    async fn poll(&mut self, max_wait: Duration) -> Result<SourceEvent<T>, BoxError> {
        if !self.announced {
            // Holds the watermark at MIN until the driver moves it, as a broker partition does.
            self.announced = true;
            return Ok(SourceEvent::SplitAdded(self.split.clone()));
        }
        if let Some(event) = self.read() {
            return Ok(event);
        }
        {
            let mut sync = self.log.control.sync();
            if sync.target.is_some() {
                if !sync.requested {
                    sync.requested = true;
                    return Ok(SourceEvent::CheckpointRequested);
                }
                // Return at once while the checkpoint is under way: the runtime injects its
                // barrier, and passes its completion on, only between polls.
                return Ok(SourceEvent::Idle);
            }
        }
        // Nothing to do: wait for the driver, but return within `max_wait` as the Source
        // contract requires (checkpoint triggers and shutdown are handled between polls).
        let _ = tokio::time::timeout(max_wait, self.log.control.wake.notified()).await;
        Ok(SourceEvent::Idle)
    }

    fn position(&self) -> LogPosition {
        LogPosition { next: self.next }
    }

    async fn checkpoint_complete(
        &mut self,
        id: CheckpointId,
        position: &LogPosition,
    ) -> Result<(), BoxError> {
        let control = &self.log.control;
        {
            let mut sync = control.sync();
            if sync.target.is_some_and(|t| position.next >= t) {
                sync.target = None;
                sync.requested = false;
                sync.covered_by = Some(id);
            }
        }
        control.progress.send_modify(|n| *n += 1);
        Ok(())
    }
}
