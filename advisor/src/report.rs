//! The advice as text.

use crate::advice::{Advice, Level};
use std::fmt::Write;

/// The advice as a human-readable report.
pub fn render(a: &Advice) -> String {
    let mut out = String::new();
    if a.shards.iter().all(|s| s.records == 0) {
        let _ = writeln!(
            out,
            "stream {}: {} open shard(s), no record arrived in the sampled window",
            a.stream, a.current_shards
        );
    } else {
        let _ = writeln!(
            out,
            "stream {}: {} open shard(s), records arrived over {:.1} s",
            a.stream, a.current_shards, a.span_secs
        );
    }
    let _ = writeln!(
        out,
        "\n{:<24} {:>9} {:>11} {:>11} {:>7} {:>7}  level",
        "shard", "records", "records/s", "KiB/s", "util", "peak"
    );
    for s in &a.shards {
        let level = match s.level {
            Level::Ok => "ok",
            Level::Warning => "WARNING",
            Level::Critical => "CRITICAL",
        };
        let _ = writeln!(
            out,
            "{:<24} {:>9} {:>11.1} {:>11.1} {:>7.3} {:>7.3}  {level}",
            s.shard,
            s.records,
            s.records_per_sec,
            s.bytes_per_sec / 1024.0,
            s.utilisation,
            s.peak_utilisation
        );
    }
    out.push_str(&chart(a));
    let _ = writeln!(
        out,
        "\nhot keys (Space-Saving estimates; share of the shard's records):"
    );
    for s in a.shards.iter().filter(|s| !s.hot_keys.is_empty()) {
        let keys: Vec<String> = s
            .hot_keys
            .iter()
            .take(3)
            .map(|k| format!("{:?} {:.1} % (±{})", k.key, k.share * 100.0, k.error))
            .collect();
        let _ = writeln!(out, "  {}: {}", s.shard, keys.join(", "));
    }
    let _ = writeln!(
        out,
        "\nrecommended shard count at target {:.2}: {} (now {})",
        a.target, a.recommended_shards, a.current_shards
    );
    for r in &a.reasoning {
        let _ = writeln!(out, "  - {r}");
    }
    if !a.keys.is_empty() {
        let _ = writeln!(out, "\npartition keys:");
        for k in &a.keys {
            let _ = writeln!(out, "  - {}", k.text);
        }
    }
    out
}

/// Width of a full-scale bar in [`chart`].
const BAR: usize = 50;

/// Each shard's utilisation as a bar, on a scale of 0 to 100 % (or the largest value, when a
/// shard is over its limits), with the alert thresholds marked: `:` at 60 %, `!` at 80 %.
pub fn chart(a: &Advice) -> String {
    let top = a
        .shards
        .iter()
        .map(|s| s.utilisation)
        .fold(1.0_f64, f64::max);
    let column = |ratio: f64| ((ratio / top) * BAR as f64).round() as usize;
    let (warn, crit) = (column(0.6), column(0.8));
    let mut out = format!(
        "\nutilisation (0 to {:.0} %; : 60 %, ! 80 %):\n",
        top * 100.0
    );
    for s in &a.shards {
        let filled = column(s.utilisation.max(0.0)).min(BAR);
        let bar: String = (0..BAR)
            .map(|i| match i {
                i if i < filled => '#',
                i if i == warn => ':',
                i if i == crit => '!',
                _ => '.',
            })
            .collect();
        let _ = writeln!(
            out,
            "  {:<24} {bar} {:>5.1} %",
            s.shard,
            s.utilisation * 100.0
        );
    }
    out
}
