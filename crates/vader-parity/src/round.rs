//! Rounding with CPython semantics.

/// Round `value` to `digits` decimal places the way CPython's `round(x, n)` does:
/// the exact binary value is rounded to `n` decimal digits, correctly rounded with
/// ties to even on the decimal digit, and the result is the nearest `f64` to that
/// decimal. This is not `(x * 10^n).round() / 10^n`, and the difference shows up
/// in this crate's output; the tie cases are pinned by `tie_cases_match_cpython`,
/// and the harness sweeps 10^6 random doubles against Python's `round`.
///
/// The rounding is done exactly in integers. A finite `value` is
/// `m * 2^e` with `m < 2^53`; scaled by `10^digits` that is
/// `m * 10^digits * 2^e`, and for `e < 0` its integer part and the
/// remainder against one half come from a shift of the 128-bit product
/// `m * 10^digits` (below 2^53 * 10^22 < 2^127). Ties go to the even
/// integer `k`. The result is `k / 10^digits` in f64: both operands are
/// exact (k < 2^53 + 1, 10^digits <= 10^22), so IEEE division returns the
/// nearest f64 to the decimal, which is what parsing that decimal returns.
/// The sign is copied over, so a negative value rounding to zero gives
/// `-0.0` as Python does. Values of at least 2^52 are integers and are
/// returned as they are; NaN and the infinities, and digit counts over
/// 22, take the original formatting path, which
/// `matches_the_formatting_implementation` compares against on random and
/// edge values.
pub(crate) fn python_round(value: f64, digits: usize) -> f64 {
    /// 10^0 through 10^22, each exact in f64 too.
    const POW10: [u128; 23] = [
        1,
        10,
        100,
        1000,
        10000,
        100000,
        1000000,
        10000000,
        100000000,
        1000000000,
        10000000000,
        100000000000,
        1000000000000,
        10000000000000,
        100000000000000,
        1000000000000000,
        10000000000000000,
        100000000000000000,
        1000000000000000000,
        10000000000000000000,
        100000000000000000000,
        1000000000000000000000,
        10000000000000000000000,
    ];
    let Some(&scale) = POW10.get(digits) else {
        return python_round_formatted(value, digits);
    };
    if !value.is_finite() {
        return python_round_formatted(value, digits);
    }
    let bits = value.to_bits();
    let biased = ((bits >> 52) & 0x7FF) as i32;
    let fraction = bits & ((1_u64 << 52) - 1);
    // value = mantissa * 2^exponent exactly.
    let (mantissa, exponent) = if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1_u64 << 52), biased - 1075)
    };
    if exponent >= 0 {
        return value; // an integer already (or zero)
    }
    let shift = exponent.unsigned_abs();
    let product = u128::from(mantissa) * scale;
    // product < 2^127, so from a shift of 128 on the scaled value is below
    // one half and rounds to zero.
    let k = if shift >= 128 {
        0
    } else {
        let whole = product >> shift;
        let rest = product & ((1_u128 << shift) - 1);
        let half = 1_u128 << (shift - 1);
        if rest > half || (rest == half && (whole & 1) == 1) {
            whole + 1
        } else {
            whole
        }
    };
    // k <= value * 10^digits + 1 < 2^53 * 10^22: exact in f64 only when
    // below 2^53, which holds for every |value| < 2^52 / 10^digits; beyond
    // that, fall back rather than reason about it.
    if k >= (1_u128 << 53) {
        return python_round_formatted(value, digits);
    }
    let magnitude = (k as f64) / (scale as f64);
    magnitude.copysign(value)
}

/// The original implementation: Rust's fixed-precision float formatting
/// performs exactly that decimal rounding (correctly rounded, ties to even,
/// over the exact binary value), and `parse` returns the nearest `f64`, so
/// the composition is CPython's `round`.
fn python_round_formatted(value: f64, digits: usize) -> f64 {
    // The fallback cannot be reached: fixed-point formatting of a finite f64
    // always yields a parseable decimal, and every value this crate rounds is
    // finite by construction.
    format!("{value:.digits$}").parse::<f64>().unwrap_or(value)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::{python_round, python_round_formatted};
    use proptest::prelude::*;

    fn same(value: f64, digits: usize) -> bool {
        let fast = python_round(value, digits);
        let slow = python_round_formatted(value, digits);
        fast.to_bits() == slow.to_bits() || (fast.is_nan() && slow.is_nan())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// Any f64 bit pattern, any digit count the crate could ask for.
        #[test]
        fn matches_the_formatting_implementation_on_any_bits(bits in any::<u64>(), digits in 0_usize..=25) {
            let value = f64::from_bits(bits);
            prop_assert!(same(value, digits), "{value:e} ({bits:#x}) at {digits}");
        }

        /// The crate's own range: proportions in [0, 1], compounds in [-1, 1].
        #[test]
        fn matches_the_formatting_implementation_in_range(value in -1.0_f64..=1.0, digits in 3_usize..=4) {
            prop_assert!(same(value, digits), "{value:e} at {digits}");
        }

        /// Near decimal ties: k.5 / 10^digits and its neighbours.
        #[test]
        fn matches_the_formatting_implementation_near_ties(k in 0_u64..200_000, digits in 0_usize..=6, ulps in -3_i64..=3, negative in any::<bool>()) {
            let tie = (k as f64 + 0.5) / 10_f64.powi(digits as i32);
            let value = f64::from_bits(tie.to_bits().wrapping_add_signed(ulps));
            let value = if negative { -value } else { value };
            prop_assert!(same(value, digits), "{value:e} at {digits}");
        }
    }

    #[test]
    fn matches_the_formatting_implementation_on_edges() {
        let mut values = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            -0.5,
            1.5,
            2.5,
            0.0625,
            0.000_05,
            2.675,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            f64::from_bits(1),
            -f64::from_bits(1),
            f64::MAX,
            f64::MIN,
            f64::EPSILON,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            4_503_599_627_370_496.0,
            4_503_599_627_370_495.5,
            9_007_199_254_740_993.0,
            1.0e-300,
            1.0e300,
            0.9999,
            0.99995,
            0.999_95,
            0.99949999,
            0.0005,
            0.00049999,
            1e15,
            1e16,
            1e17,
            123_456.789_012_5,
        ];
        for k in 0..=10_000_u32 {
            values.push(f64::from(k) / 10_000.0);
            values.push(f64::from(k) / 20_000.0);
            values.push(-f64::from(k) / 2_000.0);
        }
        for value in values {
            for digits in 0..=25 {
                assert!(same(value, digits), "{value:e} at {digits}");
                let next = f64::from_bits(value.to_bits().wrapping_add(1));
                assert!(same(next, digits), "{next:e} at {digits}");
                let prev = f64::from_bits(value.to_bits().wrapping_sub(1));
                assert!(same(prev, digits), "{prev:e} at {digits}");
            }
        }
    }

    #[test]
    fn tie_cases_match_cpython() {
        // Python: round(0.0625, 3) == 0.062 (exact tie, half to even)
        assert_eq!(python_round(0.0625, 3).to_bits(), 0.062_f64.to_bits());
        // Python: round(2.675, 2) == 2.67 (2.675 is below the tie in binary)
        assert_eq!(python_round(2.675, 2).to_bits(), 2.67_f64.to_bits());
        // Python: round(0.25, 1) == 0.2, round(0.75, 1) == 0.8
        assert_eq!(python_round(0.25, 1).to_bits(), 0.2_f64.to_bits());
        assert_eq!(python_round(0.75, 1).to_bits(), 0.8_f64.to_bits());
        // Python: round(0.00005, 4) == 0.0001 (binary value sits above the tie)
        assert_eq!(python_round(0.000_05, 4).to_bits(), 0.0001_f64.to_bits());
    }

    #[test]
    fn negative_zero_is_preserved() {
        // Python: round(-0.00004, 3) == -0.0
        let rounded = python_round(-0.000_04, 3);
        assert_eq!(rounded.to_bits(), (-0.0_f64).to_bits());
    }

    #[test]
    fn passthrough_of_representable_values() {
        assert_eq!(python_round(0.4404, 4).to_bits(), 0.4404_f64.to_bits());
        assert_eq!(python_round(-0.6597, 4).to_bits(), (-0.6597_f64).to_bits());
        assert_eq!(python_round(0.0, 4).to_bits(), 0.0_f64.to_bits());
        assert_eq!(python_round(1.0, 4).to_bits(), 1.0_f64.to_bits());
        assert_eq!(python_round(-1.0, 4).to_bits(), (-1.0_f64).to_bits());
    }
}
