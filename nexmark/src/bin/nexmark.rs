//! The Nexmark bench binary.
//!
//! ```text
//! nexmark load --brokers 127.0.0.1:9092 --topic T --events N [--partitions 1] [--rate 10000000] [--seed 42]
//! nexmark run --query qN --source generator|kafka [--brokers B --topic T] --events N [--output FILE]
//!             [--rate 10000000] [--seed 42] [--splits 1]
//! nexmark generate --events N [--rate 10000000] [--seed 42]
//! nexmark delete --brokers 127.0.0.1:9092 --topic T
//! ```
//! `load` deletes and recreates the topic and writes N events as JSON; `run` runs one query until
//! all N events are processed and every window has fired, then prints the `NEXMARK …` and
//! `BENCH …` lines (events per CPU-second of this process, `getrusage` user + sys);
//! `generate` only generates and drops the events: the cost floor of the in-process figures;
//! `delete` removes a loaded topic.

use std::path::PathBuf;
use watershed_nexmark::generator::{GeneratorConfig, NexmarkGenerator};
use watershed_nexmark::harness::{self, Input, Query};
use watershed_nexmark::kafka::{self, LoadConfig};

struct Args {
    command: String,
    brokers: String,
    topic: String,
    events: u64,
    partitions: i32,
    rate: u64,
    seed: u64,
    splits: usize,
    query: Option<Query>,
    source: String,
    output: Option<PathBuf>,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let command = it.next().ok_or("first argument: load or run")?;
    let mut a = Args {
        command,
        brokers: std::env::var("WATERSHED_KAFKA_BROKERS").unwrap_or("127.0.0.1:9092".into()),
        topic: "nexmark-events".into(),
        events: 10_000_000,
        partitions: 1,
        rate: 10_000_000,
        seed: 42,
        splits: 1,
        query: None,
        source: "generator".into(),
        output: None,
    };
    while let Some(flag) = it.next() {
        let mut v = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |s: String| s.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--brokers" => a.brokers = v()?,
            "--topic" => a.topic = v()?,
            "--events" => a.events = num(v()?)?,
            "--partitions" => a.partitions = num(v()?)?.clamp(1, 1024) as i32,
            "--rate" => a.rate = num(v()?)?.max(1),
            "--seed" => a.seed = num(v()?)?,
            "--splits" => a.splits = num(v()?)?.clamp(1, 1024) as usize,
            "--query" => a.query = Some(v()?.parse()?),
            "--source" => a.source = v()?,
            "--output" => a.output = Some(PathBuf::from(v()?)),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(a)
}

async fn main_inner(a: Args) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let generator = NexmarkGenerator::new(GeneratorConfig::new().rate(a.rate).seed(a.seed));
    match a.command.as_str() {
        "load" => {
            let config = LoadConfig::new(a.events)
                .brokers(&a.brokers)
                .topic(&a.topic)
                .partitions(a.partitions);
            let n = kafka::load(&generator, &config).await?;
            println!("LOADED events={n} topic={}", a.topic);
        }
        "run" => {
            let query = a.query.ok_or("run needs --query q0 … q8")?;
            let input = match a.source.as_str() {
                "generator" => Input::Generator {
                    generator,
                    splits: a.splits,
                },
                "kafka" => Input::Kafka {
                    brokers: a.brokers.clone(),
                    topic: a.topic.clone(),
                },
                other => {
                    return Err(format!("unknown source `{other}` (generator or kafka)").into())
                }
            };
            let report = harness::run(query, &input, a.events, a.output).await?;
            println!("{}", report.nexmark_line());
            println!("{}", report.bench_line());
        }
        "delete" => {
            kafka::delete_topic(&a.brokers, &a.topic).await?;
            println!("DELETED topic={}", a.topic);
        }
        "generate" => {
            // The floor under every in-process figure: generating the events and dropping them.
            let cpu0 = harness::process_cpu_seconds();
            for n in 0..a.events {
                std::hint::black_box(generator.event(n));
            }
            let cpu_s = harness::process_cpu_seconds() - cpu0;
            println!(
                "BASELINE generate events={} cpu_s={cpu_s:.3} events_per_cpu_s={:.0}",
                a.events,
                a.events as f64 / cpu_s.max(1e-9)
            );
        }
        other => {
            return Err(format!("unknown command `{other}` (load, run, generate or delete)").into())
        }
    }
    Ok(())
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("nexmark: {e}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nexmark: starting the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(main_inner(args)) {
        eprintln!("nexmark: {e}");
        std::process::exit(1);
    }
}
