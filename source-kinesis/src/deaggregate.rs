//! KPL de-aggregation: one Kinesis record carrying many user records.
//!
//! Format (KPL `aggregation-format.md`): the 4 magic bytes `F3 89 9A C2`, a protobuf
//! `AggregatedRecord`, and the 16-byte MD5 of that protobuf. The protobuf is small enough to
//! decode by hand, which keeps a protobuf code generator out of the build:
//!
//! ```text
//! message AggregatedRecord {
//!   repeated string partition_key_table     = 1;
//!   repeated string explicit_hash_key_table = 2;
//!   repeated Record records                 = 3;
//! }
//! message Record {
//!   required uint64 partition_key_index     = 1;
//!   optional uint64 explicit_hash_key_index = 2;
//!   required bytes  data                    = 3;
//!   repeated Tag    tags                    = 4;
//! }
//! ```

use bytes::Bytes;
use md5::{Digest, Md5};

/// The prefix of a KPL aggregate.
pub const KPL_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const MD5_LEN: usize = 16;

/// One user record from an aggregate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    /// The user record's partition key.
    pub partition_key: String,
    /// Its explicit hash key, if the producer set one.
    pub explicit_hash_key: Option<String>,
    /// Its payload (a slice of the aggregate, not a copy).
    pub data: Bytes,
}

/// The user records of `data` if it is a well-formed KPL aggregate; `None` otherwise, and the
/// record is then delivered as it is (as the KCL does when the magic or the MD5 do not match:
/// a plain record may happen to start with the magic bytes).
pub fn deaggregate(data: &Bytes) -> Option<Vec<UserRecord>> {
    if data.len() < KPL_MAGIC.len() + MD5_LEN || data[..KPL_MAGIC.len()] != KPL_MAGIC {
        return None;
    }
    let body = data.slice(KPL_MAGIC.len()..data.len() - MD5_LEN);
    let checksum = &data[data.len() - MD5_LEN..];
    if Md5::digest(&body).as_slice() != checksum {
        return None;
    }
    let mut keys = Vec::new();
    let mut hash_keys = Vec::new();
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let (field, wire) = key(&body, &mut pos)?;
        match (field, wire) {
            (1, 2) => keys.push(string(&body, &mut pos)?),
            (2, 2) => hash_keys.push(string(&body, &mut pos)?),
            (3, 2) => records.push(bytes(&body, &mut pos)?),
            _ => skip(&body, &mut pos, wire)?,
        }
    }
    records
        .into_iter()
        .map(|r| {
            let mut pos = 0;
            let (mut key_index, mut hash_index, mut payload) = (None, None, None);
            while pos < r.len() {
                let (field, wire) = key(&r, &mut pos)?;
                match (field, wire) {
                    (1, 0) => key_index = Some(varint(&r, &mut pos)?),
                    (2, 0) => hash_index = Some(varint(&r, &mut pos)?),
                    (3, 2) => payload = Some(bytes(&r, &mut pos)?),
                    _ => skip(&r, &mut pos, wire)?,
                }
            }
            Some(UserRecord {
                partition_key: keys.get(usize::try_from(key_index?).ok()?)?.clone(),
                explicit_hash_key: match hash_index {
                    Some(i) => Some(hash_keys.get(usize::try_from(i).ok()?)?.clone()),
                    None => None,
                },
                data: payload?,
            })
        })
        .collect()
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn key(buf: &[u8], pos: &mut usize) -> Option<(u64, u8)> {
    let k = varint(buf, pos)?;
    Some((k >> 3, (k & 7) as u8))
}

fn bytes(buf: &Bytes, pos: &mut usize) -> Option<Bytes> {
    let len = usize::try_from(varint(buf, pos)?).ok()?;
    let end = pos.checked_add(len).filter(|&e| e <= buf.len())?;
    let out = buf.slice(*pos..end);
    *pos = end;
    Some(out)
}

fn string(buf: &Bytes, pos: &mut usize) -> Option<String> {
    String::from_utf8(bytes(buf, pos)?.to_vec()).ok()
}

fn skip(buf: &Bytes, pos: &mut usize, wire: u8) -> Option<()> {
    match wire {
        0 => varint(buf, pos).map(drop),
        1 => advance(buf, pos, 8),
        2 => bytes(buf, pos).map(drop),
        5 => advance(buf, pos, 4),
        _ => None,
    }
}

fn advance(buf: &[u8], pos: &mut usize, n: usize) -> Option<()> {
    *pos = pos.checked_add(n).filter(|&e| e <= buf.len())?;
    Some(())
}

/// Encodes user records as a KPL aggregate: the inverse of [`deaggregate`], for producers
/// and tests that need aggregated input. Partition keys and explicit hash keys are stored
/// once each in the tables, as the KPL does.
pub fn aggregate(records: &[UserRecord]) -> Bytes {
    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn put_bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
        put_varint(out, field << 3 | 2);
        put_varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
    let mut keys: Vec<&str> = Vec::new();
    let mut hash_keys: Vec<&str> = Vec::new();
    let mut encoded_records = Vec::new();
    for r in records {
        let key_index = match keys.iter().position(|k| *k == r.partition_key) {
            Some(i) => i,
            None => {
                keys.push(&r.partition_key);
                keys.len() - 1
            }
        };
        let hash_index =
            r.explicit_hash_key
                .as_deref()
                .map(|h| match hash_keys.iter().position(|k| *k == h) {
                    Some(i) => i,
                    None => {
                        hash_keys.push(h);
                        hash_keys.len() - 1
                    }
                });
        let mut rec = Vec::new();
        put_varint(&mut rec, 1 << 3);
        put_varint(&mut rec, key_index as u64);
        if let Some(h) = hash_index {
            put_varint(&mut rec, 2 << 3);
            put_varint(&mut rec, h as u64);
        }
        put_bytes(&mut rec, 3, &r.data);
        encoded_records.push(rec);
    }
    let mut body = Vec::new();
    for k in &keys {
        put_bytes(&mut body, 1, k.as_bytes());
    }
    for h in &hash_keys {
        put_bytes(&mut body, 2, h.as_bytes());
    }
    for r in &encoded_records {
        put_bytes(&mut body, 3, r);
    }
    let mut out = KPL_MAGIC.to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(Md5::digest(&body).as_slice());
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn user(key: &str, hash: Option<&str>, data: &[u8]) -> UserRecord {
        UserRecord {
            partition_key: key.to_owned(),
            explicit_hash_key: hash.map(str::to_owned),
            data: Bytes::copy_from_slice(data),
        }
    }

    #[test]
    fn n4_an_aggregate_yields_its_user_records_in_order() {
        let records = vec![
            user("a", None, b"one"),
            user("b", Some("12345"), b"two"),
            user("a", None, b""),
        ];
        assert_eq!(deaggregate(&aggregate(&records)), Some(records));
    }

    #[test]
    fn a_plain_record_or_a_corrupt_aggregate_is_not_deaggregated() {
        assert_eq!(deaggregate(&Bytes::from_static(b"{\"id\":1}")), None);
        let mut corrupt = aggregate(&[user("a", None, b"x")]).to_vec();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1; // MD5 mismatch
        assert_eq!(deaggregate(&Bytes::from(corrupt)), None);
        // Magic bytes followed by garbage of the right length.
        let mut fake = KPL_MAGIC.to_vec();
        fake.extend_from_slice(&[0u8; 20]);
        assert_eq!(deaggregate(&Bytes::from(fake)), None);
    }

    proptest! {
        #[test]
        fn n4_aggregate_then_deaggregate_is_identity(
            records in proptest::collection::vec(
                ("[a-z]{1,8}", proptest::option::of("[0-9]{1,39}"), proptest::collection::vec(any::<u8>(), 0..64)),
                1..40,
            )
        ) {
            let records: Vec<UserRecord> = records
                .iter()
                .map(|(k, h, d)| user(k, h.as_deref(), d))
                .collect();
            prop_assert_eq!(deaggregate(&aggregate(&records)), Some(records));
        }

        #[test]
        fn deaggregate_never_panics_on_arbitrary_input(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut data = KPL_MAGIC.to_vec();
            data.extend_from_slice(&tail);
            let body_end = data.len().saturating_sub(MD5_LEN).max(KPL_MAGIC.len());
            // Give half the cases a valid checksum so the protobuf parser sees the garbage.
            if tail.len() % 2 == 0 && data.len() >= KPL_MAGIC.len() + MD5_LEN {
                let digest = Md5::digest(&data[KPL_MAGIC.len()..body_end]);
                data[body_end..].copy_from_slice(digest.as_slice());
            }
            let _ = deaggregate(&Bytes::from(data));
        }
    }
}
