//! The analytics both architectures share, unchanged: parse the JSON clickstream, drop bots,
//! count views and unique users per page per minute, views per page category per minute (the
//! category comes from a reference table in S3), and the error rate per minute.

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use watershed_core::{EventTime, Record, Stream, TumblingWindows, WatermarkStrategy, Window};
use watershed_operators::{
    prelude::*, Aggregator, Count, MissingKey, ReferenceError, ReferenceTable,
};

/// One click as producers write it (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClickEvent {
    /// Who clicked.
    pub user: u32,
    /// Which page.
    pub page: String,
    /// When (ms since epoch): the event time.
    pub ts: i64,
    /// HTTP status the page answered with.
    pub status: u16,
    /// User agent; crawlers say "bot".
    pub agent: String,
}

impl ClickEvent {
    /// Crawlers are not audience.
    pub fn is_bot(&self) -> bool {
        self.agent.to_ascii_lowercase().contains("bot")
    }
}

/// Views and unique users of one page in one minute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageStats {
    /// The page.
    pub page: String,
    /// Window start (ms).
    pub window_start: i64,
    /// Window end (ms, exclusive).
    pub window_end: i64,
    /// Views by people (bots excluded).
    pub views: u64,
    /// Distinct users.
    pub unique_users: u64,
}

/// Share of failed requests (status ≥ 500) in one minute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorRate {
    /// Window start (ms).
    pub window_start: i64,
    /// Window end (ms, exclusive).
    pub window_end: i64,
    /// Requests that failed.
    pub errors: u64,
    /// All requests by people.
    pub requests: u64,
    /// errors / requests.
    pub rate: f64,
}

/// Views of one page category in one minute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryStats {
    /// The category, from the page → category reference table; [`UNKNOWN_CATEGORY`] for a
    /// page the table does not list.
    pub category: String,
    /// Window start (ms).
    pub window_start: i64,
    /// Window end (ms, exclusive).
    pub window_end: i64,
    /// Views by people (bots excluded).
    pub views: u64,
}

/// The category of pages the reference table does not list (they are counted, not dropped).
pub const UNKNOWN_CATEGORY: &str = "unknown";

/// The page → category reference table the analytics enrich clicks with.
pub type PageCategories = ReferenceTable<String, String>;

/// The analytics' outputs.
pub struct Analytics {
    /// Per page and minute.
    pub page_stats: Stream<PageStats>,
    /// Per page category and minute.
    pub category_stats: Stream<CategoryStats>,
    /// Per minute.
    pub error_rates: Stream<ErrorRate>,
}

/// Views and distinct users in one aggregator, so each event is handled once.
#[derive(Clone, Copy, Debug, Default)]
pub struct PageAggregate;

impl Aggregator<ClickEvent> for PageAggregate {
    type Acc = (u64, BTreeSet<u32>);
    type Output = (u64, u64);

    fn create(&self) -> Self::Acc {
        (0, BTreeSet::new())
    }
    fn add(&self, acc: &mut Self::Acc, e: &ClickEvent) {
        acc.0 += 1;
        acc.1.insert(e.user);
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        acc.0 += other.0;
        acc.1.extend(other.1);
    }
    fn finish(&self, acc: &Self::Acc) -> (u64, u64) {
        (acc.0, acc.1.len() as u64)
    }
}

/// Errors and requests.
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorAggregate;

impl Aggregator<ClickEvent> for ErrorAggregate {
    type Acc = (u64, u64);
    type Output = (u64, u64);

    fn create(&self) -> (u64, u64) {
        (0, 0)
    }
    fn add(&self, acc: &mut (u64, u64), e: &ClickEvent) {
        acc.0 += u64::from(e.status >= 500);
        acc.1 += 1;
    }
    fn merge(&self, acc: &mut (u64, u64), other: (u64, u64)) {
        acc.0 += other.0;
        acc.1 += other.1;
    }
    fn finish(&self, acc: &(u64, u64)) -> (u64, u64) {
        *acc
    }
}

/// One-minute tumbling windows.
pub fn minute() -> TumblingWindows {
    TumblingWindows::of(Duration::from_secs(60))
}

/// The shared processing function: raw JSON bytes from any source in, statistics out.
/// Undecodable events go to the pipeline's dead-letter sink with their reason. `categories`
/// maps pages to categories; each batch is enriched from one version of it, so a table
/// replaced in S3 mid-run changes the categories from one batch on, never half a batch.
pub fn analytics(raw: Stream<Bytes>, categories: &PageCategories) -> Analytics {
    let events = raw
        .decode_json::<ClickEvent>()
        .filter(|e: &ClickEvent| !e.is_bot());
    let mut copies = events.fan_out(3).into_iter();
    let (for_pages, for_categories, for_errors) = (
        copies.next().unwrap(),
        copies.next().unwrap(),
        copies.next().unwrap(),
    );
    let category_stats = for_categories
        .enrich(
            categories,
            |e: &ClickEvent| e.page.clone(),
            MissingKey::PassThrough,
        )
        .map(|(_, category): (ClickEvent, Option<String>)| {
            category.unwrap_or_else(|| UNKNOWN_CATEGORY.to_string())
        })
        .key_by(|category: &String| category.clone())
        .window(minute())
        .aggregate_named("category-stats", Count)
        .map(|r| CategoryStats {
            category: r.key,
            window_start: r.window.start.millis(),
            window_end: r.window.end.millis(),
            views: r.value,
        });
    let page_stats = for_pages
        .key_by(|e: &ClickEvent| e.page.clone())
        .window(minute())
        .aggregate_named("page-stats", PageAggregate)
        .map(|r| PageStats {
            page: r.key,
            window_start: r.window.start.millis(),
            window_end: r.window.end.millis(),
            views: r.value.0,
            unique_users: r.value.1,
        });
    let error_rates = for_errors
        .key_by(|_: &ClickEvent| ())
        .window(minute())
        .aggregate_named("error-rates", ErrorAggregate)
        .map(|r| ErrorRate {
            window_start: r.window.start.millis(),
            window_end: r.window.end.millis(),
            errors: r.value.0,
            requests: r.value.1,
            rate: if r.value.1 == 0 {
                0.0
            } else {
                r.value.0 as f64 / r.value.1 as f64
            },
        });
    Analytics {
        page_stats,
        category_stats,
        error_rates,
    }
}

/// The categories the default reference table assigns, in turn, to `/page/0`, `/page/1`, ….
pub const CATEGORIES: [&str; 5] = ["news", "sport", "shop", "docs", "blog"];

/// The default page → category table as CSV (`page,category`): every page of `pages` except
/// the last one, so the examples show a missing key ([`UNKNOWN_CATEGORY`]) as well.
pub fn default_categories_csv(pages: u64) -> String {
    let mut csv = String::from("page,category\n");
    for p in 0..pages.saturating_sub(1) {
        csv.push_str(&format!(
            "/page/{p},{}\n",
            CATEGORIES[p as usize % CATEGORIES.len()]
        ));
    }
    csv
}

/// The table as the primary and hybrid examples load it: `key`, or by default
/// `<prefix>/reference/page-categories.csv`, with the default table for
/// [`ClickSpec::default`]'s pages when missing, checked for a new version every 30 s.
pub async fn examples_page_categories(
    store: Arc<dyn ObjectStore>,
    prefix: &str,
    key: Option<&str>,
) -> Result<PageCategories, ReferenceError> {
    let key = key.map_or_else(
        || format!("{prefix}/reference/page-categories.csv"),
        str::to_owned,
    );
    let pages = ClickSpec::default().pages;
    page_categories(store, &key, pages, Duration::from_secs(30)).await
}

#[derive(Deserialize)]
struct CategoryRow {
    page: String,
    category: String,
}

/// Loads the page → category table from `path` in `store` (CSV, JSON lines or Parquet by
/// extension), refreshed every `refresh`. When the object does not exist yet, the default
/// table ([`default_categories_csv`] for `pages` pages) is written first, with a conditional
/// put so that two instances starting together cannot overwrite each other's or a user's
/// table: the examples run on a fresh bucket, and a table put there by hand is what they use.
pub async fn page_categories(
    store: Arc<dyn ObjectStore>,
    path: &str,
    pages: u64,
    refresh: Duration,
) -> Result<PageCategories, ReferenceError> {
    let location = Path::from(path);
    let create = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    let body = Bytes::from(default_categories_csv(pages));
    match store.put_opts(&location, body.into(), create).await {
        Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
        // Preconditions unsupported or not allowed: the load below says whether it exists.
        Err(e) => eprintln!("analytics: could not create the default table {path}: {e}"),
    }
    ReferenceTable::builder(store, location)
        .refresh_every(refresh)
        .load(|row: CategoryRow| (row.page, row.category))
        .await
}

/// Event time of a raw JSON click: the `ts` of the click as the analytics decode it, or
/// `EventTime::MIN` when it does not decode — so an undecodable record never moves the
/// watermark (it goes to the dead-letter path at `decode_json`).
///
/// Sources assign event time before the analytics decode, so this decodes too. A byte search
/// for `"ts":` (what this did before) let a malformed record carrying a `ts` an hour ahead
/// move event time an hour ahead, dropping the valid clicks after it as late, and gave valid
/// JSON written `"ts" :` or `"\u0074s"` no event time at all.
pub fn event_time_of(r: &Record<Bytes>) -> EventTime {
    serde_json::from_slice::<ClickTime<'_>>(&r.value)
        .map(|c| EventTime(c.ts))
        .unwrap_or(EventTime::MIN)
}

/// How the examples take event time from raw clicks: each click's decoded `ts`
/// ([`event_time_of`]), up to 5 s out of order; a click stamped more than an hour ahead of the
/// wall clock (a producer with a wrong clock) goes to the dead letters instead of moving event
/// time an hour ahead for every click after it.
pub fn click_watermarks() -> WatermarkStrategy<Bytes> {
    WatermarkStrategy::bounded_out_of_orderness(Duration::from_secs(5))
        .with_timestamps(event_time_of)
        .reject_future(Duration::from_secs(3_600))
}

/// [`ClickEvent`]'s fields with the same types, borrowed where the JSON allows: a payload
/// decodes into it exactly when it decodes into a `ClickEvent`, without allocating.
#[derive(Deserialize)]
#[allow(dead_code)] // every field is decoded so that validity matches ClickEvent's
struct ClickTime<'a> {
    user: u32,
    #[serde(borrow)]
    page: std::borrow::Cow<'a, str>,
    ts: i64,
    status: u16,
    #[serde(borrow)]
    agent: std::borrow::Cow<'a, str>,
}

/// Deterministic clickstream for the load generator and the end-to-end tests.
#[derive(Clone, Copy, Debug)]
pub struct ClickSpec {
    /// Events in total.
    pub events: u64,
    /// Event time of the first event.
    pub start: EventTime,
    /// Event time the stream spans.
    pub span: Duration,
    /// Up to this much out of order (within the watermark bound: nothing is late).
    pub max_disorder: Duration,
    /// One event in this many is malformed JSON (0: none).
    pub malformed_every: u64,
    /// One event in this many is from a bot (0: none).
    pub bot_every: u64,
    /// One event in this many is two minutes late, beyond the watermark: its window has fired,
    /// so the analytics drop it (0: none).
    pub late_every: u64,
    /// Distinct users.
    pub users: u64,
    /// Distinct pages.
    pub pages: u64,
    /// Popularity skew: page = pages × u^skew for uniform u (1: uniform; larger: a few hot
    /// pages).
    pub skew: f64,
}

impl Default for ClickSpec {
    fn default() -> Self {
        ClickSpec {
            events: 500_000,
            start: EventTime(1_795_564_800_000),
            span: Duration::from_secs(600),
            max_disorder: Duration::from_secs(5),
            malformed_every: 1_000,
            bot_every: 50,
            late_every: 0,
            users: 5_000,
            pages: 40,
            skew: 2.0,
        }
    }
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl ClickSpec {
    /// Event `n`, or `None` when it is one of the malformed ones.
    pub fn event(&self, n: u64) -> Option<ClickEvent> {
        if self.malformed_every > 0 && n % self.malformed_every == self.malformed_every - 1 {
            return None;
        }
        let h = mix(n);
        let span = self.span.as_millis() as u64;
        let base = self.start.0 + (n as u128 * span as u128 / self.events.max(1) as u128) as i64;
        let disorder = self.max_disorder.as_millis() as u64;
        let jitter = if disorder == 0 {
            0
        } else {
            ((h >> 8) % disorder) as i64
        };
        let u = (h & 0xFFFF) as f64 / 65_536.0;
        let bot = self.bot_every > 0 && (h >> 40).is_multiple_of(self.bot_every);
        let late = self.is_late(n);
        Some(ClickEvent {
            user: ((h >> 24) % self.users.max(1)) as u32,
            page: format!("/page/{}", (u.powf(self.skew) * self.pages as f64) as u64),
            ts: base - jitter - if late { 120_000 } else { 0 },
            status: if (h >> 48).is_multiple_of(100) {
                503
            } else {
                200
            },
            agent: if bot {
                "Googlebot/2.1".into()
            } else {
                "Mozilla/5.0".into()
            },
        })
    }

    /// Late events start three minutes into the stream: by then every window two minutes back
    /// has fired whatever the batching, so their fate (dropped) does not depend on timing.
    fn is_late(&self, n: u64) -> bool {
        let offset_ms = n as u128 * self.span.as_millis() / self.events.max(1) as u128;
        self.late_every > 0 && offset_ms >= 180_000 && n.is_multiple_of(self.late_every)
    }

    /// The bytes a producer writes for event `n`, and its partition key.
    pub fn payload(&self, n: u64) -> (String, Vec<u8>) {
        match self.event(n) {
            Some(e) => (
                e.user.to_string(),
                serde_json::to_vec(&e).expect("serializable"),
            ),
            None => (
                n.to_string(),
                format!("{{\"ts\":{},\"broken", self.start.0).into_bytes(),
            ),
        }
    }

    /// Reference result per category with the default table for `self.pages` pages:
    /// (category, window start) → views, computed directly.
    pub fn category_reference(&self) -> BTreeMap<(String, i64), u64> {
        let mut acc = BTreeMap::new();
        for ((page, window), (views, _)) in self.reference() {
            let index: Option<u64> = page.strip_prefix("/page/").and_then(|i| i.parse().ok());
            let category = match index {
                Some(i) if i + 1 < self.pages => CATEGORIES[i as usize % CATEGORIES.len()],
                _ => UNKNOWN_CATEGORY,
            };
            *acc.entry((category.to_string(), window)).or_default() += views;
        }
        acc
    }

    /// Reference result: (page, window start) → (views, unique users), computed directly.
    pub fn reference(&self) -> std::collections::BTreeMap<(String, i64), (u64, u64)> {
        let mut acc: std::collections::BTreeMap<(String, i64), (u64, BTreeSet<u32>)> =
            Default::default();
        for n in 0..self.events {
            let Some(e) = self.event(n) else { continue };
            if e.is_bot() || self.is_late(n) {
                continue;
            }
            let w: Window = minute().window_of(EventTime(e.ts));
            let slot = acc.entry((e.page, w.start.millis())).or_default();
            slot.0 += 1;
            slot.1.insert(e.user);
        }
        acc.into_iter()
            .map(|(k, (v, u))| (k, (v, u.len() as u64)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time_of(json: &str) -> EventTime {
        event_time_of(&Record::new(Bytes::from(json.to_string()), EventTime::MIN))
    }

    /// Rule: a payload gets an event time exactly when it decodes as a click, and then the
    /// click's own `ts`, however the JSON is written.
    #[test]
    fn event_time_is_the_decoded_clicks_ts_and_only_for_decodable_clicks() {
        let cases = [
            r#"{"user":1,"page":"/a","ts":1000,"status":200,"agent":"x"}"#,
            r#"{"user":1,"page":"/a","ts" : 1000,"status":200,"agent":"x"}"#,
            r#"{"user":1,"page":"/a","\u0074s":1000,"status":200,"agent":"x"}"#,
            r#"{"user":1,"page":"/\u00e9","ts":1000,"status":200,"agent":"x","extra":[1]}"#,
            r#"{"user":1,"page":"/a","ts":-5,"status":200,"agent":"x"}"#,
            // Undecodable, though each carries a "ts":
            r#"{"user":1,"page":"/a","ts":4102444800000,"status":200,"agent":"x""#,
            r#"{"user":"one","page":"/a","ts":4102444800000,"status":200,"agent":"x"}"#,
            r#"{"page":"/a","ts":4102444800000,"status":200,"agent":"x"}"#,
            r#"{"user":1,"page":"/a","ts":4102444800000,"status":70000,"agent":"x"}"#,
            r#"not json "ts":4102444800000"#,
        ];
        for json in cases {
            let decoded = serde_json::from_slice::<ClickEvent>(json.as_bytes()).ok();
            let expected = decoded.map_or(EventTime::MIN, |c| EventTime(c.ts));
            assert_eq!(time_of(json), expected, "{json}");
        }
        assert_eq!(time_of(cases[1]), EventTime(1000));
        assert_eq!(time_of(cases[2]), EventTime(1000));
        assert_eq!(time_of(cases[5]), EventTime::MIN);
    }
}
