//! `Pipeline::describe` names every node that will run, with its kind, parallelism and
//! instances, and every stream between nodes with how it travels; its text is stable.

mod common;

use common::{config, numbers, RunningCount};
use watershed_core::connectors::CollectSink;
use watershed_core::*;

fn identity() -> FnOperator<u64, u64, impl FnMut(Batch<u64>, &mut Collector<u64>) + Send + 'static>
{
    FnOperator::new(|b: Batch<u64>, out: &mut Collector<u64>| out.emit_all(b))
}

/// Every kind of node: two sources merged, a chained operator, a keyed operator of two
/// instances behind its exchange, a fan-out, a new chain, sinks and the dead-letter sink.
fn every_kind_of_node() -> Pipeline {
    let pipeline = Pipeline::new(config("describe", &CheckpointStore::memory()));
    let left = pipeline.source("left", numbers(2, 10), WatermarkStrategy::monotonous());
    let right = pipeline.source("right", numbers(1, 10), WatermarkStrategy::monotonous());
    let counts = left
        .union(right)
        .apply("parse", identity())
        .key_by(|v: &u64| *v % 7)
        .process("counts", |_| RunningCount::default());
    let mut copies = counts.fan_out(2).into_iter();
    copies
        .next()
        .unwrap()
        .sink("counts-out", CollectSink::new());
    copies
        .next()
        .unwrap()
        .start_new_chain()
        .apply(
            "first",
            FnOperator::new(|b: Batch<(u64, u64)>, out: &mut Collector<u64>| {
                out.emit_all(b.into_iter().map(|r| r.with_value(r.value.0)))
            }),
        )
        .sink("firsts-out", CollectSink::new());
    pipeline.dead_letter("dead-letters", CollectSink::<DeadLetter>::new());
    pipeline
}

const EXPECTED: &str = "\
pipeline describe (10 nodes, 8 edges)
  source left
    -> parse (channel)
  source right
    -> parse (channel)
  operator parse
    -> counts.shuffle (channel)
  exchange counts.shuffle
    -> counts (partitioned)
  keyed-operator counts x2 [counts.0, counts.1]
    -> fan-out-1 (channel)
  fan-out fan-out-1
    -> counts-out (channel)
    -> first (channel)
  sink counts-out
  operator first
    -> firsts-out (chained)
  sink firsts-out
  dead-letter dead-letters
";

/// Rule: the description lists every node in declaration order, edges say whether records
/// cross a task boundary (channel), stay in one task (chained) or are routed by key
/// (partitioned), and the text is exactly this, so a log or an expected file can rely on it.
#[test]
fn describe_names_every_node_kind_parallelism_and_edge_in_stable_text() {
    let pipeline = every_kind_of_node();
    let description = pipeline.describe();
    assert_eq!(description.to_string(), EXPECTED);
    let counts = description.node("counts").expect("the keyed operator");
    assert_eq!(counts.kind, NodeKind::KeyedOperator);
    assert_eq!(counts.parallelism, 2);
    assert_eq!(
        description
            .node_of_instance("counts.1")
            .map(|n| &n.name[..]),
        Some("counts")
    );
}

/// Rule: the description serialises to JSON and back unchanged, kinds and transports as
/// kebab-case words (the status page and other tools read it).
#[test]
fn describe_round_trips_through_json() {
    let description = every_kind_of_node().describe();
    let json = serde_json::to_value(&description).unwrap();
    assert_eq!(json["pipeline"], "describe");
    assert_eq!(json["nodes"][4]["kind"], "keyed-operator");
    assert_eq!(json["nodes"][4]["instances"][1], "counts.1");
    assert_eq!(json["edges"][3]["transport"], "partitioned");
    let back: PipelineDescription = serde_json::from_value(json).unwrap();
    assert_eq!(back, description);
}

/// Rule: a keyed operator of one instance runs chained (no exchange) and is described under
/// its operator's name, with the instance name its metrics and state use.
#[test]
fn a_keyed_operator_of_one_instance_is_chained_without_an_exchange() {
    let pipeline = Pipeline::new(config("single", &CheckpointStore::memory()));
    pipeline
        .source("numbers", numbers(1, 10), WatermarkStrategy::monotonous())
        .key_by(|v: &u64| *v)
        .parallelism(1)
        .process("counts", |_| RunningCount::default())
        .sink("out", CollectSink::new());
    let text = pipeline.describe().to_string();
    assert_eq!(
        text,
        "pipeline single (3 nodes, 2 edges)\n  source numbers\n    -> counts (chained)\n  \
         keyed-operator counts x1 [counts.0]\n    -> out (chained)\n  sink out\n"
    );
}

/// Rule: describing does not consume or disturb the pipeline: it still runs to the end.
#[tokio::test]
async fn a_described_pipeline_still_runs() {
    let pipeline = every_kind_of_node();
    let _ = pipeline.describe();
    let summary = pipeline.run().await.unwrap();
    assert_eq!(summary.records_in, 30);
}
