//! Conversions of measured quantities into counters, with the truncation
//! spelt out: a float cast saturates (NaN → 0) and a wide integer is capped.

/// `x` as a whole unsigned number, rounded down; negative and NaN → 0,
/// beyond `u64::MAX` → `u64::MAX`.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub fn floor_u64(x: f64) -> u64 {
    x as u64
}

/// `x` as a whole signed number, rounded toward zero, saturating.
#[allow(clippy::cast_possible_truncation)]
pub fn trunc_i64(x: f64) -> i64 {
    x as i64
}

/// `x` as a whole `u32`, rounded down, saturating.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub fn floor_u32(x: f64) -> u32 {
    x as u32
}

/// A `u128` (microseconds, milliseconds) capped to `u64`.
pub fn cap_u64(x: u128) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}

/// A `u128` capped to `i64`.
pub fn cap_i64(x: u128) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_saturate() {
        assert_eq!(floor_u64(-3.5), 0);
        assert_eq!(floor_u64(f64::NAN), 0);
        assert_eq!(floor_u64(2.9), 2);
        assert_eq!(floor_u64(1e30), u64::MAX);
        assert_eq!(trunc_i64(-2.9), -2);
        assert_eq!(floor_u32(1e12), u32::MAX);
        assert_eq!(cap_u64(u128::MAX), u64::MAX);
        assert_eq!(cap_i64(7), 7);
    }
}
