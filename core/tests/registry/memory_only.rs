//! Tests of this binary that the other backends do not include: they exercise no registry
//! backend at all (the clock), or what only the in-memory registry has. Everything about
//! behaviour that a `WorkerRegistry` promises belongs in the shared modules instead.

use std::sync::Arc;

use hodei_workers::*;

// The clock, not a registry: the same for every backend, so it runs here only.
#[test]
fn system_clock_never_goes_backwards_across_threads() {
    use std::sync::Mutex;
    let clock = Arc::new(SystemClock::new());
    // Each thread checks its own readings, and every reading is also checked against the
    // latest one of any thread, taken under one lock: the order the lock imposes is a real
    // order in time, so a reading may never be below one taken before it.
    let latest = Arc::new(Mutex::new(clock.now()));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let clock = Arc::clone(&clock);
            let latest = Arc::clone(&latest);
            std::thread::spawn(move || {
                let mut own = 0;
                for i in 0..20_000 {
                    let now = clock.now();
                    assert!(now >= own, "a thread's clock went back: {own} -> {now}");
                    own = now;
                    if i % 16 == 0 {
                        let mut last = latest.lock().unwrap();
                        let now = clock.now();
                        assert!(now >= *last, "clock went back: {} -> {now}", *last);
                        *last = now;
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Shared by copy too: two copies of one clock agree on the order.
    let copy = *clock;
    let a = clock.now();
    let b = copy.now();
    assert!(b >= a);
}

// ---- The slab of the in-memory registry (issue 12) ----
//
// Records live in per-shard slabs at reused slots, found through an id → slot index. These
// tests pick ids that all fall in one shard (the shard is chosen from bytes 3 and 15 of the
// id; both are zero here), so that every unregister frees a slot the next register takes.
// Were the shard function to change, the tests would still hold, only less sharply.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use proptest::prelude::*;

/// The `n`-th id of one shard.
fn same_shard_id(n: u64) -> WorkerId {
    let mut bytes = [0u8; 16];
    bytes[4..12].copy_from_slice(&(n + 1).to_be_bytes());
    WorkerId::from_bytes(bytes).expect("not nil")
}

fn handle_for(id: WorkerId) -> WorkerHandle {
    let mut handle = WorkerHandle::new(
        ProviderId::new("slab").expect("provider id"),
        ProviderType::Docker,
        "c",
    );
    handle.worker_id = id;
    handle
}

/// One step of the slab property test.
#[derive(Debug, Clone)]
enum SlabOp {
    /// Registers the next id and moves it to `Connecting` (heartbeat-monitored).
    Register,
    /// Unregisters the live worker picked by the selector.
    Unregister(usize),
    /// Heartbeats the worker (live or retired) picked among every id ever registered.
    Heartbeat(usize),
    /// Moves the clock.
    Advance(u16),
    /// Registers this many more (moved to `Connecting`): the shard's structures grow.
    Grow(u8),
    /// Unregisters live workers (from the selector on) until this share in 256 of them is
    /// left: the shard's structures shrink (clarified 2026-12-07), its free tail is cut.
    Cull(u8, usize),
}

fn slab_ops() -> impl Strategy<Value = Vec<SlabOp>> {
    prop::collection::vec(
        prop_oneof![
            3 => Just(SlabOp::Register),
            2 => any::<usize>().prop_map(SlabOp::Unregister),
            4 => any::<usize>().prop_map(SlabOp::Heartbeat),
            2 => (1u16..2_000).prop_map(SlabOp::Advance),
            1 => (1u8..100).prop_map(SlabOp::Grow),
            1 => (any::<u8>(), any::<usize>()).prop_map(|(keep, at)| SlabOp::Cull(keep, at)),
        ],
        1..120,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Slot reuse never resurrects an old worker: after any sequence of registrations,
    /// unregistrations (whose slots the next registrations take) and heartbeats to live and
    /// retired ids, a retired id is `NotFound` for `get`, `heartbeat` and `update_state`, its
    /// heartbeat changes no live worker, and every live worker's last heartbeat and the
    /// health check's answer are exactly the model's. Also across shrinks and regrowth
    /// (`Grow`, `Cull`; clarified 2026-12-07): the shard's index rehashed smaller, its free
    /// tail cut off and made again.
    #[test]
    fn slot_reuse_never_lets_a_stale_id_reach_the_new_occupant(ops in slab_ops()) {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let registry = InMemoryWorkerRegistry::with_clock(clock.clone());
        let spec = Arc::new(WorkerSpec::new("img"));
        // Live workers and their last heartbeat; every id ever registered, in order.
        let mut live: BTreeMap<WorkerId, u64> = BTreeMap::new();
        let mut ever: Vec<WorkerId> = Vec::new();
        let mut retired: BTreeSet<WorkerId> = BTreeSet::new();
        for op in &ops {
            match *op {
                SlabOp::Register => {
                    let id = same_shard_id(ever.len() as u64);
                    registry.register(handle_for(id), Arc::clone(&spec)).unwrap();
                    let w = registry.update_state(&id, WorkerState::Connecting).unwrap();
                    live.insert(id, w.last_heartbeat);
                    ever.push(id);
                }
                SlabOp::Grow(n) => {
                    for _ in 0..n {
                        let id = same_shard_id(ever.len() as u64);
                        registry.register(handle_for(id), Arc::clone(&spec)).unwrap();
                        let w = registry.update_state(&id, WorkerState::Connecting).unwrap();
                        live.insert(id, w.last_heartbeat);
                        ever.push(id);
                    }
                }
                SlabOp::Cull(keep, at) => {
                    let keep = live.len() * usize::from(keep) / 256;
                    let mut k = at;
                    while live.len() > keep {
                        k = k.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        let id = *live.keys().nth((k >> 33) % live.len()).unwrap();
                        let w = registry.unregister(&id, TerminationReason::Requested).unwrap();
                        prop_assert_eq!(w.last_heartbeat, live[&id]);
                        live.remove(&id);
                        retired.insert(id);
                    }
                }
                SlabOp::Unregister(k) => {
                    if live.is_empty() {
                        continue;
                    }
                    let id = *live.keys().nth(k % live.len()).unwrap();
                    let w = registry.unregister(&id, TerminationReason::Requested).unwrap();
                    prop_assert_eq!(w.last_heartbeat, live[&id]);
                    live.remove(&id);
                    retired.insert(id);
                }
                SlabOp::Heartbeat(k) => {
                    if ever.is_empty() {
                        continue;
                    }
                    let id = ever[k % ever.len()];
                    if retired.contains(&id) {
                        prop_assert_eq!(registry.heartbeat(&id), Err(Error::NotFound(id)));
                    } else {
                        registry.heartbeat(&id).unwrap();
                        live.insert(id, clock.now());
                    }
                }
                SlabOp::Advance(ms) => {
                    clock.advance(Duration::from_millis(u64::from(ms)));
                }
            }
            for id in &retired {
                prop_assert_eq!(registry.get(id).unwrap(), None);
                prop_assert_eq!(
                    registry.update_state(id, WorkerState::Ready).unwrap_err(),
                    Error::NotFound(*id)
                );
            }
            for (id, beat) in &live {
                let w = registry.get(id).unwrap().expect("live worker");
                prop_assert_eq!(w.id, *id);
                prop_assert_eq!(w.last_heartbeat, *beat);
            }
            prop_assert_eq!(registry.count().unwrap(), live.len());
            let timeout = Duration::from_millis(1_500);
            let cutoff = clock.now().saturating_sub(1_500);
            let unhealthy: BTreeSet<WorkerId> = registry
                .find_unhealthy(timeout)
                .unwrap()
                .into_iter()
                .map(|w| w.id)
                .collect();
            let expected: BTreeSet<WorkerId> = live
                .iter()
                .filter(|(_, beat)| **beat < cutoff)
                .map(|(id, _)| *id)
                .collect();
            prop_assert_eq!(unhealthy, expected);
        }
    }
}

/// Heartbeats racing unregister and slot reuse: threads heartbeat (and health-check) a set of
/// workers, with the clock moving, while another thread unregisters them one by one and
/// registers new workers in the same shard, which take the freed slots. Nobody heartbeats the
/// new workers: a heartbeat that reached a reused slot would move a new worker's last
/// heartbeat, which the end checks. Every racing call answers `Ok` or `NotFound`.
#[test]
fn heartbeats_racing_unregister_and_slot_reuse_never_reach_a_new_worker() {
    const OLD: u64 = 3_000;
    let clock = Arc::new(ManualClock::new(1_000_000));
    let registry = InMemoryWorkerRegistry::with_clock(clock.clone());
    let spec = Arc::new(WorkerSpec::new("img"));
    let old: Vec<WorkerId> = (0..OLD)
        .map(|n| {
            let id = same_shard_id(n);
            registry
                .register(handle_for(id), Arc::clone(&spec))
                .unwrap();
            registry.update_state(&id, WorkerState::Connecting).unwrap();
            id
        })
        .collect();
    let done = AtomicBool::new(false);
    let fresh: Vec<(WorkerId, u64)> = std::thread::scope(|s| {
        for t in 0..3usize {
            let (old, registry, clock, done) = (&old, &registry, &clock, &done);
            s.spawn(move || {
                let mut rounds = 0u32;
                // At least two full rounds, and on until the churner is done.
                while rounds < 2 || !done.load(Ordering::Acquire) {
                    for id in old.iter().skip(t).step_by(3) {
                        clock.advance(Duration::from_millis(1));
                        match registry.heartbeat(id) {
                            Ok(()) | Err(Error::NotFound(_)) => {}
                            Err(e) => panic!("heartbeat: {e}"),
                        }
                    }
                    if t == 0 {
                        // A health check racing too: reads the column beside the heartbeats.
                        registry.find_unhealthy(Duration::from_millis(5)).unwrap();
                    }
                    rounds += 1;
                }
            });
        }
        let mut fresh = Vec::new();
        for (n, id) in old.iter().enumerate() {
            registry
                .unregister(id, TerminationReason::Requested)
                .unwrap();
            let new_id = same_shard_id(OLD + n as u64);
            registry
                .register(handle_for(new_id), Arc::clone(&spec))
                .unwrap();
            let w = registry
                .update_state(&new_id, WorkerState::Connecting)
                .unwrap();
            fresh.push((new_id, w.last_heartbeat));
        }
        done.store(true, Ordering::Release);
        fresh
    });
    for (id, at) in &fresh {
        let w = registry.get(id).unwrap().expect("new worker");
        assert_eq!(w.last_heartbeat, *at, "a stale heartbeat reached {id}");
    }
    for id in &old {
        assert_eq!(registry.heartbeat(id), Err(Error::NotFound(*id)));
        assert_eq!(registry.get(id).unwrap(), None);
    }
    assert_eq!(registry.count().unwrap(), fresh.len());
    // The health check sees exactly the new workers once they are silent long enough.
    clock.advance(Duration::from_secs(10));
    let unhealthy: BTreeSet<WorkerId> = registry
        .find_unhealthy(Duration::from_secs(5))
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    let expected: BTreeSet<WorkerId> = fresh.iter().map(|(id, _)| *id).collect();
    assert_eq!(unhealthy, expected);
}

// ---- longest_idle's walk in batches (the in-memory registry reads its ready index in
// batches, each record under its own lock; PostgreSQL answers in one statement) ----

#[test]
fn longest_idle_lists_each_worker_once_in_order_while_workers_are_claimed_and_released() {
    // The walk reads a batch of keys from the ready index, then each record; a worker claimed
    // meanwhile is left out and the walk reads another batch past the last key. A worker
    // claimed and released meanwhile is `Ready` again at a new (later) place: it was listed
    // at its old place with its new idle time (out of order), and once more when the next
    // batch reached its new place (twice). Two threads take the longest idle worker and give
    // it back at once, while the main thread lists all but a few of the ready workers.
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    const FLEET: usize = 200;
    let registry = Arc::new(InMemoryWorkerRegistry::new());
    let provider = ProviderId::new("p").unwrap();
    let spec = Arc::new(WorkerSpec::new("img"));
    for _ in 0..FLEET {
        let handle = WorkerHandle::new(provider.clone(), ProviderType::Docker, "c");
        let id = registry.register(handle, Arc::clone(&spec)).unwrap().id;
        registry.update_state(&id, WorkerState::Ready).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let churn: Vec<_> = (0..2)
        .map(|t| {
            let (registry, stop) = (Arc::clone(&registry), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let job = JobId::new(format!("job-{t}-{n}")).unwrap();
                    let Some(oldest) = registry.longest_idle(1).unwrap().pop() else {
                        continue;
                    };
                    if registry.assign_to_job(&oldest.id, job.clone()).is_ok() {
                        if n % 2 == 0 {
                            std::thread::sleep(Duration::from_micros(200));
                        }
                        registry.release_from_job(&oldest.id, Some(&job)).unwrap();
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut failure = None;
    while failure.is_none() && Instant::now() < deadline {
        let listed = registry.longest_idle(FLEET - 3).unwrap();
        let ids: HashSet<WorkerId> = listed.iter().map(|w| w.id).collect();
        let keys: Vec<(Timestamp, WorkerId)> = listed
            .iter()
            .map(|w| (w.idle_since.expect("a ready worker has idle_since"), w.id))
            .collect();
        if ids.len() != listed.len() {
            failure = Some(format!("{} listed twice", listed.len() - ids.len()));
        } else if !keys.windows(2).all(|k| k[0] < k[1]) {
            failure = Some(format!("not longest idle first: {keys:?}"));
        } else if let Some(w) = listed.iter().find(|w| w.state != WorkerState::Ready) {
            failure = Some(format!("{} listed in {}", w.id, w.state));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in churn {
        t.join().unwrap();
    }
    assert_eq!(failure, None);
}
