//! Event time.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in event time: milliseconds since the Unix epoch.
///
/// `EventTime::MIN` is the initial watermark ("nothing is known yet") and `EventTime::MAX` the
/// watermark that ends a bounded input, as in Flink.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventTime(pub i64);

impl EventTime {
    /// The smallest representable time; the initial watermark.
    pub const MIN: EventTime = EventTime(i64::MIN);
    /// The largest representable time; the watermark that closes every window.
    pub const MAX: EventTime = EventTime(i64::MAX);

    /// Milliseconds since the Unix epoch.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// Wall-clock now, for processing-time uses (latency metrics, arrival timestamps).
    pub fn now() -> EventTime {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        EventTime(ms)
    }

    /// `self + d`, saturating at the bounds instead of overflowing.
    pub fn saturating_add(self, d: Duration) -> EventTime {
        EventTime(self.0.saturating_add(duration_millis(d)))
    }

    /// `self - d`, saturating at the bounds instead of overflowing.
    pub fn saturating_sub(self, d: Duration) -> EventTime {
        EventTime(self.0.saturating_sub(duration_millis(d)))
    }
}

/// Whole milliseconds of a duration, saturating at `i64::MAX`.
pub fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl fmt::Debug for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EventTime::MIN => f.write_str("EventTime(MIN)"),
            EventTime::MAX => f.write_str("EventTime(MAX)"),
            EventTime(ms) => write!(f, "EventTime({ms})"),
        }
    }
}

impl fmt::Display for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<i64> for EventTime {
    fn from(ms: i64) -> Self {
        EventTime(ms)
    }
}
