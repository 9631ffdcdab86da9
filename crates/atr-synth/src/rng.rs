//! A small deterministic PRNG: xoshiro256** seeded through SplitMix64.
//!
//! Every entity (a member, a practitioner, a list...) draws from its own stream, derived from the
//! configuration seed, a domain tag and the entity's index, so that what one entity looks like does
//! not depend on how many draws another one made.

/// Domain tags of the independent streams.
pub mod stream {
    pub const PAYER: u64 = 1;
    pub const PROVIDER_ORG: u64 = 2;
    pub const PRACTITIONER: u64 = 3;
    pub const LIST: u64 = 4;
    pub const MEMBER: u64 = 5;
}

/// SplitMix64's output function: a good 64-bit mixer.
#[inline]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// xoshiro256** (Blackman and Vigna).
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator seeded from one 64-bit value (expanded with SplitMix64).
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(GOLDEN);
            mix64(x)
        };
        let s = [next(), next(), next(), next()];
        Rng { s }
    }

    /// The stream of entity `index` in `domain` under `seed`.
    pub fn stream(seed: u64, domain: u64, index: u64) -> Self {
        let h =
            mix64(seed ^ mix64(domain.wrapping_mul(GOLDEN) ^ mix64(index.wrapping_add(GOLDEN))));
        Rng::new(h)
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)`.
    #[inline]
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` (`n > 0`), by Lemire's multiply-shift (bias below 2^-32 for our sizes).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    #[inline]
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        debug_assert!(lo <= hi);
        lo + self.below((hi - lo) as u64 + 1) as i64
    }

    /// True with probability `p`.
    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// One element of a non-empty slice.
    #[inline]
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// An index drawn with the given relative weights (not all zero).
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        let mut r = self.below(total);
        for (i, w) in weights.iter().enumerate() {
            let w = u64::from(*w);
            if r < w {
                return i;
            }
            r -= w;
        }
        weights.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_deterministic_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| Rng::stream(42, 1, 7).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rng::stream(42, 1, 7).next_u64(),
            Rng::stream(42, 1, 8).next_u64()
        );
        assert_ne!(
            Rng::stream(42, 1, 7).next_u64(),
            Rng::stream(43, 1, 7).next_u64()
        );
        assert_ne!(
            Rng::stream(42, 1, 7).next_u64(),
            Rng::stream(42, 2, 7).next_u64()
        );
    }

    #[test]
    fn below_and_f64_stay_in_range() {
        let mut r = Rng::new(1);
        for _ in 0..10_000 {
            assert!(r.below(7) < 7);
            let x = r.f64();
            assert!((0.0..1.0).contains(&x));
            let v = r.range(-3, 3);
            assert!((-3..=3).contains(&v));
        }
    }

    #[test]
    fn weighted_follows_weights() {
        let mut r = Rng::new(9);
        let mut counts = [0u32; 3];
        for _ in 0..30_000 {
            counts[r.weighted(&[1, 0, 2])] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!(counts[2] > counts[0]);
    }
}
