//! Unit tests of the in-memory registry's internals (shards, columns, slots).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::{millis, ManualClock};
use crate::events::SubscribeOptions;
use crate::filter::WorkerFilter;
use crate::ids::ProviderId;
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
            // The column follows the slab slot for slot; every free slot is on the free list.
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
    // A newcomer in the same shard takes the freed slot (the free list is last-freed first).
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
