//! Helpers shared by the sink's integration tests: reading back committed objects.
#![allow(dead_code)] // each test file uses a different subset

/// 2025-11-25T17:00:00Z.
pub const T0: i64 = 1_764_090_000_000;
pub const HOUR: i64 = 3_600_000;

pub use watershed_testkit::objects::{
    all_keys, committed_objects as final_objects, json_lines as lines,
};

/// The epoch in an object name `<pipeline>-<node>-<epoch>-<seq><ext>`.
pub fn epoch_of(key: &str) -> u64 {
    let name = key.rsplit('/').next().unwrap();
    let stem = name.split('.').next().unwrap();
    let mut parts = stem.rsplitn(3, '-');
    let _seq = parts.next();
    parts.next().unwrap().parse().expect("epoch in the name")
}
