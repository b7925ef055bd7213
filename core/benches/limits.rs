//! Physical limits of this machine, measured beside the registry rows whose targets meet them
//! (issue 12): what one dependent random read from memory costs over a working set as large as
//! the 1M fleet's (a pointer chase), and what a sequential read of as many bytes as a health
//! check's pass over the heartbeat columns costs (4 bytes a worker; 8 bytes, the column's
//! earlier width, kept for comparison with older runs), and the *lock-free floor of a
//! heartbeat*: the same memory accesses as `InMemoryWorkerRegistry::heartbeat` (the shard's id
//! → slot index probed, one `fetch_max` into a 32-bit column word) with no lock at all, on one
//! thread and on two threads over disjoint halves of the fleet, as the `heartbeat_1t` and
//! `heartbeat_2t` rows of `benches/registry.rs` visit it.
//!
//! `cargo bench -p hodei-workers --bench limits` (or `make bench`); fleet sizes from
//! `HODEI_BENCH_SIZES`. Writes `$HODEI_BENCH_OUT/limits.json`.

use std::hash::BuildHasher;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Barrier;
use std::time::Instant;

use hodei_workers::WorkerId;

mod common;

use common::{size_label, sizes, STRIDE};

/// One cache line per node, so that every hop is a line of its own.
#[repr(align(64))]
#[derive(Clone, Copy)]
struct Node {
    next: u32,
}

/// A single random cycle over `n` nodes (Sattolo's algorithm, xorshift numbers).
fn cycle(n: usize) -> Vec<Node> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let j = (x % i as u64) as usize;
        order.swap(i, j);
    }
    let mut nodes = vec![Node { next: 0 }; n];
    for w in 0..n {
        nodes[order[w] as usize].next = order[(w + 1) % n];
    }
    nodes
}

/// Nanoseconds per dependent hop over `lines` cache lines (best of 3 runs of `hops`).
fn chase(lines: usize, hops: usize) -> f64 {
    let nodes = cycle(lines);
    let mut best = f64::INFINITY;
    let mut at = 0u32;
    for _ in 0..3 {
        let started = Instant::now();
        for _ in 0..hops {
            at = nodes[at as usize].next;
        }
        best = best.min(started.elapsed().as_nanos() as f64 / hops as f64);
    }
    black_box(at);
    best
}

/// Microseconds to read `n` words of 8 bytes in order (best of 10 passes).
fn sequential(n: usize) -> f64 {
    let words: Vec<u64> = (0..n as u64).collect();
    best_pass(|| {
        black_box(&words)
            .iter()
            .fold(0u64, |a, w| a.wrapping_add(*w))
    })
}

/// Microseconds to read `n` words of 4 bytes in order (best of 10 passes): the heartbeat
/// column's 32-bit words, what a health check's full pass reads.
fn sequential_4b(n: usize) -> f64 {
    let words: Vec<u32> = (0..n as u32).collect();
    best_pass(|| {
        black_box(&words)
            .iter()
            .fold(0u32, |a, w| a.wrapping_add(*w)) as u64
    })
}

fn best_pass(mut pass: impl FnMut() -> u64) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..10 {
        let started = Instant::now();
        black_box(pass());
        best = best.min(started.elapsed().as_nanos() as f64 / 1e3);
    }
    best
}

/// Shards of the registry (`SHARD_COUNT` in `registry/memory/mod.rs`).
const SHARDS: usize = 64;

/// An empty entry: the nil id's bytes (never a worker), as in the registry's index.
const EMPTY: [u8; 16] = [0; 16];

/// One shard of the lock-free floor: the registry's id → slot index as `registry/idtable.rs`
/// builds it (16-byte id and `u32` slot side by side, linear probing from
/// `hash × size / 2^64` with foldhash, grown by half past load 3/4) and a column of 32-bit
/// words at the same slots (`registry/column.rs`). No lock anywhere.
struct FloorShard {
    entries: Vec<([u8; 16], u32)>,
    column: Vec<AtomicI32>,
    hasher: foldhash::fast::RandomState,
}

impl FloorShard {
    /// A shard holding `ids` at slots `0..`, its table of the size the registry's growth
    /// rule reaches for that many ids.
    fn new(ids: &[WorkerId]) -> FloorShard {
        let mut size = 0usize;
        for len in 0..ids.len() {
            if (len + 1) * 4 > size * 3 {
                size = (size + size / 2).max(16);
            }
        }
        let mut shard = FloorShard {
            entries: vec![(EMPTY, 0); size],
            column: (0..ids.len())
                .map(|_| AtomicI32::new(i32::MIN + 1))
                .collect(),
            hasher: foldhash::fast::RandomState::default(),
        };
        for (slot, id) in ids.iter().enumerate() {
            let mut i = shard.home(id);
            while shard.entries[i].0 != EMPTY {
                i = (i + 1) % size;
            }
            shard.entries[i] = (*id.as_bytes(), slot as u32);
        }
        shard
    }

    #[inline]
    fn home(&self, id: &WorkerId) -> usize {
        ((u128::from(self.hasher.hash_one(id)) * self.entries.len() as u128) >> 64) as usize
    }

    /// The heartbeat's accesses: the probe, then the column's load and `fetch_max`.
    #[inline]
    fn beat(&self, id: &WorkerId, word: i32) -> bool {
        let mut i = self.home(id);
        let slot = loop {
            let (key, slot) = &self.entries[i];
            if key == id.as_bytes() {
                break *slot;
            }
            if *key == EMPTY {
                return false;
            }
            i += 1;
            if i == self.entries.len() {
                i = 0;
            }
        };
        let w = &self.column[slot as usize];
        if w.load(Ordering::Relaxed) == i32::MAX {
            return false;
        }
        w.fetch_max(word, Ordering::Relaxed);
        true
    }
}

/// The registry's shard of an id.
fn shard_of(id: &WorkerId) -> usize {
    let b = id.as_bytes();
    (b[15] ^ b[3]) as usize & (SHARDS - 1)
}

/// Nanoseconds per heartbeat of the lock-free floor over a fleet of `n`: one thread over the
/// whole fleet, and two threads over disjoint halves (aggregate: wall time of the slower thread
/// over every heartbeat of both). Best of 3 runs of `ops` heartbeats each.
fn heartbeat_floor(n: usize, ops: usize) -> (f64, f64) {
    let ids: Vec<WorkerId> = (0..n).map(|_| WorkerId::new()).collect();
    let mut by_shard: Vec<Vec<WorkerId>> = vec![Vec::new(); SHARDS];
    for id in &ids {
        by_shard[shard_of(id)].push(*id);
    }
    let shards: Vec<FloorShard> = by_shard.iter().map(|ids| FloorShard::new(ids)).collect();
    // A monitored word at a fixed offset, as a heartbeat on a clock that stands still.
    let word = i32::MIN + 1 + 60_000;
    let run = |base: usize, len: usize, ops: usize, start: usize| {
        let mut found = 0usize;
        for k in 0..ops {
            let id = &ids[base + (start + k).wrapping_mul(STRIDE) % len];
            found += usize::from(shards[shard_of(id)].beat(id, word));
        }
        assert_eq!(found, ops, "every id of the floor's fleet is found");
    };
    let mut one = f64::INFINITY;
    let mut two = f64::INFINITY;
    for round in 0..3 {
        let started = Instant::now();
        run(0, n, ops, round * ops);
        one = one.min(started.elapsed().as_nanos() as f64 / ops as f64);

        let half = n / 2;
        let barrier = Barrier::new(2);
        let slowest = std::thread::scope(|s| {
            let threads: Vec<_> = (0..2)
                .map(|t| {
                    let (barrier, run) = (&barrier, &run);
                    s.spawn(move || {
                        barrier.wait();
                        let started = Instant::now();
                        run(t * half, half, ops / 2, round * ops);
                        started.elapsed()
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("floor thread"))
                .max()
                .unwrap_or_default()
        });
        two = two.min(slowest.as_nanos() as f64 / (2 * (ops / 2)) as f64);
    }
    black_box(&shards);
    (one, two)
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let sizes = if bench_mode { sizes() } else { vec![1_000] };
    let mut rows = Vec::new();
    for n in sizes {
        // A working set of one line per worker (64 B) is below the fleet's own (~300 B a
        // worker in the library, ~400 B in the naive design): a lower bound of a miss's cost.
        let hop = chase(n, 2_000_000.min(n * 4).max(100_000));
        let seq = sequential(n);
        let seq4 = sequential_4b(n);
        let (floor_1t, floor_2t) = heartbeat_floor(n, 2_000_000.min(n * 4).max(100_000));
        let label = size_label(n);
        println!(
            "limits at {label}: dependent random read {hop:.1} ns over {} MB; sequential read of {} kB: {seq:.1} us, of {} kB: {seq4:.1} us",
            (n * 64) >> 20,
            (n * 8) >> 10,
            (n * 4) >> 10
        );
        println!(
            "limits at {label}: heartbeat without a lock (index probe + column fetch_max) {floor_1t:.1} ns on 1 thread, {floor_2t:.1} ns aggregate on 2"
        );
        rows.push(format!(
            "{{\"size\":\"{label}\",\"chase_ns\":{hop:.2},\"seq_read_us\":{seq:.2},\"seq_read_4b_us\":{seq4:.2},\"heartbeat_floor_1t_ns\":{floor_1t:.2},\"heartbeat_floor_2t_ns\":{floor_2t:.2}}}"
        ));
    }
    if !bench_mode {
        return;
    }
    let dir = std::env::var_os("HODEI_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../target/bench-extra"));
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("limits.json"), format!("[{}]\n", rows.join(","))));
    if let Err(e) = written {
        eprintln!("could not write {}: {e}", dir.display());
    }
}
