use super::*;
use proptest::prelude::*;

/// Rule: the hash is XXH3-64 with seed 0, the published algorithm: the empty input hashes to
/// the reference implementation's value.
#[test]
fn the_hash_is_xxh3_64_with_seed_0() {
    assert_eq!(key_hash(""), 0x2D06_8005_38D3_94C2);
    assert_eq!(key_hash(&()), key_hash(""));
}

/// Rule: the encoding of each kind of key is the one [`KeyBytes`] documents.
#[test]
fn key_bytes_follow_the_documented_encoding() {
    assert_eq!(key_bytes("ab"), b"ab");
    assert_eq!(key_bytes(&b"ab".to_vec()), b"ab");
    assert_eq!(key_bytes(&bytes::Bytes::from_static(b"ab")), b"ab");
    assert_eq!(key_bytes(&258u16), [2, 1]);
    assert_eq!(key_bytes(&-1i32), [0xff; 4]);
    assert_eq!(key_bytes(&7usize), key_bytes(&7u64));
    assert_eq!(key_bytes(&true), [1]);
    assert_eq!(key_bytes(&'A'), [65, 0, 0, 0]);
    assert_eq!(key_bytes(&None::<u8>), [0]);
    assert_eq!(key_bytes(&Some(5u8)), [1, 5]);
    assert_eq!(
        key_bytes(&("a", 1u8)),
        [1, 0, 0, 0, 0, 0, 0, 0, b'a', 1, 0, 0, 0, 0, 0, 0, 0, 1]
    );
    assert_eq!(key_bytes(&[1u8, 2]), key_bytes(&(1u8, 2u8)));
    assert_ne!(key_bytes(&("ab", "c")), key_bytes(&("a", "bc")));
    assert_eq!(key_bytes(&Arc::new("x".to_string())), b"x");
}

/// Rule (golden values): the hash and key group (of 128) of these keys never change. A failure
/// here means keys would move to other key groups and restored state would not meet them:
/// never update these numbers without a checkpoint migration.
#[test]
fn golden_hashes_and_key_groups_never_change() {
    let keys: Vec<(&str, Vec<u8>)> = vec![
        ("\"\"", key_bytes("")),
        ("\"page-1\"", key_bytes("page-1")),
        ("\"Ünïcode\"", key_bytes("Ünïcode")),
        ("0u64", key_bytes(&0u64)),
        ("42u64", key_bytes(&42u64)),
        ("-7i64", key_bytes(&-7i64)),
        ("1u32", key_bytes(&1u32)),
        ("true", key_bytes(&true)),
        ("Some(3u64)", key_bytes(&Some(3u64))),
        ("(1u64, \"x\")", key_bytes(&(1u64, "x"))),
        ("[1u16, 2, 3]", key_bytes(&[1u16, 2, 3])),
    ];
    let golden: [(u64, u16); 11] = GOLDEN;
    for ((name, bytes), (hash, group)) in keys.iter().zip(golden) {
        let h = twox_hash::XxHash3_64::oneshot_with_seed(0, bytes);
        assert_eq!(h, hash, "hash of {name}");
        assert_eq!((h % 128) as u16, group, "key group of {name}");
    }
    assert_eq!(key_group_of("page-1", 128), golden[1].1);
    assert_eq!(key_group_of(&42u64, 128), golden[4].1);
}

const GOLDEN: [(u64, u16); 11] = [
    (0x2d06_8005_38d3_94c2, 66),
    (0x38b7_a6ee_b9d7_f4fd, 125),
    (0xecd2_f4ac_cd33_db30, 48),
    (0xc77b_3abb_6f87_acd9, 89),
    (0xd5a6_f8c8_38df_27c8, 72),
    (0xcded_dd5c_0859_7fb4, 52),
    (0xdb02_334e_96d6_5708, 8),
    (0xe12e_f9d2_eb86_ceeb, 107),
    (0xe0dc_1e7b_2fc0_50ab, 43),
    (0x3ea0_dc89_ed14_1745, 69),
    (0x4043_6841_f999_41b4, 52),
];

/// Rule: with 128 groups and parallelism 3, instances own 0..=42, 43..=85 and 86..=127, as in
/// Flink.
#[test]
fn ranges_match_flinks_for_128_groups_at_parallelism_3() {
    let ranges: Vec<String> = (0..3)
        .map(|i| KeyGroupRange::for_instance(128, 3, i).to_string())
        .collect();
    assert_eq!(ranges, ["0..=42", "43..=85", "86..=127"]);
    assert_eq!(instance_of_group(42, 128, 3), 0);
    assert_eq!(instance_of_group(43, 128, 3), 1);
}

proptest! {
    /// Rule: for any `1 <= p <= max <= 32768`, the instances' ranges cover every key group
    /// exactly once, in order, and the instance a group is routed to is the one whose range
    /// holds it.
    #[test]
    fn ranges_cover_every_group_exactly_once_and_agree_with_routing(
        max in 1usize..=MAX_MAX_PARALLELISM,
        p_seed in any::<usize>(),
    ) {
        let p = 1 + p_seed % max;
        let mut next = 0usize;
        for i in 0..p {
            let r = KeyGroupRange::for_instance(max, p, i);
            prop_assert_eq!(usize::from(r.first()), next, "instance {} starts where {} ended", i, i.wrapping_sub(1));
            prop_assert!(r.first() <= r.last());
            // Checking both ends and a middle keeps the test fast at max 32768.
            let mid = r.first() + (r.last() - r.first()) / 2;
            for g in [r.first(), mid, r.last()] {
                prop_assert_eq!(instance_of_group(g, max, p), i);
            }
            next = usize::from(r.last()) + 1;
        }
        prop_assert_eq!(next, max);
    }

    /// Rule: every group of a small configuration is routed to the instance whose range
    /// holds it (exhaustive over groups).
    #[test]
    fn routing_agrees_with_ranges_for_every_group(max in 1usize..=600, p_seed in any::<usize>()) {
        let p = 1 + p_seed % max;
        for g in 0..max {
            let i = instance_of_group(g as u16, max, p);
            prop_assert!(i < p);
            prop_assert!(KeyGroupRange::for_instance(max, p, i).contains(g as u16));
        }
    }

    /// Rule: a key's group is below max and the same as its hash modulo max.
    #[test]
    fn a_keys_group_is_its_hash_modulo_max(key in any::<u64>(), max in 1usize..=MAX_MAX_PARALLELISM) {
        let g = key_group_of(&key, max);
        prop_assert!(usize::from(g) < max);
        prop_assert_eq!(u64::from(g), key_hash(&key) % max as u64);
    }
}
