//! A small deterministic random generator: no dependency, the same on every platform.

/// The step of the state per draw.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64 (Steele, Lea and Flood): seeds k-means and the sampling of training prefixes.
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Skips `n` draws: the generator is then where `n` calls of [`SplitMix64::next`] would
    /// have left it (the state is a counter), so a run of draws can start anywhere.
    pub(crate) fn skip(&mut self, n: u64) {
        self.0 = self.0.wrapping_add(n.wrapping_mul(GAMMA));
    }

    /// Uniform in `0..n` (`n >= 1`), by Lemire's multiply-shift (bias below 2^-32 for n < 2^32).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn skipping_n_draws_is_drawing_them(seed in any::<u64>(), n in 0u64..300) {
            let (mut drawn, mut skipped) = (SplitMix64(seed), SplitMix64(seed));
            for _ in 0..n {
                drawn.next();
            }
            skipped.skip(n);
            prop_assert_eq!(drawn.next(), skipped.next());
        }
    }
}
