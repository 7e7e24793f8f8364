//! Kinesis sequence numbers compared as the numbers they are.

use std::cmp::Ordering;

/// Compares two Kinesis sequence numbers numerically.
///
/// Sequence numbers are decimal strings of up to 129 digits without leading zeros
/// (`0|[1-9][0-9]{0,128}`), far beyond `u64`/`u128`, and plain string order gets `"9" > "10"`
/// wrong. Without leading zeros a longer number is larger, and numbers of equal length compare
/// digit by digit, which is string order.
pub fn cmp_sequence_numbers(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Compares two positions inside a shard: sequence number first, then the KPL sub-sequence
/// (the index of a user record inside an aggregated Kinesis record).
pub fn cmp_positions(a: (&str, u32), b: (&str, u32)) -> Ordering {
    cmp_sequence_numbers(a.0, b.0).then(a.1.cmp(&b.1))
}

/// True when `s` has the shape Kinesis documents for sequence numbers.
pub fn is_valid_sequence_number(s: &str) -> bool {
    match s.as_bytes() {
        [] => false,
        [b'0'] => true,
        [first, rest @ ..] => {
            (b'1'..=b'9').contains(first)
                && rest.len() <= 128
                && rest.iter().all(u8::is_ascii_digit)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A decimal string without leading zeros, as Kinesis emits them.
    fn sequence_number() -> impl Strategy<Value = String> {
        prop_oneof![Just("0".to_owned()), "[1-9][0-9]{0,128}",]
    }

    /// Numeric comparison of two decimal strings by long subtraction-free reasoning: pad to the
    /// same width with leading zeros, then compare digit strings. Independent of the helper.
    fn reference(a: &str, b: &str) -> Ordering {
        let width = a.len().max(b.len());
        format!("{a:0>width$}").cmp(&format!("{b:0>width$}"))
    }

    #[test]
    fn n3_sequence_numbers_compare_as_numbers_not_strings() {
        assert_eq!(cmp_sequence_numbers("9", "10"), Ordering::Less);
        assert_eq!(cmp_sequence_numbers("100", "99"), Ordering::Greater);
        assert_eq!(cmp_sequence_numbers("0", "1"), Ordering::Less);
        assert_eq!(cmp_sequence_numbers("42", "42"), Ordering::Equal);
        // Larger than u128::MAX (39 digits): still ordered.
        let big = "4".repeat(60);
        let bigger = format!("{big}0");
        assert_eq!(cmp_sequence_numbers(&big, &bigger), Ordering::Less);
    }

    #[test]
    fn n4_sub_sequence_orders_records_sharing_one_sequence_number() {
        assert_eq!(cmp_positions(("5", 1), ("5", 2)), Ordering::Less);
        assert_eq!(cmp_positions(("5", 9), ("10", 0)), Ordering::Less);
    }

    #[test]
    fn n3_only_canonical_decimal_strings_are_valid() {
        assert!(is_valid_sequence_number("0"));
        assert!(is_valid_sequence_number(
            "49590338271490256608559692538361571095921575989136588898"
        ));
        assert!(!is_valid_sequence_number(""));
        assert!(!is_valid_sequence_number("007"));
        assert!(!is_valid_sequence_number("12a"));
        assert!(!is_valid_sequence_number(&format!("1{}", "0".repeat(129))));
    }

    proptest! {
        #[test]
        fn n3_order_matches_numeric_order(a in sequence_number(), b in sequence_number()) {
            prop_assert_eq!(cmp_sequence_numbers(&a, &b), reference(&a, &b));
        }

        #[test]
        fn n3_order_matches_u128_where_it_fits(a in any::<u64>(), b in any::<u64>()) {
            prop_assert_eq!(cmp_sequence_numbers(&a.to_string(), &b.to_string()), a.cmp(&b));
        }

        #[test]
        fn n3_order_is_antisymmetric_and_transitive(
            a in sequence_number(), b in sequence_number(), c in sequence_number()
        ) {
            prop_assert_eq!(cmp_sequence_numbers(&a, &b), cmp_sequence_numbers(&b, &a).reverse());
            if cmp_sequence_numbers(&a, &b) != Ordering::Greater
                && cmp_sequence_numbers(&b, &c) != Ordering::Greater
            {
                prop_assert_ne!(cmp_sequence_numbers(&a, &c), Ordering::Greater);
            }
        }
    }
}
