//! Memory per worker at 1M workers sharing one spec, library and naive baseline.
//!
//! A counting global allocator measures the bytes the registry keeps live (requested sizes:
//! the allocator's own rounding and headers come on top); the resident set size (`VmRSS`
//! from `/proc/self/status`) is reported beside it as the figure the operating system sees.
//! Writes `$HODEI_BENCH_OUT/memory.json`. Fleet size: the largest of `HODEI_BENCH_SIZES`.
// A global allocator is an `unsafe impl`: this bench binary is the one place that needs it.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hodei_workers::{InMemoryWorkerRegistry, ManualClock, WorkerHandle};

/// Counts the bytes currently allocated through it.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the counter is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Resident set size in bytes, if `/proc` tells.
fn rss() -> Option<isize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: isize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Builds a fleet of `n` ready workers with `build`, keeps it alive, and returns
/// `(bytes per worker, rss bytes per worker)`. The handles are made inside the measured
/// section because the registry keeps them (each worker has its own), and given to it by
/// value, as a caller gives them: a copy of each, kept until the fill ends, would leave its
/// freed strings resident (32 B a worker of the resident figure until 2026-12-08, none of it
/// the registry's). The ids vector that `fill` returns is not the registry's and is
/// subtracted.
fn measure<S: Subject>(n: usize, build: impl FnOnce() -> (S, Arc<ManualClock>)) -> (f64, f64) {
    let spec = shared_spec();
    let (before, rss_before) = (live(), rss().unwrap_or(0));
    let (subject, clock) = build();
    let ids = fill(
        &subject,
        &clock,
        handles(n).into_iter(),
        &spec,
        Duration::from_secs(60),
    );
    let ids_bytes = (ids.capacity() * std::mem::size_of_val(&ids[0])) as isize;
    let (after, rss_after) = (live(), rss().unwrap_or(0));
    let per = (after - before - ids_bytes) as f64 / n as f64;
    let rss_per = (rss_after - rss_before - ids_bytes) as f64 / n as f64;
    drop(ids);
    drop(subject);
    (per, rss_per)
}

/// Bytes per worker of the handles alone, as a registry keeps them (one `Arc<WorkerHandle>`
/// each, with its strings): the part of either subject's figure that is the caller's data
/// (`Worker.handle` is shared with every snapshot), not the registry's own.
fn handle_bytes(n: usize) -> f64 {
    let made = handles(n);
    let before = live();
    let kept: Vec<Arc<WorkerHandle>> = made.iter().map(|h| Arc::new(h.clone())).collect();
    let vec_bytes = (kept.capacity() * std::mem::size_of::<Arc<WorkerHandle>>()) as isize;
    let per = (live() - before - vec_bytes) as f64 / n as f64;
    drop(kept);
    per
}

/// Measures one subject in this process and prints `bytes rss_bytes`.
fn child(subject: &str, n: usize) {
    if subject == "handles" {
        println!("{:.1} 0", handle_bytes(n));
        return;
    }
    let (bytes, rss) = match subject {
        "lib" => measure(n, || {
            let clock = Arc::new(ManualClock::new(T0));
            (InMemoryWorkerRegistry::with_clock(clock.clone()), clock)
        }),
        _ => measure(n, || {
            let clock = Arc::new(ManualClock::new(T0));
            (NaiveRegistry::with_clock(clock.clone()), clock)
        }),
    };
    println!("{bytes:.1} {rss:.1}");
}

fn main() {
    // `cargo test --benches` runs this binary without `--bench`: a small fleet keeps it quick.
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let n = if bench_mode {
        sizes().into_iter().max().unwrap_or(1_000_000)
    } else {
        1_000
    };
    if let Ok(subject) = std::env::var("HODEI_MEMORY_SUBJECT") {
        child(&subject, n);
        return;
    }
    // Each subject in a fresh process: the resident set size of the second would otherwise
    // reuse pages the first freed.
    let exe = std::env::current_exe().expect("own path");
    let run = |subject: &str| -> (f64, f64) {
        let out = std::process::Command::new(&exe)
            .args(std::env::args().skip(1))
            .env("HODEI_MEMORY_SUBJECT", subject)
            .output()
            .expect("run the measuring process");
        assert!(
            out.status.success(),
            "memory measurement of {subject} failed"
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut nums = text
            .split_whitespace()
            .map(|t| t.parse::<f64>().expect("number"));
        (nums.next().expect("bytes"), nums.next().expect("rss"))
    };
    let label = size_label(n);
    let (lib, lib_rss) = run("lib");
    let (naive, naive_rss) = run("naive");
    let (handle, _) = run("handles");
    println!("memory per worker at {label} (shared spec, all Ready):");
    println!("  lib   {lib:8.1} B allocated   {lib_rss:8.1} B resident");
    println!("  naive {naive:8.1} B allocated   {naive_rss:8.1} B resident");
    println!("  of which the caller's handle (Arc<WorkerHandle>, in both): {handle:.1} B");
    if !bench_mode {
        return;
    }
    let json = format!(
        "{{\"size\":\"{label}\",\"lib_bytes\":{lib:.1},\"lib_rss_bytes\":{lib_rss:.1},\
         \"naive_bytes\":{naive:.1},\"naive_rss_bytes\":{naive_rss:.1},\
         \"handle_bytes\":{handle:.1}}}\n"
    );
    let dir = std::env::var_os("HODEI_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../target/bench-extra"));
    let written =
        std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join("memory.json"), json));
    if let Err(e) = written {
        eprintln!("could not write {}: {e}", dir.display());
    }
}
