//! Watermark strategies and the per-split watermark tracker every source task uses.

use crate::dead_letter::DeadLetter;
use crate::record::{Record, SplitId};
use crate::time::{duration_millis, EventTime};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

type TimestampFn<T> = Arc<dyn Fn(&Record<T>) -> EventTime + Send + Sync>;
type PayloadFn<T> = Arc<dyn Fn(&T) -> Bytes + Send + Sync>;

/// Refuses records stamped further ahead of the wall clock than a bound.
struct FutureGuard<T> {
    bound_ms: i64,
    payload: PayloadFn<T>,
}

impl<T> Clone for FutureGuard<T> {
    fn clone(&self) -> Self {
        FutureGuard {
            bound_ms: self.bound_ms,
            payload: self.payload.clone(),
        }
    }
}

/// How a source's records get event times and how its watermark follows them.
///
/// Watermarks are generated per split inside the source task and combined as the minimum over
/// splits that are not idle, so one slow partition holds event time back
/// and one silent partition does not, once it is idle.
pub struct WatermarkStrategy<T> {
    delay: Option<Duration>,
    idle_timeout: Option<Duration>,
    timestamps: Option<TimestampFn<T>>,
    future: Option<FutureGuard<T>>,
}

impl<T> Clone for WatermarkStrategy<T> {
    fn clone(&self) -> Self {
        WatermarkStrategy {
            delay: self.delay,
            idle_timeout: self.idle_timeout,
            timestamps: self.timestamps.clone(),
            future: self.future.clone(),
        }
    }
}

impl<T> fmt::Debug for WatermarkStrategy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatermarkStrategy")
            .field("delay", &self.delay)
            .field("idle_timeout", &self.idle_timeout)
            .field("timestamps", &self.timestamps.as_ref().map(|_| "fn"))
            .field(
                "reject_future_ms",
                &self.future.as_ref().map(|g| g.bound_ms),
            )
            .finish()
    }
}

impl<T> WatermarkStrategy<T> {
    /// No watermarks: event time never advances (for pipelines without event-time windows).
    /// A bounded source still sends the final `EventTime::MAX` when it ends.
    pub fn none() -> Self {
        WatermarkStrategy {
            delay: None,
            idle_timeout: None,
            timestamps: None,
            future: None,
        }
    }

    /// Records arrive at most `delay` out of order: watermark = `max_ts − delay − 1`.
    pub fn bounded_out_of_orderness(delay: Duration) -> Self {
        WatermarkStrategy {
            delay: Some(delay),
            idle_timeout: None,
            timestamps: None,
            future: None,
        }
    }

    /// Records arrive in timestamp order within each split.
    pub fn monotonous() -> Self {
        Self::bounded_out_of_orderness(Duration::ZERO)
    }

    /// A split with no records for longer than `timeout` stops holding the watermark back.
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Takes each record's event time from `f` instead of the time the source set.
    pub fn with_timestamps(
        mut self,
        f: impl Fn(&Record<T>) -> EventTime + Send + Sync + 'static,
    ) -> Self {
        self.timestamps = Some(Arc::new(f));
        self
    }

    /// Refuses records whose event time is more than `bound` ahead of the wall clock: they go
    /// to the error path (the dead-letter sink, by the pipeline's
    /// [`ErrorPolicy`](crate::ErrorPolicy)) with their bytes and reason, and are counted in
    /// `watershed_records_future_total`, instead of moving the watermark.
    ///
    /// Without it, one record from a producer whose clock is an hour fast moves its split's
    /// watermark an hour ahead, and every valid record after it is late and dropped until
    /// event time catches up. Choose `bound` above any skew the producers' clocks may have.
    pub fn reject_future(mut self, bound: Duration) -> Self
    where
        T: AsRef<[u8]>,
    {
        self.future = Some(FutureGuard {
            bound_ms: duration_millis(bound),
            payload: Arc::new(|v: &T| Bytes::copy_from_slice(v.as_ref())),
        });
        self
    }

    /// True when this strategy may refuse records (so the source task needs an error path).
    pub(crate) fn refuses(&self) -> bool {
        self.future.is_some()
    }

    pub(crate) fn assign_timestamps(&self, records: &mut [Record<T>]) {
        if let Some(f) = &self.timestamps {
            for r in records.iter_mut() {
                r.timestamp = f(r);
            }
        }
    }

    /// Removes the records [`reject_future`](Self::reject_future) refuses at wall-clock time
    /// `now`, and returns them as dead letters.
    pub(crate) fn refuse_future(
        &self,
        records: &mut Vec<Record<T>>,
        now: EventTime,
    ) -> Vec<DeadLetter> {
        let Some(guard) = &self.future else {
            return Vec::new();
        };
        let limit = now.millis().saturating_add(guard.bound_ms);
        if records.iter().all(|r| r.timestamp.millis() <= limit) {
            return Vec::new();
        }
        let mut refused = Vec::new();
        records.retain(|r| {
            if r.timestamp.millis() <= limit {
                return true;
            }
            let ahead = Duration::from_millis((r.timestamp.millis() - now.millis()) as u64);
            let reason = format!(
                "event time {} is {} s ahead of processing time; records more than {} s ahead are refused (WatermarkStrategy::reject_future)",
                r.timestamp.millis(),
                ahead.as_secs(),
                guard.bound_ms / 1000
            );
            refused.push(
                DeadLetter::new(reason, (guard.payload)(&r.value))
                    .at(r.origin.clone(), r.timestamp),
            );
            false
        });
        refused
    }

    /// The per-split tracker this strategy describes.
    pub(crate) fn tracker(&self) -> SplitWatermarks {
        SplitWatermarks::new(self.delay, self.idle_timeout)
    }
}

/// A change of a source's output watermark status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WatermarkUpdate {
    /// The watermark advanced to this time.
    Advance(EventTime),
    /// Every split is idle.
    Idle,
}

#[derive(Debug)]
struct SplitState {
    max_ts: i64,
    last_activity: Instant,
}

/// Tracks the watermark of each split and combines them: the minimum over splits that are not
/// idle; when every split is idle, the maximum (as Flink's valve does). The output never
/// regresses and is reported only when it strictly increases.
#[derive(Debug)]
pub(crate) struct SplitWatermarks {
    delay_ms: Option<i64>,
    idle_timeout: Option<Duration>,
    splits: HashMap<SplitId, SplitState>,
    emitted: EventTime,
    idle: bool,
    pending_idle: bool,
    // Since when the source has had no split at all (for idleness without splits).
    empty_since: Option<Instant>,
    // Per-split maximum timestamps from the restored checkpoint, applied when the source
    // announces (or reads from) the split again. Not applied eagerly: a split this instance no
    // longer owns would otherwise hold the watermark at a stale value.
    restored: HashMap<SplitId, i64>,
}

impl SplitWatermarks {
    /// A tracker; `delay` `None` means no watermarks at all.
    pub fn new(delay: Option<Duration>, idle_timeout: Option<Duration>) -> Self {
        SplitWatermarks {
            delay_ms: delay.map(duration_millis),
            idle_timeout,
            splits: HashMap::new(),
            emitted: EventTime::MIN,
            idle: false,
            pending_idle: false,
            empty_since: Some(Instant::now()),
            restored: HashMap::new(),
        }
    }

    /// The maximum timestamp seen on each split that has seen records, for a checkpoint.
    ///
    /// Event time survives a restart this way: after a restore the source resumes past
    /// records it will never read again, and without their timestamps a split that has nothing
    /// more to read would hold the watermark at `MIN`, so windows restored open would never
    /// fire (Kafka Streams keeps its partition time in committed offset metadata for the same
    /// reason).
    pub fn snapshot(&self) -> BTreeMap<String, i64> {
        let init = Self::initial_max(self.delay_ms.unwrap_or(0));
        let mut out: BTreeMap<String, i64> = self
            .restored
            .iter()
            .map(|(s, ts)| (s.as_str().to_string(), *ts))
            .collect();
        out.extend(
            self.splits
                .iter()
                .filter(|(_, s)| s.max_ts > init)
                .map(|(id, s)| (id.as_str().to_string(), s.max_ts)),
        );
        out
    }

    /// Seeds split maxima from a checkpoint's [`snapshot`](Self::snapshot); each takes effect
    /// when its split is added or read from.
    pub fn restore(&mut self, maxima: BTreeMap<String, i64>) {
        self.restored = maxima
            .into_iter()
            .map(|(id, ts)| (SplitId::new(id), ts))
            .collect();
    }

    fn initial_of(&mut self, split: &SplitId) -> i64 {
        let init = Self::initial_max(self.delay_ms.unwrap_or(0));
        self.restored.remove(split).unwrap_or(init).max(init)
    }

    fn initial_max(delay: i64) -> i64 {
        // So that the first watermark is exactly EventTime::MIN.
        i64::MIN.saturating_add(delay).saturating_add(1)
    }

    /// A split joined; it holds the watermark at `MIN` until it sees records or goes idle.
    pub fn split_added(&mut self, split: &SplitId, now: Instant) {
        self.empty_since = None;
        if !self.splits.contains_key(split) {
            let max_ts = self.initial_of(split);
            self.splits.insert(
                split.clone(),
                SplitState {
                    max_ts,
                    last_activity: now,
                },
            );
        }
    }

    /// A split is finished or revoked; it no longer counts.
    pub fn split_removed(&mut self, split: &SplitId) {
        self.splits.remove(split);
        if self.splits.is_empty() {
            self.empty_since = Some(Instant::now());
        }
    }

    /// Records up to `max_ts` were read from `split`.
    pub fn observe(&mut self, split: &SplitId, max_ts: EventTime, now: Instant) {
        self.empty_since = None;
        if !self.splits.contains_key(split) {
            let init = self.initial_of(split);
            self.splits.insert(
                split.clone(),
                SplitState {
                    max_ts: init,
                    last_activity: now,
                },
            );
        }
        let s = self.splits.get_mut(split).expect("inserted above");
        s.max_ts = s.max_ts.max(max_ts.0);
        s.last_activity = now;
    }

    /// The current output watermark (what was last reported).
    #[cfg(test)]
    pub fn current(&self) -> EventTime {
        self.emitted
    }

    /// What changed since the last call, if anything. Call again until `None`: becoming idle
    /// at a higher watermark reports the advance, then `Idle`.
    pub fn update(&mut self, now: Instant) -> Option<WatermarkUpdate> {
        let delay = self.delay_ms?;
        if std::mem::take(&mut self.pending_idle) {
            return Some(WatermarkUpdate::Idle);
        }
        if self.splits.is_empty() {
            // No split at all (a consumer with no partition assigned): idle once the timeout
            // has passed, so it does not hold a union back.
            let idle_for = self.empty_since.map(|t| now.saturating_duration_since(t));
            let timed_out = matches!((idle_for, self.idle_timeout), (Some(d), Some(t)) if d > t);
            if timed_out && !self.idle {
                self.idle = true;
                return Some(WatermarkUpdate::Idle);
            }
            return None;
        }
        let wm_of = |s: &SplitState| EventTime(s.max_ts.saturating_sub(delay).saturating_sub(1));
        let is_idle = |s: &SplitState| {
            self.idle_timeout
                .is_some_and(|t| now.saturating_duration_since(s.last_activity) > t)
        };
        let mut any_active = false;
        let mut aligned_min: Option<EventTime> = None;
        for s in self.splits.values().filter(|s| !is_idle(s)) {
            any_active = true;
            let wm = wm_of(s);
            // A split back from idleness behind the output does not count until it catches
            // up, so it cannot stall the others (Flink's StatusWatermarkValve).
            if wm >= self.emitted {
                aligned_min = Some(aligned_min.map_or(wm, |m| m.min(wm)));
            }
        }
        if any_active {
            self.idle = false;
            return match aligned_min {
                Some(wm) if wm > self.emitted => {
                    self.emitted = wm;
                    Some(WatermarkUpdate::Advance(wm))
                }
                _ => None,
            };
        }
        let max = self
            .splits
            .values()
            .map(wm_of)
            .max()
            .unwrap_or(EventTime::MIN);
        let was_idle = std::mem::replace(&mut self.idle, true);
        if max > self.emitted {
            self.emitted = max;
            self.pending_idle = !was_idle;
            return Some(WatermarkUpdate::Advance(max));
        }
        (!was_idle).then_some(WatermarkUpdate::Idle)
    }

    /// How far the most advanced split is ahead of the least advanced one, in event time
    /// (milliseconds): over the splits that have read records and are not idle; `None` with
    /// fewer than two such splits. A large skew is what makes windows wait and state grow.
    pub fn skew_millis(&self, now: Instant) -> Option<i64> {
        let init = Self::initial_max(self.delay_ms.unwrap_or(0));
        let active = self.splits.values().filter(|s| {
            s.max_ts > init
                && self
                    .idle_timeout
                    .is_none_or(|t| now.saturating_duration_since(s.last_activity) <= t)
        });
        let (mut low, mut high, mut n) = (i64::MAX, i64::MIN, 0);
        for s in active {
            low = low.min(s.max_ts);
            high = high.max(s.max_ts);
            n += 1;
        }
        (n >= 2).then(|| high.saturating_sub(low))
    }

    /// Each split's own watermark (milliseconds), for the splits that have read records.
    pub fn split_watermarks(&self) -> impl Iterator<Item = (&SplitId, i64)> {
        let init = Self::initial_max(self.delay_ms.unwrap_or(0));
        let delay = self.delay_ms.unwrap_or(0);
        self.splits
            .iter()
            .filter(move |(_, s)| s.max_ts > init)
            .map(move |(id, s)| (id, s.max_ts.saturating_sub(delay).saturating_sub(1)))
    }

    /// True when the last update reported every split idle.
    #[cfg(test)]
    pub fn is_idle(&self) -> bool {
        self.idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> SplitId {
        SplitId::new(s)
    }

    #[test]
    fn t2_bounded_out_of_orderness_is_max_minus_delay_minus_one() {
        let mut w = SplitWatermarks::new(Some(Duration::from_millis(5)), None);
        let now = Instant::now();
        w.observe(&split("a"), EventTime(100), now);
        assert_eq!(w.update(now), Some(WatermarkUpdate::Advance(EventTime(94))));
        // An older record does not move it back, nor is the same watermark reported twice.
        w.observe(&split("a"), EventTime(50), now);
        assert_eq!(w.update(now), None);
    }

    #[test]
    fn t2_first_watermark_of_an_empty_split_is_min() {
        let mut w = SplitWatermarks::new(Some(Duration::from_secs(1)), None);
        w.split_added(&split("a"), Instant::now());
        assert_eq!(w.update(Instant::now()), None);
        assert_eq!(w.current(), EventTime::MIN);
    }

    #[test]
    fn t3_all_splits_idle_at_once_reports_the_max_then_idle() {
        let t = Duration::from_millis(10);
        let mut w = SplitWatermarks::new(Some(Duration::ZERO), Some(t));
        let t0 = Instant::now();
        w.observe(&split("a"), EventTime(100), t0);
        w.observe(&split("b"), EventTime(10), t0);
        assert_eq!(w.update(t0), Some(WatermarkUpdate::Advance(EventTime(9))));
        let later = t0 + Duration::from_millis(50);
        assert_eq!(
            w.update(later),
            Some(WatermarkUpdate::Advance(EventTime(99)))
        );
        assert_eq!(w.update(later), Some(WatermarkUpdate::Idle));
        assert_eq!(w.update(later), None);
    }

    #[test]
    fn t3_a_split_back_from_idle_behind_the_output_does_not_stall_it() {
        let t = Duration::from_millis(10);
        let mut w = SplitWatermarks::new(Some(Duration::ZERO), Some(t));
        let t0 = Instant::now();
        w.observe(&split("a"), EventTime(10), t0);
        w.observe(&split("b"), EventTime(10), t0);
        w.update(t0);
        let t1 = t0 + Duration::from_millis(20);
        w.observe(&split("b"), EventTime(200), t1); // a is idle now
        assert_eq!(w.update(t1), Some(WatermarkUpdate::Advance(EventTime(199))));
        w.observe(&split("a"), EventTime(120), t1); // a is back, behind the output
        w.observe(&split("b"), EventTime(400), t1);
        assert_eq!(w.update(t1), Some(WatermarkUpdate::Advance(EventTime(399))));
    }

    #[test]
    fn t3_a_source_without_splits_goes_idle_after_the_timeout() {
        let t = Duration::from_millis(10);
        let mut w = SplitWatermarks::new(Some(Duration::ZERO), Some(t));
        let later = Instant::now() + Duration::from_millis(50);
        assert_eq!(w.update(later), Some(WatermarkUpdate::Idle));
        assert_eq!(w.update(later), None);
    }

    #[test]
    fn skew_is_the_event_time_gap_between_the_most_and_least_advanced_active_split() {
        let t0 = Instant::now();
        let mut w = SplitWatermarks::new(Some(Duration::ZERO), Some(Duration::from_secs(5)));
        w.split_added(&split("a"), t0);
        w.observe(&split("b"), EventTime(1_000), t0);
        assert_eq!(
            w.skew_millis(t0),
            None,
            "a split without records has no event time yet"
        );
        w.observe(&split("a"), EventTime(4_000), t0);
        w.observe(&split("c"), EventTime(2_500), t0);
        assert_eq!(w.skew_millis(t0), Some(3_000));
        let later = t0 + Duration::from_secs(6);
        w.observe(&split("c"), EventTime(2_600), later);
        assert_eq!(w.skew_millis(later), None, "idle splits do not count");
    }

    #[test]
    fn t3_output_is_min_over_splits() {
        let mut w = SplitWatermarks::new(Some(Duration::ZERO), None);
        let now = Instant::now();
        w.observe(&split("a"), EventTime(100), now);
        w.observe(&split("b"), EventTime(10), now);
        assert_eq!(w.update(now), Some(WatermarkUpdate::Advance(EventTime(9))));
        w.split_removed(&split("b"));
        assert_eq!(w.update(now), Some(WatermarkUpdate::Advance(EventTime(99))));
    }

    #[test]
    fn t4_idle_split_is_excluded_and_all_idle_reports_max_then_idle() {
        let t = Duration::from_millis(10);
        let mut w = SplitWatermarks::new(Some(Duration::ZERO), Some(t));
        let t0 = Instant::now();
        w.observe(&split("a"), EventTime(100), t0);
        w.observe(&split("b"), EventTime(10), t0);
        assert_eq!(w.update(t0), Some(WatermarkUpdate::Advance(EventTime(9))));
        let t1 = t0 + Duration::from_millis(20);
        w.observe(&split("a"), EventTime(200), t1);
        // b has been silent for longer than the timeout: only a counts.
        assert_eq!(w.update(t1), Some(WatermarkUpdate::Advance(EventTime(199))));
        let t2 = t1 + Duration::from_millis(20);
        assert_eq!(w.update(t2), Some(WatermarkUpdate::Idle));
        assert_eq!(w.update(t2), None);
        assert!(w.is_idle());
        // b comes back behind the output: the output does not regress.
        w.observe(&split("b"), EventTime(20), t2);
        assert_eq!(w.update(t2), None);
        assert!(!w.is_idle());
    }

    #[test]
    fn a_restored_split_resumes_at_its_checkpointed_event_time() {
        let delay = Some(Duration::from_millis(5));
        let now = Instant::now();
        let mut before = SplitWatermarks::new(delay, None);
        before.split_added(&split("quiet"), now);
        before.observe(&split("a"), EventTime(100), now);
        before.observe(&split("b"), EventTime(50), now);
        let snap = before.snapshot();
        // A split that never saw a record has no event time to keep.
        assert_eq!(snap.keys().collect::<Vec<_>>(), ["a", "b"]);

        let mut after = SplitWatermarks::new(delay, None);
        after.restore(snap);
        after.split_added(&split("a"), now);
        after.split_added(&split("b"), now);
        assert_eq!(
            after.update(now),
            Some(WatermarkUpdate::Advance(EventTime(44)))
        );
        // An older record after the restore does not move a split back.
        after.observe(&split("b"), EventTime(10), now);
        assert_eq!(after.update(now), None);
    }

    #[test]
    fn a_restored_split_this_instance_no_longer_owns_does_not_hold_the_watermark() {
        let mut w = SplitWatermarks::new(Some(Duration::from_millis(5)), None);
        w.restore([("gone".to_string(), 10), ("a".to_string(), 100)].into());
        let now = Instant::now();
        w.split_added(&split("a"), now);
        assert_eq!(w.update(now), Some(WatermarkUpdate::Advance(EventTime(94))));
        // It is still carried in later checkpoints, in case the split comes back.
        assert_eq!(w.snapshot().get("gone"), Some(&10));
    }
}
