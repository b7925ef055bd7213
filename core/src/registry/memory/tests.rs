//! Unit tests of the in-memory registry's internals (shards, columns, slots).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::claim::WALK_LIMIT;
use super::*;
use crate::clock::{millis, ManualClock};
use crate::events::SubscribeOptions;
use crate::filter::WorkerFilter;
use crate::ids::ProviderId;
use crate::registry::stats::WorkerRegistryStats;
use crate::worker::{ProviderType, TerminationReason, WorkerHandle, WorkerSpec};

fn registry() -> (Arc<ManualClock>, InMemoryWorkerRegistry) {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let registry = InMemoryWorkerRegistry::with_clock(clock.clone());
    (clock, registry)
}

fn connecting(registry: &InMemoryWorkerRegistry, spec: &Arc<WorkerSpec>) -> WorkerId {
    let provider = ProviderId::new("p").unwrap();
    let handle = WorkerHandle::new(provider, ProviderType::Docker, "c");
    let id = registry.register(handle, Arc::clone(spec)).unwrap().id;
    registry.update_state(&id, WorkerState::Connecting).unwrap();
    id
}

/// Column slots (live and free) and cached suspects of every shard, and the records.
fn column_sizes(registry: &InMemoryWorkerRegistry) -> (usize, usize, usize) {
    registry
        .shards
        .iter()
        .fold((0, 0, 0), |(sl, su, r), shard| {
            let shard = shard.read();
            let (slots, suspects) = shard.column.sizes();
            // The column follows the slab slot for slot; every free slot is in the free set.
            let (slab, free) = shard.slots();
            assert_eq!((slab, slab - free), (slots, shard.len()));
            (sl + slots, su + suspects, r + shard.len())
        })
}

#[test]
fn churn_without_health_checks_keeps_the_column_bounded() {
    let (clock, registry) = registry();
    let spec = Arc::new(WorkerSpec::new("img"));
    let resident: Vec<WorkerId> = (0..200).map(|_| connecting(&registry, &spec)).collect();
    // A first check fills the cache: from then on every worker that becomes monitored with
    // a key below the horizon is cached as a suspect.
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        registry
            .find_unhealthy(Duration::from_secs(60))
            .unwrap()
            .len(),
        resident.len()
    );
    for round in 0..20_000u64 {
        let id = connecting(&registry, &spec);
        if round % 3 == 0 {
            registry
                .update_state(&id, WorkerState::Terminating)
                .unwrap();
        }
        registry
            .unregister(&id, TerminationReason::Requested)
            .unwrap();
        if round % 1000 == 0 {
            clock.advance(Duration::from_secs(1));
        }
        let (slots, suspects, records) = column_sizes(&registry);
        // Slots are reused: at most the peak of records a shard ever held.
        assert!(
            slots <= records + SHARD_COUNT,
            "round {round}: {slots} slots for {records} records"
        );
        assert!(
            suspects <= slots + SHARD_COUNT * 65,
            "round {round}: {suspects} suspects for {slots} slots"
        );
    }
    assert_eq!(registry.count().unwrap(), resident.len());
    // Nothing was lost on the way: all residents are still found once due.
    clock.advance(Duration::from_secs(61));
    let mut unhealthy: Vec<WorkerId> = registry
        .find_unhealthy(Duration::from_secs(60))
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    unhealthy.sort();
    let mut expected = resident.clone();
    expected.sort();
    assert_eq!(unhealthy, expected);
}

#[test]
fn a_reused_slot_never_answers_to_its_former_worker() {
    let (clock, registry) = registry();
    let spec = Arc::new(WorkerSpec::new("img"));
    let old = connecting(&registry, &spec);
    let shard = registry.shard_index(&old);
    registry
        .unregister(&old, TerminationReason::Requested)
        .unwrap();
    // Register until a worker lands in the same shard: it takes the freed slot.
    let new = loop {
        let id = connecting(&registry, &spec);
        if registry.shard_index(&id) == shard {
            break id;
        }
    };
    let registered_at = registry.get(&new).unwrap().unwrap().last_heartbeat;
    clock.advance(Duration::from_secs(5));
    assert_eq!(registry.heartbeat(&old), Err(Error::NotFound(old)));
    assert_eq!(
        registry.get(&new).unwrap().unwrap().last_heartbeat,
        registered_at
    );
    assert_eq!(registry.get(&old).unwrap(), None);
    clock.advance(Duration::from_secs(60));
    let silent: Vec<WorkerId> = registry
        .find_unhealthy(Duration::from_secs(60))
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert!(silent.contains(&new) && !silent.contains(&old));
}

#[test]
fn a_few_due_entries_are_rechecked_one_by_one_exactly() {
    let (clock, registry) = registry();
    let spec = Arc::new(WorkerSpec::new("img"));
    let ids: Vec<WorkerId> = (0..5000).map(|_| connecting(&registry, &spec)).collect();
    // Spread the heartbeats over 100 s, so that only a small share of a shard (~80
    // records) is due at each step and the per-entry path (not the rebuild) does the work.
    for (i, id) in ids.iter().enumerate() {
        if i % 50 == 0 {
            clock.advance(Duration::from_millis(999));
        }
        registry.heartbeat(id).unwrap();
    }
    let timeout = Duration::from_secs(30);
    for _ in 0..150 {
        clock.advance(Duration::from_millis(1003));
        let cutoff = registry.now() - millis(timeout);
        let mut got: Vec<WorkerId> = registry
            .find_unhealthy(timeout)
            .unwrap()
            .into_iter()
            .map(|w| w.id)
            .collect();
        got.sort();
        let mut want: Vec<WorkerId> = ids
            .iter()
            .filter(|id| registry.get(id).unwrap().unwrap().last_heartbeat < cutoff)
            .copied()
            .collect();
        want.sort();
        assert_eq!(got, want);
        // The brake's count agrees, for the timeout and for half of it (which may need a
        // scan of the column, or only the suspects).
        assert_eq!(registry.count_unhealthy(timeout).unwrap(), want.len());
        let half = timeout / 2;
        assert_eq!(
            registry.count_unhealthy(half).unwrap(),
            registry.find_unhealthy(half).unwrap().len()
        );
        // Half of the fleet stays alive.
        for id in ids.iter().step_by(2) {
            registry.heartbeat(id).unwrap();
        }
    }
}

#[test]
fn heartbeats_racing_unregister_and_slot_reuse_never_reach_the_new_occupant() {
    let (clock, registry) = registry();
    let spec = Arc::new(WorkerSpec::new("img"));
    let old: Vec<WorkerId> = (0..2000).map(|_| connecting(&registry, &spec)).collect();
    let done = std::sync::atomic::AtomicBool::new(false);
    let fresh: Vec<(WorkerId, Timestamp)> = std::thread::scope(|s| {
        for t in 0..2 {
            let (old, registry, clock, done) = (&old, &registry, &clock, &done);
            s.spawn(move || {
                // Heartbeats to the old workers, with the clock moving, until the churner
                // is done: each answers Ok or NotFound, and never lands elsewhere.
                loop {
                    for id in old.iter().skip(t).step_by(2) {
                        clock.advance(Duration::from_millis(1));
                        match registry.heartbeat(id) {
                            Ok(()) | Err(Error::NotFound(_)) => {}
                            Err(e) => panic!("heartbeat: {e}"),
                        }
                    }
                    if done.load(Ordering::Acquire) {
                        break;
                    }
                }
            });
        }
        // Unregisters the old workers one by one and registers new ones, which take their
        // slots; nobody heartbeats the new ones.
        let mut fresh = Vec::new();
        for id in &old {
            registry
                .unregister(id, TerminationReason::Requested)
                .unwrap();
            let provider = ProviderId::new("p").unwrap();
            let handle = WorkerHandle::new(provider, ProviderType::Docker, "c");
            let id = registry.register(handle, Arc::clone(&spec)).unwrap().id;
            let w = registry.update_state(&id, WorkerState::Connecting).unwrap();
            fresh.push((id, w.last_heartbeat));
        }
        done.store(true, Ordering::Release);
        fresh
    });
    for (id, at) in &fresh {
        assert_eq!(registry.get(id).unwrap().unwrap().last_heartbeat, *at);
    }
    for id in &old {
        assert_eq!(registry.heartbeat(id), Err(Error::NotFound(*id)));
    }
    assert_eq!(registry.count().unwrap(), fresh.len());
}

#[test]
fn find_of_terminal_states_reads_the_terminal_index_exactly() {
    let (_clock, registry) = registry();
    let spec = Arc::new(WorkerSpec::new("img"));
    let ids: Vec<WorkerId> = (0..300).map(|_| connecting(&registry, &spec)).collect();
    for (i, id) in ids.iter().enumerate() {
        match i % 5 {
            0 => {
                registry.update_state(id, WorkerState::Terminating).unwrap();
            }
            1 => {
                registry.update_state(id, WorkerState::Terminated).unwrap();
            }
            2 => {
                registry.update_state(id, WorkerState::Terminating).unwrap();
                registry
                    .unregister(id, TerminationReason::Requested)
                    .unwrap();
            }
            _ => {}
        }
    }
    let ids_of = |filter: &WorkerFilter| {
        let mut got: Vec<WorkerId> = registry
            .find(filter)
            .unwrap()
            .into_iter()
            .map(|w| w.id)
            .collect();
        got.sort();
        got
    };
    let want = |pick: &dyn Fn(usize) -> bool| {
        let mut want: Vec<WorkerId> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| pick(*i))
            .map(|(_, id)| *id)
            .collect();
        want.sort();
        want
    };
    let terminal = WorkerFilter::new().states([WorkerState::Terminating, WorkerState::Terminated]);
    assert_eq!(ids_of(&terminal), want(&|i| i % 5 < 2));
    let terminating = WorkerFilter::new().states([WorkerState::Terminating]);
    assert_eq!(ids_of(&terminating), want(&|i| i % 5 == 0));
    assert_eq!(registry.find(&terminal.clone().limit(7)).unwrap().len(), 7);
    // Other states still scan, state first.
    let connecting_only = WorkerFilter::new().states([WorkerState::Connecting]);
    assert_eq!(ids_of(&connecting_only), want(&|i| i % 5 > 2));
}

#[test]
fn events_nobody_hears_still_take_their_seq() {
    let (_clock, registry) = registry();
    let spec = Arc::new(WorkerSpec::new("img"));
    // Two events (Registered, StateChanged) with nobody subscribed: numbered, not built.
    let id = connecting(&registry, &spec);
    assert_eq!(registry.snapshot().unwrap().seq, 2);
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    registry.update_state(&id, WorkerState::Ready).unwrap();
    let heard: Vec<u64> = events.drain().iter().map(|e| e.seq).collect();
    assert_eq!(heard, [3]);
    drop(events);
    // Unsubscribed again: the numbering goes on without anyone listening.
    registry
        .unregister(&id, TerminationReason::Requested)
        .unwrap();
    assert_eq!(registry.snapshot().unwrap().seq, 4);
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    connecting(&registry, &spec);
    let heard: Vec<u64> = events.drain().iter().map(|e| e.seq).collect();
    assert_eq!(heard, [5, 6]);
}

#[test]
fn retired_ids_are_bounded_oldest_forgotten_first() {
    let (_clock, registry) = registry();
    let registry = registry.with_retired_id_limit(3);
    let spec = Arc::new(WorkerSpec::new("img"));
    let provider = ProviderId::new("p").unwrap();
    let handles: Vec<WorkerHandle> = (0..5)
        .map(|_| WorkerHandle::new(provider.clone(), ProviderType::Docker, "c"))
        .collect();
    for h in &handles {
        let id = registry.register(h.clone(), Arc::clone(&spec)).unwrap().id;
        registry
            .unregister(&id, TerminationReason::Requested)
            .unwrap();
    }
    // The last three are remembered (and carried by a snapshot), the first two forgotten.
    let ids: Vec<WorkerId> = handles.iter().map(|h| h.worker_id).collect();
    assert_eq!(registry.snapshot().unwrap().retired_ids, ids[2..]);
    for h in &handles[2..] {
        assert_eq!(
            registry.register(h.clone(), Arc::clone(&spec)).unwrap_err(),
            Error::AlreadyExists(h.worker_id)
        );
    }
    for h in &handles[..2] {
        registry.register(h.clone(), Arc::clone(&spec)).unwrap();
    }
    // A smaller limit forgets at once.
    let registry = registry.with_retired_id_limit(1);
    assert_eq!(registry.snapshot().unwrap().retired_ids, ids[4..]);
}

/// Invariant 5 through every path of the retired set: an id this process minted (its
/// counter's bit), one minted from a counter far below the others (filed below the bitmap's
/// window, and moved there as the window slides on), and an id of another origin (the
/// filter): once unregistered, none registers again, and a snapshot restored elsewhere
/// still refuses them.
#[test]
fn no_retired_id_registers_again_whichever_way_it_is_filed() {
    let (_clock, registry) = registry();
    let spec = Arc::new(WorkerSpec::new("img"));
    let provider = ProviderId::new("p").unwrap();
    let with_id = |id: WorkerId| {
        let mut h = WorkerHandle::new(provider.clone(), ProviderType::Docker, "c");
        h.worker_id = id;
        h
    };
    let foreign = WorkerId::from_bytes(uuid::Uuid::new_v4().into_bytes()).unwrap();
    assert_eq!(foreign.minted_counter(), None);
    let mut ids = vec![WorkerId::new(), WorkerId::from_counter(1 << 45), foreign];
    // Counters far above: each slides the window, so the earlier ones move below it.
    ids.extend((1..=3).map(|k| WorkerId::from_counter((1 << 45) + k * (1 << 30))));
    ids.push(WorkerId::from_counter(1 << 44));
    for &id in &ids {
        registry.register(with_id(id), Arc::clone(&spec)).unwrap();
        registry
            .unregister(&id, TerminationReason::Requested)
            .unwrap();
    }
    let refused = |registry: &InMemoryWorkerRegistry| {
        for &id in &ids {
            assert_eq!(
                registry
                    .register(with_id(id), Arc::clone(&spec))
                    .unwrap_err(),
                Error::AlreadyExists(id),
                "{id} registered again"
            );
        }
    };
    refused(&registry);
    let (_clock, restored) = super::tests::registry();
    restored.restore(registry.snapshot().unwrap()).unwrap();
    refused(&restored);
    // Fresh ids of each kind still register.
    for id in [
        WorkerId::new(),
        WorkerId::from_counter((1 << 45) + 5),
        WorkerId::from_bytes(uuid::Uuid::new_v4().into_bytes()).unwrap(),
    ] {
        registry.register(with_id(id), Arc::clone(&spec)).unwrap();
    }
}

/// The column holds heartbeats as 32-bit offsets from a per-shard base (~24.8 days either
/// way): a fleet that runs for a year, some workers heartbeating, one silent since the start,
/// one left unmonitored, keeps every heartbeat exact and every health check right across the
/// rebases.
#[test]
fn heartbeats_stay_exact_over_a_year_of_ticks() {
    let (clock, registry) = registry();
    let spec = Arc::new(WorkerSpec::new("img"));
    let timeout = Duration::from_secs(60);
    let live: Vec<WorkerId> = (0..300).map(|_| connecting(&registry, &spec)).collect();
    let silent = connecting(&registry, &spec);
    let silent_since = registry.get(&silent).unwrap().unwrap().last_heartbeat;
    let unmonitored = connecting(&registry, &spec);
    registry
        .update_state(&unmonitored, WorkerState::Terminating)
        .unwrap();
    let unmonitored_since = registry.get(&unmonitored).unwrap().unwrap().last_heartbeat;
    // A day and a few milliseconds a step, so that the offsets are never round numbers.
    for day in 0..400u64 {
        let now = clock.advance(Duration::from_millis(86_400_000 + 7 + day % 13));
        for id in &live {
            registry.heartbeat(id).unwrap();
        }
        clock.advance(Duration::from_secs(61));
        let due: Vec<WorkerId> = registry
            .find_unhealthy(timeout)
            .unwrap()
            .into_iter()
            .map(|w| w.id)
            .collect();
        // Everyone is silent past the timeout now; only the monitored ones count.
        assert_eq!(due.len(), live.len() + 1, "day {day}");
        assert!(due.contains(&silent) && !due.contains(&unmonitored));
        assert_eq!(registry.count_unhealthy(timeout).unwrap(), live.len() + 1);
        // A heartbeat a moment later clears all but the silent one.
        for id in &live {
            registry.heartbeat(id).unwrap();
        }
        let due = registry.find_unhealthy(timeout).unwrap();
        assert_eq!(due.len(), 1, "day {day}");
        assert_eq!(due[0].id, silent);
        assert_eq!(due[0].last_heartbeat, silent_since);
        let w = registry
            .get(&live[day as usize % live.len()])
            .unwrap()
            .unwrap();
        assert_eq!(w.last_heartbeat, now + 61_000, "day {day}");
        let w = registry.get(&unmonitored).unwrap().unwrap();
        assert_eq!(w.last_heartbeat, unmonitored_since);
    }
}

#[test]
fn a_queue_place_resolves_only_to_the_worker_that_made_it() {
    // The startup and lifetime queues name places (shard and slot), which outlive nothing:
    // a place read from a queue just before its worker left, then resolved after another
    // worker took the slot, must not name the newcomer. The birth ticket tells them apart.
    let (_clock, registry) = registry();
    let spec = Arc::new(WorkerSpec::new("img"));
    let first = connecting(&registry, &spec);
    let shard = registry.shard_index(&first);
    let (slot, ticket) = {
        let s = registry.shards[shard].read();
        let (slot, rec) = s.get(&first).unwrap();
        (slot, rec.birth_ticket)
    };
    let place = place_of(shard, slot);
    assert_eq!(registry.resolve([(ticket, place)]), vec![first]);
    registry
        .unregister(&first, TerminationReason::Requested)
        .unwrap();
    // A newcomer in the same shard takes the freed slot (the lowest free one; or, when the
    // slot was the slab's tail and cut off, the same slot made again).
    let newcomer = loop {
        let id = connecting(&registry, &spec);
        if registry.shard_index(&id) == shard {
            break id;
        }
    };
    assert_eq!(registry.shards[shard].read().slot_of(&newcomer), Some(slot));
    assert_eq!(registry.resolve([(ticket, place)]), Vec::<WorkerId>::new());
    let new_ticket = registry.shards[shard]
        .read()
        .get(&newcomer)
        .unwrap()
        .1
        .birth_ticket;
    assert_eq!(registry.resolve([(new_ticket, place)]), vec![newcomer]);
}

/// `register` validates a spec unless it is the `Arc` the last registration joined with: a
/// new `Arc` (even after a valid one, even with a retired or present id) is always checked,
/// and an invalid spec never becomes the remembered one.
#[test]
fn register_checks_every_new_spec_arc() {
    let (_clock, registry) = registry();
    let provider = ProviderId::new("p").unwrap();
    let handle = || WorkerHandle::new(provider.clone(), ProviderType::Docker, "c");
    let good = Arc::new(WorkerSpec::new("img"));
    let bad = Arc::new(WorkerSpec::new("img\0"));
    let first = registry.register(handle(), Arc::clone(&good)).unwrap();
    registry.register(handle(), Arc::clone(&good)).unwrap();
    for _ in 0..2 {
        let err = registry.register(handle(), Arc::clone(&bad)).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    }
    // An invalid spec is refused before the id is looked at.
    let mut again = handle();
    again.worker_id = first.id;
    let err = registry
        .register(again.clone(), Arc::clone(&bad))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert_eq!(
        registry.register(again, Arc::clone(&good)).unwrap_err(),
        Error::AlreadyExists(first.id)
    );
    registry.register(handle(), good).unwrap();
    assert_eq!(registry.count().unwrap(), 3);
}

/// A heard heartbeat past the column's range takes the write-lock path: it still stores the
/// time its event carries, and publishes exactly one event.
#[test]
fn a_heard_heartbeat_past_the_columns_range_keeps_its_events_time() {
    let (clock, registry) = registry();
    let spec = Arc::new(WorkerSpec::new("img"));
    let id = connecting(&registry, &spec);
    let events = registry
        .subscribe(SubscribeOptions::default().heartbeats(true))
        .unwrap();
    for _ in 0..3 {
        // 30 days: past the ~24.8 days of offsets either way, so the column rebases.
        let now = clock.advance(Duration::from_secs(30 * 86_400));
        registry.heartbeat(&id).unwrap();
        let got = events.drain();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].at, now);
        assert_eq!(registry.get(&id).unwrap().unwrap().last_heartbeat, now);
    }
}

/// DESIGN.md (in-memory layout): "a registered worker's `spec` is the registry's shared copy
/// of an equal spec (equal by `==`)". A CPU count of `-0.0` is `==` to `0.0` (and passes
/// `validate`), so the two specs are one class with one shared copy.
#[test]
fn specs_equal_by_eq_share_one_copy_whatever_the_sign_of_a_zero_cpu_count() {
    let (_, registry) = registry();
    let handle = || WorkerHandle::new(ProviderId::new("p").unwrap(), ProviderType::Docker, "c");
    let mut plus = WorkerSpec::new("img");
    plus.resources.cpu_cores = 0.0;
    let mut minus = WorkerSpec::new("img");
    minus.resources.cpu_cores = -0.0;
    assert_eq!(plus, minus);
    let a = registry.register(handle(), Arc::new(plus)).unwrap();
    let b = registry.register(handle(), Arc::new(minus)).unwrap();
    assert!(
        Arc::ptr_eq(&a.spec, &b.spec),
        "one shared copy of equal specs"
    );
    assert_eq!(
        registry.indexes.lock().classes.iter().count(),
        1,
        "one class"
    );
}

/// Checks every registry-wide index and every column flag against the records (the indexes
/// are a function of the records: `Membership`), with the registry quiet. Returns the
/// snapshots of every worker.
fn assert_indexes_follow_records(registry: &InMemoryWorkerRegistry) -> Vec<Worker> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut ready: BTreeSet<(u32, Timestamp, WorkerId)> = BTreeSet::new();
    let mut living: BTreeSet<(u32, Timestamp, u64, u32)> = BTreeSet::new();
    let mut startup: BTreeSet<(Timestamp, u64, u32)> = BTreeSet::new();
    let mut drained: BTreeSet<WorkerId> = BTreeSet::new();
    let mut terminal: BTreeSet<WorkerId> = BTreeSet::new();
    let mut jobs: BTreeMap<String, WorkerId> = BTreeMap::new();
    let mut all = Vec::new();
    for (s, lock) in registry.shards.iter().enumerate() {
        let shard = lock.read();
        for (slot, rec) in shard.records() {
            let id = rec.id();
            assert_eq!(registry.shard_index(&id), s);
            assert_eq!(shard.slot_of(&id), Some(slot));
            let place = place_of(s, slot);
            let m = rec.membership();
            if m.is_ready() {
                ready.insert((rec.class, rec.idle_since().expect("ready"), id));
            }
            if m.is_lifetime_tracked() {
                living.insert((rec.class, rec.created_at, rec.birth_ticket, place));
            }
            if rec.state.is_starting() {
                startup.insert((rec.created_at, rec.birth_ticket, place));
            }
            if m.is_drained() {
                drained.insert(id);
            }
            if rec.state.is_terminal() {
                terminal.insert(id);
            }
            if let Some(job) = &rec.current_job {
                assert!(jobs.insert(job.to_string(), id).is_none());
            }
            all.push(shard.worker(slot, rec));
        }
    }
    let ix = registry.indexes.lock();
    let mut ready_ix = BTreeSet::new();
    let mut living_ix = BTreeSet::new();
    for (n, class) in ix.classes.numbered() {
        assert_eq!(class.ready.len(), class.ready.iter().count());
        for (at, id) in class.ready.iter() {
            assert!(ready_ix.insert((n, at, id)), "twice in ready");
        }
        assert_eq!(class.living.len(), class.living.iter().count());
        for (at, ticket, place) in class.living.iter() {
            assert!(living_ix.insert((n, at, ticket, place)), "twice in living");
        }
    }
    assert_eq!(ready_ix, ready, "ready sets");
    assert_eq!(living_ix, living, "lifetime queues");
    let startup_ix: BTreeSet<_> = ix.startup.iter().collect();
    assert_eq!(ix.startup.len(), ix.startup.iter().count());
    assert_eq!(startup_ix, startup, "startup queue");
    assert_eq!(ix.drained.iter().copied().collect::<BTreeSet<_>>(), drained);
    assert_eq!(
        ix.terminal.iter().copied().collect::<BTreeSet<_>>(),
        terminal
    );
    let jobs_ix: BTreeMap<String, WorkerId> =
        ix.jobs.iter().map(|(j, w)| (j.to_string(), *w)).collect();
    assert_eq!(jobs_ix, jobs, "job holders");
    assert_eq!(ix.stats(), WorkerRegistryStats::recount(&all), "stats");
    all
}

/// Each deadline query (`find_unhealthy`, `count_unhealthy`, `find_startup_expired`,
/// `find_for_termination`) of `registry` against a recount from `all`, its snapshots: at
/// timeouts of 0 to 5 ms and of an hour to 30 days. `at` names the step in a failure.
fn assert_deadlines_match_a_recount(registry: &InMemoryWorkerRegistry, all: &[Worker], at: &str) {
    use crate::worker::TerminationReason as R;
    use std::collections::{BTreeMap, BTreeSet};
    let ms = Duration::from_millis;
    let now = registry.now();
    let floor = registry.floor();
    // Each deadline query against a recount from the snapshots.
    for timeout in [0u64, 1, 2, 5, 3_600_000, 86_400_000 * 13, 86_400_000 * 30] {
        let want: BTreeSet<WorkerId> = all
            .iter()
            .filter(|w| {
                w.state.heartbeat_monitored()
                    && now
                        .checked_sub(timeout)
                        .is_some_and(|cut| w.last_heartbeat.max(floor) < cut)
            })
            .map(|w| w.id)
            .collect();
        let got: BTreeSet<WorkerId> = registry
            .find_unhealthy(ms(timeout))
            .unwrap()
            .iter()
            .map(|w| w.id)
            .collect();
        assert_eq!(got, want, "{at}: unhealthy {timeout}");
        assert_eq!(
            registry.count_unhealthy(ms(timeout)).unwrap(),
            want.len(),
            "{at}: count_unhealthy {timeout}"
        );
        let want: BTreeSet<WorkerId> = all
            .iter()
            .filter(|w| {
                w.state.is_starting()
                    && now
                        .checked_sub(timeout)
                        .is_some_and(|cut| w.created_at.max(floor) < cut)
            })
            .map(|w| w.id)
            .collect();
        let got: BTreeSet<WorkerId> = registry
            .find_startup_expired(ms(timeout))
            .unwrap()
            .iter()
            .map(|w| w.id)
            .collect();
        assert_eq!(got, want, "{at}: startup {timeout}");
    }
    let want: BTreeMap<WorkerId, R> = all
        .iter()
        .filter_map(|w| {
            let lifetime = millis(w.spec.max_lifetime);
            let idle = millis(w.spec.idle_timeout);
            let tracked = matches!(
                w.state,
                WorkerState::Creating
                    | WorkerState::Connecting
                    | WorkerState::Ready
                    | WorkerState::Busy
            );
            if tracked && w.created_at.saturating_add(lifetime) < now {
                return Some((w.id, R::Lifetime));
            }
            if w.state == WorkerState::Ready && w.idle_since.unwrap().saturating_add(idle) < now {
                return Some((w.id, R::Idle));
            }
            if w.state == WorkerState::Draining && w.current_job.is_none() {
                let spent = w
                    .spec
                    .max_jobs
                    .is_some_and(|m| w.jobs_executed >= u64::from(m));
                return Some((w.id, if spent { R::MaxJobs } else { R::Drained }));
            }
            None
        })
        .collect();
    let got: BTreeMap<WorkerId, R> = registry
        .find_for_termination()
        .unwrap()
        .into_iter()
        .map(|(w, r)| (w.id, r))
        .collect();
    assert_eq!(got, want, "{at}: termination");
}

/// A random walk of every operation on a few classes from `start`, checking after each step
/// that the indexes follow the records and that each deadline query equals a recount from
/// the snapshots: exactly at, before and after the deadlines (the clock mostly moves by 0..3
/// ms), and across the heartbeat columns' range (now and then it jumps by up to 40 days, and
/// grace periods reach back up to 20).
fn walk(start: Timestamp, seeds: u64) {
    use super::super::test_rng::XorShift;
    use crate::ids::JobId;
    use crate::worker::TerminationReason as R;
    let ms = Duration::from_millis;
    for seed in 1..=seeds {
        let clock = Arc::new(ManualClock::new(start));
        let registry = InMemoryWorkerRegistry::with_clock(clock.clone());
        let mut rng = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let specs: Vec<Arc<WorkerSpec>> = vec![
            Arc::new(
                WorkerSpec::new("a")
                    .with_label("pool", "x")
                    .with_idle_timeout(ms(7))
                    .with_max_lifetime(ms(40)),
            ),
            Arc::new(
                WorkerSpec::new("b")
                    .with_max_jobs(1)
                    .with_idle_timeout(ms(3))
                    .with_max_lifetime(ms(25)),
            ),
            Arc::new(
                WorkerSpec::new("c")
                    .with_max_jobs(2)
                    .with_label("pool", "x")
                    .with_idle_timeout(ms(5))
                    .with_max_lifetime(ms(1_000)),
            ),
        ];
        let providers = [ProviderId::new("p").unwrap(), ProviderId::new("q").unwrap()];
        let mut ids: Vec<WorkerId> = Vec::new();
        for step in 0..1_500u32 {
            let pick = |rng: &mut XorShift, ids: &[WorkerId]| {
                (!ids.is_empty()).then(|| ids[rng.below(ids.len())])
            };
            let job = JobId::new(format!("j{}", rng.below(12))).unwrap();
            match rng.below(20) {
                0..=2 => {
                    let handle = WorkerHandle::new(
                        providers[rng.below(2)].clone(),
                        ProviderType::Docker,
                        "c",
                    );
                    let spec = Arc::clone(&specs[rng.below(specs.len())]);
                    ids.push(registry.register(handle, spec).unwrap().id);
                }
                3..=5 => {
                    if let Some(id) = pick(&mut rng, &ids) {
                        let to = WorkerState::ALL[rng.below(WorkerState::ALL.len())];
                        let _ = registry.update_state(&id, to);
                    }
                }
                6 => {
                    if let Some(id) = pick(&mut rng, &ids) {
                        let _ = registry.assign_to_job(&id, job);
                    }
                }
                7 | 8 => {
                    let filter = match rng.below(5) {
                        0 => WorkerFilter::new(),
                        1 => WorkerFilter::new().label("pool", "x"),
                        2 => WorkerFilter::new().idle_for(ms(rng.below(6) as u64)),
                        3 => WorkerFilter::new().unhealthy_for(ms(rng.below(6) as u64)),
                        _ => WorkerFilter::new().provider_id(providers[rng.below(2)].clone()),
                    };
                    let _ = registry.claim(&filter, job);
                }
                9 | 10 => {
                    if let Some(id) = pick(&mut rng, &ids) {
                        let expected = (rng.below(2) == 0).then_some(&job);
                        let _ = registry.release_from_job(&id, expected);
                    }
                }
                11 | 12 => {
                    if let Some(id) = pick(&mut rng, &ids) {
                        let _ = registry.heartbeat(&id);
                    }
                }
                13 => {
                    if let Some(id) = pick(&mut rng, &ids) {
                        let _ = registry.unregister(&id, R::Requested);
                    }
                }
                14 => {
                    if rng.below(10) == 0 {
                        let back = rng.next() % (86_400_000 * 20);
                        registry
                            .grant_grace(registry.now().saturating_sub(back))
                            .unwrap();
                    }
                }
                _ => {
                    const DAY: u64 = 86_400_000;
                    let by = match rng.below(10) {
                        0 => rng.next() % (40 * DAY),
                        1 => rng.next() % DAY,
                        _ => rng.below(4) as u64,
                    };
                    clock.advance(ms(by));
                }
            }
            let all = assert_indexes_follow_records(&registry);
            assert_deadlines_match_a_recount(&registry, &all, &format!("seed {seed} step {step}"));
        }
    }
}

#[test]
fn a_random_walk_keeps_every_index_in_step_with_the_records() {
    walk(1_000_000, 4);
}

/// The same near the end of the clock (which saturates there: deadlines past it never come).
#[test]
fn a_random_walk_near_the_end_of_the_clock_keeps_every_index_in_step() {
    walk(u64::MAX - 60 * 86_400_000, 3);
}

/// Threads racing every operation (claims with every kind of filter against unregister,
/// update_state, release, heartbeats, health checks, grace): afterwards every index follows
/// the records, and the deadline queries equal a recount.
#[test]
fn racing_operations_leave_every_index_in_step_with_the_records() {
    use super::super::test_rng::XorShift;
    use crate::ids::JobId;
    let ms = Duration::from_millis;
    let (clock, registry) = registry();
    let specs: Vec<Arc<WorkerSpec>> = vec![
        Arc::new(WorkerSpec::new("a").with_label("pool", "x")),
        Arc::new(WorkerSpec::new("b").with_max_jobs(1)),
        Arc::new(
            WorkerSpec::new("c")
                .with_max_jobs(3)
                .with_label("pool", "x"),
        ),
    ];
    let ids = parking_lot::Mutex::new(Vec::<WorkerId>::new());
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (registry, clock, specs, ids) = (&registry, &clock, &specs, &ids);
            s.spawn(move || {
                let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ ((t + 1) * 0x2545_f491));
                for _ in 0..6_000 {
                    let id = {
                        let ids = ids.lock();
                        (!ids.is_empty()).then(|| ids[rng.below(ids.len())])
                    };
                    let job = JobId::new(format!("j{}", rng.below(40))).unwrap();
                    match (rng.below(20), id) {
                        (0..=2, _) => {
                            let handle = WorkerHandle::new(
                                ProviderId::new("p").unwrap(),
                                ProviderType::Docker,
                                "c",
                            );
                            let spec = Arc::clone(&specs[rng.below(specs.len())]);
                            let id = registry.register(handle, spec).unwrap().id;
                            let _ = registry.update_state(&id, WorkerState::Ready);
                            ids.lock().push(id);
                        }
                        (3..=6, _) => {
                            let filter = match rng.below(4) {
                                0 => WorkerFilter::new(),
                                1 => WorkerFilter::new().label("pool", "x"),
                                2 => WorkerFilter::new().idle_for(ms(rng.below(3) as u64)),
                                _ => WorkerFilter::new().unhealthy_for(ms(rng.below(3) as u64)),
                            };
                            let _ = registry.claim(&filter, job);
                        }
                        (7 | 8, Some(id)) => {
                            let _ = registry.release_from_job(&id, None);
                        }
                        (9 | 10, Some(id)) => {
                            let to = WorkerState::ALL[rng.below(WorkerState::ALL.len())];
                            let _ = registry.update_state(&id, to);
                        }
                        (11, Some(id)) => {
                            let _ = registry.unregister(&id, TerminationReason::Requested);
                        }
                        (12..=14, Some(id)) => {
                            let _ = registry.heartbeat(&id);
                        }
                        (15, Some(id)) => {
                            let _ = registry.assign_to_job(&id, job);
                        }
                        (16, _) => {
                            let _ = registry.find_unhealthy(ms(rng.below(3) as u64));
                            let _ = registry.count_unhealthy(ms(rng.below(3) as u64));
                        }
                        (17, _) => {
                            let _ = registry.find_for_termination();
                        }
                        (18, _) if rng.below(50) == 0 => {
                            registry.grant_grace(registry.now()).unwrap();
                        }
                        _ => {
                            clock.advance(ms(1));
                        }
                    }
                }
            });
        }
    });
    let all = assert_indexes_follow_records(&registry);
    let now = registry.now();
    let floor = registry.floor();
    for timeout in [0u64, 1, 2, 5] {
        let want = all
            .iter()
            .filter(|w| {
                w.state.heartbeat_monitored() && w.last_heartbeat.max(floor) < now - timeout
            })
            .count();
        assert_eq!(registry.find_unhealthy(ms(timeout)).unwrap().len(), want);
        assert_eq!(registry.count_unhealthy(ms(timeout)).unwrap(), want);
    }
}

/// The room of every structure that grows with the fleet: each shard's (index, slab, column,
/// suspects, free set, class table) and the registry-wide queues' (each class's ready set and
/// lifetime queue, the startup queue), in one list (a change anywhere changes the list).
fn rooms(registry: &InMemoryWorkerRegistry) -> Vec<usize> {
    let mut out = Vec::new();
    for shard in registry.shards.iter() {
        let c = shard.read().capacities();
        out.extend([c.index, c.slab, c.column, c.suspects, c.free_words, c.specs]);
    }
    let ix = registry.indexes.lock();
    for class in ix.classes.iter() {
        out.extend([class.ready.capacity(), class.living.capacity()]);
    }
    out.push(ix.startup.capacity());
    out
}

/// Registers a worker of `spec` and moves it to `Ready` (even `n`) or `Connecting` (odd):
/// the ready sets, the startup queue and the lifetime queues all fill.
fn ready_or_connecting(
    registry: &InMemoryWorkerRegistry,
    spec: &Arc<WorkerSpec>,
    n: usize,
) -> WorkerId {
    let id = connecting(registry, spec);
    if n % 2 == 0 {
        registry.update_state(&id, WorkerState::Ready).unwrap();
    }
    id
}

/// DESIGN.md (in-memory layout), clarified 2026-12-07: the memory a shard holds is O(its live
/// workers), amortized. A fleet grown to N and cut to N/100 in a random order gives the room
/// of the index and of the queues back at once; the slab and its column (whose records never
/// move) give back their free tail once the old workers left there died, replaced by new
/// ones that took the lowest free slots. Stale ids find nothing throughout.
#[test]
fn a_shrunk_fleet_gives_its_memory_back_once_its_old_workers_died() {
    use super::super::test_rng::XorShift;
    const N: usize = 64_000;
    let (_clock, registry) = registry();
    let spec = Arc::new(WorkerSpec::new("img"));
    let mut live: Vec<WorkerId> = (0..N)
        .map(|n| ready_or_connecting(&registry, &spec, n))
        .collect();
    let peak: usize = rooms(&registry).iter().sum();
    let mut rng = XorShift(0x5eed_0000_0000_0012);
    let mut gone = Vec::new();
    while live.len() > N / 100 {
        let id = live.swap_remove(rng.below(live.len()));
        registry
            .unregister(&id, TerminationReason::Requested)
            .unwrap();
        gone.push(id);
    }
    // At once: the index (load at least 1/4) and the queues.
    for shard in registry.shards.iter() {
        let shard = shard.read();
        let c = shard.capacities();
        assert!(
            c.index <= (4 * shard.len()).max(16),
            "index: {c:?} for {}",
            shard.len()
        );
    }
    let queues = |registry: &InMemoryWorkerRegistry| {
        let ix = registry.indexes.lock();
        let class = ix.classes.iter().next().expect("one class");
        (
            class.ready.capacity(),
            class.living.capacity(),
            ix.startup.capacity(),
        )
    };
    let (ready, living, startup) = queues(&registry);
    let n = live.len();
    assert!(
        ready <= 8 * n + 256,
        "ready set: room for {ready}, {n} live"
    );
    assert!(
        living <= 8 * n + 256,
        "lifetime queue: room for {living}, {n} live"
    );
    assert!(
        startup <= 8 * n + 256,
        "startup queue: room for {startup}, {n} live"
    );
    // The old workers die one by one, each replaced by a new one (a fleet of steady size).
    // Each shard's old workers, counted first: a new worker lands in a shard of its own
    // (its id's), so it can take a slot above an old worker of that shard still alive, whose
    // slot is a hole once it dies.
    let old_per_shard: Vec<usize> = registry.shards.iter().map(|s| s.read().len()).collect();
    let survivors = std::mem::take(&mut live);
    for (n, old) in survivors.iter().enumerate() {
        live.push(ready_or_connecting(&registry, &spec, n));
        registry
            .unregister(old, TerminationReason::Requested)
            .unwrap();
        gone.push(*old);
    }
    let mut total = 0;
    for (shard, old) in registry.shards.iter().zip(old_per_shard) {
        let shard = shard.read();
        let (slab, free) = shard.slots();
        let n = shard.len();
        // The new workers took the lowest free slots, and the tail was cut: a slot below the
        // last new worker's was held, when it came, by a new worker or by an old one (a hole
        // now), so the slab is at most the new workers plus the shard's old ones (before
        // 2026-12-07 this said "at most one past the live count", which an old worker in a
        // low slot outliving the new ones of its shard broke, seen once in a fresh-clone CI run:
        // "slab of 9 slots (2 free) for 7 workers").
        assert!(
            slab <= n + old.max(1) && free <= old,
            "slab of {slab} slots ({free} free) for {n} workers ({old} old ones)"
        );
        let c = shard.capacities();
        let bound = (4 * (n + old + 1)).max(2 * super::super::shrink::MIN_CAPACITY);
        assert!(c.index <= (4 * n).max(16), "index: {c:?} for {n}");
        assert!(
            c.slab <= bound && c.column <= bound,
            "slab, column: {c:?} for {n}"
        );
        assert!(
            c.free_words <= 4 * super::super::shrink::MIN_CAPACITY,
            "free set: {c:?}"
        );
        assert!(
            c.specs <= super::super::shrink::MIN_CAPACITY,
            "class table: {c:?}"
        );
        total += c.index + c.slab + c.column + c.free_words;
    }
    let (ready, living, startup) = queues(&registry);
    let n = live.len();
    assert!(ready <= 8 * n + 256 && living <= 8 * n + 256 && startup <= 8 * n + 256);
    assert!(
        rooms(&registry).iter().sum::<usize>() * 20 < peak,
        "the registry keeps under 5% of its peak's room"
    );
    assert!(total > 0);
    // Stale ids find nothing; live ones find themselves; every index follows the records.
    for id in &gone {
        assert_eq!(registry.get(id).unwrap(), None);
        assert_eq!(registry.heartbeat(id), Err(Error::NotFound(*id)));
    }
    for id in &live {
        assert_eq!(registry.get(id).unwrap().unwrap().id, *id);
        registry.heartbeat(id).unwrap();
    }
    assert_eq!(assert_indexes_follow_records(&registry).len(), live.len());
    // And it grows again as before.
    for n in 0..N / 4 {
        live.push(ready_or_connecting(&registry, &spec, n));
    }
    for id in gone.iter().step_by(7) {
        assert_eq!(registry.heartbeat(id), Err(Error::NotFound(*id)));
    }
    assert_eq!(assert_indexes_follow_records(&registry).len(), live.len());
}

/// The hysteresis of the shrink rule: a fleet oscillating around one size (up by a few
/// hundred workers, down again, random ones leaving) settles, and then no call grows or
/// shrinks any structure but rarely (a rule that shrank to fit would rebuild on every call).
#[test]
fn a_fleet_oscillating_around_one_size_does_not_rebuild_on_every_call() {
    use super::super::test_rng::XorShift;
    let (_clock, registry) = registry();
    let spec = Arc::new(WorkerSpec::new("img"));
    let mut rng = XorShift(0x5eed_0000_0000_0013);
    let mut live: Vec<WorkerId> = (0..20_000)
        .map(|n| ready_or_connecting(&registry, &spec, n))
        .collect();
    let mut cycle = |live: &mut Vec<WorkerId>, after_each: &mut dyn FnMut()| {
        for n in 0..300 {
            live.push(ready_or_connecting(&registry, &spec, n));
            after_each();
        }
        for _ in 0..300 {
            let id = live.swap_remove(rng.below(live.len()));
            registry
                .unregister(&id, TerminationReason::Requested)
                .unwrap();
            after_each();
        }
    };
    // Settling: a few cycles.
    for _ in 0..5 {
        cycle(&mut live, &mut || {});
    }
    let rehashes = |registry: &InMemoryWorkerRegistry| -> usize {
        registry
            .shards
            .iter()
            .map(|s| s.read().capacities().index_rehashes)
            .sum()
    };
    let rehashed_before = rehashes(&registry);
    let mut last = rooms(&registry);
    let mut changes = 0usize;
    let mut calls = 0usize;
    for _ in 0..20 {
        cycle(&mut live, &mut || {
            calls += 1;
            let now = rooms(&registry);
            if now != last {
                changes += 1;
                last = now;
            }
        });
    }
    assert_eq!(calls, 20 * 600);
    assert!(
        changes * 100 <= calls,
        "{changes} rebuilds in {calls} calls"
    );
    assert!(
        rehashes(&registry) - rehashed_before <= 64,
        "index rehashed on the way"
    );
    assert_eq!(registry.count().unwrap(), live.len());
}

/// The job-holder map follows the fleet down too (clarified 2026-12-07): 20k busy workers
/// released down to 100 leave a map of about the 100's room.
#[test]
fn the_job_holder_map_gives_its_room_back() {
    use crate::ids::JobId;
    let (_clock, registry) = registry();
    let spec = Arc::new(WorkerSpec::new("img"));
    let busy: Vec<(WorkerId, JobId)> = (0..20_000)
        .map(|n| {
            let id = ready_or_connecting(&registry, &spec, 0);
            let job = JobId::new(format!("job-{n}")).unwrap();
            registry.assign_to_job(&id, job.clone()).unwrap();
            (id, job)
        })
        .collect();
    let peak = registry.indexes.lock().jobs.capacity();
    assert!(peak >= 20_000);
    for (id, job) in &busy[100..] {
        assert_eq!(registry.release_from_job(id, Some(job)).unwrap(), *job);
    }
    let ix = registry.indexes.lock();
    assert_eq!(ix.jobs.len(), 100);
    assert!(
        ix.jobs.capacity() <= 8 * 100 + 128,
        "room for {}",
        ix.jobs.capacity()
    );
}

/// Every class has a spec of its own (a provisioner that puts a per-worker value in the
/// spec's environment): 8,000 classes cut to 80 leave the class table and the maps beside it
/// (classes by key, interned specs) with about the 80's room (clarified 2026-12-07: the
/// class table follows the shrink rule, and so do the maps beside it).
#[test]
fn a_registry_of_one_class_a_worker_gives_the_class_maps_room_back() {
    const N: usize = 8_000;
    let (_clock, registry) = registry();
    let provider = ProviderId::new("p").unwrap();
    let ids: Vec<WorkerId> = (0..N)
        .map(|n| {
            let mut spec = WorkerSpec::new("img");
            spec.environment.insert("WORKER".into(), format!("w-{n}"));
            let spec = Arc::new(spec);
            let handle = WorkerHandle::new(provider.clone(), ProviderType::Docker, "c");
            registry.register(handle, spec).unwrap().id
        })
        .collect();
    let (slots, by_key, specs) = registry.indexes.lock().classes.capacities();
    assert!(slots >= N && by_key >= N && specs >= N);
    // The first ones stay (the class numbers in use are the lowest).
    for id in &ids[N / 100..] {
        registry
            .unregister(id, TerminationReason::Requested)
            .unwrap();
    }
    let live = N / 100;
    let (slots, by_key, specs) = registry.indexes.lock().classes.capacities();
    let bound = 4 * live + 2 * 128;
    assert!(
        slots <= bound,
        "class table: room for {slots}, {live} classes"
    );
    assert!(
        by_key <= bound,
        "classes by key: room for {by_key}, {live} classes"
    );
    assert!(
        specs <= bound,
        "interned specs: room for {specs}, {live} classes"
    );
    assert_eq!(assert_indexes_follow_records(&registry).len(), live);
}

/// One worker of tenant `n`: a provider id, a provider type and a pool of its own.
fn tenant_worker(registry: &InMemoryWorkerRegistry, n: usize) -> WorkerId {
    use crate::registry::stats::POOL_LABEL;
    let provider = ProviderId::new(format!("tenant-{n}")).unwrap();
    let kind = ProviderType::custom(format!("cloud-{n}")).unwrap();
    let spec = Arc::new(WorkerSpec::new("img").with_label(POOL_LABEL, format!("pool-{n}")));
    let handle = WorkerHandle::new(provider, kind, "c");
    registry.register(handle, spec).unwrap().id
}

/// The counts `stats()` reports per provider, type and pool follow the fleet down
/// (clarified 2026-12-07: their slot tables and maps by key kept the room of the most
/// providers ever, and `stats()` walked every slot of it). A host with one provider, type and
/// pool per tenant grows to 10,000 tenants at once and is cut to 10; then 10,000 more tenants
/// come and go one at a time. The tables hold about the live keys' room, and `stats()` equals
/// a recount throughout.
#[test]
fn the_per_provider_counts_give_their_room_back_after_a_fleet_of_tenants_shrinks() {
    use super::super::shrink::MIN_CAPACITY as MIN;
    const N: usize = 10_000;
    const LIVE: usize = 10;
    let (_clock, registry) = registry();
    let ids: Vec<WorkerId> = (0..N).map(|n| tenant_worker(&registry, n)).collect();
    let check = |registry: &InMemoryWorkerRegistry, live: usize, at: &str| {
        let all = registry.find(&WorkerFilter::new()).unwrap();
        assert_eq!(all.len(), live);
        let stats = registry.stats().unwrap();
        assert_eq!(stats, WorkerRegistryStats::recount(&all), "{at}: stats");
        assert_eq!(stats.by_provider.len(), live);
        for (table, (slots, by_key)) in ["providers", "types", "pools"]
            .iter()
            .zip(registry.indexes.lock().classes.tallies.rooms())
        {
            assert!(
                slots <= 4 * live + 2 * MIN && by_key <= 4 * live + 2 * MIN,
                "{at}: {table}: room for {slots} slots and {by_key} keys, {live} live"
            );
        }
    };
    // The first tenants stay (the lowest slots).
    for id in &ids[LIVE..] {
        registry
            .unregister(id, TerminationReason::Requested)
            .unwrap();
    }
    check(&registry, LIVE, "cut to 10");
    // Short-lived tenants, one at a time.
    for n in N..2 * N {
        let id = tenant_worker(&registry, n);
        registry
            .unregister(&id, TerminationReason::Requested)
            .unwrap();
    }
    check(&registry, LIVE, "after the churn");
}

/// The nearest-rank `q`-quantile of `ages` (sorted).
fn nearest_rank(ages: &[u64], q: f64) -> u64 {
    let rank = ((q * ages.len() as f64).ceil() as usize).max(1);
    ages[rank - 1]
}

/// The heartbeat ages sample live workers, not slots (clarified 2026-12-07): a fleet of 100k
/// reaches the sample's target (512 a shard, 32,768 in all) exactly, and once it shrank to
/// ~300 survivors spread over slots its columns keep (none in a slot a stride of 2, 3 or 4
/// would read: before, a stride sample met none of them and gave no quantile at all) every
/// survivor is read, so the quantiles of their distinct ages are exact to the bucket.
#[test]
fn heartbeat_ages_of_a_shrunk_fleet_read_its_survivors_whatever_their_slots() {
    const N: usize = 100_000;
    let (clock, registry) = registry();
    let spec = Arc::new(WorkerSpec::new("img"));
    let ids: Vec<WorkerId> = (0..N)
        .map(|_| {
            let id = connecting(&registry, &spec);
            registry.update_state(&id, WorkerState::Ready).unwrap();
            id
        })
        .collect();
    let ages = registry.heartbeat_age_histogram().unwrap().unwrap();
    assert_eq!(
        (ages.sampled, ages.total()),
        (32_768, N as u64),
        "a fleet of 100k samples 512 workers a shard"
    );
    // About 5 survivors a shard, spread from its first slots to its last (so the column
    // keeps its length), in slots neither even nor a multiple of 3.
    let mut keep = std::collections::HashSet::new();
    for shard in registry.shards.iter() {
        let shard = shard.read();
        let odd: Vec<(u32, &Record)> = shard
            .records()
            .filter(|(slot, _)| slot % 2 == 1 && slot % 3 != 0)
            .collect();
        for i in 0..5 {
            keep.insert(odd[i * (odd.len() - 1) / 4].1.id());
        }
    }
    for id in ids.iter().filter(|id| !keep.contains(id)) {
        registry
            .unregister(id, TerminationReason::Requested)
            .unwrap();
    }
    // Distinct ages: the survivors heartbeat one a second.
    let survivors: Vec<WorkerId> = ids.into_iter().filter(|id| keep.contains(id)).collect();
    for id in &survivors {
        clock.advance(Duration::from_secs(1));
        registry.heartbeat(id).unwrap();
    }
    clock.advance(Duration::from_millis(1_500));
    let now = registry.now();
    let mut truth: Vec<u64> = survivors
        .iter()
        .map(|id| now - registry.get(id).unwrap().unwrap().last_heartbeat)
        .collect();
    truth.sort_unstable();
    let ages = registry.heartbeat_age_histogram().unwrap().unwrap();
    let n = survivors.len() as u64;
    assert_eq!(
        (ages.sampled, ages.total()),
        (n, n),
        "survivors read: {ages:?}"
    );
    for q in [0.0, 0.1, 0.5, 0.9, 0.99, 1.0] {
        assert_eq!(
            ages.quantile_ms(q),
            Some(nearest_rank(&truth, q)),
            "q = {q}, {n} survivors"
        );
    }
}

/// The room of every structure of `registry` against what it holds, by the shrink rule
/// (below a quarter full it shrinks to half, never below the minimum; growth at most
/// doubles): a structure that missed a shrink on some path shows here. Also the shape of each
/// shard: the column follows the slab slot for slot, every free slot is in the free set, and
/// the slab's last slot is never free (its free tail was cut).
fn assert_rooms_follow_the_fleet(registry: &InMemoryWorkerRegistry, at: &str) {
    use super::super::shrink::MIN_CAPACITY as MIN;
    let ix = registry.indexes.lock();
    let table = ix.classes.numbered().map(|(n, _)| n as usize + 1).max();
    let table = table.unwrap_or(0);
    for (s, lock) in registry.shards.iter().enumerate() {
        let shard = lock.read();
        let (slab, free) = shard.slots();
        let (slots, _) = shard.column.sizes();
        let len = shard.len();
        assert_eq!((slots, slab - free), (slab, len), "{at}: shard {s} shape");
        assert!(
            slab == 0 || shard.at(slab as u32 - 1).is_some(),
            "{at}: shard {s}: the slab's last slot ({slab}) is free"
        );
        let c = shard.capacities();
        assert!(
            c.index <= (4 * len + 3).max(16),
            "{at}: shard {s} index {c:?}, {len}"
        );
        assert!(
            c.slab <= room_of(slab),
            "{at}: shard {s} slab {c:?}, {slab} slots"
        );
        assert!(
            c.column <= room_of(slab),
            "{at}: shard {s} column {c:?}, {slab}"
        );
        assert!(
            c.free_words <= 6 * MIN + 8 * (slab / 64 + 1),
            "{at}: shard {s} free set {c:?}, {slab} slots"
        );
        assert!(
            c.specs <= room_of(table),
            "{at}: shard {s} class table {c:?}, {table}"
        );
        assert!(
            c.suspects <= 4 * (c.column + 64) + MIN,
            "{at}: shard {s} suspects {c:?}"
        );
    }
    for (n, class) in ix.classes.numbered() {
        let (ready, living) = (class.ready.len(), class.living.len());
        assert!(
            class.ready.capacity() <= 5 * ready + 2 * MIN,
            "{at}: class {n}: ready set room {} for {ready}",
            class.ready.capacity()
        );
        assert!(
            class.living.capacity() <= 8 * living + 2 * MIN,
            "{at}: class {n}: lifetime queue room {} for {living}",
            class.living.capacity()
        );
    }
    let starting = ix.startup.len();
    assert!(
        ix.startup.capacity() <= 8 * starting + 2 * MIN,
        "{at}: startup queue room {} for {starting}",
        ix.startup.capacity()
    );
    let jobs = ix.jobs.len();
    assert!(
        ix.jobs.capacity() <= 4 * jobs + 4 * MIN,
        "{at}: job map room {} for {jobs}",
        ix.jobs.capacity()
    );
    let (classes, by_key, specs) = ix.classes.capacities();
    let live = ix.classes.iter().count();
    assert!(
        classes <= room_of(table),
        "{at}: class table room {classes}, {table}"
    );
    assert!(
        by_key <= 4 * live + 4 * MIN,
        "{at}: classes by key {by_key}, {live}"
    );
    assert!(
        specs <= 4 * live + 4 * MIN,
        "{at}: interned specs {specs}, {live}"
    );
}

/// [`assert_rooms_follow_the_fleet`]'s bound for a `Vec` of `n` entries.
fn room_of(n: usize) -> usize {
    (4 * n + 4).max(2 * super::super::shrink::MIN_CAPACITY)
}

/// A random id in shard `shard` (see `shard_index`).
fn id_in_shard(rng: &mut super::super::test_rng::XorShift, shard: usize) -> WorkerId {
    let bits = (u128::from(rng.next()) << 64) | u128::from(rng.next());
    let mut b = bits.to_be_bytes();
    b[0] |= 0x40;
    b[15] = b[3] ^ shard as u8;
    WorkerId::from_bytes(b).unwrap()
}

/// A random walk that drives the shrinks (clarified 2026-12-07) of a few shards again and
/// again: its ids fall in three shards, so that a fleet grown by hundreds at once and culled
/// to a few (in a random order, lowest slots first so that the tail dies last, or highest
/// first so that it is cut on every call) rehashes the index smaller, cuts the slab's free
/// tail, shrinks every queue, ready set, job map and class table, and empties the shards now
/// and then; between them, every other operation, and snapshots restored into a fresh
/// registry or into one that was grown and emptied first. After every step: every index
/// follows the records, `stats()` equals a recount, the deadline queries equal a recount,
/// every structure's room follows what it holds, retired ids find nothing (their heartbeats
/// change no one's), and `claim` takes the most recently idle `Ready` worker (ties by id).
fn shrink_walk(seed: u64, steps: u32) {
    use super::super::test_rng::XorShift;
    use crate::ids::JobId;
    use crate::worker::TerminationReason as R;
    let ms = Duration::from_millis;
    const SHARDS: [usize; 3] = [0, 7, 63];
    let clock = Arc::new(ManualClock::new(5_000_000));
    let mut registry = InMemoryWorkerRegistry::with_clock(clock.clone());
    let mut rng = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let specs: Vec<Arc<WorkerSpec>> = vec![
        Arc::new(
            WorkerSpec::new("a")
                .with_label("pool", "x")
                .with_idle_timeout(ms(7))
                .with_max_lifetime(ms(40)),
        ),
        Arc::new(
            WorkerSpec::new("b")
                .with_max_jobs(1)
                .with_idle_timeout(ms(3))
                .with_max_lifetime(ms(25)),
        ),
        Arc::new(
            WorkerSpec::new("c")
                .with_max_jobs(2)
                .with_idle_timeout(ms(5))
                .with_max_lifetime(ms(1_000)),
        ),
    ];
    let providers = [ProviderId::new("p").unwrap(), ProviderId::new("q").unwrap()];
    let mut live: Vec<WorkerId> = Vec::new();
    let mut retired: Vec<WorkerId> = Vec::new();
    let mut jobs = 0u64;
    // Registers one worker of `class` (a spec and a provider; else any, now and then a class
    // of its own) and moves it on: `Creating`, `Connecting`, `Ready` (mostly) or `Busy`.
    let join = |registry: &InMemoryWorkerRegistry,
                rng: &mut XorShift,
                jobs: &mut u64,
                shard: usize,
                class: Option<usize>|
     -> WorkerId {
        let id = id_in_shard(rng, shard);
        let class = class.unwrap_or_else(|| rng.below(2 * specs.len() + 1));
        let mut handle = WorkerHandle::new(
            providers[class / specs.len() % 2].clone(),
            ProviderType::Docker,
            "c",
        );
        handle.worker_id = id;
        let spec = if class == 2 * specs.len() {
            // A class of its own: class numbers are freed and reused.
            Arc::new(WorkerSpec::new(format!("own-{}", rng.next() % 8)))
        } else {
            Arc::clone(&specs[class % specs.len()])
        };
        registry.register(handle, spec).unwrap();
        match rng.below(5) {
            0 => {}
            1 => {
                registry.update_state(&id, WorkerState::Connecting).unwrap();
            }
            n => {
                registry.update_state(&id, WorkerState::Ready).unwrap();
                if n == 4 {
                    *jobs += 1;
                    let job = JobId::new(format!("g{jobs}")).unwrap();
                    registry.assign_to_job(&id, job).unwrap();
                }
            }
        }
        id
    };
    let slot_of = |registry: &InMemoryWorkerRegistry, id: &WorkerId| {
        registry.shard(id).read().slot_of(id).unwrap()
    };
    for step in 0..steps {
        let at = format!("seed {seed} step {step}");
        let pick =
            |rng: &mut XorShift, ids: &[WorkerId]| (!ids.is_empty()).then(|| rng.below(ids.len()));
        let job = JobId::new(format!("j{}", rng.below(12))).unwrap();
        match rng.below(24) {
            0 | 1 => {
                // Grow: a few hundred at once, mostly in one shard.
                let n = 50 + rng.below(350);
                let main = SHARDS[rng.below(SHARDS.len())];
                let class = rng.below(2 * specs.len());
                for _ in 0..n {
                    let (shard, class) = if rng.below(4) == 0 {
                        (SHARDS[rng.below(SHARDS.len())], None)
                    } else {
                        (main, Some(class))
                    };
                    live.push(join(&registry, &mut rng, &mut jobs, shard, class));
                }
            }
            2 | 3 => {
                // Cull to a few, in one of three orders.
                let keep = match rng.below(4) {
                    0 => 0,
                    _ => live.len() * rng.below(32) / 256,
                };
                match rng.below(3) {
                    0 => {}
                    1 => live.sort_by_key(|id| std::cmp::Reverse(slot_of(&registry, id))),
                    _ => live.sort_by_key(|id| slot_of(&registry, id)),
                }
                let mut random = rng.below(3) == 0;
                while live.len() > keep {
                    let i = if random {
                        rng.below(live.len())
                    } else {
                        live.len() - 1
                    };
                    let id = live.swap_remove(i);
                    registry.unregister(&id, R::Requested).unwrap();
                    retired.push(id);
                    random ^= rng.below(50) == 0;
                }
            }
            4 | 5 => {
                let shard = SHARDS[rng.below(SHARDS.len())];
                live.push(join(&registry, &mut rng, &mut jobs, shard, None));
            }
            6 | 7 => {
                if let Some(i) = pick(&mut rng, &live) {
                    let to = WorkerState::ALL[rng.below(WorkerState::ALL.len())];
                    let _ = registry.update_state(&live[i], to);
                }
            }
            8 => {
                if let Some(i) = pick(&mut rng, &live) {
                    let _ = registry.assign_to_job(&live[i], job);
                }
            }
            9 | 10 => {
                // claim: the most recently idle `Ready` worker (idle long enough), ties by id.
                let (filter, newest) = match rng.below(2) {
                    0 => (WorkerFilter::new(), Timestamp::MAX),
                    _ => {
                        let idle = rng.below(4) as u64;
                        let filter = WorkerFilter::new().idle_for(ms(idle));
                        (filter, registry.now() - idle)
                    }
                };
                let all = assert_indexes_follow_records(&registry);
                let held = all.iter().any(|w| w.current_job.as_ref() == Some(&job));
                let want = all
                    .iter()
                    .filter(|w| w.state == WorkerState::Ready && w.current_job.is_none())
                    .filter(|w| w.idle_since.is_some_and(|since| since <= newest))
                    .map(|w| (w.idle_since, w.id))
                    .max();
                match registry.claim(&filter, job.clone()) {
                    Ok(got) => {
                        assert!(!held, "{at}: claim of a held job");
                        assert_eq!(got.map(|w| w.id), want.map(|w| w.1), "{at}: claim");
                    }
                    Err(Error::JobAlreadyAssigned { .. }) => assert!(held, "{at}: claim"),
                    Err(e) => panic!("{at}: claim: {e}"),
                }
            }
            11 | 12 => {
                if let Some(i) = pick(&mut rng, &live) {
                    let expected = (rng.below(2) == 0).then_some(&job);
                    let _ = registry.release_from_job(&live[i], expected);
                }
            }
            13 | 14 => {
                if let Some(i) = pick(&mut rng, &live) {
                    registry.heartbeat(&live[i]).unwrap();
                }
            }
            15 => {
                // A retired id's heartbeat changes nobody's.
                if let Some(i) = pick(&mut rng, &retired) {
                    let before: Vec<(WorkerId, Timestamp)> =
                        assert_indexes_follow_records(&registry)
                            .iter()
                            .map(|w| (w.id, w.last_heartbeat))
                            .collect();
                    let id = retired[i];
                    assert_eq!(registry.heartbeat(&id), Err(Error::NotFound(id)), "{at}");
                    let after: Vec<(WorkerId, Timestamp)> =
                        assert_indexes_follow_records(&registry)
                            .iter()
                            .map(|w| (w.id, w.last_heartbeat))
                            .collect();
                    assert_eq!(before, after, "{at}: a retired id's heartbeat");
                }
            }
            16 => {
                if let Some(i) = pick(&mut rng, &live) {
                    let id = live.swap_remove(i);
                    registry.unregister(&id, R::Requested).unwrap();
                    retired.push(id);
                }
            }
            17 => {
                if rng.below(8) == 0 {
                    let back = rng.below(50) as u64;
                    registry
                        .grant_grace(registry.now().saturating_sub(back))
                        .unwrap();
                }
            }
            18 => {
                // Reload: into a fresh registry, or into one whose shards grew and were
                // emptied (cut to nothing, caches and queues left from that fleet).
                let snapshot = registry.snapshot().unwrap();
                let target = InMemoryWorkerRegistry::with_clock(clock.clone());
                if rng.below(2) == 0 {
                    let mut gone = Vec::new();
                    for _ in 0..100 + rng.below(300) {
                        let shard = SHARDS[rng.below(SHARDS.len())];
                        gone.push(join(&target, &mut rng, &mut jobs, shard, None));
                    }
                    clock.advance(ms(3));
                    target.find_unhealthy(ms(1)).unwrap();
                    for id in gone {
                        target.unregister(&id, R::Requested).unwrap();
                    }
                    assert_rooms_follow_the_fleet(&target, &format!("{at}: emptied"));
                }
                target.restore(snapshot).unwrap();
                registry = target;
            }
            _ => {
                let by = match rng.below(10) {
                    0 => rng.below(100) as u64,
                    _ => rng.below(4) as u64,
                };
                clock.advance(ms(by));
            }
        }
        let all = assert_indexes_follow_records(&registry);
        assert_eq!(all.len(), live.len(), "{at}: count");
        assert_rooms_follow_the_fleet(&registry, &at);
        assert_deadlines_match_a_recount(&registry, &all, &at);
        let idle: Vec<WorkerId> = registry
            .longest_idle(3)
            .unwrap()
            .iter()
            .map(|w| w.id)
            .collect();
        let mut ready: Vec<(Option<Timestamp>, WorkerId)> = all
            .iter()
            .filter(|w| w.state == WorkerState::Ready && w.current_job.is_none())
            .map(|w| (w.idle_since, w.id))
            .collect();
        ready.sort();
        let want: Vec<WorkerId> = ready.iter().take(3).map(|k| k.1).collect();
        assert_eq!(idle, want, "{at}: longest_idle");
        for _ in 0..4 {
            if let Some(i) = pick(&mut rng, &retired) {
                let id = retired[i];
                assert_eq!(registry.get(&id).unwrap(), None, "{at}");
                assert_eq!(
                    registry.update_state(&id, WorkerState::Ready),
                    Err(Error::NotFound(id)),
                    "{at}"
                );
            }
        }
    }
}

#[test]
fn a_walk_through_shrinks_and_tail_cuts_keeps_every_index_and_room_in_step() {
    for seed in 1..=3 {
        shrink_walk(seed, 400);
    }
}

/// Heartbeats racing tail cuts, index and column shrinks and slot reuse in one shard
/// (clarified 2026-12-07): each round, the old generation is cut to nothing (in a random
/// order, or its highest slots last, so that the tail is cut in one go, or first, so that it
/// is cut on every call) while a new one, which nobody heartbeats, registers into the lowest
/// slots; two threads heartbeat the old generation and every retired id meanwhile, a third
/// runs health checks (passes under the write lock, the cache under the read lock) and the
/// deadline queries that resolve queue entries by slot. No heartbeat reaches a new worker (its
/// last heartbeat is still its own when its round ends), every heartbeat answers `Ok` or
/// `NotFound` and none that answered `Ok` is lost, no stale queue entry lists a slot's new
/// occupant as due (lifetime, startup), and at the end every index and room follows the
/// records.
#[test]
fn heartbeats_racing_tail_cuts_and_shrinks_never_reach_a_new_occupant() {
    use super::super::test_rng::XorShift;
    use parking_lot::Mutex as PlMutex;
    const ROUNDS: usize = 60;
    const FLEET: usize = 600;
    let (clock, registry) = registry();
    // A lifetime short enough that the old workers come due while the new ones do not.
    let spec = Arc::new(WorkerSpec::new("img").with_max_lifetime(Duration::from_millis(20)));
    let mut rng = XorShift(0x5eed_0000_0000_0042);
    let join = |rng: &mut XorShift| {
        let id = id_in_shard(rng, 9);
        let mut handle =
            WorkerHandle::new(ProviderId::new("p").unwrap(), ProviderType::Docker, "c");
        handle.worker_id = id;
        registry.register(handle, Arc::clone(&spec)).unwrap();
        let w = registry.update_state(&id, WorkerState::Connecting).unwrap();
        (id, w.last_heartbeat)
    };
    let first: Vec<WorkerId> = (0..FLEET).map(|_| join(&mut rng).0).collect();
    // What the heartbeat threads aim at: the current generation and every retired id.
    let targets: PlMutex<Arc<Vec<WorkerId>>> = PlMutex::new(Arc::new(first.clone()));
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (registry, clock, targets, done) = (&registry, &clock, &targets, &done);
            s.spawn(move || {
                let mut rng = XorShift(0x1234_5678 + t);
                while !done.load(Ordering::Acquire) {
                    let list = Arc::clone(&targets.lock());
                    for _ in 0..64 {
                        let id = list[rng.below(list.len())];
                        let before = registry.now();
                        match registry.heartbeat(&id) {
                            // Not lost: it reads back unless the worker left since.
                            Ok(()) => {
                                if let Some(w) = registry.get(&id).unwrap() {
                                    assert!(w.last_heartbeat >= before, "lost: {w:?} {before}");
                                }
                            }
                            Err(Error::NotFound(_)) => {}
                            Err(e) => panic!("heartbeat: {e}"),
                        }
                    }
                    clock.advance(Duration::from_millis(1));
                }
            });
        }
        {
            let (registry, done) = (&registry, &done);
            s.spawn(move || {
                let mut n = 0u64;
                while !done.load(Ordering::Acquire) {
                    n += 1;
                    let timeout = Duration::from_millis(n % 7);
                    registry.find_unhealthy(timeout).unwrap();
                    registry.count_unhealthy(timeout).unwrap();
                    // The queues name slots: what they list is due by its own record (a
                    // stale entry resolved to a slot's new occupant would list a young one).
                    let listed = registry.find_for_termination().unwrap();
                    let expired = registry.find_startup_expired(timeout).unwrap();
                    let now = registry.now();
                    for (w, reason) in &listed {
                        assert_eq!(*reason, TerminationReason::Lifetime, "{w:?}");
                        assert!(w.created_at + 20 < now, "not due: {w:?} at {now}");
                    }
                    for w in &expired {
                        assert!(w.state.is_starting(), "{w:?}");
                        assert!(w.created_at < now - millis(timeout), "not due: {w:?}");
                    }
                    std::thread::yield_now();
                }
            });
        }
        let mut old = first;
        let mut retired: Vec<WorkerId> = Vec::new();
        for round in 0..ROUNDS {
            match round % 3 {
                0 => {}
                1 => old.sort_by_key(|id| registry.shard(id).read().slot_of(id)),
                _ => old.sort_by_key(|id| std::cmp::Reverse(registry.shard(id).read().slot_of(id))),
            }
            let mut new: Vec<(WorkerId, Timestamp)> = Vec::new();
            while !old.is_empty() {
                let i = if round % 3 == 0 {
                    rng.below(old.len())
                } else {
                    old.len() - 1
                };
                let id = old.swap_remove(i);
                registry
                    .unregister(&id, TerminationReason::Requested)
                    .unwrap();
                retired.push(id);
                // The new generation comes in at a varying pace: the shard shrinks to a
                // few, then grows back.
                if rng.below(4) == 0 || (round % 2 == 1 && rng.below(2) == 0) {
                    new.push(join(&mut rng));
                }
            }
            while new.len() < FLEET / (1 + round % 4) {
                new.push(join(&mut rng));
            }
            for (id, at) in &new {
                assert_eq!(
                    registry.get(id).unwrap().unwrap().last_heartbeat,
                    *at,
                    "round {round}: a heartbeat reached a new worker"
                );
            }
            old = new.iter().map(|(id, _)| *id).collect();
            let mut list = old.clone();
            list.extend_from_slice(&retired);
            *targets.lock() = Arc::new(list);
        }
        done.store(true, Ordering::Release);
    });
    let all = assert_indexes_follow_records(&registry);
    assert_rooms_follow_the_fleet(&registry, "after the race");
    assert_deadlines_match_a_recount(&registry, &all, "after the race");
}

/// What a claim with `filter` must take, by the model: every worker the filter matches that
/// is `Ready` and holds no job, the newest by `(idle_since, id)` (the full walk's answer).
fn claim_model(registry: &InMemoryWorkerRegistry, filter: &WorkerFilter) -> Option<WorkerId> {
    let now = registry.now();
    registry
        .find(&WorkerFilter::new())
        .unwrap()
        .into_iter()
        .filter(|w| w.state == WorkerState::Ready && w.current_job.is_none())
        .filter(|w| filter.matches(w, now))
        .map(|w| (w.idle_since, w.id))
        .max()
        .map(|(_, id)| id)
}

/// A fleet of `ready` workers made `Ready` a millisecond apart (every third at the same
/// millisecond as the one before: ties by id), of two classes (`pool=x` from provider `p`,
/// `pool=y` from `q`), then `every_silent`-th of them (by readiness, newest first) left
/// silent while the others heartbeat 10 s later; a `Connecting` worker every 10, silent too
/// (monitored, never a candidate).
fn silent_fleet(ready: usize, fresh_top: usize, every_silent: usize) -> InMemoryWorkerRegistry {
    let (clock, registry) = registry();
    let specs = [
        Arc::new(WorkerSpec::new("a").with_label("pool", "x")),
        Arc::new(WorkerSpec::new("b").with_label("pool", "y")),
    ];
    let providers = [ProviderId::new("p").unwrap(), ProviderId::new("q").unwrap()];
    let mut ids = Vec::new();
    for i in 0..ready {
        if i % 3 != 0 {
            clock.advance(Duration::from_millis(1));
        }
        let handle = WorkerHandle::new(providers[i % 2].clone(), ProviderType::Docker, "c");
        let id = registry
            .register(handle, Arc::clone(&specs[i % 2]))
            .unwrap()
            .id;
        registry.update_state(&id, WorkerState::Ready).unwrap();
        ids.push(id);
        if i % 10 == 0 {
            connecting(&registry, &specs[0]);
        }
    }
    clock.advance(Duration::from_secs(10));
    // Newest first: the walk meets them in this order.
    for (rank, id) in ids.iter().rev().enumerate() {
        if rank < fresh_top || rank % every_silent != 0 {
            registry.heartbeat(id).unwrap();
        }
    }
    clock.advance(Duration::from_secs(1));
    registry
}

/// `claim` with `unhealthy_for` where more ready workers than the walk checks one by one
/// (`WALK_LIMIT`) come before the first silent enough: the answer, past the walk, is the
/// one the full walk gives, and a filter no ready worker is silent enough for gives `None`.
/// Every walk limit (0: the column pass at once; `usize::MAX`: the walk alone) agrees with
/// the model.
#[test]
fn a_claim_for_silent_workers_past_the_walk_limit_takes_what_the_full_walk_would() {
    use crate::ids::JobId;
    let secs = Duration::from_secs;
    let ready = 4 * WALK_LIMIT;
    for limit in [WALK_LIMIT, 0, 1, 3, usize::MAX] {
        // The newest 2K heartbeat; below them one in 7 is silent (10 s and more).
        let registry = silent_fleet(ready, 2 * WALK_LIMIT, 7);
        // A grace period is no sign of life: `unhealthy_for` reads the heartbeat alone.
        registry.grant_grace(registry.now()).unwrap();
        let filters = [
            WorkerFilter::new().unhealthy_for(secs(5)),
            WorkerFilter::new()
                .unhealthy_for(secs(5))
                .label("pool", "y"),
            WorkerFilter::new()
                .unhealthy_for(secs(5))
                .provider_id(ProviderId::new("p").unwrap()),
            WorkerFilter::new()
                .unhealthy_for(secs(5))
                .idle_for(secs(11)),
            // Silent for 10 s and 1 ms at most: strictly longer finds none.
            WorkerFilter::new().unhealthy_for(secs(12)),
            WorkerFilter::new()
                .unhealthy_for(secs(5))
                .label("pool", "z"),
        ];
        let mut taken = 0;
        for round in 0..ready {
            let filter = &filters[round % filters.len()];
            let want = claim_model(&registry, filter);
            let job = JobId::new(format!("j{round}")).unwrap();
            let got = registry.claim_walking(filter, job, limit).unwrap();
            assert_eq!(
                got.map(|w| w.id),
                want,
                "limit {limit} round {round}: {filter:?}"
            );
            taken += usize::from(want.is_some());
        }
        // The silent ones were all found (a seventh of those past the fresh top), and the
        // answer lay past the walk's first candidates.
        let silent = (2 * WALK_LIMIT..ready).filter(|rank| rank % 7 == 0).count();
        assert_eq!(taken, silent, "limit {limit}");
        assert_indexes_follow_records(&registry);
    }
}

mod claim_silent {
    use super::*;
    use crate::ids::JobId;
    use proptest::prelude::*;

    /// One worker of a random fleet: its class (spec and provider, of 4), the milliseconds
    /// before it registers (0: ties), what it becomes (0: `Connecting`, 1: `Busy`, else
    /// `Ready`), and when it last heartbeats after the fleet is made (`None`: never again).
    type Member = (usize, u64, u8, Option<u64>);

    fn member() -> impl Strategy<Value = Member> {
        (
            0..4usize,
            0..3u64,
            0..8u8,
            prop::option::weighted(0.7, 0..400u64),
        )
    }

    /// A claim: `unhealthy_for` in ms, which static part (0: none, 1: `pool=x`, 2: provider
    /// `q`, 3: `pool=z`, no class), an `idle_for` in ms, and the walk limit.
    type Claim = (u64, u8, Option<u64>, usize);

    fn claim() -> impl Strategy<Value = Claim> {
        (
            0..500u64,
            0..4u8,
            prop::option::weighted(0.2, 0..600u64),
            prop::sample::select(vec![0, 1, 5, WALK_LIMIT, usize::MAX]),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// `claim` with `unhealthy_for` over random fleets of more ready workers than the
        /// walk checks one by one, at every walk limit, against the model: the newest by
        /// `(idle_since, id)` of the workers the filter matches (the full walk's answer).
        #[test]
        fn a_claim_with_unhealthy_for_takes_the_models_worker(
            fleet in prop::collection::vec(member(), (2 * WALK_LIMIT)..(3 * WALK_LIMIT)),
            claims in prop::collection::vec(claim(), 1..24),
            grace in any::<bool>(),
        ) {
            let (clock, registry) = registry();
            let specs = [
                Arc::new(WorkerSpec::new("a").with_label("pool", "x")),
                Arc::new(WorkerSpec::new("b").with_label("pool", "y")),
            ];
            let providers = [ProviderId::new("p").unwrap(), ProviderId::new("q").unwrap()];
            let mut beats = Vec::new();
            for (n, (class, gap, kind, beat)) in fleet.iter().enumerate() {
                clock.advance(Duration::from_millis(*gap));
                let handle =
                    WorkerHandle::new(providers[class / 2].clone(), ProviderType::Docker, "c");
                let id = registry.register(handle, Arc::clone(&specs[class % 2])).unwrap().id;
                match kind {
                    0 => {
                        registry.update_state(&id, WorkerState::Connecting).unwrap();
                    }
                    1 => {
                        registry.update_state(&id, WorkerState::Ready).unwrap();
                        registry.assign_to_job(&id, JobId::new(format!("b{n}")).unwrap()).unwrap();
                    }
                    _ => {
                        registry.update_state(&id, WorkerState::Ready).unwrap();
                    }
                }
                if let Some(at) = beat {
                    beats.push((*at, id));
                }
            }
            let ready = registry.stats().unwrap().by_state.ready;
            prop_assert!(ready > WALK_LIMIT, "{} ready: more than the walk's limit", ready);
            beats.sort_unstable();
            let start = registry.now();
            for (at, id) in beats {
                clock.set(start + at);
                registry.heartbeat(&id).unwrap();
            }
            clock.set(start + 500);
            if grace {
                registry.grant_grace(registry.now()).unwrap();
            }
            for (round, (silent, part, idle, limit)) in claims.into_iter().enumerate() {
                let mut filter = WorkerFilter::new().unhealthy_for(Duration::from_millis(silent));
                filter = match part {
                    0 => filter,
                    1 => filter.label("pool", "x"),
                    2 => filter.provider_id(providers[1].clone()),
                    _ => filter.label("pool", "z"),
                };
                if let Some(idle) = idle {
                    filter = filter.idle_for(Duration::from_millis(idle));
                }
                let want = claim_model(&registry, &filter);
                let job = JobId::new(format!("j{round}")).unwrap();
                let got = registry.claim_walking(&filter, job, limit).unwrap();
                prop_assert_eq!(got.map(|w| w.id), want, "round {} limit {}", round, limit);
                clock.advance(Duration::from_millis(silent % 7));
            }
            assert_indexes_follow_records(&registry);
        }
    }
}

/// A claim no ready worker is silent enough for checks at most `WALK_LIMIT` candidates
/// against their records (then one pass over the heartbeat columns answers), not the whole
/// ready set; one whose answer lies deep checks at most `WALK_LIMIT + 1` (the walk's, then
/// the pass's pick). Counted, not timed.
#[test]
fn a_claim_for_silent_workers_checks_a_bounded_number_of_candidates() {
    use super::claim::CANDIDATES_CHECKED;
    use crate::ids::JobId;
    let secs = Duration::from_secs;
    let checked = |registry: &InMemoryWorkerRegistry, filter: &WorkerFilter, job: &str| {
        CANDIDATES_CHECKED.with(|n| n.set(0));
        let got = registry.claim(filter, JobId::new(job).unwrap()).unwrap();
        (got.map(|w| w.id), CANDIDATES_CHECKED.with(|n| n.get()))
    };
    // 1,000 ready workers, every one heartbeating: none silent for 5 s.
    let registry = silent_fleet(1_000, 1_000, 1);
    let filter = WorkerFilter::new().unhealthy_for(secs(5));
    let (got, n) = checked(&registry, &filter, "none");
    assert_eq!(got, None);
    assert!(
        n <= WALK_LIMIT,
        "{n} candidates checked for a claim no worker matches"
    );
    // The only silent ones below the newest 900: found past the walk.
    let registry = silent_fleet(1_000, 900, 1);
    let want = claim_model(&registry, &filter);
    assert!(want.is_some());
    let (got, n) = checked(&registry, &filter, "deep");
    assert_eq!(got, want);
    assert!(
        n <= WALK_LIMIT + 1,
        "{n} candidates checked for a claim whose answer is the 901st"
    );
}

/// `find_by_resource_ids` rules records out by their resource tag (a 16-bit digest) before it
/// reads their handles; two ids of equal tags are still told apart by the handle, and a tag
/// found for an id asked of another provider finds nothing.
#[test]
fn resource_ids_of_one_tag_are_told_apart_by_their_handle() {
    use crate::registry::indexes::resource_tag;
    // Two resource ids with one tag (a birthday search: ~2^8 ids).
    let mut seen = std::collections::HashMap::new();
    let (a, b) = (0u32..)
        .find_map(|k| {
            let id = format!("i-{k}");
            seen.insert(resource_tag(&id), id.clone())
                .map(|earlier| (earlier, id))
        })
        .unwrap();
    assert_eq!(resource_tag(&a), resource_tag(&b));
    let (_clock, registry) = registry();
    let spec = Arc::new(WorkerSpec::new("img"));
    let p = ProviderId::new("p").unwrap();
    let q = ProviderId::new("q").unwrap();
    let reg = |provider: &ProviderId, resource: &str| {
        let handle = WorkerHandle::new(provider.clone(), ProviderType::Docker, resource);
        registry.register(handle, Arc::clone(&spec)).unwrap().id
    };
    let pa = reg(&p, &a);
    let pb = reg(&p, &b);
    let qb = reg(&q, &b);
    let found = |provider: &ProviderId, asked: &[&str]| -> Vec<WorkerId> {
        let mut ids: Vec<WorkerId> = registry
            .find_by_resource_ids(provider, asked)
            .unwrap()
            .iter()
            .map(|w| w.id)
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(found(&p, &[&a]), vec![pa]);
    assert_eq!(found(&p, &[&b]), vec![pb]);
    let mut both = vec![pa, pb];
    both.sort();
    assert_eq!(found(&p, &[&a, &b]), both);
    assert_eq!(found(&q, &[&a]), Vec::<WorkerId>::new());
    assert_eq!(found(&q, &[&b]), vec![qb]);
}
