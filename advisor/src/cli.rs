//! The `watershed-advisor` command line: `advise` (the default) and `autoscale`.

use crate::advice::{advise, Advice};
use crate::autoscale::{scale, AutoscaleConfig, Autoscaler, Decision, Observation};
use crate::report::render;
use crate::sample::{sample, From};
use aws_sdk_kinesis::Client;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::time::Duration;

/// Kinesis shard utilisation, hot partition keys and shard-count advice.
///
/// Samples a stream with GetRecords (at most 4 calls/s per shard, which share the 5 calls/s
/// read limit with the stream's consumers) and reports each shard's write utilisation from
/// the records' approximate arrival times. Credentials and region come from the AWS default
/// chain unless `--endpoint` points at a local server.
#[derive(Debug, Parser)]
#[command(
    name = "watershed-advisor",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do (default: advise).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `advise` when no subcommand is given.
    #[command(flatten)]
    pub advise: AdviseArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sample a stream once and print utilisation, hot keys and advice.
    Advise(AdviseArgs),
    /// Sample repeatedly and change the shard count (UpdateShardCount, UNIFORM_SCALING) when
    /// utilisation stays above --high or below --low.
    Autoscale(AutoscaleArgs),
}

/// Where to start reading each shard.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FromArg {
    /// The oldest retained record.
    TrimHorizon,
    /// Records written while sampling.
    Latest,
}

/// The stream and how to reach it.
#[derive(Clone, Debug, Args)]
pub struct StreamArgs {
    /// The stream name.
    #[arg(long, short)]
    pub stream: Option<String>,
    /// A Kinesis endpoint (e.g. http://127.0.0.1:4568 for a local server); otherwise the AWS
    /// default chain decides.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// The AWS region (otherwise the default chain's).
    #[arg(long)]
    pub region: Option<String>,
}

/// Options of `advise`.
#[derive(Clone, Debug, Args)]
pub struct AdviseArgs {
    /// The stream and endpoint.
    #[command(flatten)]
    pub stream: StreamArgs,
    /// How long to sample at most, in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Where to start reading.
    #[arg(long, value_enum, default_value = "trim-horizon")]
    pub from: FromArg,
    /// Target utilisation for the recommended shard count (0.6: the warning threshold).
    #[arg(long = "target", default_value_t = 0.6)]
    pub utilisation_target: f64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `autoscale`.
#[derive(Clone, Debug, Args)]
pub struct AutoscaleArgs {
    /// The stream and endpoint.
    #[command(flatten)]
    pub stream: StreamArgs,
    /// Seconds each sample reads (from LATEST).
    #[arg(long, default_value_t = 60.0)]
    pub window: f64,
    /// Scale up above this mean utilisation.
    #[arg(long, default_value_t = 0.8)]
    pub high: f64,
    /// Scale down below this mean utilisation.
    #[arg(long, default_value_t = 0.3)]
    pub low: f64,
    /// Utilisation the new count aims at.
    #[arg(long = "target", default_value_t = 0.6)]
    pub utilisation_target: f64,
    /// Seconds a threshold must be crossed before scaling.
    #[arg(long, default_value_t = 300.0)]
    pub sustain: f64,
    /// Seconds between two scalings at least.
    #[arg(long, default_value_t = 900.0)]
    pub cooldown: f64,
    /// Fewest shards.
    #[arg(long, default_value_t = 1)]
    pub min_shards: u32,
    /// Most shards.
    #[arg(long, default_value_t = 64)]
    pub max_shards: u32,
    /// Samples to take (0: until stopped).
    #[arg(long, default_value_t = 0)]
    pub rounds: u32,
    /// Print the decisions, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// A client for `target`: the default chain, with its endpoint and region when given.
pub async fn client(target: &StreamArgs) -> Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(endpoint) = &target.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(region) = &target.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    Client::new(&loader.load().await)
}

fn stream_of(target: &StreamArgs) -> Result<String, String> {
    target
        .stream
        .clone()
        .ok_or_else(|| "--stream is required".to_owned())
}

/// Samples once and returns the advice.
pub async fn run_advise(args: &AdviseArgs) -> Result<Advice, Box<dyn std::error::Error>> {
    let stream = stream_of(&args.stream)?;
    let client = client(&args.stream).await;
    let from = match args.from {
        FromArg::TrimHorizon => From::TrimHorizon,
        FromArg::Latest => From::Latest,
    };
    let sampled = sample(
        &client,
        &stream,
        from,
        Duration::from_secs_f64(args.duration),
    )
    .await?;
    Ok(advise(&sampled, args.utilisation_target))
}

/// Runs the command line; the text to print.
pub async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Some(Command::Autoscale(args)) => run_autoscale(&args).await,
        Some(Command::Advise(args)) => print_advice(&args).await,
        None => print_advice(&cli.advise).await,
    }
}

async fn print_advice(args: &AdviseArgs) -> Result<(), Box<dyn std::error::Error>> {
    let advice = run_advise(args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&advice)?);
    } else {
        print!("{}", render(&advice));
    }
    Ok(())
}

/// The autoscaler loop: sample from LATEST for `--window`, decide, scale unless `--dry-run`.
pub async fn run_autoscale(args: &AutoscaleArgs) -> Result<(), Box<dyn std::error::Error>> {
    let stream = stream_of(&args.stream)?;
    let client = client(&args.stream).await;
    let mut scaler = Autoscaler::new(AutoscaleConfig {
        high: args.high,
        low: args.low,
        target: args.utilisation_target,
        sustain: Duration::from_secs_f64(args.sustain),
        cooldown: Duration::from_secs_f64(args.cooldown),
        min_shards: args.min_shards,
        max_shards: args.max_shards,
    });
    let started = tokio::time::Instant::now();
    let mut round = 0;
    while args.rounds == 0 || round < args.rounds {
        round += 1;
        let window = Duration::from_secs_f64(args.window);
        let sampled = sample(&client, &stream, From::Latest, window).await?;
        let decision = scaler.decide(observe(&sampled, started.elapsed()));
        let verb = if args.dry_run {
            "would scale"
        } else {
            "scaling"
        };
        match &decision {
            Decision::Hold(why) => println!("{stream}: hold: {why}"),
            Decision::Scale { from, to, reason } => {
                println!("{stream}: {verb} {from} → {to}: {reason}")
            }
        }
        if let (Decision::Scale { to, .. }, false) = (&decision, args.dry_run) {
            scale(&client, &stream, *to, Duration::from_secs(300)).await?;
        }
    }
    Ok(())
}

/// The autoscaler's view of a sample: the stream's load per shard and the busiest shard.
/// A sample from LATEST spans the sampling window even when records arrived in part of it.
pub fn observe(sampled: &crate::sample::StreamSample, at: Duration) -> Observation {
    let advice = advise(sampled, 0.6);
    let shards = advice.current_shards.max(1) as u32;
    Observation {
        at,
        shards,
        mean_utilisation: advice.shard_equivalents / shards as f64,
        max_utilisation: advice
            .shards
            .iter()
            .map(|s| s.utilisation)
            .fold(0.0, f64::max),
    }
}
