//! Helpers shared by the families: stride sets and grid arithmetic.

/// Which stride sets a head may use.
pub const STRIDE_SETS: [&[i64]; 2] = [&[8, 16, 32], &[8, 16, 32, 64]];

/// Σ (h/s)·(w/s) over `strides`, `None` on overflow.
pub fn grid_total(strides: &[i64], h: i64, w: i64) -> Option<i64> {
    strides.iter().try_fold(0i64, |acc, s| {
        (h / s).checked_mul(w / s).and_then(|c| acc.checked_add(c))
    })
}

/// The stride set whose grids add up to `n` for an `h`×`w` input.
pub fn strides_for(n: i64, h: i64, w: i64) -> Option<Vec<i64>> {
    STRIDE_SETS
        .iter()
        .find(|ss| ss.iter().all(|s| h % s == 0 && w % s == 0) && grid_total(ss, h, w) == Some(n))
        .map(|s| s.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_for_huge_sizes_does_not_overflow() {
        let big = 1_000_000_000_000i64; // 1e12: (h/8)*(w/8) overflows i64
        assert_eq!(strides_for(420, big, big), None);
        assert_eq!(strides_for(420, 128, 160), Some(vec![8, 16, 32]));
        assert_eq!(grid_total(&[8, 16, 32], i64::MAX - 7, i64::MAX - 7), None);
    }
}
