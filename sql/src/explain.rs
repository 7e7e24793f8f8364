//! `EXPLAIN`: a plan as the operator graph it runs as, one operator a line, sink first.

use crate::planner::{Plan, Step};
use std::fmt::Write;

/// The operator graph of `plan`, ending in `sink` if it has one.
pub fn explain(plan: &Plan, sink: Option<&str>) -> String {
    let mut lines: Vec<String> = Vec::new();
    if let Some(sink) = sink {
        lines.push(format!("Sink [{sink}]  (sink)"));
    }
    for step in plan.steps.iter().rev() {
        match step {
            Step::Filter { text, .. } => lines.push(format!("Filter [{text}]  (filter)")),
            Step::Project { text, schema, .. } => {
                lines.push(format!("Project [{text}] -> ({schema})  (map)"))
            }
            Step::Windows { call, schema, .. } => lines.push(format!(
                "WindowTableFunction [{call}] -> ({schema})  (flat_map)"
            )),
            Step::Aggregate(agg) => {
                let aggs: Vec<String> = agg
                    .aggregates
                    .calls
                    .iter()
                    .map(|c| c.text.clone())
                    .collect();
                lines.push(format!(
                    "WindowAggregate [{}] groupBy=[{}] aggregates=[{}] -> ({})  (key_by + window + aggregate)",
                    agg.call,
                    agg.text,
                    aggs.join(", "),
                    agg.schema
                ));
                lines.push(format!(
                    "PreProject [{} keys, {} arguments]  (map)",
                    agg.keys,
                    agg.pre.len() - agg.keys
                ));
            }
        }
    }
    lines.push(format!(
        "Scan [{}] {}  (source)",
        plan.source, plan.source_info.describe
    ));
    let mut out = String::new();
    for (depth, line) in lines.iter().enumerate() {
        let _ = writeln!(out, "{}{}", "  ".repeat(depth), line);
    }
    out
}
