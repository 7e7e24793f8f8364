//! How the source meets a stream that is missing (at open, or deleted while it reads), a
//! reader that stopped, and restored positions the stream cannot serve.

use super::{KinesisSource, ShardState};
use crate::error::{KinesisError, ShardOutOfRange};
use crate::out_of_range::{self, OutOfRange};
use crate::position::ShardPosition;
use crate::presence::{readable, status, Absence, MissingStream};
use crate::reader::{ReaderEvent, Stop};
use aws_sdk_kinesis::types::{Shard, StreamStatus};
use bytes::Bytes;
use tokio::time::Instant;
use watershed_core::{Record, SourceEvent, SplitId};

impl KinesisSource {
    /// The stream's shards, registering the enhanced fan-out consumer first when there is
    /// none yet (at open, or after the stream, and with it the consumer, was deleted).
    pub(super) async fn connect(&mut self) -> Result<Vec<Shard>, KinesisError> {
        if self.absence.is_some() {
            let status = status(self.client()?, &self.call("DescribeStreamSummary")).await?;
            if !readable(status.as_ref()) {
                return Err(KinesisError::StreamNotFound {
                    stream: self.stream.as_str().to_owned(),
                    endpoint: self.endpoint.to_string(),
                    operation: "DescribeStreamSummary",
                });
            }
        }
        if let (None, Some(name)) = (&self.consumer, &self.options.enhanced_fan_out) {
            let arn = crate::efo::register_consumer(
                self.client()?,
                &self.stream,
                &self.endpoint,
                name,
                &self.options.backoff,
            )
            .await?;
            self.consumer = Some(arn.into());
        }
        self.list_shards().await
    }

    /// A batch `poll` returns: from now on it is in the position.
    pub(super) fn returned(
        &mut self,
        shard: String,
        split: SplitId,
        records: Vec<Record<Bytes>>,
        last: (String, u32),
    ) -> SourceEvent<Bytes> {
        self.position.shards.insert(
            shard,
            ShardPosition::After {
                sequence: last.0,
                sub: last.1,
            },
        );
        SourceEvent::Batch { split, records }
    }

    /// The stream does not exist (`e` is `StreamNotFound`): fail, or wait for it.
    pub(super) fn stream_missing(&mut self, e: KinesisError) -> Result<(), KinesisError> {
        let e = match e {
            KinesisError::StreamNotFound {
                stream,
                endpoint,
                operation,
            } if self.seen => KinesisError::StreamDeleted {
                stream,
                endpoint,
                operation: operation.to_owned(),
                detail: "the stream no longer exists".into(),
            },
            e => e,
        };
        self.wait_or_fail(e)
    }

    fn wait_or_fail(&mut self, e: KinesisError) -> Result<(), KinesisError> {
        if self.options.missing_stream != MissingStream::Wait {
            return Err(e);
        }
        match &mut self.absence {
            Some(absence) => absence.still_missing(),
            None => {
                self.forget_shards();
                // The consumer went with the stream; positions read so far must be checked
                // against whatever stream appears under the name.
                self.consumer = None;
                self.check_positions |= !self.position.shards.is_empty();
                self.absence = Some(Absence::begin(self.stream.as_str(), &e));
            }
        }
        if let Some(absence) = &self.absence {
            self.next_discovery = absence.next_check();
        }
        Ok(())
    }

    /// Stops every reader and forgets the shards (not their positions): the stream is gone.
    fn forget_shards(&mut self) {
        self.stop_readers();
        for (id, info) in std::mem::take(&mut self.shards) {
            if matches!(info.state, ShardState::Reading(_)) {
                self.queued
                    .push_back(SourceEvent::SplitRemoved(SplitId::new(&id)));
            }
        }
        // Batches already read are real records: hand them on, so the position is final
        // before it is checked against a new stream.
        while let Ok(event) = self.rx.try_recv() {
            if let ReaderEvent::Records {
                shard,
                split,
                records,
                last,
            } = event
            {
                let batch = self.returned(shard, split, records, last);
                self.queued.push_back(batch);
            }
        }
    }

    /// Checks restored positions against the listed shards: fail, or proceed as configured.
    pub(super) fn check_positions(&mut self, listed: &[Shard]) -> Result<(), KinesisError> {
        let out = out_of_range::check(&self.position, listed);
        self.out_of_range(out, |id| listed.iter().any(|s| s.shard_id() == id))
    }

    fn out_of_range(
        &mut self,
        out: Vec<ShardOutOfRange>,
        listed: impl Fn(&str) -> bool,
    ) -> Result<(), KinesisError> {
        if out.is_empty() {
            return Ok(());
        }
        if self.options.out_of_range == OutOfRange::Fail {
            return Err(KinesisError::PositionOutOfRange {
                stream: self.stream.as_str().to_owned(),
                endpoint: self.endpoint.to_string(),
                shards: out,
            });
        }
        let stream = self.stream.as_str().to_owned();
        out_of_range::apply(
            self.options.out_of_range,
            &stream,
            &mut self.position,
            &out,
            listed,
            &self.stats,
        );
        Ok(())
    }

    /// A reader stopped before its shard's end.
    pub(super) async fn reader_stopped(
        &mut self,
        shard: String,
        stop: Stop,
    ) -> Result<(), KinesisError> {
        let (operation, sequence, detail, refused) = match stop {
            Stop::Failed(e) => return Err(e),
            // A reader of a stream already known to be gone, stopped before it was aborted.
            _ if self.absence.is_some() => return Ok(()),
            Stop::Refused { sequence, detail } => {
                ("GetShardIterator", Some(sequence), detail, true)
            }
            Stop::Check {
                operation,
                sequence,
                detail,
            } => (operation, sequence, detail, false),
        };
        // Whatever the reader was refused, a stream that is gone (or DELETING, when servers
        // may still list it, without shards) explains it.
        let status = status(self.client()?, &self.call("DescribeStreamSummary")).await?;
        let listed = match status {
            None | Some(StreamStatus::Deleting) => Err(KinesisError::StreamNotFound {
                stream: self.stream.as_str().to_owned(),
                endpoint: self.endpoint.to_string(),
                operation: "DescribeStreamSummary",
            }),
            Some(_) => self.list_shards().await,
        };
        let listed = match listed {
            Ok(listed) => listed,
            Err(KinesisError::StreamNotFound {
                stream, endpoint, ..
            }) => {
                return self.wait_or_fail(KinesisError::StreamDeleted {
                    stream,
                    endpoint,
                    operation: format!("{operation} on shard `{shard}`"),
                    detail,
                })
            }
            Err(e) => return Err(e),
        };
        let is_listed = |id: &str| listed.iter().any(|s| s.shard_id() == id);
        // Refused after a sequence number, or the shard is gone: the position is out of range.
        let out_of_range = refused || !is_listed(&shard);
        let Some(sequence) = sequence.clone().filter(|_| out_of_range) else {
            return Err(KinesisError::Shard {
                operation,
                stream: self.stream.as_str().into(),
                endpoint: self.endpoint.clone(),
                shard,
                sequence,
                detail,
            });
        };
        let reason = if is_listed(&shard) {
            format!("Kinesis refuses to read the shard after it ({detail})")
        } else {
            "the stream no longer has the shard".to_owned()
        };
        let out = vec![ShardOutOfRange::new(&shard, Some(&sequence), reason)];
        self.out_of_range(out, is_listed)?;
        self.restart_shard(&shard, &listed);
        Ok(())
    }

    /// Starts a shard again from its (replaced) position, or forgets it when it is gone.
    fn restart_shard(&mut self, id: &str, listed: &[Shard]) {
        let Some(info) = self.shards.remove(id) else {
            return;
        };
        // A restarted shard announces itself again with SplitAdded.
        if matches!(info.state, ShardState::Reading(_)) {
            self.queued
                .push_back(SourceEvent::SplitRemoved(SplitId::new(id)));
        }
        if listed.iter().any(|s| s.shard_id() == id) {
            self.add_shard(id, info.parents, info.closed, false);
        }
        self.start_ready();
        self.next_discovery = self
            .next_discovery
            .min(Instant::now() + self.options.poll_interval);
    }
}
