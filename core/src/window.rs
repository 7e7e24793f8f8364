//! Windows: time intervals records are grouped into, and how records are assigned to them.
//!
//! The assignment formulas are Flink's: tumbling and sliding windows are
//! aligned to `offset` with a floor modulo, so negative timestamps work; session windows give
//! each element a proto-window `[ts, ts + gap)` that the window operator merges with every
//! window it intersects, touching ones included (events at 0 and 10 with gap 10 form `[0, 20)`).

use crate::time::{duration_millis, EventTime};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// A time window `[start, end)`: `start` included, `end` excluded.
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

    /// The global window of count windows: all of time, never late.
    pub const GLOBAL: Window = Window {
        start: EventTime::MIN,
        end: EventTime::MAX,
    };

    /// The largest timestamp the window contains, `end − 1`; results carry it as their time.
    pub fn max_timestamp(&self) -> EventTime {
        EventTime(self.end.0.saturating_sub(1))
    }

    /// True when `ts` lies in the window.
    pub fn contains(&self, ts: EventTime) -> bool {
        self.start <= ts && ts < self.end
    }

    /// True when the two windows overlap or touch (`[0,10)` and `[10,20)` do): the session
    /// merge rule (Flink's `TimeWindow.intersects`).
    pub fn intersects(&self, other: &Window) -> bool {
        self.start <= other.end && self.end >= other.start
    }

    /// The smallest window covering both.
    pub fn cover(&self, other: &Window) -> Window {
        Window::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// Assigns a timestamp to the windows that contain it.
pub trait WindowAssigner: Send + Sync + 'static {
    /// The windows `ts` belongs to, appended to `out`. An empty result means the element falls
    /// in a gap between windows (sliding windows with size < slide); operators count such
    /// elements rather than dropping them silently.
    fn assign(&self, ts: EventTime, out: &mut Vec<Window>);

    /// True for assigners whose windows merge when they intersect (sessions): the operator then
    /// merges each element's proto-window with the key's intersecting windows.
    fn is_merging(&self) -> bool {
        false
    }
}

/// An invalid window configuration, reported when the assigner is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowConfigError(String);

impl fmt::Display for WindowConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WindowConfigError {}

fn positive_ms(what: &str, d: Duration) -> Result<i64, WindowConfigError> {
    let ms = duration_millis(d);
    if ms <= 0 {
        return Err(WindowConfigError(format!(
            "{what} must be at least 1 ms, got {d:?}"
        )));
    }
    Ok(ms)
}

/// `ts − floor_mod(ts − offset, size)`: the start of the `size`-aligned slot holding `ts`.
/// Computed in i128 so that no `(ts, offset)` pair overflows (FLINK-26334); near
/// `i64::MIN` the start may lie below the i64 range, and callers clamp it.
#[inline]
fn aligned_start(ts: i64, offset: i64, size: i64) -> i128 {
    let ts = ts as i128;
    ts - (ts - offset as i128).rem_euclid(size as i128)
}

/// An i128 instant clamped into the i64 range.
#[inline]
fn clamp(t: i128) -> EventTime {
    EventTime(t.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
}

/// Fixed-size, non-overlapping windows aligned to `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TumblingWindows {
    size: i64,
    offset: i64,
}

impl TumblingWindows {
    /// Windows of `size`, aligned to the epoch. Panics if `size` is under 1 ms: a configuration
    /// bug (use [`try_of`](Self::try_of) to get an error instead).
    pub fn of(size: Duration) -> Self {
        Self::try_of(size).unwrap_or_else(|e| panic!("tumbling windows: {e}"))
    }

    /// Windows of `size`, or an error when `size` is under 1 ms.
    pub fn try_of(size: Duration) -> Result<Self, WindowConfigError> {
        let size = positive_ms("tumbling window size", size)?;
        Ok(TumblingWindows { size, offset: 0 })
    }

    /// Shifts window starts by `offset` (`|offset| < size`, else it is reduced modulo size).
    pub fn with_offset(mut self, offset_ms: i64) -> Self {
        self.offset = offset_ms % self.size;
        self
    }

    /// The window containing `ts`: start = `ts − floor_mod(ts − offset, size)`.
    pub fn window_of(&self, ts: EventTime) -> Window {
        // At the ends of the i64 range the window is clipped to it; it still contains ts.
        let start = aligned_start(ts.0, self.offset, self.size);
        Window::new(clamp(start), clamp(start + self.size as i128))
    }

    /// The window size in milliseconds.
    pub fn size_ms(&self) -> i64 {
        self.size
    }

    /// The offset in milliseconds.
    pub fn offset_ms(&self) -> i64 {
        self.offset
    }
}

impl WindowAssigner for TumblingWindows {
    #[inline]
    fn assign(&self, ts: EventTime, out: &mut Vec<Window>) {
        out.push(self.window_of(ts));
    }
}

/// Fixed-size windows starting every `slide`, aligned to `offset`.
///
/// An element is in every window `[s, s + size)` with `s ≡ offset (mod slide)` and
/// `s ≤ ts < s + size`: `ceil(size / slide)` or `floor(size / slide)` of them (size need not be
/// a multiple of slide). With `size < slide` the windows leave gaps and an element in a gap gets
/// no window; the window operator counts those (`skipped_records`, metric
/// `watershed_window_skipped_records_total`) instead of dropping them silently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlidingWindows {
    size: i64,
    slide: i64,
    offset: i64,
}

/// Flink's bound on windows per element: more would make every element cost millions of
/// state updates, which is a configuration mistake, not a workload.
const MAX_WINDOWS_PER_ELEMENT: i64 = 10_000_000;

impl SlidingWindows {
    /// Windows of `size` every `slide`, aligned to the epoch. Panics on an invalid configuration
    /// (see [`try_of`](Self::try_of)).
    pub fn of(size: Duration, slide: Duration) -> Self {
        Self::try_of(size, slide).unwrap_or_else(|e| panic!("sliding windows: {e}"))
    }

    /// Windows of `size` every `slide`, or an error when either is under 1 ms or an element
    /// would be in more than 10,000,000 windows.
    pub fn try_of(size: Duration, slide: Duration) -> Result<Self, WindowConfigError> {
        let size = positive_ms("sliding window size", size)?;
        let slide = positive_ms("sliding window slide", slide)?;
        if size / slide > MAX_WINDOWS_PER_ELEMENT {
            return Err(WindowConfigError(format!(
                "sliding window size / slide = {} exceeds {MAX_WINDOWS_PER_ELEMENT} windows per element",
                size / slide
            )));
        }
        Ok(SlidingWindows {
            size,
            slide,
            offset: 0,
        })
    }

    /// Shifts window starts by `offset` (`|offset| < slide`, else it is reduced modulo slide).
    pub fn with_offset(mut self, offset_ms: i64) -> Self {
        self.offset = offset_ms % self.slide;
        self
    }

    /// The window size in milliseconds.
    pub fn size_ms(&self) -> i64 {
        self.size
    }

    /// The slide in milliseconds.
    pub fn slide_ms(&self) -> i64 {
        self.slide
    }

    /// The offset in milliseconds.
    pub fn offset_ms(&self) -> i64 {
        self.offset
    }
}

impl WindowAssigner for SlidingWindows {
    #[inline]
    fn assign(&self, ts: EventTime, out: &mut Vec<Window>) {
        // Latest start first, then step back while the window still contains ts (F-SEW). i128
        // keeps starts near i64::MIN from wrapping; windows that would start below it are not
        // representable and are skipped, except the latest, which is clipped to the range so
        // that every timestamp has a window when size ≥ slide.
        let mut start = aligned_start(ts.0, self.offset, self.slide);
        let first = start;
        while start > ts.0 as i128 - self.size as i128 {
            if start < i64::MIN as i128 && start != first {
                break;
            }
            out.push(Window::new(clamp(start), clamp(start + self.size as i128)));
            start -= self.slide as i128;
        }
    }
}

/// Session windows: a key's elements closer than `gap` form one window (Flink convention).
///
/// Each element gets the proto-window `[ts, ts + gap)`; intersecting windows (touching ones
/// included) merge, so two elements share a session when `next − prev ≤ gap`. A late element
/// within allowed lateness that falls between two sessions bridges them into one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionWindows {
    gap: i64,
}

impl SessionWindows {
    /// Sessions closed by `gap` of inactivity. Panics if `gap` is under 1 ms (see
    /// [`try_with_gap`](Self::try_with_gap)).
    pub fn with_gap(gap: Duration) -> Self {
        Self::try_with_gap(gap).unwrap_or_else(|e| panic!("session windows: {e}"))
    }

    /// Sessions closed by `gap` of inactivity, or an error when `gap` is under 1 ms.
    pub fn try_with_gap(gap: Duration) -> Result<Self, WindowConfigError> {
        Ok(SessionWindows {
            gap: positive_ms("session gap", gap)?,
        })
    }

    /// The gap in milliseconds.
    pub fn gap_ms(&self) -> i64 {
        self.gap
    }
}

impl WindowAssigner for SessionWindows {
    #[inline]
    fn assign(&self, ts: EventTime, out: &mut Vec<Window>) {
        out.push(Window::new(ts, EventTime(ts.0.saturating_add(self.gap))));
    }

    fn is_merging(&self) -> bool {
        true
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

    #[test]
    fn w3_sliding_size_10_slide_4_gives_three_or_two_windows() {
        let w = SlidingWindows::of(Duration::from_millis(10), Duration::from_millis(4));
        let mut out = Vec::new();
        w.assign(EventTime(13), &mut out);
        let starts: Vec<i64> = out.iter().map(|w| w.start.0).collect();
        assert_eq!(starts, vec![12, 8, 4]);
        out.clear();
        w.assign(EventTime(15), &mut out);
        assert_eq!(out.len(), 2);
        out.clear();
        w.assign(EventTime(19), &mut out);
        let starts: Vec<i64> = out.iter().map(|w| w.start.0).collect();
        assert_eq!(starts, vec![16, 12]);
    }

    #[test]
    fn w3_invalid_sliding_configuration_is_a_clear_error() {
        let e = SlidingWindows::try_of(Duration::ZERO, Duration::from_millis(1)).unwrap_err();
        assert!(e.to_string().contains("size must be at least 1 ms"), "{e}");
        let e = SlidingWindows::try_of(Duration::from_secs(1), Duration::ZERO).unwrap_err();
        assert!(e.to_string().contains("slide must be at least 1 ms"), "{e}");
        assert!(SessionWindows::try_with_gap(Duration::ZERO).is_err());
        assert!(TumblingWindows::try_of(Duration::from_micros(10)).is_err());
    }

    #[test]
    fn w2_w3_extreme_timestamps_neither_panic_nor_lose_the_element() {
        let t = TumblingWindows::of(Duration::from_millis(7)).with_offset(3);
        let s =
            SlidingWindows::of(Duration::from_millis(10), Duration::from_millis(4)).with_offset(-1);
        for ts in [i64::MIN, i64::MIN + 1, i64::MAX - 1, i64::MAX] {
            let w = t.window_of(EventTime(ts));
            assert!(w.start.0 <= ts && (ts < w.end.0 || w.end == EventTime::MAX));
            let mut out = Vec::new();
            s.assign(EventTime(ts), &mut out);
            assert!(!out.is_empty());
            assert!(out.iter().all(|w| w.start.0 <= ts));
        }
    }

    #[test]
    fn w4_touching_windows_intersect() {
        let a = Window::new(EventTime(0), EventTime(10));
        let b = Window::new(EventTime(10), EventTime(20));
        let c = Window::new(EventTime(11), EventTime(21));
        assert!(a.intersects(&b));
        assert!(!a.intersects(&c));
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
