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
//! `delete` removes a loaded topic. `--brokers` defaults to `WATERSHED_KAFKA_BROKERS`, then
//! `127.0.0.1:9092`. `nexmark help <command>` lists every option.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use watershed_nexmark::generator::{GeneratorConfig, NexmarkGenerator};
use watershed_nexmark::harness::{self, Input, Query};
use watershed_nexmark::kafka::{self, LoadConfig};

/// Nexmark for Watershed: load a Kafka topic with the Nexmark event stream, run the queries
/// q0–q8 over it or over the in-process generator, and measure events per CPU-second.
#[derive(Parser)]
#[command(name = "nexmark", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Delete and recreate a topic, then write N events into it as JSON (event n to partition
    /// n % partitions); prints `LOADED events=N topic=T`.
    Load {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        events: EventCount,
        /// Partitions of the recreated topic (clamped to 1–1024).
        #[arg(long, default_value = "1", value_parser = clamped_count)]
        partitions: usize,
        #[command(flatten)]
        generator: GeneratorArgs,
    },
    /// Run one query until all N events are processed and every window has fired, then print
    /// the `NEXMARK …` and `BENCH …` lines.
    Run {
        /// The query: q0 … q8.
        #[arg(long)]
        query: Query,
        /// Where the events come from.
        #[arg(long, value_enum, default_value_t = Source::Generator)]
        source: Source,
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        events: EventCount,
        /// Write the result rows to this file as JSON lines (without it they are counted and
        /// dropped).
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        generator: GeneratorArgs,
        /// Splits of the in-process generator source (clamped to 1–1024).
        #[arg(long, default_value = "1", value_parser = clamped_count)]
        splits: usize,
    },
    /// Generate N events and drop them: the cost floor under every in-process figure.
    Generate {
        #[command(flatten)]
        events: EventCount,
        #[command(flatten)]
        generator: GeneratorArgs,
    },
    /// Delete a loaded topic.
    Delete {
        #[command(flatten)]
        kafka: KafkaArgs,
    },
}

#[derive(Args)]
struct KafkaArgs {
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "WATERSHED_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    brokers: String,
    /// The topic holding the events.
    #[arg(long, default_value = "nexmark-events")]
    topic: String,
}

#[derive(Args)]
struct EventCount {
    /// Number of events.
    #[arg(long = "events", value_name = "N", default_value_t = 10_000_000)]
    n: u64,
}

/// A loaded topic and the in-process generator see the same events only with the same rate and
/// seed, so both commands take both.
#[derive(Args)]
struct GeneratorArgs {
    /// Events per second of event time (at least 1).
    #[arg(long, default_value_t = 10_000_000)]
    rate: u64,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

impl GeneratorArgs {
    fn generator(&self) -> NexmarkGenerator {
        NexmarkGenerator::new(GeneratorConfig::new().rate(self.rate).seed(self.seed))
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Source {
    /// The in-process generator: decoded events, no serialization.
    Generator,
    /// The topic `--topic` on `--brokers`, as written by `nexmark load`.
    Kafka,
}

/// Partition and split counts are held within 1–1024 rather than refused, as the binary always
/// did, so existing scripts keep their meaning.
fn clamped_count(s: &str) -> Result<usize, String> {
    let n: u64 = s
        .parse()
        .map_err(|e| format!("`{s}` is not a count: {e}"))?;
    Ok(n.clamp(1, 1024) as usize)
}

async fn main_inner(command: Command) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    match command {
        Command::Load {
            kafka,
            events,
            partitions,
            generator,
        } => {
            let config = LoadConfig::new(events.n)
                .brokers(&kafka.brokers)
                .topic(&kafka.topic)
                .partitions(partitions as i32);
            let n = kafka::load(&generator.generator(), &config).await?;
            println!("LOADED events={n} topic={}", kafka.topic);
        }
        Command::Run {
            query,
            source,
            kafka,
            events,
            output,
            generator,
            splits,
        } => {
            let input = match source {
                Source::Generator => Input::Generator {
                    generator: generator.generator(),
                    splits,
                },
                Source::Kafka => Input::Kafka {
                    brokers: kafka.brokers,
                    topic: kafka.topic,
                },
            };
            let report = harness::run(query, &input, events.n, output).await?;
            println!("{}", report.nexmark_line());
            println!("{}", report.bench_line());
        }
        Command::Delete { kafka } => {
            kafka::delete_topic(&kafka.brokers, &kafka.topic).await?;
            println!("DELETED topic={}", kafka.topic);
        }
        Command::Generate { events, generator } => {
            let generator = generator.generator();
            let cpu0 = harness::process_cpu_seconds();
            for n in 0..events.n {
                std::hint::black_box(generator.event(n));
            }
            let cpu_s = harness::process_cpu_seconds() - cpu0;
            println!(
                "BASELINE generate events={} cpu_s={cpu_s:.3} events_per_cpu_s={:.0}",
                events.n,
                events.n as f64 / cpu_s.max(1e-9)
            );
        }
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
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
    if let Err(e) = runtime.block_on(main_inner(cli.command)) {
        eprintln!("nexmark: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `line` split at spaces, as a shell would split these.
    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("nexmark").chain(line.split_whitespace()))
    }

    #[test]
    fn the_command_line_definition_is_valid() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }

    /// The invocations of scripts/nexmark_compare.py.
    #[test]
    fn the_compare_scripts_invocations_parse() {
        let load = parse("load --brokers b:9092 --topic t --events 50 --rate 1000").unwrap();
        let Command::Load {
            kafka,
            events,
            partitions,
            generator,
        } = load.command
        else {
            panic!("not load")
        };
        assert_eq!(kafka.brokers, "b:9092");
        assert_eq!(kafka.topic, "t");
        assert_eq!((events.n, partitions), (50, 1));
        assert_eq!((generator.rate, generator.seed), (1000, 42));

        let run = "run --query q5 --source kafka --brokers b:9092 --topic t --events 50 \
                   --output q5.jsonl";
        let Command::Run {
            query,
            source,
            output,
            splits,
            ..
        } = parse(run).unwrap().command
        else {
            panic!("not run")
        };
        assert_eq!(query.to_string(), "q5");
        assert!(matches!(source, Source::Kafka));
        assert_eq!(output, Some(PathBuf::from("q5.jsonl")));
        assert_eq!(splits, 1);
    }

    #[test]
    fn partition_and_split_counts_are_clamped_not_refused() {
        let Command::Load { partitions, .. } = parse("load --partitions 0").unwrap().command else {
            panic!("not load")
        };
        assert_eq!(partitions, 1);
        let Command::Run { splits, .. } = parse("run --query q0 --splits 5000").unwrap().command
        else {
            panic!("not run")
        };
        assert_eq!(splits, 1024);
    }

    #[test]
    fn invalid_values_are_usage_errors_naming_the_option() {
        for (line, option) in [
            ("run --query q9", "--query"),
            ("run --query q1 --source kinesis", "--source"),
            ("generate --events many", "--events"),
            ("load --partitions x", "--partitions"),
            ("run", "--query"),
        ] {
            let error = parse(line).err().expect("refused");
            assert_eq!(error.exit_code(), 2, "{line}");
            assert!(error.to_string().contains(option), "{line}: {error}");
        }
    }
}
