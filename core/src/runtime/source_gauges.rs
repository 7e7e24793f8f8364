//! A source task's event-time gauges: the skew between its splits and each split's watermark,
//! updated at most once a second (a status page reads them; per batch would cost for nothing).

use crate::metric_catalogue as m;
use crate::record::SplitId;
use crate::watermark::SplitWatermarks;
use std::time::{Duration, Instant};

/// How often the gauges are updated.
const EVERY: Duration = Duration::from_secs(1);

pub(crate) struct SourceGauges {
    node: String,
    skew: metrics::Gauge,
    due: Instant,
}

impl SourceGauges {
    pub(crate) fn new(node: &str) -> Self {
        SourceGauges {
            node: node.to_string(),
            skew: metrics::gauge!(m::EVENT_TIME_SKEW, m::LABEL_NODE => node.to_string()),
            due: Instant::now(),
        }
    }

    /// Updates the gauges from `tracker` when a second has passed since the last update.
    pub(crate) fn update(&mut self, tracker: &SplitWatermarks, now: Instant) {
        if now < self.due {
            return;
        }
        self.due = now + EVERY;
        let millis = tracker.skew_millis(now).unwrap_or(0);
        self.skew.set(millis as f64 / 1000.0);
        for (split, watermark) in tracker.split_watermarks() {
            self.split_gauge(split).set(watermark as f64 / 1000.0);
        }
    }

    /// Updates the gauges now (the source finished: its last values must not wait a second
    /// that may never come).
    pub(crate) fn update_now(&mut self, tracker: &SplitWatermarks, now: Instant) {
        self.due = now;
        self.update(tracker, now);
    }

    /// A split this task no longer reads: its watermark is unknown here from now on (another
    /// instance may read it), which Prometheus and the status page show as NaN, not as a stale
    /// value.
    pub(crate) fn split_removed(&self, split: &SplitId) {
        self.split_gauge(split).set(f64::NAN);
    }

    fn split_gauge(&self, split: &SplitId) -> metrics::Gauge {
        metrics::gauge!(
            m::SPLIT_WATERMARK,
            m::LABEL_NODE => self.node.clone(),
            m::LABEL_SPLIT => split.to_string()
        )
    }
}
