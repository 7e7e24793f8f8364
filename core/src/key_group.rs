//! Key groups: how a key is hashed, which key group it falls in, and which instance of a keyed
//! operator owns that group.
//!
//! Keyed state is split into `max_parallelism` key groups (Flink's scheme). A key belongs to
//! group `xxh3_64(key bytes, seed 0) % max_parallelism`; instance `i` of `p` owns the contiguous
//! range of groups [`KeyGroupRange::for_instance`] gives it. Checkpoints store keyed state per
//! key group, so a pipeline can restore it at any parallelism up to `max_parallelism`.
//!
//! The hash is specified, not `std::hash::Hash`: [`KeyBytes`] gives every key a byte encoding
//! that is fixed by this documentation, and XXH3-64 with seed 0 is a published algorithm. A key
//! therefore lands in the same group in every release, on every platform, which is what lets a
//! checkpoint written by one build be restored by another.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::rc::Rc;
use std::sync::Arc;

/// The largest `max_parallelism` (Flink's limit too): key groups are numbered in a `u16`.
pub const MAX_MAX_PARALLELISM: usize = 32_768;

/// The default `max_parallelism` of a pipeline.
pub const DEFAULT_MAX_PARALLELISM: usize = 128;

/// A stable byte encoding of a key, from which its hash and key group are computed.
///
/// The encoding is part of Watershed's checkpoint format: changing it moves keys to other
/// key groups, and state restored from a checkpoint would no longer meet its keys. So it is
/// specified here, and tests pin the hashes of sample keys:
///
/// | type | bytes |
/// | --- | --- |
/// | `str`, `String`, `[u8]`, `Vec<u8>`, `Bytes`, `Cow<str>` | the bytes themselves |
/// | `u8` … `u128`, `i8` … `i128` | little-endian, their own width |
/// | `usize`, `isize` | as `u64`, `i64` (the same on every platform) |
/// | `bool` | one byte, 0 or 1 |
/// | `char` | its scalar value as a little-endian `u32` |
/// | `()` | nothing |
/// | `Option<T>` | `0` for `None`; `1` then `T`'s bytes for `Some` |
/// | tuples of 1 to 4, `[T; N]` | each element as a field (below), in order |
/// | `&T`, `Box<T>`, `Rc<T>`, `Arc<T>` | `T`'s bytes |
///
/// A *field* is the element's length in bytes as a little-endian `u64`, then its bytes
/// ([`write_field`]): the prefix keeps `("ab", "c")` and `("a", "bc")` apart.
///
/// For a key type of your own, write its fields with [`write_field`], in a fixed order:
///
/// ```
/// use watershed_core::key_group::{write_field, KeyBytes};
///
/// #[derive(Clone, PartialEq, Eq, Hash)]
/// struct Route { from: String, to: String, line: u32 }
///
/// impl KeyBytes for Route {
///     fn write_key_bytes(&self, out: &mut Vec<u8>) {
///         write_field(out, &self.from);
///         write_field(out, &self.to);
///         write_field(out, &self.line);
///     }
/// }
/// ```
///
/// A type that implements `serde::Serialize` can use [`write_json_field`] instead, as long as
/// its serialized form is deterministic (structs and enums are; a `HashMap` inside is not).
/// Once a pipeline has checkpoints, the encoding of its key type must not change.
pub trait KeyBytes {
    /// Appends the key's encoding to `out`.
    fn write_key_bytes(&self, out: &mut Vec<u8>);
}

/// Appends `value` as a field: its encoding's length as a little-endian `u64`, then the
/// encoding. The building block of composite keys.
pub fn write_field<K: KeyBytes + ?Sized>(out: &mut Vec<u8>, value: &K) {
    let at = out.len();
    out.extend_from_slice(&[0; 8]);
    value.write_key_bytes(out);
    let len = (out.len() - at - 8) as u64;
    out[at..at + 8].copy_from_slice(&len.to_le_bytes());
}

/// Appends `value` as a field of its compact JSON (see [`KeyBytes`] for when that is stable).
/// A value that cannot be serialized (a map with non-string keys) is written as the empty
/// field, so that routing never fails; give such a type a [`KeyBytes`] of its own.
pub fn write_json_field<V: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &V) {
    let json = serde_json::to_vec(value).unwrap_or_default();
    write_field(out, json.as_slice());
}

/// The key's encoding, as [`KeyBytes`] specifies it.
pub fn key_bytes<K: KeyBytes + ?Sized>(key: &K) -> Vec<u8> {
    let mut out = Vec::new();
    key.write_key_bytes(&mut out);
    out
}

/// The key's hash: XXH3-64 with seed 0 over its [`KeyBytes`] encoding.
pub fn key_hash<K: KeyBytes + ?Sized>(key: &K) -> u64 {
    thread_local! {
        // The shuffle hashes every record: reuse one buffer per thread, not one per key.
        static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    let hash = |buf: &mut Vec<u8>| {
        buf.clear();
        key.write_key_bytes(buf);
        twox_hash::XxHash3_64::oneshot_with_seed(0, buf)
    };
    BUFFER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => hash(&mut buf),
        // A key whose encoding hashes another key: a buffer of its own.
        Err(_) => hash(&mut Vec::new()),
    })
}

/// The key group of `key` among `max_parallelism` groups: `key_hash(key) % max_parallelism`.
/// `max_parallelism` is clamped to `1..=32768`.
pub fn key_group_of<K: KeyBytes + ?Sized>(key: &K, max_parallelism: usize) -> u16 {
    let max = max_parallelism.clamp(1, MAX_MAX_PARALLELISM) as u64;
    (key_hash(key) % max) as u16
}

/// The instance of `parallelism` that owns key group `group`: `group * parallelism /
/// max_parallelism` (Flink's `computeOperatorIndexForKeyGroup`). Inputs are clamped to
/// `1 <= parallelism <= max_parallelism <= 32768`.
pub fn instance_of_group(group: u16, max_parallelism: usize, parallelism: usize) -> usize {
    let max = max_parallelism.clamp(1, MAX_MAX_PARALLELISM);
    let p = parallelism.clamp(1, max);
    usize::from(group) * p / max
}

/// A keyed operator instance's state split by key group: `(group, state)` pairs, ascending,
/// as [`Operator::snapshot_key_groups`](crate::Operator::snapshot_key_groups) returns it.
pub type KeyGroupSnapshot = Vec<(u16, Vec<u8>)>;

/// A contiguous, non-empty range of key groups, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyGroupRange {
    first: u16,
    last: u16,
}

impl KeyGroupRange {
    /// The groups instance `index` of `parallelism` owns among `max_parallelism`: from
    /// `ceil(index * max / p)` to `ceil((index + 1) * max / p) - 1` (Flink's
    /// `computeKeyGroupRangeForOperatorIndex`). Inputs are clamped as in [`instance_of_group`],
    /// and `index` to `0..p`.
    pub fn for_instance(max_parallelism: usize, parallelism: usize, index: usize) -> Self {
        let max = max_parallelism.clamp(1, MAX_MAX_PARALLELISM);
        let p = parallelism.clamp(1, max);
        let i = index.min(p - 1);
        let first = (i * max).div_ceil(p);
        let end = ((i + 1) * max).div_ceil(p);
        KeyGroupRange {
            first: first as u16,
            last: (end - 1) as u16,
        }
    }

    /// The first group.
    pub fn first(&self) -> u16 {
        self.first
    }

    /// The last group (included).
    pub fn last(&self) -> u16 {
        self.last
    }

    /// Whether `group` is in the range.
    pub fn contains(&self, group: u16) -> bool {
        (self.first..=self.last).contains(&group)
    }

    /// The groups, ascending.
    pub fn groups(&self) -> RangeInclusive<u16> {
        self.first..=self.last
    }
}

impl fmt::Display for KeyGroupRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.first, self.last)
    }
}

/// What a keyed operator instance needs to split its state by key group: the pipeline's
/// `max_parallelism` and the groups this instance owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyGroups {
    max_parallelism: usize,
    range: KeyGroupRange,
}

impl KeyGroups {
    /// Instance `index` of `parallelism` under `max_parallelism` (clamped as in
    /// [`KeyGroupRange::for_instance`]).
    pub fn for_instance(max_parallelism: usize, parallelism: usize, index: usize) -> Self {
        KeyGroups {
            max_parallelism: max_parallelism.clamp(1, MAX_MAX_PARALLELISM),
            range: KeyGroupRange::for_instance(max_parallelism, parallelism, index),
        }
    }

    /// The pipeline's `max_parallelism`: how many key groups there are.
    pub fn max_parallelism(&self) -> usize {
        self.max_parallelism
    }

    /// The groups this instance owns.
    pub fn range(&self) -> KeyGroupRange {
        self.range
    }

    /// The key group of `key`.
    pub fn group_of<K: KeyBytes + ?Sized>(&self, key: &K) -> u16 {
        key_group_of(key, self.max_parallelism)
    }

    /// Sorts `(key, value)` pairs into their key groups, ascending: the usual first step of
    /// [`Operator::snapshot_key_groups`](crate::Operator::snapshot_key_groups).
    pub fn split<'a, K: KeyBytes + ?Sized + 'a, V>(
        &self,
        entries: impl IntoIterator<Item = (&'a K, V)>,
    ) -> BTreeMap<u16, Vec<(&'a K, V)>> {
        let mut groups: BTreeMap<u16, Vec<(&'a K, V)>> = BTreeMap::new();
        for (key, value) in entries {
            groups
                .entry(self.group_of(key))
                .or_default()
                .push((key, value));
        }
        groups
    }
}

macro_rules! le_bytes {
    ($($t:ty),*) => {$(
        impl KeyBytes for $t {
            fn write_key_bytes(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
le_bytes!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128);

impl KeyBytes for usize {
    fn write_key_bytes(&self, out: &mut Vec<u8>) {
        (*self as u64).write_key_bytes(out)
    }
}

impl KeyBytes for isize {
    fn write_key_bytes(&self, out: &mut Vec<u8>) {
        (*self as i64).write_key_bytes(out)
    }
}

impl KeyBytes for bool {
    fn write_key_bytes(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl KeyBytes for char {
    fn write_key_bytes(&self, out: &mut Vec<u8>) {
        u32::from(*self).write_key_bytes(out)
    }
}

impl KeyBytes for () {
    fn write_key_bytes(&self, _out: &mut Vec<u8>) {}
}

impl KeyBytes for str {
    fn write_key_bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl KeyBytes for String {
    fn write_key_bytes(&self, out: &mut Vec<u8>) {
        self.as_str().write_key_bytes(out)
    }
}

impl KeyBytes for Cow<'_, str> {
    fn write_key_bytes(&self, out: &mut Vec<u8>) {
        self.as_ref().write_key_bytes(out)
    }
}

impl KeyBytes for [u8] {
    fn write_key_bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl KeyBytes for Vec<u8> {
    fn write_key_bytes(&self, out: &mut Vec<u8>) {
        self.as_slice().write_key_bytes(out)
    }
}

impl KeyBytes for bytes::Bytes {
    fn write_key_bytes(&self, out: &mut Vec<u8>) {
        self.as_ref().write_key_bytes(out)
    }
}

impl<T: KeyBytes> KeyBytes for Option<T> {
    fn write_key_bytes(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.write_key_bytes(out);
            }
        }
    }
}

impl<T: KeyBytes, const N: usize> KeyBytes for [T; N] {
    fn write_key_bytes(&self, out: &mut Vec<u8>) {
        for v in self {
            write_field(out, v);
        }
    }
}

macro_rules! forward {
    ($($w:ident),*) => {$(
        impl<T: KeyBytes + ?Sized> KeyBytes for $w<T> {
            fn write_key_bytes(&self, out: &mut Vec<u8>) {
                (**self).write_key_bytes(out)
            }
        }
    )*};
}
forward!(Box, Rc, Arc);

impl<T: KeyBytes + ?Sized> KeyBytes for &T {
    fn write_key_bytes(&self, out: &mut Vec<u8>) {
        (**self).write_key_bytes(out)
    }
}

macro_rules! tuple {
    ($($name:ident . $i:tt),+) => {
        impl<$($name: KeyBytes),+> KeyBytes for ($($name,)+) {
            fn write_key_bytes(&self, out: &mut Vec<u8>) {
                $(write_field(out, &self.$i);)+
            }
        }
    };
}
tuple!(A.0);
tuple!(A.0, B.1);
tuple!(A.0, B.1, C.2);
tuple!(A.0, B.1, C.2, D.3);

#[cfg(test)]
#[path = "key_group_tests.rs"]
mod tests;
