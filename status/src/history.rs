//! Earlier readings of the counters, so rates and the last checkpoint's duration come from
//! the server's wall clock: every viewer sees the same numbers, and a page whose timers run
//! fast or slow (a background tab, a headless browser's virtual time) still shows true rates.

use crate::views::NodeMetrics;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Rates span at most this much time, so they follow changes within seconds.
const WINDOW: Duration = Duration::from_secs(5);
/// Readings closer together than this give rates dominated by batch boundaries.
const SHORTEST_SPAN: Duration = Duration::from_millis(500);
/// Readings older than this are of no further use.
const KEPT: Duration = Duration::from_secs(30);

/// One reading: counters of every node, and the checkpoint duration's count and sum.
#[derive(Clone, Debug)]
pub(crate) struct Reading {
    pub at: Instant,
    /// Records in, out, rejected, and seconds of back-pressure, per node.
    pub nodes: BTreeMap<String, [f64; 4]>,
    pub checkpoint_count: f64,
    pub checkpoint_sum: f64,
}

impl Reading {
    pub(crate) fn new(
        at: Instant,
        nodes: &BTreeMap<String, NodeMetrics>,
        checkpoint_count: f64,
        checkpoint_sum: f64,
    ) -> Self {
        let nodes = nodes
            .iter()
            .map(|(name, n)| {
                let counters = [
                    n.records_in,
                    n.records_out,
                    n.rejected,
                    n.backpressure_seconds,
                ];
                (name.clone(), counters)
            })
            .collect();
        Reading {
            at,
            nodes,
            checkpoint_count,
            checkpoint_sum,
        }
    }
}

/// Readings of the last [`KEPT`], oldest first.
#[derive(Debug, Default)]
pub(crate) struct History {
    readings: VecDeque<Reading>,
}

impl History {
    pub(crate) fn record(&mut self, reading: Reading) {
        let now = reading.at;
        self.readings.push_back(reading);
        while self
            .readings
            .front()
            .is_some_and(|r| now.saturating_duration_since(r.at) > KEPT)
        {
            self.readings.pop_front();
        }
    }

    /// Fills the rates of `nodes`, as of `now`, against the oldest reading of the window.
    pub(crate) fn fill_rates(&self, now: Instant, nodes: &mut BTreeMap<String, NodeMetrics>) {
        let Some(base) = self.readings.iter().find(|r| {
            let age = now.saturating_duration_since(r.at);
            age <= WINDOW && age >= SHORTEST_SPAN
        }) else {
            return;
        };
        let seconds = now.saturating_duration_since(base.at).as_secs_f64();
        for (name, node) in nodes.iter_mut() {
            let before = base.nodes.get(name).copied().unwrap_or_default();
            let rate = |current: f64, earlier: f64| Some(((current - earlier) / seconds).max(0.0));
            node.records_in_per_second = rate(node.records_in, before[0]);
            node.records_out_per_second = rate(node.records_out, before[1]);
            node.rejected_per_second = rate(node.rejected, before[2]);
            node.backpressure_per_second = rate(node.backpressure_seconds, before[3]);
        }
    }

    /// The mean duration of the checkpoints completed since the latest reading with fewer of
    /// them: the last checkpoint's own when readings are more frequent than checkpoints.
    pub(crate) fn last_duration(&self, count: f64, sum: f64) -> Option<f64> {
        if count <= 0.0 {
            return None;
        }
        let (earlier_count, earlier_sum) = self
            .readings
            .iter()
            .rev()
            .find(|r| r.checkpoint_count < count)
            .map_or((0.0, 0.0), |r| (r.checkpoint_count, r.checkpoint_sum));
        Some(((sum - earlier_sum) / (count - earlier_count)).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(records_in: f64) -> BTreeMap<String, NodeMetrics> {
        let metrics = NodeMetrics {
            records_in,
            ..Default::default()
        };
        BTreeMap::from([("source".to_string(), metrics)])
    }

    #[test]
    fn rates_compare_with_the_oldest_reading_of_the_last_five_seconds() {
        let start = Instant::now();
        let mut history = History::default();
        for (second, count) in [(0, 0.0), (2, 100.0), (4, 300.0)] {
            let at = start + Duration::from_secs(second);
            history.record(Reading::new(at, &node(count), 0.0, 0.0));
        }
        let mut now = node(500.0);
        history.fill_rates(start + Duration::from_secs(6), &mut now);
        // Against the reading at 2 s: 400 records in 4 s.
        assert_eq!(now["source"].records_in_per_second, Some(100.0));
    }

    #[test]
    fn no_rate_without_an_earlier_reading() {
        let mut now = node(5.0);
        History::default().fill_rates(Instant::now(), &mut now);
        assert_eq!(now["source"].records_in_per_second, None);
    }

    #[test]
    fn the_last_duration_is_the_mean_of_checkpoints_since_the_previous_count() {
        let start = Instant::now();
        let mut history = History::default();
        history.record(Reading::new(start, &node(0.0), 2.0, 1.0));
        history.record(Reading::new(start, &node(0.0), 3.0, 1.25));
        assert_eq!(history.last_duration(3.0, 1.25), Some(0.25));
        assert_eq!(history.last_duration(5.0, 2.25), Some(0.5));
        assert_eq!(History::default().last_duration(1.0, 0.75), Some(0.75));
        assert_eq!(history.last_duration(0.0, 0.0), None);
    }
}
