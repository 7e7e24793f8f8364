//! Restored positions the stream cannot serve, and what the source does about them
//! ([`OutOfRange`]). A checkpoint outlives its stream: the stream may have been deleted and
//! re-created with the same name (same shard ids, new sequence numbers), or shards may have
//! expired past the retention period while the pipeline was down. Reading on would silently
//! restart elsewhere or idle, so by default the source fails, naming shard and sequence number.

use crate::error::ShardOutOfRange;
use crate::position::{KinesisPosition, ShardPosition, StartPosition};
use crate::sequence::cmp_sequence_numbers;
use crate::stats::KinesisStats;
use aws_sdk_kinesis::types::Shard;
use std::cmp::Ordering;

/// What the source does with a restored shard position the stream cannot serve: a shard the
/// stream no longer has, a sequence number outside the shard's range, or one that
/// GetShardIterator (or SubscribeToShard) refuses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutOfRange {
    /// Fail with [`KinesisError::PositionOutOfRange`](crate::KinesisError::PositionOutOfRange),
    /// naming every such shard with its sequence number (the default).
    #[default]
    Fail,
    /// Read such shards from their oldest record; forget positions of shards that no longer
    /// exist. Each is logged with `warn!` and counted.
    TrimHorizon,
    /// Read such shards from now on; forget positions of shards that no longer exist. Each is
    /// logged with `warn!` and counted.
    Latest,
}

/// The restored positions that the listed shards cannot serve.
///
/// Closed shards of a reshard keep working: a parent at `Finished` that is closed, or no
/// longer listed (expired), is fine, as is a position inside its shard's range. Positions of
/// unlisted shards where nothing was read (`Start`) are not reported: nothing of them was
/// read, so nothing read is contradicted.
pub(crate) fn check(position: &KinesisPosition, listed: &[Shard]) -> Vec<ShardOutOfRange> {
    let mut out = Vec::new();
    for (id, p) in &position.shards {
        let shard = listed.iter().find(|s| s.shard_id() == id);
        let range = shard.and_then(|s| s.sequence_number_range());
        match (p, range) {
            (ShardPosition::After { sequence, .. }, None) => out.push(ShardOutOfRange::new(
                id,
                Some(sequence),
                "the stream has no such shard (deleted and re-created, or expired past the \
                 retention period)",
            )),
            (ShardPosition::After { sequence, .. }, Some(range)) => {
                let start = range.starting_sequence_number();
                if cmp_sequence_numbers(sequence, start) == Ordering::Less {
                    out.push(ShardOutOfRange::new(
                        id,
                        Some(sequence),
                        format!(
                            "before the shard's first sequence number {start} (the stream was \
                             deleted and re-created, or the checkpoint is another stream's)"
                        ),
                    ));
                } else if let Some(end) = range.ending_sequence_number() {
                    // Some servers list a closed shard with an ending number below its start
                    // (kinesis-mock: i64::MAX): only a well-formed range says anything.
                    let well_formed = cmp_sequence_numbers(end, start) != Ordering::Less;
                    if well_formed && cmp_sequence_numbers(sequence, end) == Ordering::Greater {
                        out.push(ShardOutOfRange::new(
                            id,
                            Some(sequence),
                            format!("beyond the shard's last sequence number {end}"),
                        ));
                    }
                }
            }
            (ShardPosition::Finished, Some(range)) if range.ending_sequence_number().is_none() => {
                out.push(ShardOutOfRange::new(
                    id,
                    None,
                    "the checkpoint says the shard was read to its end, but the stream lists it \
                     open (the stream was deleted and re-created)",
                ))
            }
            _ => {}
        }
    }
    out
}

/// Replaces the positions in `out` as `policy` says (the caller has dealt with `Fail`):
/// shards the stream lists restart at TRIM_HORIZON or LATEST (`Start(Latest)`, which the
/// source resolves when it adds the shard), the others are forgotten.
pub(crate) fn apply(
    policy: OutOfRange,
    stream: &str,
    position: &mut KinesisPosition,
    out: &[ShardOutOfRange],
    listed: impl Fn(&str) -> bool,
    stats: &KinesisStats,
) {
    let start = match policy {
        OutOfRange::Latest => StartPosition::Latest,
        _ => StartPosition::TrimHorizon,
    };
    for shard in out {
        stats.add_out_of_range(stream);
        if listed(&shard.shard) {
            tracing::warn!(stream, shard = %shard.shard, sequence = ?shard.sequence, reason = %shard.reason, restart = ?start, "restored Kinesis position out of range: reading the shard from the configured start instead");
            position
                .shards
                .insert(shard.shard.clone(), ShardPosition::Start(start));
        } else {
            tracing::warn!(stream, shard = %shard.shard, sequence = ?shard.sequence, reason = %shard.reason, "restored Kinesis position out of range: forgetting the shard");
            position.shards.remove(&shard.shard);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kinesis::types::{HashKeyRange, SequenceNumberRange};

    fn shard(id: &str, start: &str, end: Option<&str>) -> Shard {
        Shard::builder()
            .shard_id(id)
            .hash_key_range(
                HashKeyRange::builder()
                    .starting_hash_key("0")
                    .ending_hash_key("1")
                    .build()
                    .expect("range"),
            )
            .sequence_number_range(
                SequenceNumberRange::builder()
                    .starting_sequence_number(start)
                    .set_ending_sequence_number(end.map(str::to_owned))
                    .build()
                    .expect("range"),
            )
            .build()
            .expect("shard")
    }

    fn after(sequence: &str) -> ShardPosition {
        ShardPosition::After {
            sequence: sequence.into(),
            sub: 0,
        }
    }

    fn position(entries: &[(&str, ShardPosition)]) -> KinesisPosition {
        KinesisPosition {
            shards: entries
                .iter()
                .map(|(id, p)| ((*id).to_owned(), p.clone()))
                .collect(),
        }
    }

    fn flagged(out: &[ShardOutOfRange]) -> Vec<(&str, Option<&str>)> {
        out.iter()
            .map(|s| (s.shard.as_str(), s.sequence.as_deref()))
            .collect()
    }

    /// Rule: positions inside their shard's range, finished parents (closed, or expired and
    /// unlisted) and unread positions of expired shards are all usable; a closed shard listed
    /// with a malformed ending number (kinesis-mock) is not mistaken for a short one.
    #[test]
    fn reshard_lineage_and_positions_inside_the_range_are_accepted() {
        let listed = [
            shard("parent", "100", Some("9")),
            shard("child", "200", None),
            shard("closed", "100", Some("150")),
        ];
        let p = position(&[
            ("parent", after("120")),
            ("child", after("200")),
            ("closed", after("150")),
            ("expired-parent", ShardPosition::Finished),
            (
                "expired-unread",
                ShardPosition::Start(StartPosition::TrimHorizon),
            ),
        ]);
        assert_eq!(check(&p, &listed), Vec::new());
    }

    /// Rule: a re-created stream (same shard ids, later sequence numbers) and shards that are
    /// gone are reported, each with its shard and sequence number.
    #[test]
    fn positions_a_re_created_stream_cannot_serve_are_reported() {
        let listed = [
            shard("shardId-0", "500", None),
            shard("shardId-1", "500", None),
            shard("closed", "100", Some("150")),
        ];
        let p = position(&[
            ("shardId-0", after("120")),
            ("shardId-1", ShardPosition::Finished),
            ("shardId-2", after("130")),
            ("closed", after("151")),
        ]);
        assert_eq!(
            flagged(&check(&p, &listed)),
            vec![
                ("closed", Some("151")),
                ("shardId-0", Some("120")),
                ("shardId-1", None),
                ("shardId-2", Some("130")),
            ]
        );
    }

    /// Rule: proceeding restarts listed shards at the chosen start, forgets the others, and
    /// counts each.
    #[test]
    fn proceeding_restarts_listed_shards_and_forgets_vanished_ones() {
        let listed = [shard("shardId-0", "500", None)];
        let mut p = position(&[("shardId-0", after("120")), ("shardId-2", after("130"))]);
        let out = check(&p, &listed);
        let stats = KinesisStats::default();
        apply(
            OutOfRange::Latest,
            "s",
            &mut p,
            &out,
            |id| id == "shardId-0",
            &stats,
        );
        assert_eq!(
            p,
            position(&[("shardId-0", ShardPosition::Start(StartPosition::Latest))])
        );
        assert_eq!(stats.positions_out_of_range(), 2);
    }
}
