//! [`SimRng`]: a small seeded PRNG (xoshiro256**, seeded through SplitMix64) with the draws the
//! simulation needs. No dependency, and the same numbers on every platform for the integer and
//! uniform draws (the exponential and log-normal draws go through `ln`/`exp` of the platform's
//! libm, which is deterministic on one machine).

/// One SplitMix64 step: advances `state` and returns a well-mixed 64-bit value.
///
/// Also a good stateless mixer: `splitmix64(&mut (a ^ b.rotate_left(32)))`.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mixes a seed with a stream tag and an index into one well-spread 64-bit value: the seed of a
/// [`SimRng::keyed`] stream.
pub fn mix(seed: u64, stream: u64, index: u64) -> u64 {
    let mut s = seed;
    let a = splitmix64(&mut s);
    let mut s = a ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    let b = splitmix64(&mut s);
    let mut s = b ^ index.wrapping_mul(0xA076_1D64_78BD_642F);
    splitmix64(&mut s)
}

/// A seeded pseudo-random generator: xoshiro256** (Blackman & Vigna).
///
/// The same seed always gives the same sequence. [`SimRng::keyed`] derives independent streams
/// from `(seed, stream, index)`, so that a component's draws do not depend on the order in
/// which other components drew theirs.
///
/// ```
/// use hodei_workers::sim::SimRng;
/// let mut a = SimRng::new(42);
/// let mut b = SimRng::new(42);
/// assert_eq!(a.next_u64(), b.next_u64());
/// let x = a.uniform();
/// assert!((0.0..1.0).contains(&x));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRng {
    s: [u64; 4],
}

impl SimRng {
    /// A generator seeded with `seed` (expanded by SplitMix64, so 0 is a fine seed).
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let mut s = [0u64; 4];
        for slot in &mut s {
            *slot = splitmix64(&mut sm);
        }
        // xoshiro must not start from all zeros; SplitMix64 never yields four zeros in a row,
        // but be explicit about the promise.
        if s == [0; 4] {
            s[0] = 1;
        }
        SimRng { s }
    }

    /// An independent stream for `(seed, stream, index)`: e.g. the draws of instance number
    /// `index` of the provider.
    pub fn keyed(seed: u64, stream: u64, index: u64) -> Self {
        Self::new(mix(seed, stream, index))
    }

    /// The next 64 random bits.
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

    /// Uniform in `[0, 1)`, with 53 bits of precision.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)` (`lo` when `hi <= lo`).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        if hi <= lo {
            return lo;
        }
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform integer in `[0, n)` (0 when `n == 0`), without modulo bias worth speaking of
    /// (Lemire's multiply-shift).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// `true` with probability `p` (clamped to `[0, 1]`; NaN counts as 0).
    pub fn bernoulli(&mut self, p: f64) -> bool {
        if p.is_nan() || p <= 0.0 {
            // Still consume a draw: a stream's later values must not depend on `p`.
            let _ = self.next_u64();
            return false;
        }
        self.uniform() < p
    }

    /// Exponential with mean `mean` (0 when `mean <= 0`).
    pub fn exponential(&mut self, mean: f64) -> f64 {
        let u = self.uniform();
        if mean.is_nan() || mean <= 0.0 {
            return 0.0;
        }
        // 1 - u is in (0, 1]: ln never sees 0.
        -mean * (1.0 - u).ln()
    }

    /// Normal-ish: the Irwin–Hall sum of 12 uniforms, shifted and scaled to `mean` and `sd`.
    /// Bounded to `mean ± 6 sd` (no pathological tails) and free of transcendental functions.
    pub fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let sum: f64 = (0..12).map(|_| self.uniform()).sum();
        mean + sd * (sum - 6.0)
    }

    /// Log-normal with median `median` and shape `sigma` (the standard deviation of the log):
    /// long right tails, like real boot times and job durations.
    pub fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        median * self.normal(0.0, sigma).exp()
    }

    /// 16 random bytes.
    pub fn bytes16(&mut self) -> [u8; 16] {
        let a = self.next_u64().to_le_bytes();
        let b = self.next_u64().to_le_bytes();
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&a);
        out[8..].copy_from_slice(&b);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // Reference output of SplitMix64 seeded with 0 (Vigna's splitmix64.c).
        let mut s = 0u64;
        assert_eq!(splitmix64(&mut s), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(&mut s), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn same_seed_same_stream_different_seed_different_stream() {
        let a: Vec<u64> = (0..8)
            .scan(SimRng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..8)
            .scan(SimRng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..8)
            .scan(SimRng::new(8), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(SimRng::keyed(1, 2, 3), SimRng::keyed(1, 2, 4));
        assert_ne!(SimRng::keyed(1, 2, 3), SimRng::keyed(1, 3, 3));
    }

    #[test]
    fn draws_have_the_right_moments() {
        let mut r = SimRng::new(1);
        let n = 200_000;
        let mean_u: f64 = (0..n).map(|_| r.uniform()).sum::<f64>() / n as f64;
        assert!((mean_u - 0.5).abs() < 0.01, "{mean_u}");
        let mean_e: f64 = (0..n).map(|_| r.exponential(3.0)).sum::<f64>() / n as f64;
        assert!((mean_e - 3.0).abs() < 0.05, "{mean_e}");
        let xs: Vec<f64> = (0..n).map(|_| r.normal(10.0, 2.0)).collect();
        let m = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n as f64;
        assert!(
            (m - 10.0).abs() < 0.05 && (var.sqrt() - 2.0).abs() < 0.05,
            "{m} {var}"
        );
        assert!(xs.iter().all(|x| (-2.0..=22.0).contains(x)));
        let hits = (0..n).filter(|_| r.bernoulli(0.25)).count() as f64 / n as f64;
        assert!((hits - 0.25).abs() < 0.01, "{hits}");
        assert!(!(0..1000).any(|_| r.bernoulli(0.0)));
        assert!((0..1000).all(|_| r.bernoulli(1.0)));
        assert!((0..1000).all(|_| r.below(7) < 7));
        assert_eq!(r.below(0), 0);
        let mut med: Vec<f64> = (0..n).map(|_| r.log_normal(20.0, 0.5)).collect();
        med.sort_by(f64::total_cmp);
        assert!((med[n / 2] - 20.0).abs() < 0.5, "{}", med[n / 2]);
    }
}
