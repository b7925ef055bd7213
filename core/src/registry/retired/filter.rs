//! [`Filter`]: the cuckoo filter of 16-bit fingerprints in front of the blocks (see the module
//! doc of `retired`).

/// Relocations an insertion into the filter tries before the filter is rebuilt bigger.
const MAX_KICKS: usize = 500;

/// The fewest buckets (of four slots) that hold `n` fingerprints at load 1/2.
pub(super) fn buckets_for(n: usize) -> usize {
    n.div_ceil(2).next_power_of_two().max(MIN_BUCKETS)
}

pub(super) const MIN_BUCKETS: usize = 4;

/// A cuckoo filter of 16-bit fingerprints (0 marks an empty slot): four slots to a bucket,
/// one `u64`; each fingerprint lives in one of two buckets, `i1` from the hash and
/// `i2 = i1 ^ spread(fp)`, so either is found from the other and the fingerprint alone.
#[derive(Debug)]
pub(super) struct Filter {
    pub(super) buckets: Box<[u64]>,
    /// The state of the relocation walk (xorshift).
    walk: u64,
}

const LANES: u64 = 0x0001_0001_0001_0001;
const HIGH: u64 = 0x8000_8000_8000_8000;

impl Filter {
    pub(super) fn with_buckets(n: usize) -> Filter {
        debug_assert!(n.is_power_of_two());
        Filter {
            buckets: vec![0; n].into_boxed_slice(),
            walk: 0x9e37_79b9_7f4a_7c15,
        }
    }

    pub(super) fn slots(&self) -> usize {
        self.buckets.len() * 4
    }

    pub(super) fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    /// Fingerprint and first bucket of hash `h`.
    pub(super) fn place(&self, h: u64, fp_mask: u16) -> (u16, usize) {
        let fp = ((h >> 48) as u16 & fp_mask).max(1);
        (fp, h as usize & self.mask())
    }

    pub(super) fn alt(&self, i: usize, fp: u16) -> usize {
        (i ^ (u64::from(fp).wrapping_mul(0xc6a4_a793_5bd1_e995) >> 17) as usize) & self.mask()
    }

    /// The lowest lane of `bucket` equal to `v`, if any (exact: a borrow only disturbs the
    /// lanes above a lane that is equal).
    pub(super) fn lane_of(bucket: u64, v: u16) -> Option<u32> {
        let x = bucket ^ (u64::from(v) * LANES);
        let zero = x.wrapping_sub(LANES) & !x & HIGH;
        (zero != 0).then(|| zero.trailing_zeros() / 16)
    }

    pub(super) fn may_contain(&self, h: u64, fp_mask: u16) -> bool {
        let (fp, i1) = self.place(h, fp_mask);
        let i2 = self.alt(i1, fp);
        Self::lane_of(self.buckets[i1], fp).is_some()
            || Self::lane_of(self.buckets[i2], fp).is_some()
    }

    pub(super) fn set(&mut self, i: usize, lane: u32, fp: u16) {
        let shift = lane * 16;
        self.buckets[i] = (self.buckets[i] & !(0xffff << shift)) | (u64::from(fp) << shift);
    }

    /// Adds the fingerprint of `h`; false if no room was found (some fingerprint is then lost:
    /// the caller rebuilds).
    pub(super) fn insert(&mut self, h: u64, fp_mask: u16) -> bool {
        let (mut fp, i1) = self.place(h, fp_mask);
        let i2 = self.alt(i1, fp);
        for i in [i1, i2] {
            if let Some(lane) = Self::lane_of(self.buckets[i], 0) {
                self.set(i, lane, fp);
                return true;
            }
        }
        let mut i = if self.walk & 1 == 0 { i1 } else { i2 };
        for _ in 0..MAX_KICKS {
            self.walk ^= self.walk << 13;
            self.walk ^= self.walk >> 7;
            self.walk ^= self.walk << 17;
            let lane = (self.walk % 4) as u32;
            let victim = (self.buckets[i] >> (lane * 16)) as u16;
            self.set(i, lane, fp);
            fp = victim;
            i = self.alt(i, fp);
            if let Some(lane) = Self::lane_of(self.buckets[i], 0) {
                self.set(i, lane, fp);
                return true;
            }
        }
        false
    }

    /// Removes one copy of the fingerprint of `h` (which must have been inserted).
    pub(super) fn remove(&mut self, h: u64, fp_mask: u16) -> bool {
        let (fp, i1) = self.place(h, fp_mask);
        let i2 = self.alt(i1, fp);
        for i in [i1, i2] {
            if let Some(lane) = Self::lane_of(self.buckets[i], fp) {
                self.set(i, lane, 0);
                return true;
            }
        }
        false
    }
}
