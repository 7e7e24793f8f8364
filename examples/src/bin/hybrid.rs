//! The hybrid architecture: Kafka → analytics → Kafka (transactional) **and** S3.
//!
//! Reads JSON clicks from a Kafka topic, runs the shared analytics (the same function the
//! Kinesis example runs), and writes per-page statistics exactly once both to a Kafka topic
//! and to S3 (gzip JSON lines, partitioned by hour), views per page category to S3 (the category
//! from a reference table in S3: `--categories KEY`, default
//! `<prefix>/reference/page-categories.csv`, written with a default table when missing), error
//! rates to S3, undecodable events to an S3 dead-letter prefix. Checkpoints every second to a local directory or S3; kill it and start it
//! again to resume.
//!
//! ```text
//! scripts/brokers up
//! cargo run --release -p watershed-examples --bin loadgen -- kafka --topic clicks --events 100000
//! cargo run --release -p watershed-examples --bin hybrid -- --input clicks --output page-stats
//! ```
//! Options: `--brokers`, `--input`, `--output`, `--group`, `--id`, `--s3-prefix`, `--categories KEY`,
//! `--checkpoints DIR|s3://BUCKET/PREFIX`, `--metrics 127.0.0.1:9464|off` (the status page:
//! docs/status.md), `--describe` (print the graph, exit). S3: see `observe::s3_client` (the AWS
//! default chain; `scripts/run-example` points it at the local server). Logs: `RUST_LOG`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use watershed_core::{Pipeline, PipelineConfig};
use watershed_examples::analytics::{
    analytics, click_watermarks, examples_page_categories, CategoryStats, ErrorRate, PageStats,
};
use watershed_examples::cli::MetricsAddr;
use watershed_examples::lifecycle;
use watershed_examples::observe;
use watershed_operators::prelude::*;
use watershed_sink_s3::{Compression, S3Sink};
use watershed_source_kafka::{KafkaSink, KafkaSource};

/// Kafka → the shared analytics → Kafka (exactly once) and S3. Kill it at any moment and
/// start it again: it resumes from its last checkpoint.
#[derive(clap::Parser)]
#[command(version)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "WATERSHED_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    brokers: String,
    /// Topic of JSON clicks to read.
    #[arg(long, default_value = "clicks")]
    input: String,
    /// Topic the per-page statistics are written to (created when missing).
    #[arg(long, default_value = "page-stats")]
    output: String,
    /// Consumer group: instances in one group share the input partitions.
    #[arg(long, default_value = "watershed-hybrid")]
    group: String,
    /// This instance's id: names its checkpoints and its Kafka transactional id.
    #[arg(long, default_value = "hybrid")]
    id: String,
    /// S3 prefix of the outputs.
    #[arg(long, default_value = "hybrid")]
    s3_prefix: String,
    /// S3 key of the page-category reference table (default `<prefix>/reference/page-categories.csv`).
    #[arg(long)]
    categories: Option<String>,
    /// Checkpoint store: a local directory or s3://BUCKET/PREFIX.
    #[arg(long, default_value = "hybrid-output/checkpoints")]
    checkpoints: String,
    /// Status page address (the graph with live rates, lag and checkpoints at `/`,
    /// Prometheus metrics at `/metrics`), or `off`.
    #[arg(long, default_value = "127.0.0.1:9464")]
    metrics: MetricsAddr,
    /// Print the pipeline's graph (`Pipeline::describe`) and exit without running it.
    #[arg(long)]
    describe: bool,
}

/// The output topic must exist before transactions write to it (brokers here do not create
/// topics on first use). Fails within 10 s, naming the brokers, when they cannot be reached.
async fn create_topic_if_missing(
    brokers: &str,
    topic: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::types::RDKafkaErrorCode;
    use rdkafka::util::Timeout;
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let limit = Duration::from_secs(10);
    let options = AdminOptions::new()
        .request_timeout(Some(Timeout::After(limit)))
        .operation_timeout(Some(Timeout::After(limit)));
    let unreachable = |e: &dyn std::fmt::Display| {
        format!("creating output topic `{topic}` on Kafka at {brokers}: {e} (is the address right and the broker up?)")
    };
    let results = tokio::time::timeout(
        limit + Duration::from_secs(1),
        admin.create_topics(
            &[NewTopic::new(topic, 3, TopicReplication::Fixed(1))],
            &options,
        ),
    )
    .await
    .map_err(|_| unreachable(&"no answer within 10 s"))?
    .map_err(|e| unreachable(&e))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, e)) => return Err(unreachable(&e).into()),
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    lifecycle::init_logging();
    let a = <Args as clap::Parser>::parse();
    if a.describe {
        let described = build(&a).await.map(|p| print!("{}", p.describe()));
        return lifecycle::exit_with("hybrid", described);
    }
    lifecycle::exit_with("hybrid", lifecycle::serve("hybrid", build(&a)).await)
}

/// Everything before the pipeline runs: metrics, the output topic, S3, the reference table,
/// and the pipeline itself.
async fn build(a: &Args) -> Result<Pipeline, Box<dyn std::error::Error>> {
    // Recording starts before the set-up, which reports too; the page needs the built graph.
    let recorder = match a.metrics.0 {
        Some(addr) if !a.describe => Some((
            observe::bind_status(addr).await?,
            observe::install_recorder()?,
        )),
        _ => None,
    };
    create_topic_if_missing(&a.brokers, &a.output).await?;
    let s3 = Arc::new(observe::s3_client()?);
    let categories =
        examples_page_categories(s3.clone(), &a.s3_prefix, a.categories.as_deref()).await?;
    let pipeline = Pipeline::new(
        PipelineConfig::new(&a.id)
            .checkpoint_store(observe::checkpoint_store(&a.checkpoints)?)
            .checkpoint_interval(Duration::from_secs(1))
            .parallelism(2)
            // Stop requests come through `Stop`, which also covers the set-up above.
            .handle_signals(false),
    );
    let source = KafkaSource::builder(&a.brokers, &a.group)
        .topic(&a.input)
        .instance_id(format!("{}-0", a.id))
        .build()?;
    let raw = pipeline.source("clicks", source, click_watermarks());
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
    if let Some((listener, handle)) = recorder {
        observe::serve_status(listener, handle.clone(), &pipeline);
        observe::print_progress(handle, "hybrid");
    }
    Ok(pipeline)
}
