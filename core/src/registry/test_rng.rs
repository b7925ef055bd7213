//! [`XorShift`]: the seeded generator of the registry's unit tests (reproducible walks without
//! a dependency; proptest drives the property tests).

/// Marsaglia's xorshift64 (13, 7, 17). The seed must not be 0.
pub(super) struct XorShift(pub u64);

impl XorShift {
    /// The next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// The next value below `n` (not 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
