//! A deterministic clickstream generator and the per-page analytics.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use watershed_core::connectors::GeneratorSource;
use watershed_core::{EventTime, Record, Stream, TumblingWindows};
use watershed_operators::{prelude::*, Count, WindowResult};

/// One page view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageView {
    /// Who viewed.
    pub user: u32,
    /// Which page.
    pub page: String,
    /// When, in ms since the epoch.
    pub ts: i64,
}

/// Views of one page in one window.
pub type PageCount = WindowResult<String, u64>;

/// Shape of the generated clickstream.
#[derive(Clone, Copy, Debug)]
pub struct ClickstreamSpec {
    /// Total page views.
    pub events: u64,
    /// Splits of the generator (like partitions).
    pub splits: usize,
    /// Event time the stream starts at.
    pub start: EventTime,
    /// Event time the stream spans.
    pub span: Duration,
    /// Maximum lateness of an event behind its split's newest event.
    pub max_disorder: Duration,
    /// Distinct pages.
    pub pages: u64,
    /// Distinct users.
    pub users: u64,
}

impl Default for ClickstreamSpec {
    fn default() -> Self {
        ClickstreamSpec {
            events: 1_000_000,
            splits: 4,
            // 2026-11-25T00:00:00Z, a minute boundary.
            start: EventTime(1_795_564_800_000),
            span: Duration::from_secs(600),
            max_disorder: Duration::from_secs(5),
            pages: 50,
            users: 10_000,
        }
    }
}

/// SplitMix64: a fast, well-mixed pure function of the event number.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl ClickstreamSpec {
    /// Page view number `n` (0-based over the whole stream).
    pub fn event(&self, n: u64) -> PageView {
        let h = mix(n);
        let span_ms = self.span.as_millis() as u64;
        let disorder = self.max_disorder.as_millis() as u64;
        let base = self.start.0 + (n as u128 * span_ms as u128 / self.events.max(1) as u128) as i64;
        let jitter = if disorder == 0 {
            0
        } else {
            (h >> 8) % disorder
        } as i64;
        // Skewed popularity: squaring a uniform draw favours low page numbers.
        let u = (h & 0xFFFF) as f64 / 65_536.0;
        let page = ((u * u) * self.pages as f64) as u64;
        PageView {
            user: ((h >> 24) % self.users.max(1)) as u32,
            page: format!("/page/{page}"),
            ts: base - jitter,
        }
    }

    /// A source yielding the clickstream; event `n` goes to split `n % splits`.
    pub fn source(self) -> GeneratorSource<PageView> {
        let splits = self.splits.max(1) as u64;
        let sizes = (0..splits)
            .map(|s| self.events.saturating_sub(s).div_ceil(splits))
            .collect();
        GeneratorSource::sized(sizes, move |s, i| {
            let v = self.event(i * splits + s as u64);
            let ts = EventTime(v.ts);
            Record::new(v, ts)
        })
    }
}

/// The analytics every example shares: views per page per one-minute tumbling window.
pub fn page_counts(views: Stream<PageView>) -> Stream<PageCount> {
    views
        .key_by(|v: &PageView| v.page.clone())
        .window(TumblingWindows::of(Duration::from_secs(60)))
        .aggregate_named("page-counts", Count)
}
