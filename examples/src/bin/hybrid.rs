//! The hybrid architecture: Kafka → analytics → Kafka (transactional) **and** S3.
//!
//! Reads JSON clicks from a Kafka topic, runs the shared analytics (the same function the
//! Kinesis example runs), and writes per-page statistics exactly once both to a Kafka topic
//! and to S3 (gzip JSON lines, partitioned by hour), views per page category to S3 (the category
//! from a reference table in S3: `--categories KEY`, default
//! `<prefix>/reference/page-categories.csv`, written with a default table when missing), error
//! rates to S3, undecodable events to an S3 dead-letter prefix. Checkpoints every second to a local directory; kill it and start it
//! again to resume.
//!
//! ```text
//! scripts/brokers up
//! cargo run --release -p watershed-examples --bin loadgen -- kafka --topic clicks --events 100000
//! cargo run --release -p watershed-examples --bin hybrid -- --input clicks --output page-stats
//! ```
//! Options: `--brokers`, `--input`, `--output`, `--group`, `--id`, `--s3-prefix`, `--categories KEY`,
//! `--checkpoints DIR`, `--metrics 127.0.0.1:9464|off`. S3: see `observe::s3_client` (the local
//! server by default).

use std::sync::Arc;
use std::time::Duration;
use watershed_core::{CheckpointStore, Pipeline, PipelineConfig, WatermarkStrategy};
use watershed_examples::analytics::{
    analytics, event_time_of, examples_page_categories, CategoryStats, ErrorRate, PageStats,
};
use watershed_examples::observe;
use watershed_operators::prelude::*;
use watershed_sink_s3::{Compression, S3Sink};
use watershed_source_kafka::{KafkaSink, KafkaSource};

struct Args {
    brokers: String,
    input: String,
    output: String,
    group: String,
    id: String,
    s3_prefix: String,
    categories: Option<String>,
    checkpoints: String,
    metrics: Option<std::net::SocketAddr>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        brokers: std::env::var("WATERSHED_KAFKA_BROKERS").unwrap_or("127.0.0.1:9092".into()),
        input: "clicks".into(),
        output: "page-stats".into(),
        group: "watershed-hybrid".into(),
        id: "hybrid".into(),
        s3_prefix: "hybrid".into(),
        categories: None,
        checkpoints: "hybrid-output/checkpoints".into(),
        metrics: Some("127.0.0.1:9464".parse().unwrap()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut v = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--brokers" => a.brokers = v()?,
            "--input" => a.input = v()?,
            "--output" => a.output = v()?,
            "--group" => a.group = v()?,
            "--id" => a.id = v()?,
            "--s3-prefix" => a.s3_prefix = v()?,
            "--categories" => a.categories = Some(v()?),
            "--checkpoints" => a.checkpoints = v()?,
            "--metrics" => {
                let m = v()?;
                a.metrics = if m == "off" {
                    None
                } else {
                    Some(m.parse().map_err(|e| format!("--metrics: {e}"))?)
                };
            }
            "-h" | "--help" => {
                println!("usage: hybrid [--brokers B] [--input T] [--output T] [--group G] [--id ID] [--s3-prefix P] [--categories KEY] [--checkpoints DIR] [--metrics ADDR|off]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    Ok(a)
}

/// The output topic must exist before transactions write to it (brokers here do not create
/// topics on first use).
async fn create_topic_if_missing(
    brokers: &str,
    topic: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::types::RDKafkaErrorCode;
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    for r in admin
        .create_topics(
            &[NewTopic::new(topic, 3, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?
    {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => return Err(format!("creating topic {t}: {e}").into()),
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args().unwrap_or_else(|e| {
        eprintln!("hybrid: {e}");
        std::process::exit(2)
    });
    if let Some(addr) = a.metrics {
        let handle = observe::serve_metrics(addr)?;
        observe::print_progress(handle, "hybrid");
    }
    create_topic_if_missing(&a.brokers, &a.output).await?;
    let s3 = Arc::new(observe::s3_client()?);
    let categories =
        examples_page_categories(s3.clone(), &a.s3_prefix, a.categories.as_deref()).await?;
    let pipeline = Pipeline::new(
        PipelineConfig::new(&a.id)
            .checkpoint_store(CheckpointStore::local(&a.checkpoints)?)
            .checkpoint_interval(Duration::from_secs(1))
            .parallelism(2),
    );
    let source = KafkaSource::builder(&a.brokers, &a.group)
        .topic(&a.input)
        .instance_id(format!("{}-0", a.id))
        .build()?;
    let raw = pipeline.source(
        "clicks",
        source,
        WatermarkStrategy::bounded_out_of_orderness(Duration::from_secs(5))
            .with_timestamps(event_time_of),
    );
    let out = analytics(raw, &categories);

    let mut stats = out.page_stats.fan_out(2).into_iter();
    let (to_kafka, to_s3) = (stats.next().unwrap(), stats.next().unwrap());
    to_kafka
        .map(|s: PageStats| bytes::Bytes::from(serde_json::to_vec(&s).expect("serializable")))
        .sink(
            "page-stats-kafka",
            KafkaSink::builder(&a.brokers, &a.output)
                .exactly_once(format!("{}-page-stats", a.id))
                .build()?,
        );
    to_s3.sink(
        "page-stats-s3",
        S3Sink::<PageStats>::s3(s3.clone(), &format!("{}/page-stats", a.s3_prefix))
            .compression(Compression::Gzip)
            .build()?,
    );
    out.category_stats.sink(
        "category-stats-s3",
        S3Sink::<CategoryStats>::s3(s3.clone(), &format!("{}/category-stats", a.s3_prefix))
            .compression(Compression::Gzip)
            .build()?,
    );
    out.error_rates.sink(
        "error-rates-s3",
        S3Sink::<ErrorRate>::s3(s3.clone(), &format!("{}/error-rates", a.s3_prefix))
            .compression(Compression::Gzip)
            .build()?,
    );
    pipeline.dead_letter(
        "dead-letters",
        S3Sink::s3_dead_letters(s3, &format!("{}/dead-letters", a.s3_prefix)).build()?,
    );
    let summary = pipeline.run().await?;
    eprintln!(
        "hybrid: stopped after {} records, {} checkpoints, {} rejected",
        summary.records_in, summary.checkpoints, summary.rejected
    );
    Ok(())
}
