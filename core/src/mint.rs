//! The ids [`WorkerId::new`](crate::WorkerId::new) mints: UUID v4 whose 122 random-looking bits
//! are a keyed permutation of a per-process counter, so that this process can tell its own ids
//! (and their counters) from any other id.
//!
//! # Why
//! A registry refuses ids it retired (invariant 5), so every `register` asks its retired set
//! about a fresh id, and every `unregister` files one there. For the ids of a process's own
//! counter the retired set keeps a bitmap by counter (`registry/retired.rs`) instead of a hash
//! filter and position tables: a bit per counter in a window of recent counters, a few cache
//! lines where the filter was a cache miss in 4 MiB.
//!
//! # The permutation
//! The 122 bits are a 4-round balanced Feistel network over two 61-bit halves, keyed per
//! process from the system's random source: the plaintext is `(counter, TAG)`, `TAG` a 61-bit
//! constant of the key. Being a permutation of distinct counters, the ids never repeat within
//! a process (random ids repeat with probability 2^-122 a pair); across processes the keys
//! differ, so ids collide about as random ids do. The round function mixes every input bit
//! into every output bit, so the ids spread like random ids (the shards and hash tables see
//! no pattern).
//!
//! **Not secrets.** The round function is one multiply and a fold, chosen for speed
//! (`register` and `unregister` each decode an id), not a cryptographic function: someone who
//! collects many ids of one process might work out its key and predict the next ones. A
//! worker id is an identifier, as it always was in logs, events, metrics and the PostgreSQL
//! tables, never a credential: a host that lets agents report in by id authenticates them by
//! other means. A caller that wants ids from a cryptographic source makes its own
//! (`WorkerId::parse` of any v4 text, or a handle built with one); the registry treats them
//! exactly, through the filter.
//!
//! # What [`decode`] promises (the only thing the retired set relies on)
//! `decode` is a deterministic function of the id's 16 bytes: the same id always decodes the
//! same way, `decode(mint(c)) == Some(c)`, and any other id (another process's, a caller's
//! choice) decodes to `None` except with probability 2^-61 (its plaintext's second half must
//! equal `TAG`) — and then to some counter, which is harmless: the retired set is exact for
//! *every* id that decodes, whatever its origin, because it files and looks up such an id by
//! the counter it decodes to, and the map from id to counter is injective (a permutation).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use uuid::Uuid;

/// Bits in each Feistel half.
const HALF: u32 = 61;
const MASK: u64 = (1 << HALF) - 1;
const ROUNDS: usize = 4;

/// Counters are taken from the shared counter in blocks of this many per thread: the ids of
/// one thread still ascend, and threads minting at once do not share a cache line per id.
const RESERVE: u64 = 256;

/// Counters below this bound are minted (a 61-bit half); past it (2^61 ids, never in
/// practice) `WorkerId::new` falls back to plain random ids.
const LIMIT: u64 = 1 << HALF;

struct Key {
    rounds: [u64; ROUNDS],
    tag: u64,
}

fn key() -> &'static Key {
    static KEY: OnceLock<Key> = OnceLock::new();
    KEY.get_or_init(|| {
        // Outside the hot path: the key is made once per process.
        let a = Uuid::new_v4().as_u128();
        let b = Uuid::new_v4().as_u128();
        Key {
            rounds: [a as u64, (a >> 64) as u64, b as u64, (b >> 64) as u64],
            tag: mix(a as u64 ^ (b >> 64) as u64 ^ 0x9e37_79b9_7f4a_7c15) & MASK,
        }
    })
}

/// A 64-bit finaliser (MurmurHash3's fmix64): every input bit reaches every output bit.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// The round function: one multiply, whose high half is folded onto the low (every input
/// bit then reaches every output bit), keyed by `k`. Cheap on purpose: `register` and
/// `unregister` each decode an id (four of these in a dependency chain).
#[inline]
fn round(k: u64, x: u64) -> u64 {
    let y = u128::from(x ^ k) * 0x9e37_79b9_7f4a_7c15;
    ((y >> 64) as u64 ^ y as u64) & MASK
}

static NEXT: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's reserved counters: `(next, end)`.
    static RESERVED: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

fn next_counter() -> u64 {
    RESERVED.with(|r| {
        let (mut next, mut end) = r.get();
        if next == end {
            next = NEXT.fetch_add(RESERVE, Ordering::Relaxed);
            end = next + RESERVE;
        }
        r.set((next + 1, end));
        next
    })
}

/// A fresh id of this process's counter (a random one past 2^61 ids).
pub(crate) fn mint() -> Uuid {
    let counter = next_counter();
    if counter >= LIMIT {
        return Uuid::new_v4();
    }
    encode(counter)
}

/// The id of `counter` (below 2^61).
pub(crate) fn encode(counter: u64) -> Uuid {
    debug_assert!(counter < LIMIT);
    let key = key();
    let (mut l, mut r) = (counter, key.tag);
    for k in key.rounds {
        (l, r) = (r, l ^ round(k, r));
    }
    let v = (u128::from(l) << HALF) | u128::from(r);
    // 122 bits around the version nibble (4) and the variant bits (0b10).
    let hi48 = v >> 74;
    let mid12 = (v >> 62) & 0xfff;
    let lo62 = v & ((1 << 62) - 1);
    Uuid::from_u128((hi48 << 80) | (0x4 << 76) | (mid12 << 64) | (0b10 << 62) | lo62)
}

/// The counter `id` was minted from, if it decodes as this process's (see the module doc).
#[inline]
pub(crate) fn decode(id: &Uuid) -> Option<u64> {
    let u = id.as_u128();
    if (u >> 76) & 0xf != 0x4 || (u >> 62) & 0b11 != 0b10 {
        return None;
    }
    let v = ((u >> 80) << 74) | (((u >> 64) & 0xfff) << 62) | (u & ((1 << 62) - 1));
    let key = key();
    let (mut l, mut r) = ((v >> HALF) as u64, v as u64 & MASK);
    for k in key.rounds.iter().rev() {
        (l, r) = (r ^ round(*k, l), l);
    }
    (r == key.tag).then_some(l)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn minted_ids_are_distinct_v4_uuids_that_decode_to_their_counter() {
        let mut seen = HashSet::new();
        for c in (0..20_000u64).chain([LIMIT - 1, 1 << 40, 12_345_678_901]) {
            let id = encode(c);
            assert_eq!(id.get_version_num(), 4);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            assert_eq!(decode(&id), Some(c));
            assert!(seen.insert(id));
        }
        let a = mint();
        let b = mint();
        assert_ne!(a, b);
        assert!(decode(&a).is_some() && decode(&b).is_some());
    }

    #[test]
    fn other_ids_do_not_decode() {
        // Random v4 ids (another process's, or drawn by a caller) fail the tag check (all but
        // 2^-61 of them); a minted id with a bit flipped anywhere fails too.
        for _ in 0..10_000 {
            assert_eq!(decode(&Uuid::new_v4()), None);
        }
        let id = encode(77).as_u128();
        for bit in 0..128 {
            let flipped = Uuid::from_u128(id ^ (1 << bit));
            assert_ne!(decode(&flipped), Some(77), "bit {bit}");
        }
        assert_eq!(decode(&Uuid::nil()), None);
        assert_eq!(decode(&Uuid::max()), None);
    }

    #[test]
    fn minted_ids_spread_over_the_shard_bytes() {
        // The registry picks a shard from bytes 3 and 15: consecutive counters must not
        // cluster there (64 shards, 64,000 ids: about 1000 each).
        let mut shards = [0u32; 64];
        for c in 0..64_000u64 {
            let b = encode(c).into_bytes();
            shards[((b[15] ^ b[3]) & 63) as usize] += 1;
        }
        assert!(
            shards.iter().all(|&n| (800..1200).contains(&n)),
            "{shards:?}"
        );
    }
}
