//! What the keyed operators share to checkpoint their state by key group.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use watershed_core::{BoxError, KeyBytes, KeyGroupSnapshot, KeyGroups};

/// Splits `entries` by key group and encodes each group with `encode(carries_totals, entries)`.
///
/// The first group of the instance's range always gets a blob, with `carries_totals` set:
/// per-instance totals (late-record counts) go there once, so that after a rescale they are
/// summed, not multiplied, by the instances that restore them.
pub(crate) fn snapshot_groups<'a, K, E>(
    groups: &KeyGroups,
    entries: impl IntoIterator<Item = (&'a K, E)>,
    mut encode: impl FnMut(bool, Vec<(&'a K, E)>) -> Result<Vec<u8>, BoxError>,
) -> Result<KeyGroupSnapshot, BoxError>
where
    K: KeyBytes + 'a,
{
    let first = groups.range().first();
    let mut split = groups.split(entries);
    split.entry(first).or_default();
    split
        .into_iter()
        .map(|(g, entries)| Ok((g, encode(g == first, entries)?)))
        .collect()
}

/// The entries of restored key-group blobs that each hold a JSON list of them (what
/// [`snapshot_groups`] wrote with a plain list encoder), all groups together.
pub(crate) fn decode_groups<T: DeserializeOwned>(
    states: &[(u16, Bytes)],
) -> Result<Vec<T>, BoxError> {
    let mut all = Vec::new();
    for (_, state) in states {
        all.extend(serde_json::from_slice::<Vec<T>>(state)?);
    }
    Ok(all)
}
