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

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let target = it.next().ok_or("first argument: kafka or kinesis")?;
    let mut a = Args {
        name: "clicks".into(),
        brokers: std::env::var("WATERSHED_KAFKA_BROKERS").unwrap_or("127.0.0.1:9092".into()),
        endpoint: std::env::var("WATERSHED_KINESIS_ENDPOINT")
            .unwrap_or("http://127.0.0.1:4568".into()),
        splits: if target == "kinesis" { 2 } else { 3 },
        target,
        spec: ClickSpec::default(),
        rate: None,
    };
    while let Some(flag) = it.next() {
        let mut v = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |s: String| s.parse::<u64>().map_err(|e| e.to_string());
        match flag.as_str() {
            "--topic" | "--stream" => a.name = v()?,
            "--brokers" => a.brokers = v()?,
            "--endpoint" => a.endpoint = v()?,
            "--partitions" | "--shards" => a.splits = num(v()?)? as i32,
            "--events" => a.spec.events = num(v()?)?,
            "--malformed-every" => a.spec.malformed_every = num(v()?)?,
            "--bot-every" => a.spec.bot_every = num(v()?)?,
            "--late-every" => a.spec.late_every = num(v()?)?,
            "--users" => a.spec.users = num(v()?)?,
            "--pages" => a.spec.pages = num(v()?)?,
            "--skew" => a.spec.skew = v()?.parse().map_err(|e| format!("--skew: {e}"))?,
            "--rate" => a.rate = Some(v()?.parse().map_err(|e| format!("--rate: {e}"))?),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if !matches!(a.target.as_str(), "kafka" | "kinesis") {
        return Err("first argument: kafka or kinesis".into());
    }
    Ok(a)
}

/// Sleeps so that `sent` events take at least `sent / rate` seconds.
fn pace(rate: Option<f64>, started: Instant, sent: u64) {
    if let Some(r) = rate {
        let due = Duration::from_secs_f64(sent as f64 / r);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
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
    let send = |rec: BaseRecord<'_, [u8], [u8]>| {
        let mut rec = rec;
        loop {
            match producer.send(rec) {
                Ok(()) => return,
                Err((_, r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    };
    for n in 0..a.spec.events {
        let (key, value) = a.spec.payload(n);
        let ts = a.spec.event(n).map(|e| e.ts).unwrap_or(a.spec.start.0);
        send(
            BaseRecord::to(&a.name)
                .key(key.as_bytes())
                .payload(&value[..])
                .timestamp(ts),
        );
        pace(a.rate, started, n + 1);
    }
    let marker = end_marker(&a.spec);
    for p in 0..a.splits {
        send(BaseRecord::to(&a.name).payload(&marker[..]).partition(p));
    }
    producer.flush(Duration::from_secs(120))?;
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
            pace(a.rate, started, n + 1);
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
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = parse().unwrap_or_else(|e| {
        eprintln!("loadgen: {e}\nusage: loadgen kafka|kinesis [--topic|--stream NAME] [--events N] [--rate R] ...");
        std::process::exit(2)
    });
    match a.target.as_str() {
        "kafka" => kafka(&a).await,
        _ => kinesis(&a).await,
    }
}
