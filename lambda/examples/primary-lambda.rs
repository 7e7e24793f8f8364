//! The primary example in its Lambda form: Kinesis → Lambda (the shared analytics) → S3.
//!
//! The same `analytics` function the long-running `primary` runs, invoked by a Kinesis event
//! source mapping for each batch. Per batch it writes, as `primary` does: per-page statistics
//! as Parquet, per-category statistics and error rates as gzip JSON lines, every raw event as
//! gzip JSON lines (the Firehose path), and undecodable events with their reason under a
//! dead-letter prefix. Object names depend only on the batch's shard and first sequence
//! number, so a retried batch rewrites its objects instead of adding copies.
//!
//! Windows close when a batch ends: each invocation writes the minutes of its own records, so
//! a minute spread over several batches has several partial rows (views add up; unique users
//! do not). For complete minutes, use `TumblingWindowHandler` (windows by arrival time) or the
//! long-running `primary` (docs/lambda.md, "When to prefer a long-running pipeline").
//!
//! Environment: `WATERSHED_S3_BUCKET` (required), `WATERSHED_S3_ENDPOINT` (a local server
//! only), `WATERSHED_S3_PREFIX` (default `primary`), `WATERSHED_CATEGORIES` (the reference
//! table's key, default `<prefix>/reference/page-categories.csv`), `WATERSHED_ON_FAILURE_QUEUE`
//! (an SQS queue URL: after `WATERSHED_ON_FAILURE_ATTEMPTS` failed attempts, default 5, records
//! whose outputs cannot be delivered are given up on and described there), `RUST_LOG`.
//!
//! ```text
//! cargo lambda build --release -p watershed-lambda --example primary-lambda
//! cargo lambda deploy primary-lambda   # then an event source mapping on the stream
//! ```

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use watershed_core::{BoxError, Record, Stream};
use watershed_examples::analytics::{
    analytics, click_watermarks, examples_page_categories, CategoryStats, ErrorRate,
    PageCategories, PageStats,
};
use watershed_examples::lifecycle;
use watershed_lambda::{DeliveryFailure, KinesisHandler, SinkTarget, SqsTarget, Target};
use watershed_operators::prelude::*;
use watershed_sink_s3::{Compression, Format, ParquetOptions, S3Sink};

type S3 = object_store::aws::AmazonS3;

/// Everything one batch produces, in one stream (the handler takes one function output).
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Output {
    Raw(Bytes),
    Page(PageStats),
    Category(CategoryStats),
    Error(ErrorRate),
}

/// The raw archive and the three analytics outputs, as `primary` wires them.
fn outputs(raw: Stream<Bytes>, categories: &PageCategories) -> Stream<Output> {
    let mut copies = raw.fan_out(2).into_iter();
    let (to_archive, to_analytics) = (copies.next().unwrap(), copies.next().unwrap());
    let out = analytics(to_analytics, categories);
    to_archive
        .map(Output::Raw)
        .union(out.page_stats.map(Output::Page))
        .union(out.category_stats.map(Output::Category))
        .union(out.error_rates.map(Output::Error))
}

type Factory<T> = Box<dyn FnMut() -> Result<S3Sink<T>, BoxError> + Send>;

/// Sends each kind of output to its own S3 sink. A failure of any is reported as nothing
/// delivered: the batch is retried from its start, and the sinks that had committed rewrite
/// the same objects.
struct PrimaryTarget {
    raw: SinkTarget<S3Sink<Bytes>, Factory<Bytes>>,
    pages: SinkTarget<S3Sink<PageStats>, Factory<PageStats>>,
    categories: SinkTarget<S3Sink<CategoryStats>, Factory<CategoryStats>>,
    errors: SinkTarget<S3Sink<ErrorRate>, Factory<ErrorRate>>,
}

impl PrimaryTarget {
    fn new(s3: Arc<S3>, prefix: &str) -> Self {
        let at = |what: &str| format!("{prefix}/{what}");
        let (s, p) = (s3.clone(), at("raw"));
        let raw: Factory<Bytes> = Box::new(move || {
            Ok(S3Sink::<Bytes>::s3(s.clone(), &p)
                // The sink ends each line itself.
                .encoder(|r, out| {
                    out.extend_from_slice(&r.value);
                    Ok(())
                })
                .compression(Compression::Gzip)
                .build()?)
        });
        let (s, p) = (s3.clone(), at("page-stats"));
        let pages: Factory<PageStats> = Box::new(move || {
            // A fixed sample, so the Parquet schema never depends on the data.
            let sample = PageStats {
                page: String::new(),
                window_start: 0,
                window_end: 0,
                views: 0,
                unique_users: 0,
            };
            let parquet = ParquetOptions::derive_from(&[sample])?;
            Ok(S3Sink::s3(s.clone(), &p)
                .format(Format::Parquet(parquet))
                .build()?)
        });
        let (s, p) = (s3.clone(), at("category-stats"));
        let categories: Factory<CategoryStats> = Box::new(move || {
            Ok(S3Sink::s3(s.clone(), &p)
                .compression(Compression::Gzip)
                .build()?)
        });
        let p = at("error-rates");
        let errors: Factory<ErrorRate> = Box::new(move || {
            Ok(S3Sink::s3(s3.clone(), &p)
                .compression(Compression::Gzip)
                .build()?)
        });
        PrimaryTarget {
            raw: SinkTarget::new("primary", "raw-archive", raw),
            pages: SinkTarget::new("primary", "page-stats", pages),
            categories: SinkTarget::new("primary", "category-stats", categories),
            errors: SinkTarget::new("primary", "error-rates", errors),
        }
    }
}

#[async_trait]
impl Target<Output> for PrimaryTarget {
    async fn deliver(
        &mut self,
        batch_id: &str,
        records: Vec<Record<Output>>,
    ) -> Result<(), DeliveryFailure> {
        let (mut raw, mut pages, mut categories, mut errors) = (vec![], vec![], vec![], vec![]);
        for r in records {
            match r.value.clone() {
                Output::Raw(v) => raw.push(r.with_value(v)),
                Output::Page(v) => pages.push(r.with_value(v)),
                Output::Category(v) => categories.push(r.with_value(v)),
                Output::Error(v) => errors.push(r.with_value(v)),
            }
        }
        let all_or_nothing = |f: DeliveryFailure| DeliveryFailure::nothing(f.error);
        self.raw
            .deliver(batch_id, raw)
            .await
            .map_err(all_or_nothing)?;
        self.pages
            .deliver(batch_id, pages)
            .await
            .map_err(all_or_nothing)?;
        let categories_done = self.categories.deliver(batch_id, categories).await;
        categories_done.map_err(all_or_nothing)?;
        self.errors
            .deliver(batch_id, errors)
            .await
            .map_err(all_or_nothing)
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lifecycle::init_logging();
    let prefix = std::env::var("WATERSHED_S3_PREFIX").unwrap_or_else(|_| "primary".into());
    let key = std::env::var("WATERSHED_CATEGORIES").ok();
    let s3 = Arc::new(watershed_examples::observe::s3_client().map_err(|e| e.to_string())?);
    let categories = examples_page_categories(s3.clone(), &prefix, key.as_deref()).await?;
    let dead_letters = {
        let (s3, prefix) = (s3.clone(), format!("{prefix}/dead-letters"));
        SinkTarget::new("primary", "dead-letters", move || {
            Ok(S3Sink::s3_dead_letters(s3.clone(), &prefix).build()?)
        })
    };
    let mut handler = KinesisHandler::builder(
        "primary",
        move |raw| outputs(raw, &categories),
        PrimaryTarget::new(s3, &prefix),
    )
    .watermarks(click_watermarks())
    .dead_letters(dead_letters);
    if let Ok(queue) = std::env::var("WATERSHED_ON_FAILURE_QUEUE") {
        let attempts = match std::env::var("WATERSHED_ON_FAILURE_ATTEMPTS") {
            Ok(n) => n
                .parse()
                .map_err(|e| format!("WATERSHED_ON_FAILURE_ATTEMPTS: {e}"))?,
            Err(_) => 5,
        };
        handler = handler.on_failure(SqsTarget::from_env(queue).await, attempts);
    }
    let handler = handler.build();
    watershed_lambda::run(handler).await
}
