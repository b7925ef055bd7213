//! Store-side fencing on PostgreSQL (`WorkerRegistry::fenced`): the view a leading manager
//! writes through refuses every write, in the write's own transaction, once another replica
//! took the lease — whatever the old leader's own clock says — and a takeover cuts a stream
//! of such writes cleanly: each one committed before the new term, or refused.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::*;
use hodei_workers::*;

const TTL: Duration = Duration::from_secs(10);

/// Takes the lease (it must be free or expired) and returns the term.
fn take(lease: &dyn Leadership) -> Term {
    match lease.acquire_or_renew(None).unwrap() {
        LeaseStatus::Held(info) => info.term,
        other => panic!("expected the lease, got {other:?}"),
    }
}

fn not_leader<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Err(Error::NotLeader(m)) => m,
        other => panic!("expected NotLeader, got {other:?}"),
    }
}

#[test]
fn a_stale_terms_view_writes_nothing_and_the_new_terms_view_writes() {
    let (clock, registry, _s) = registry("fence_stale");
    let a = registry.leadership("a", TTL).unwrap();
    let b = registry.leadership("b", TTL).unwrap();
    assert_eq!(take(&a), 1);
    let view_a = registry
        .fenced(&a, 1)
        .expect("the lease lives in this store");

    // Under its term, the view writes like the registry.
    let busy = view_a.register(handle(), spec()).unwrap().id;
    view_a.update_state(&busy, WorkerState::Ready).unwrap();
    view_a.assign_to_job(&busy, job("j1")).unwrap();
    let idle = ready(&*view_a, spec());
    let doomed = ready(&*view_a, spec());
    view_a.grant_grace(clock.now()).unwrap();

    // b takes the lease; a's own clock may say anything: the store decides.
    clock.advance(TTL + Duration::from_secs(1));
    assert_eq!(take(&b), 2);
    let sub = registry.subscribe(SubscribeOptions::default()).unwrap();
    let before = assert_invariants(&registry);

    let refused = [
        not_leader(view_a.register(handle(), spec())),
        not_leader(view_a.update_state(&idle, WorkerState::Draining)),
        not_leader(view_a.transition_if(
            &doomed,
            &TransitionGuard::new().in_state(WorkerState::Ready),
            WorkerState::Terminating,
        )),
        not_leader(view_a.unregister(&doomed, TerminationReason::Unhealthy)),
        not_leader(view_a.assign_to_job(&idle, job("j2"))),
        not_leader(view_a.publish(EventKind::ProvisionRequested {
            provider_id: provider("docker-local"),
        })),
        not_leader(view_a.grant_grace(clock.now())),
    ];
    for m in &refused {
        assert!(
            m.contains("a no longer holds term 1") && m.contains("store refused"),
            "{m}"
        );
    }
    // Nothing changed: records, counters, the grace floor (every worker has been silent for
    // 11 s: a grace granted now would hide them), the event stream (below).
    assert_eq!(assert_invariants(&registry), before);
    assert_eq!(
        registry
            .find_unhealthy(Duration::from_secs(5))
            .unwrap()
            .len(),
        3
    );
    // Reads, and the host's hot-path writes (no manager makes them), still work.
    assert_eq!(
        view_a.get(&idle).unwrap().unwrap().state,
        WorkerState::Ready
    );
    assert_eq!(view_a.count().unwrap(), 3);
    view_a.heartbeat(&idle).unwrap();
    assert_eq!(
        view_a.release_from_job(&busy, Some(&job("j1"))).unwrap(),
        job("j1")
    );

    // b's view, under the new term, writes.
    let view_b = registry.fenced(&b, 2).unwrap();
    view_b
        .unregister(&doomed, TerminationReason::Unhealthy)
        .unwrap();
    let mut seen = Vec::new();
    while let Some(e) = sub.recv(Some(Duration::from_secs(5))) {
        let last = matches!(e.kind, EventKind::Unregistered { .. });
        seen.push(e.kind);
        if last {
            break;
        }
    }
    assert!(
        matches!(
            seen.as_slice(),
            [
                EventKind::ReleasedFromJob { worker_id: r, .. },
                EventKind::StateChanged { worker_id: s, .. },
                EventKind::Unregistered { worker_id: u, .. },
            ] if *r == busy && *s == busy && *u == doomed
        ),
        "only the host's release and b's unregister were published: {seen:?}"
    );
    assert_eq!(registry.count().unwrap(), 2);
}

/// The state moves check the lease in their lock statement, which may not reach the lease row
/// when the worker is unknown: a refused view still says `NotLeader` there, a current one
/// `NotFound`.
#[test]
fn a_stale_terms_view_says_not_leader_even_for_an_unknown_worker() {
    let (clock, registry, _s) = registry("fence_unknown");
    let a = registry.leadership("a", TTL).unwrap();
    let b = registry.leadership("b", TTL).unwrap();
    assert_eq!(take(&a), 1);
    let view_a = registry.fenced(&a, 1).unwrap();
    let unknown = WorkerId::new();
    let current: [Result<()>; 3] = [
        view_a.update_state(&unknown, WorkerState::Ready).map(drop),
        view_a
            .unregister(&unknown, TerminationReason::Unhealthy)
            .map(drop),
        view_a.assign_to_job(&unknown, job("j1")).map(drop),
    ];
    for r in current {
        assert!(
            matches!(r, Err(Error::NotFound(id)) if id == unknown),
            "{r:?}"
        );
    }

    clock.advance(TTL + Duration::from_secs(1));
    assert_eq!(take(&b), 2);
    not_leader(view_a.update_state(&unknown, WorkerState::Ready));
    not_leader(view_a.unregister(&unknown, TerminationReason::Unhealthy));
    not_leader(view_a.assign_to_job(&unknown, job("j1")));
}

/// The fence checks holder and term, not expiry: a lease that ran out with nobody taking it
/// over still names the view's term, and the view writes (DESIGN.md, "Store-side fencing").
/// Only a takeover changes the row.
#[test]
fn an_expired_lease_nobody_took_still_lets_its_view_write() {
    let (clock, registry, _s) = registry("fence_expired");
    let a = registry.leadership("a", TTL).unwrap();
    assert_eq!(take(&a), 1);
    let view_a = registry.fenced(&a, 1).unwrap();
    clock.advance(TTL + Duration::from_secs(1));
    let id = view_a.register(handle(), spec()).unwrap().id;
    view_a.update_state(&id, WorkerState::Ready).unwrap();
    view_a
        .unregister(&id, TerminationReason::Requested)
        .unwrap();
    view_a.grant_grace(clock.now()).unwrap();
    assert_eq!(registry.count().unwrap(), 0);
}

#[test]
fn a_view_is_made_only_for_a_lease_of_the_registrys_own_store() {
    let (_c1, one, _s1) = registry("fence_own");
    let (_c2, other, _s2) = registry("fence_other");
    let lease = other.leadership("a", TTL).unwrap();
    assert_eq!(take(&lease), 1);
    assert!(one.fenced(&lease, 1).is_none(), "another schema's lease");
    let memory = InMemoryWorkerRegistry::new();
    assert!(memory.fenced(&lease, 1).is_none(), "the in-memory registry");
    assert!(
        one.fenced(
            &InMemoryLease::new(Arc::new(ManualClock::new(0)), "a", TTL),
            1
        )
        .is_none(),
        "a lease of no store"
    );
    // A term the holder never held is refused like a lost one.
    let own = one.leadership("a", TTL).unwrap();
    assert_eq!(take(&own), 1);
    let wrong = one.fenced(&own, 7).unwrap();
    not_leader(wrong.register(handle(), spec()));
    assert_eq!(one.count().unwrap(), 0);
}

/// A writer registers workers through a's view as fast as it can while b takes the lease.
/// Every registration that succeeded is in the store, and none succeeded after the takeover:
/// the count b reads right after acquiring is final.
#[test]
fn a_takeover_cuts_a_stream_of_fenced_writes_cleanly() {
    for round in 0..5 {
        let (clock, registry, _s) = registry(&format!("fence_race{round}"));
        let registry = Arc::new(registry);
        let a = registry.leadership("a", TTL).unwrap();
        let b = registry.leadership("b", TTL).unwrap();
        assert_eq!(take(&a), 1);
        let view_a = registry.fenced(&a, 1).unwrap();
        let (ok, refused, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let started = Arc::new(Barrier::new(3));
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let (view, ok, refused, stop, started) = (
                    view_a.clone(),
                    ok.clone(),
                    refused.clone(),
                    stop.clone(),
                    started.clone(),
                );
                std::thread::spawn(move || {
                    started.wait();
                    // Until told to stop, and at least 20 refusals after the takeover. A view
                    // that refuses nothing stops after 2,000 writes past the takeover: the
                    // assertions below then fail instead of the test hanging.
                    let mut after_stop = 0;
                    loop {
                        if stop.load(Ordering::SeqCst) {
                            if refused.load(Ordering::SeqCst) >= 20 || after_stop == 2_000 {
                                break;
                            }
                            after_stop += 1;
                        }
                        match view.register(handle(), spec()) {
                            Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                            Err(Error::NotLeader(_)) => refused.fetch_add(1, Ordering::SeqCst),
                            Err(e) => panic!("unexpected {e}"),
                        };
                    }
                })
            })
            .collect();
        started.wait();
        while ok.load(Ordering::SeqCst) < 10 {
            std::thread::yield_now();
        }
        clock.advance(TTL + Duration::from_secs(1));
        assert_eq!(take(&b), 2);
        let at_takeover = registry.count().unwrap();
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(
            registry.count().unwrap(),
            at_takeover,
            "a write of the old term committed after the takeover"
        );
        assert!(refused.load(Ordering::SeqCst) >= 20);
        assert_eq!(
            ok.load(Ordering::SeqCst),
            at_takeover,
            "each success is in the store"
        );
        assert_invariants(&*registry);
    }
}

/// Waits until another session runs a statement containing `text` and waits for a lock
/// (`true`), or until `gave_up` says waiting is pointless (`false`).
fn wait_blocked(admin: &mut postgres::Client, text: &str, gave_up: impl Fn() -> bool) -> bool {
    let like = format!("%{text}%");
    loop {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND query LIKE $1 AND pid <> pg_backend_pid()",
                &[&like],
            )
            .unwrap()
            .get(0);
        if n > 0 {
            return true;
        }
        if gave_up() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The interleaving the share lock exists for: a's write has passed its lease check and waits
/// (here for a worker row the test holds); b's takeover then waits for that write to end, so
/// the write commits before the new term exists — never after it.
#[test]
fn a_takeover_waits_for_the_fenced_write_in_flight() {
    let (clock, registry, schema) = registry("fence_inflight");
    let registry = Arc::new(registry);
    let a = registry.leadership("a", TTL).unwrap();
    let b = registry.leadership("b", TTL).unwrap();
    assert_eq!(take(&a), 1);
    let view_a = registry.fenced(&a, 1).unwrap();
    let id = ready(&*view_a, spec());

    // The test's own session holds the worker's row.
    let mut holder = postgres::Client::connect(&url(), postgres::NoTls).unwrap();
    let mut held = holder.transaction().unwrap();
    held.execute(
        &format!(
            "SELECT 1 FROM \"{}\".workers WHERE id = $1 FOR UPDATE",
            schema.name
        ),
        &[id.as_uuid()],
    )
    .unwrap();
    let mut admin = postgres::Client::connect(&url(), postgres::NoTls).unwrap();

    let write = {
        let view = view_a.clone();
        std::thread::spawn(move || view.update_state(&id, WorkerState::Draining))
    };
    assert!(wait_blocked(&mut admin, "FOR UPDATE OF w", || write.is_finished()));
    clock.advance(TTL + Duration::from_secs(1));
    let takeover = std::thread::spawn(move || take(&b));
    let waited = wait_blocked(&mut admin, "INSERT INTO manager_leases", || {
        takeover.is_finished()
    });
    held.commit().unwrap();
    let written = write.join().unwrap();
    assert_eq!(takeover.join().unwrap(), 2);
    assert!(waited, "the takeover did not wait for the write in flight");
    assert_eq!(written.unwrap().state, WorkerState::Draining);
    // And the next write of a's view is refused.
    not_leader(view_a.update_state(&id, WorkerState::Terminating));
}
