//! KPL de-aggregation: one Kinesis record carrying many user records.
//!
//! Format (KPL `aggregation-format.md`): the 4 magic bytes `F3 89 9A C2`, a protobuf
//! `AggregatedRecord`, and the 16-byte MD5 of that protobuf. The messages are derived with
//! prost below, from this schema, so that no protobuf compiler is needed to build the crate:
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
//! message Tag {
//!   required string key   = 1;
//!   optional string value = 2;
//! }
//! ```

use bytes::Bytes;
use md5::{Digest, Md5};
use prost::Message;

/// The prefix of a KPL aggregate.
pub const KPL_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const MD5_LEN: usize = 16;

#[derive(Clone, PartialEq, Message)]
struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    records: Vec<KplRecord>,
}

/// `Record` of the schema. Its required fields are declared optional, which is the same on
/// the wire, so that a record lacking one is refused instead of read as index 0 or no data.
#[derive(Clone, PartialEq, Message)]
struct KplRecord {
    #[prost(uint64, optional, tag = "1")]
    partition_key_index: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    explicit_hash_key_index: Option<u64>,
    /// `Bytes`: prost then slices the user data out of the aggregate instead of copying it.
    #[prost(bytes = "bytes", optional, tag = "3")]
    data: Option<Bytes>,
    #[prost(message, repeated, tag = "4")]
    tags: Vec<Tag>,
}

/// Decoded for the schema's sake only: Kinesis records have nowhere to carry tags.
#[derive(Clone, PartialEq, Message)]
struct Tag {
    #[prost(string, required, tag = "1")]
    key: String,
    #[prost(string, optional, tag = "2")]
    value: Option<String>,
}

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

/// Why a record is not split as a KPL aggregate.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotAggregate {
    /// Not the magic bytes, or too short to hold them and a checksum.
    #[error("no KPL magic bytes and checksum")]
    NoMagic,
    /// A plain record may happen to start with the magic bytes; its checksum then fails.
    #[error("the MD5 checksum does not match")]
    Checksum,
    #[error("the protobuf does not decode: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("user record {record} has no {field}")]
    Missing { record: usize, field: &'static str },
    #[error("user record {record}: {table} index {index} is out of range ({len} entries)")]
    Index {
        record: usize,
        table: &'static str,
        index: u64,
        len: usize,
    },
}

/// The user records of `data` if it is a well-formed KPL aggregate; `None` otherwise, and the
/// record is then delivered as it is (as the KCL does when the magic or the MD5 do not match:
/// a plain record may happen to start with the magic bytes).
pub fn deaggregate(data: &Bytes) -> Option<Vec<UserRecord>> {
    split(data).ok()
}

/// [`deaggregate`], saying why a record is not an aggregate.
pub(crate) fn split(data: &Bytes) -> Result<Vec<UserRecord>, NotAggregate> {
    if data.len() < KPL_MAGIC.len() + MD5_LEN || data[..KPL_MAGIC.len()] != KPL_MAGIC {
        return Err(NotAggregate::NoMagic);
    }
    let body = data.slice(KPL_MAGIC.len()..data.len() - MD5_LEN);
    if Md5::digest(&body).as_slice() != &data[data.len() - MD5_LEN..] {
        return Err(NotAggregate::Checksum);
    }
    let aggregate = AggregatedRecord::decode(body)?;
    let keys = &aggregate.partition_key_table;
    let hash_keys = &aggregate.explicit_hash_key_table;
    aggregate
        .records
        .into_iter()
        .enumerate()
        .map(|(record, r)| {
            let missing = |field| NotAggregate::Missing { record, field };
            let entry = |table: &'static str, entries: &[String], index: u64| {
                usize::try_from(index)
                    .ok()
                    .and_then(|i| entries.get(i))
                    .cloned()
                    .ok_or(NotAggregate::Index {
                        record,
                        table,
                        index,
                        len: entries.len(),
                    })
            };
            let key_index = r
                .partition_key_index
                .ok_or_else(|| missing("partition_key_index"))?;
            Ok(UserRecord {
                partition_key: entry("partition_key_table", keys, key_index)?,
                explicit_hash_key: r
                    .explicit_hash_key_index
                    .map(|i| entry("explicit_hash_key_table", hash_keys, i))
                    .transpose()?,
                data: r.data.ok_or_else(|| missing("data"))?,
            })
        })
        .collect()
}

/// Encodes user records as a KPL aggregate: the inverse of [`deaggregate`], for producers
/// and tests that need aggregated input. Partition keys and explicit hash keys are stored
/// once each in the tables, as the KPL does.
pub fn aggregate(records: &[UserRecord]) -> Bytes {
    fn index_of(table: &mut Vec<String>, key: &str) -> u64 {
        let i = table.iter().position(|k| k == key).unwrap_or_else(|| {
            table.push(key.to_owned());
            table.len() - 1
        });
        i as u64
    }
    let mut aggregate = AggregatedRecord::default();
    for r in records {
        let record = KplRecord {
            partition_key_index: Some(index_of(
                &mut aggregate.partition_key_table,
                &r.partition_key,
            )),
            explicit_hash_key_index: r
                .explicit_hash_key
                .as_deref()
                .map(|h| index_of(&mut aggregate.explicit_hash_key_table, h)),
            data: Some(r.data.clone()),
            tags: Vec::new(),
        };
        aggregate.records.push(record);
    }
    let body = aggregate.encode_to_vec();
    let mut out = Vec::with_capacity(KPL_MAGIC.len() + body.len() + MD5_LEN);
    out.extend_from_slice(&KPL_MAGIC);
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

    /// `body` framed as an aggregate: magic bytes before, its MD5 after.
    fn framed(body: &[u8]) -> Bytes {
        let mut out = KPL_MAGIC.to_vec();
        out.extend_from_slice(body);
        out.extend_from_slice(Md5::digest(body).as_slice());
        Bytes::from(out)
    }

    fn kpl_record(key: u64, hash: Option<u64>, data: Option<&'static [u8]>) -> KplRecord {
        KplRecord {
            partition_key_index: Some(key),
            explicit_hash_key_index: hash,
            data: data.map(Bytes::from_static),
            tags: Vec::new(),
        }
    }

    /// Rule: the wire format is the KPL's, byte for byte (tables first, then the records,
    /// each with its key index, hash key index if any, and data).
    #[test]
    fn aggregate_writes_the_kpl_wire_format() {
        let records = [user("a", None, b"x"), user("b", Some("7"), b"")];
        let body = [
            0x0a, 1, b'a', 0x0a, 1, b'b', // partition_key_table
            0x12, 1, b'7', // explicit_hash_key_table
            0x1a, 5, 0x08, 0, 0x1a, 1, b'x', // records[0]
            0x1a, 6, 0x08, 1, 0x10, 0, 0x1a, 0, // records[1]
        ];
        assert_eq!(aggregate(&records), framed(&body));
    }

    #[test]
    fn user_data_is_a_slice_of_the_aggregate_not_a_copy() {
        let data = aggregate(&[user("a", None, b"first"), user("b", None, b"second")]);
        let range = data.as_ptr_range();
        for u in deaggregate(&data).expect("an aggregate") {
            assert!(range.contains(&u.data.as_ptr()), "{:?} was copied", u.data);
        }
    }

    #[test]
    fn tags_are_read_past() {
        let mut record = kpl_record(0, None, Some(b"x"));
        record.tags.push(Tag {
            key: "k".into(),
            value: Some("v".into()),
        });
        let body = AggregatedRecord {
            partition_key_table: vec!["a".into()],
            explicit_hash_key_table: Vec::new(),
            records: vec![record],
        };
        assert_eq!(
            deaggregate(&framed(&body.encode_to_vec())),
            Some(vec![user("a", None, b"x")])
        );
    }

    /// Rule: an aggregate whose checksum holds but whose content does not is refused with
    /// its reason (and then delivered as one record), never half-split, never a panic.
    #[test]
    fn a_broken_aggregate_is_refused_with_its_reason() {
        let broken = |records: Vec<KplRecord>| {
            let body = AggregatedRecord {
                partition_key_table: vec!["a".into()],
                explicit_hash_key_table: vec!["1".into()],
                records,
            };
            let data = framed(&body.encode_to_vec());
            assert_eq!(deaggregate(&data), None);
            split(&data).expect_err("not an aggregate").to_string()
        };
        let good = || kpl_record(0, Some(0), Some(b"x"));
        assert_eq!(
            broken(vec![good(), kpl_record(1, None, Some(b"y"))]),
            "user record 1: partition_key_table index 1 is out of range (1 entries)"
        );
        assert_eq!(
            broken(vec![kpl_record(0, Some(u64::MAX), Some(b"y"))]),
            format!(
                "user record 0: explicit_hash_key_table index {} is out of range (1 entries)",
                u64::MAX
            )
        );
        assert_eq!(
            broken(vec![good(), good(), kpl_record(0, None, None)]),
            "user record 2 has no data"
        );
        let mut no_key = good();
        no_key.partition_key_index = None;
        assert_eq!(
            broken(vec![no_key]),
            "user record 0 has no partition_key_index"
        );
        // A length running past the end of the body.
        let truncated = framed(&[0x0a, 9, b'a']);
        assert!(matches!(split(&truncated), Err(NotAggregate::Protobuf(_))));
        assert!(matches!(
            split(&aggregate(&[user("a", None, b"x")]).slice(..20)),
            Err(NotAggregate::Checksum)
        ));
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
