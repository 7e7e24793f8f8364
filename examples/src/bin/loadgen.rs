//! Load generator: writes the deterministic JSON clickstream (with bots, out-of-order events and
//! malformed records) to a Kafka topic or a Kinesis stream, then one end marker per partition or
//! shard (a bot click two minutes after the last event) so every window of the run can close.
//!
//! ```text
//! loadgen kafka   --topic clicks  [--brokers 127.0.0.1:9092] [--partitions 3] [--events N] [--rate R]
//! loadgen kinesis --stream clicks [--endpoint http://127.0.0.1:4568] [--shards 2] [--events N] [--rate R]
//! ```
//! `--malformed-every K` (default 1000), `--bot-every K` (50), `--late-every K` (0: none; late
//! events are two minutes behind, past the watermark), `--users N` (5000), `--pages N` (40) and
//! `--skew X` (2.0; 1 is uniform) shape the data; the topic or stream is created if missing.

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::time::{Duration, Instant};
use watershed_examples::analytics::{ClickEvent, ClickSpec};

struct Args {
    target: String,
    name: String,
    brokers: String,
    endpoint: String,
    splits: i32,
    spec: ClickSpec,
    rate: Option<f64>,
}

/// Writes the deterministic JSON clickstream to a Kafka topic or a Kinesis stream (created if
/// missing), then one end marker per partition or shard so every window can close.
#[derive(clap::Parser)]
#[command(version)]
struct Cli {
    /// Where to write.
    #[arg(value_enum)]
    target: Target,
    /// Topic or stream name.
    #[arg(long, visible_alias = "stream", default_value = "clicks")]
    topic: String,
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "WATERSHED_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    brokers: String,
    /// Kinesis endpoint.
    #[arg(
        long,
        env = "WATERSHED_KINESIS_ENDPOINT",
        default_value = "http://127.0.0.1:4568"
    )]
    endpoint: String,
    /// Partitions or shards of a new topic or stream (default: 3 partitions, 2 shards).
    #[arg(long, visible_alias = "shards")]
    partitions: Option<i32>,
    /// Events to write (the end markers come on top).
    #[arg(long)]
    events: Option<u64>,
    /// Every K-th record is malformed JSON (0: none).
    #[arg(long)]
    malformed_every: Option<u64>,
    /// Every K-th click is a bot's.
    #[arg(long)]
    bot_every: Option<u64>,
    /// Every K-th event is two minutes late, past the watermark (0: none).
    #[arg(long)]
    late_every: Option<u64>,
    /// Distinct users.
    #[arg(long)]
    users: Option<u64>,
    /// Distinct pages.
    #[arg(long)]
    pages: Option<u64>,
    /// Zipf exponent of page popularity (1 is uniform).
    #[arg(long)]
    skew: Option<f64>,
    /// Events per second (default: as fast as the broker takes them).
    #[arg(long)]
    rate: Option<f64>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Target {
    Kafka,
    Kinesis,
}

fn parse() -> Args {
    let cli = <Cli as clap::Parser>::parse();
    let mut spec = ClickSpec::default();
    let set = |field: &mut u64, v: Option<u64>| {
        if let Some(v) = v {
            *field = v;
        }
    };
    set(&mut spec.events, cli.events);
    set(&mut spec.malformed_every, cli.malformed_every);
    set(&mut spec.bot_every, cli.bot_every);
    set(&mut spec.late_every, cli.late_every);
    set(&mut spec.users, cli.users);
    set(&mut spec.pages, cli.pages);
    if let Some(skew) = cli.skew {
        spec.skew = skew;
    }
    let target = match cli.target {
        Target::Kafka => "kafka",
        Target::Kinesis => "kinesis",
    };
    Args {
        splits: cli
            .partitions
            .unwrap_or(if target == "kinesis" { 2 } else { 3 }),
        target: target.into(),
        name: cli.topic,
        brokers: cli.brokers,
        endpoint: cli.endpoint,
        spec,
        rate: cli.rate,
    }
}

/// Waits so that `sent` events take at least `sent / rate` seconds (without blocking the
/// runtime's thread).
async fn pace(rate: Option<f64>, started: Instant, sent: u64) {
    if let Some(r) = rate {
        let due = Duration::from_secs_f64(sent as f64 / r);
        // The timer ticks in milliseconds: wait only once a whole one is due, so high rates
        // are paced by the millisecond rather than slowed by a tick per event.
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            if wait >= Duration::from_millis(1) {
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Sends `rec`, waiting while librdkafka's queue is full.
async fn send(
    producer: &ThreadedProducer<DefaultProducerContext>,
    mut rec: BaseRecord<'_, [u8], [u8]>,
) {
    loop {
        match producer.send(rec) {
            Ok(()) => return,
            Err((_, r)) => {
                rec = r;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

/// A bot click after every event of the run: it closes the windows and is not counted.
fn end_marker(spec: &ClickSpec) -> Vec<u8> {
    let e = ClickEvent {
        user: 0,
        page: "/end".into(),
        ts: spec.start.0 + spec.span.as_millis() as i64 + 120_000,
        status: 200,
        agent: "watershed-loadgen-bot".into(),
    };
    serde_json::to_vec(&e).expect("serializable")
}

async fn kafka(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &a.brokers)
        .create()?;
    // An existing topic is fine: the error for it is ignored.
    let _ = admin
        .create_topics(
            &[NewTopic::new(&a.name, a.splits, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &a.brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()?;
    let started = Instant::now();
    for n in 0..a.spec.events {
        let (key, value) = a.spec.payload(n);
        let ts = a.spec.event(n).map(|e| e.ts).unwrap_or(a.spec.start.0);
        let rec = BaseRecord::to(&a.name)
            .key(key.as_bytes())
            .payload(&value[..])
            .timestamp(ts);
        send(&producer, rec).await;
        pace(a.rate, started, n + 1).await;
    }
    let marker = end_marker(&a.spec);
    for p in 0..a.splits {
        send(
            &producer,
            BaseRecord::to(&a.name).payload(&marker[..]).partition(p),
        )
        .await;
    }
    // Blocking: librdkafka waits for every acknowledgement.
    tokio::task::block_in_place(|| producer.flush(Duration::from_secs(120)))?;
    eprintln!(
        "loadgen: {} events + {} end markers to kafka topic {} in {:.1?}",
        a.spec.events,
        a.splits,
        a.name,
        started.elapsed()
    );
    Ok(())
}

async fn kinesis(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let config = aws_config::from_env()
        .endpoint_url(&a.endpoint)
        .load()
        .await;
    let client = aws_sdk_kinesis::Client::new(&config);
    if client
        .describe_stream_summary()
        .stream_name(&a.name)
        .send()
        .await
        .is_err()
    {
        client
            .create_stream()
            .stream_name(&a.name)
            .shard_count(a.splits)
            .send()
            .await?;
    }
    loop {
        let d = client
            .describe_stream_summary()
            .stream_name(&a.name)
            .send()
            .await?;
        let status = d
            .stream_description_summary()
            .map(|s| s.stream_status().clone());
        if status == Some(aws_sdk_kinesis::types::StreamStatus::Active) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let put = |entries: Vec<PutRecordsRequestEntry>| {
        let client = client.clone();
        let name = a.name.clone();
        async move {
            let mut entries = entries;
            let mut delay = Duration::from_millis(50);
            while !entries.is_empty() {
                let out = client
                    .put_records()
                    .stream_name(&name)
                    .set_records(Some(entries.clone()))
                    .send()
                    .await;
                match out {
                    Ok(out) => {
                        // Resend only the entries that failed (throttling), in order.
                        entries = entries
                            .into_iter()
                            .zip(out.records())
                            .filter(|(_, r)| r.error_code().is_some())
                            .map(|(e, _)| e)
                            .collect();
                    }
                    Err(e) => eprintln!("loadgen: PutRecords failed ({e}); retrying"),
                }
                if !entries.is_empty() {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    };
    let mut batch = Vec::with_capacity(500);
    for n in 0..a.spec.events {
        let (key, value) = a.spec.payload(n);
        batch.push(
            PutRecordsRequestEntry::builder()
                .partition_key(key)
                .data(Blob::new(value))
                .build()?,
        );
        if batch.len() == 500 {
            put(std::mem::take(&mut batch)).await;
            pace(a.rate, started, n + 1).await;
        }
    }
    put(batch).await;
    // One end marker per open shard, aimed at it by its hash range.
    let shards = client.list_shards().stream_name(&a.name).send().await?;
    let marker = end_marker(&a.spec);
    let mut markers = Vec::new();
    for s in shards.shards() {
        if s.sequence_number_range()
            .and_then(|r| r.ending_sequence_number())
            .is_some()
        {
            continue; // closed shard
        }
        let hash = s
            .hash_key_range()
            .map(|h| h.starting_hash_key().to_string())
            .unwrap_or_default();
        markers.push(
            PutRecordsRequestEntry::builder()
                .partition_key("end")
                .explicit_hash_key(hash)
                .data(Blob::new(marker.clone()))
                .build()?,
        );
    }
    let count = markers.len();
    put(markers).await;
    eprintln!(
        "loadgen: {} events + {count} end markers to kinesis stream {} in {:.1?}",
        a.spec.events,
        a.name,
        started.elapsed()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    watershed_examples::lifecycle::init_logging();
    watershed_examples::lifecycle::exit_with("loadgen", run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let a = parse();
    match a.target.as_str() {
        "kafka" => kafka(&a).await,
        _ => kinesis(&a).await,
    }
}
