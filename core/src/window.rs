//! Windows: time intervals records are grouped into, and how records are assigned to them.

use crate::time::{duration_millis, EventTime};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A time window `[start, end)` (SEMANTICS.md W1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    /// First instant in the window.
    pub start: EventTime,
    /// First instant after the window.
    pub end: EventTime,
}

impl Window {
    /// `[start, end)`.
    pub fn new(start: EventTime, end: EventTime) -> Self {
        Window { start, end }
    }

    /// The largest timestamp the window contains, `end − 1`; results carry it as their time.
    pub fn max_timestamp(&self) -> EventTime {
        EventTime(self.end.0.saturating_sub(1))
    }

    /// True when `ts` lies in the window.
    pub fn contains(&self, ts: EventTime) -> bool {
        self.start <= ts && ts < self.end
    }
}

/// Assigns a timestamp to the windows that contain it.
pub trait WindowAssigner: Send + Sync + 'static {
    /// The windows `ts` belongs to, appended to `out`.
    fn assign(&self, ts: EventTime, out: &mut Vec<Window>);
}

/// Fixed-size, non-overlapping windows aligned to `offset` (W2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TumblingWindows {
    size: i64,
    offset: i64,
}

impl TumblingWindows {
    /// Windows of `size`, aligned to the epoch. Panics if `size` is zero: a configuration bug.
    pub fn of(size: Duration) -> Self {
        let size = duration_millis(size);
        assert!(size > 0, "tumbling window size must be positive");
        TumblingWindows { size, offset: 0 }
    }

    /// Shifts window starts by `offset` (`|offset| < size`, else it is reduced modulo size).
    pub fn with_offset(mut self, offset_ms: i64) -> Self {
        self.offset = offset_ms % self.size;
        self
    }

    /// The window containing `ts`: start = `ts − floor_mod(ts − offset, size)`.
    pub fn window_of(&self, ts: EventTime) -> Window {
        let rem = (ts.0 as i128 - self.offset as i128).rem_euclid(self.size as i128) as i64;
        let start = ts.0 - rem;
        Window::new(EventTime(start), EventTime(start.saturating_add(self.size)))
    }

    /// The window size in milliseconds.
    pub fn size_ms(&self) -> i64 {
        self.size
    }
}

impl WindowAssigner for TumblingWindows {
    fn assign(&self, ts: EventTime, out: &mut Vec<Window>) {
        out.push(self.window_of(ts));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn w2_negative_timestamps_use_floor_mod() {
        let w = TumblingWindows {
            size: 10,
            offset: 3,
        };
        assert_eq!(
            w.window_of(EventTime(-15)),
            Window::new(EventTime(-17), EventTime(-7))
        );
    }

    proptest! {
        #[test]
        fn w2_tumbling_window_contains_ts_and_is_aligned(ts in (i64::MIN + 1)..i64::MAX / 2, size in 1i64..1_000_000, off in -999_999i64..999_999) {
            let w = TumblingWindows { size, offset: off % size };
            let win = w.window_of(EventTime(ts));
            prop_assert!(win.start.0 <= ts && ts < win.end.0);
            prop_assert_eq!((win.start.0 as i128 - (off % size) as i128).rem_euclid(size as i128), 0);
        }
    }
}
