//! Nexmark q0, q1, q2, q5 (its HOP count stage) and q7 (its TUMBLE max stage) written in SQL
//! (sql/queries/*.sql) give the same results as the Rust queries in watershed-nexmark on the
//! same generated events; a TUMBLE COUNT/SUM/AVG/MIN/MAX/COUNT(DISTINCT) per bidder equals the
//! same aggregation written with watershed-operators.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use watershed_core::connectors::CollectSink;
use watershed_core::*;
use watershed_nexmark::generator::{GeneratorConfig, NexmarkGenerator, MAX_OUT_OF_ORDER};
use watershed_nexmark::queries::{self, BidRow, Q2Row, Q5Row, SLIDE, WINDOW};
use watershed_nexmark::{Bid, Event};
use watershed_operators::prelude::*;
use watershed_operators::Count;
use watershed_sql::{Row, SqlContext, Value};

const EVENTS: u64 = 30_000;
const RATE: u64 = 2_000;

fn query(name: &str) -> String {
    let path = format!("{}/queries/{name}.sql", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs `build` over the generated events (2 splits, keyed parallelism 2) and collects its rows.
fn run<T>(build: impl FnOnce(&Pipeline, Stream<Event>) -> Stream<T>) -> Vec<T>
where
    T: Clone + Send + Sync + Serialize + DeserializeOwned + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pipeline = Pipeline::new(
            PipelineConfig::new("sql-nexmark")
                .checkpoint_store(CheckpointStore::memory())
                .parallelism(2)
                .handle_signals(false),
        );
        let generator = NexmarkGenerator::new(GeneratorConfig::new().rate(RATE).seed(7));
        let events = pipeline.source(
            "events",
            generator.source(EVENTS, 2).batch_size(256),
            WatermarkStrategy::bounded_out_of_orderness(MAX_OUT_OF_ORDER),
        );
        let out = CollectSink::new();
        build(&pipeline, events).sink("out", out.clone());
        let summary = pipeline.run().await.unwrap();
        assert_eq!(summary.rejected, 0);
        out.values()
    })
}

/// The SQL query `name` over the bids, bound as JSON rows through the Rust registration API.
fn run_sql(name: &str) -> Vec<Vec<Value>> {
    let sql = query(name);
    let rows: Vec<Row> = run(move |pipeline, events| {
        let mut ctx = SqlContext::new(pipeline);
        ctx.execute(&query("bid")).unwrap();
        let json = events.filter_map(|e| match e {
            Event::Bid(b) => Some(Bytes::from(serde_json::to_vec(&b).unwrap())),
            _ => None,
        });
        ctx.bind_json("bid", json).unwrap();
        ctx.query(&sql).unwrap()
    });
    rows.into_iter().map(|r| r.values).collect()
}

fn int(v: &Value) -> i64 {
    v.as_i64()
        .unwrap_or_else(|| panic!("not an integer: {v:?}"))
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn bid_rows(rows: Vec<Vec<Value>>) -> Vec<BidRow> {
    let rows = rows.iter().map(|r| BidRow {
        auction: int(&r[0]),
        bidder: int(&r[1]),
        price: int(&r[2]),
        date_time: int(&r[3]),
    });
    sorted(rows.collect())
}

#[test]
fn q0_in_sql_equals_the_rust_query() {
    let expected = sorted(run(|_, events| queries::q0(events)));
    assert!(expected.len() > 20_000);
    assert_eq!(bid_rows(run_sql("q0")), expected);
}

#[test]
fn q1_in_sql_equals_the_rust_query() {
    let expected = sorted(run(|_, events| queries::q1(events)));
    assert_eq!(bid_rows(run_sql("q1")), expected);
}

#[test]
fn q2_in_sql_equals_the_rust_query() {
    let expected = sorted(run(|_, events| queries::q2(events)));
    assert!(!expected.is_empty());
    let got: Vec<Q2Row> = run_sql("q2")
        .iter()
        .map(|r| Q2Row {
            auction: int(&r[0]),
            price: int(&r[1]),
        })
        .collect();
    assert_eq!(sorted(got), expected);
}

#[test]
fn q5_hop_counts_in_sql_equal_the_rust_windows_and_give_q5s_hot_items() {
    let counts: Vec<(i64, i64, i64, i64)> = run(|_, events| {
        events
            .filter_map(|e| match e {
                Event::Bid(b) => Some(b),
                _ => None,
            })
            .key_by(|b: &Bid| b.auction)
            .window(SlidingWindows::of(WINDOW, SLIDE))
            .aggregate(Count)
            .map(|r| (r.window.start.0, r.window.end.0, r.key, r.value as i64))
    });
    let sql: Vec<(i64, i64, i64, i64)> = run_sql("q5_counts")
        .iter()
        .map(|r| (int(&r[2]), int(&r[3]), int(&r[0]), int(&r[1])))
        .collect();
    let sql = sorted(sql);
    assert!(sql.len() > 1_000);
    assert_eq!(sql, sorted(counts));
    // q5 keeps each window's auctions with the most bids.
    let mut best: BTreeMap<(i64, i64), (i64, Vec<i64>)> = BTreeMap::new();
    for (start, end, auction, n) in &sql {
        let e = best.entry((*start, *end)).or_insert((0, Vec::new()));
        if *n > e.0 {
            *e = (*n, Vec::new());
        }
        if *n == e.0 {
            e.1.push(*auction);
        }
    }
    let hot: Vec<Q5Row> = best
        .into_iter()
        .flat_map(|((s, e), (count, auctions))| {
            auctions.into_iter().map(move |auction| Q5Row {
                window_start: s,
                window_end: e,
                auction,
                count,
            })
        })
        .collect();
    assert_eq!(sorted(hot), sorted(run(|_, events| queries::q5(events))));
}

#[test]
fn q7_tumble_max_in_sql_equals_the_rust_querys_window_maxima() {
    let rust: BTreeSet<(i64, i64)> = run(|_, events| queries::q7(events))
        .into_iter()
        .map(|r| (r.window_start, r.price))
        .collect();
    let sql: BTreeSet<(i64, i64)> = run_sql("q7_max")
        .iter()
        .map(|r| (int(&r[0]), int(&r[1])))
        .collect();
    assert!(rust.len() >= 2, "{rust:?}");
    assert_eq!(sql, rust);
}

/// (window start, bidder, count, sum, mean, min, max, distinct auctions).
type Stats = (i64, i64, i64, i64, String, i64, i64, i64);

#[test]
fn a_tumble_count_sum_avg_per_key_in_sql_equals_the_rust_operators() {
    let rust: Vec<Stats> = run(|_, events| {
        events
            .filter_map(|e| match e {
                Event::Bid(b) => Some(b),
                _ => None,
            })
            .key_by(|b: &Bid| b.bidder)
            .window(TumblingWindows::of(WINDOW))
            .process(|bids: &[Bid]| {
                let sum: i64 = bids.iter().map(|b| b.price).sum();
                let mean = bids.iter().map(|b| b.price as f64).sum::<f64>() / bids.len() as f64;
                let min = bids.iter().map(|b| b.price).min().unwrap_or(0);
                let max = bids.iter().map(|b| b.price).max().unwrap_or(0);
                let distinct = bids
                    .iter()
                    .map(|b| b.auction)
                    .collect::<BTreeSet<_>>()
                    .len() as i64;
                (
                    bids.len() as i64,
                    sum,
                    format!("{mean:.6}"),
                    min,
                    max,
                    distinct,
                )
            })
            .map(|r| {
                let (n, sum, mean, min, max, d) = r.value;
                (r.window.start.0, r.key, n, sum, mean, min, max, d)
            })
    });
    let sql: Vec<Stats> = run_sql("tumble_bidder_stats")
        .iter()
        .map(|r| {
            let Value::Float(mean) = r[5] else {
                panic!("{:?}", r[5])
            };
            (
                int(&r[0]),
                int(&r[2]),
                int(&r[3]),
                int(&r[4]),
                format!("{mean:.6}"),
                int(&r[6]),
                int(&r[7]),
                int(&r[8]),
            )
        })
        .collect();
    assert!(sql.len() > 100);
    assert_eq!(sorted(sql), sorted(rust));
}
