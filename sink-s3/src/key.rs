//! Object keys: Hive-style partition directories from a template, and deterministic names.

use crate::error::S3SinkError;
use chrono::{Datelike, NaiveDate};

/// One piece of a parsed partition template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Date,
    Year,
    Month,
    Day,
    Hour,
    /// A user field registered with [`S3SinkBuilder::partition_field`](crate::S3SinkBuilder::partition_field).
    Field(usize),
}

/// A parsed partition template such as `dt={date}/hour={hour}`.
///
/// Placeholders: `{date}` (`YYYY-MM-DD`), `{year}`, `{month}`, `{day}`, `{hour}` (UTC, zero
/// padded) and the names of registered partition fields. Nothing finer than an hour exists, so
/// the time part of a partition only changes when the hour does.
#[derive(Clone, Debug)]
pub(crate) struct PartitionTemplate {
    pieces: Vec<Piece>,
    uses_fields: bool,
}

const HOUR_MS: i64 = 3_600_000;
/// Days from 0001-01-01 (chrono's day 1) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;

impl PartitionTemplate {
    pub(crate) fn parse(template: &str, fields: &[String]) -> Result<Self, S3SinkError> {
        let mut pieces = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Literal(rest[..open].to_owned()));
            }
            let close = rest[open..].find('}').ok_or_else(|| {
                S3SinkError::Config(format!("unclosed `{{` in partition template `{template}`"))
            })? + open;
            let name = &rest[open + 1..close];
            pieces.push(match name {
                "date" => Piece::Date,
                "year" => Piece::Year,
                "month" => Piece::Month,
                "day" => Piece::Day,
                "hour" => Piece::Hour,
                other => match fields.iter().position(|f| f == other) {
                    Some(i) => Piece::Field(i),
                    None => {
                        return Err(S3SinkError::Config(format!(
                            "unknown placeholder `{{{other}}}` in partition template `{template}` \
                             (known: date, year, month, day, hour, and registered partition fields)"
                        )))
                    }
                },
            });
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err(S3SinkError::Config(format!(
                "stray `}}` in partition template `{template}`"
            )));
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.to_owned()));
        }
        let uses_fields = pieces.iter().any(|p| matches!(p, Piece::Field(_)));
        Ok(PartitionTemplate {
            pieces,
            uses_fields,
        })
    }

    /// True when the partition depends on record fields, not only on the hour.
    pub(crate) fn uses_fields(&self) -> bool {
        self.uses_fields
    }

    /// The hour a timestamp falls in; records of one hour share the time part of a partition.
    pub(crate) fn hour_of(ts_ms: i64) -> i64 {
        ts_ms.div_euclid(HOUR_MS)
    }

    /// Renders the partition for a record at `ts_ms` whose field values are `fields`.
    /// The sentinel times `i64::MIN`/`i64::MAX` (no event time) render as `unknown`, and so do
    /// times outside the calendar's range (beyond ±262,000 years: no real event time).
    pub(crate) fn render(&self, ts_ms: i64, fields: &[String]) -> String {
        use std::fmt::Write;
        let date = civil_from_days(ts_ms.div_euclid(24 * HOUR_MS));
        let known = ts_ms != i64::MIN && ts_ms != i64::MAX && date.is_some();
        let (y, m, d) = date.unwrap_or_default();
        let h = ts_ms.div_euclid(HOUR_MS).rem_euclid(24);
        let mut out = String::with_capacity(32);
        for p in &self.pieces {
            // Writing to a String cannot fail.
            let _ = match p {
                Piece::Literal(s) => write!(out, "{s}"),
                _ if !known && !matches!(p, Piece::Field(_)) => write!(out, "unknown"),
                Piece::Date => write!(out, "{y:04}-{m:02}-{d:02}"),
                Piece::Year => write!(out, "{y:04}"),
                Piece::Month => write!(out, "{m:02}"),
                Piece::Day => write!(out, "{d:02}"),
                Piece::Hour => write!(out, "{h:02}"),
                Piece::Field(i) => write!(out, "{}", fields[*i]),
            };
        }
        out
    }
}

/// Year, month, day of the proleptic Gregorian calendar for days since 1970-01-01; `None`
/// outside the calendar's range.
fn civil_from_days(days: i64) -> Option<(i32, u32, u32)> {
    let days_from_ce = i32::try_from(days + UNIX_EPOCH_DAYS_FROM_CE).ok()?;
    let date = NaiveDate::from_num_days_from_ce_opt(days_from_ce)?;
    Some((date.year(), date.month(), date.day()))
}

/// The deterministic file name of the `seq`-th object the sink `node` of `pipeline` opened in
/// `epoch`: a replay of the epoch produces the same names in the same order.
pub(crate) fn object_name(pipeline: &str, node: &str, epoch: u64, seq: u64, ext: &str) -> String {
    format!("{pipeline}-{node}-{epoch:010}-{seq:06}{ext}")
}

/// Joins non-empty key segments with `/`.
pub(crate) fn join(parts: &[&str]) -> String {
    let mut out = String::new();
    for p in parts.iter().map(|p| p.trim_matches('/')) {
        if p.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hive_partitions_use_the_utc_date_and_hour_of_the_event_time() {
        let t = PartitionTemplate::parse("dt={date}/hour={hour}", &[]).unwrap();
        // 2025-11-25T17:30:00Z
        assert_eq!(t.render(1_764_091_800_000, &[]), "dt=2025-11-25/hour=17");
        assert_eq!(t.render(0, &[]), "dt=1970-01-01/hour=00");
        assert_eq!(t.render(-1, &[]), "dt=1969-12-31/hour=23");
        assert_eq!(t.render(951_782_400_000, &[]), "dt=2000-02-29/hour=00");
    }

    #[test]
    fn records_without_event_time_land_in_an_unknown_partition() {
        let t = PartitionTemplate::parse("dt={date}/hour={hour}", &[]).unwrap();
        assert_eq!(t.render(i64::MIN, &[]), "dt=unknown/hour=unknown");
        // 146 million years from now: outside the calendar, and no real event time either.
        assert_eq!(t.render(i64::MAX / 2, &[]), "dt=unknown/hour=unknown");
    }

    #[test]
    fn field_placeholders_render_the_registered_fields() {
        let t = PartitionTemplate::parse(
            "country={country}/{year}/{month}/{day}",
            &["country".into()],
        )
        .unwrap();
        assert!(t.uses_fields());
        assert_eq!(t.render(0, &["fr".into()]), "country=fr/1970/01/01");
    }

    #[test]
    fn unknown_or_malformed_placeholders_are_configuration_errors() {
        for bad in ["dt={dat}", "dt={date", "dt=date}"] {
            assert!(
                matches!(
                    PartitionTemplate::parse(bad, &[]),
                    Err(S3SinkError::Config(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil_from_days(0), Some((1970, 1, 1)));
        assert_eq!(civil_from_days(19_000), Some((2022, 1, 8)));
        assert_eq!(civil_from_days(-719_468), Some((0, 3, 1)));
    }

    #[test]
    fn keys_join_without_empty_or_doubled_slashes() {
        assert_eq!(join(&["out/", "", "/dt=x", "f.jsonl"]), "out/dt=x/f.jsonl");
    }
}
