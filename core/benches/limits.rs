//! Physical limits of this machine, measured beside the registry rows whose targets meet them
//! (issue 12): what one dependent random read from memory costs over a working set as large as
//! the 1M fleet's (a pointer chase), and what a sequential read of as many bytes as a health
//! check's pass over the heartbeat columns costs (4 bytes a worker; 8 bytes, the column's
//! earlier width, kept for comparison with older runs).
//!
//! `cargo bench -p hodei-workers --bench limits` (or `make bench`); fleet sizes from
//! `HODEI_BENCH_SIZES`. Writes `$HODEI_BENCH_OUT/limits.json`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

mod common;

use common::{size_label, sizes};

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
        let label = size_label(n);
        println!(
            "limits at {label}: dependent random read {hop:.1} ns over {} MB; sequential read of {} kB: {seq:.1} us, of {} kB: {seq4:.1} us",
            (n * 64) >> 20,
            (n * 8) >> 10,
            (n * 4) >> 10
        );
        rows.push(format!(
            "{{\"size\":\"{label}\",\"chase_ns\":{hop:.2},\"seq_read_us\":{seq:.2},\"seq_read_4b_us\":{seq4:.2}}}"
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
