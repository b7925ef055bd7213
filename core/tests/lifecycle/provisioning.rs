//! Providers and provisioning: the ledger, `max_workers` under concurrency, failures, panics,
//! back-off, and no lock held across a provider call.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use crate::common::*;
use hodei_workers::*;

#[test]
fn provision_registers_a_creating_worker_and_says_so() {
    let f = Fixture::new(config());
    let w = f.provision();
    assert_eq!(w.state, WorkerState::Creating);
    assert_eq!(w.handle.provider_id, pid("test"));
    assert_eq!(w.handle.resource_id, "test-0");
    assert_eq!(f.provider.instance_ids(), vec!["test-0".to_owned()]);
    let events = f.drain();
    assert_eq!(
        Fixture::names(&events, None),
        vec!["provision_requested", "registered"]
    );
    assert_eq!(
        events[0],
        EventKind::ProvisionRequested {
            provider_id: pid("test")
        }
    );
    let stats = f.manager.stats().unwrap();
    assert_eq!(
        (stats.provisioned_total, stats.in_flight, stats.providers),
        (1, 0, 1)
    );
}

/// A manager that is the only one (no lease) calls every create and destroy with fencing
/// token 1, the term of its `AlwaysLeader`: a provider that checks tokens serves it always.
#[test]
fn a_lone_manager_calls_its_provider_with_fencing_token_1() {
    let f = Fixture::new(config());
    f.provider
        .fencing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let w = f.provision();
    f.manager
        .terminate_worker(&w.id, TerminationReason::Requested)
        .unwrap();
    f.provider.add_orphan("ghost-1");
    let r = f.manager.reconcile().unwrap();
    assert_eq!(r.orphans.len(), 1, "{r:?}");
    assert_eq!(
        *f.provider.tokens.lock(),
        [
            ("create".to_owned(), 1),
            ("destroy test-0".to_owned(), 1),
            ("destroy ghost-1".to_owned(), 1)
        ]
    );
    assert!(f.provider.refused.lock().is_empty());
    assert!(f.provider.instance_ids().is_empty());
}

#[test]
fn provisioning_is_refused_at_max_workers() {
    let f = Fixture::new(WorkerLifecycleConfig {
        max_workers: 3,
        ..config()
    });
    let ids: Vec<WorkerId> = (0..3).map(|_| f.provision().id).collect();
    match f.manager.provision_worker(&pid("test"), spec()) {
        Err(Error::CapacityExceeded(msg)) => {
            assert!(msg.contains("max_workers 3"), "{msg}");
            assert!(msg.contains("3 registered"), "{msg}");
        }
        other => panic!("expected CapacityExceeded, got {other:?}"),
    }
    let creates = f.provider.calls().iter().filter(|c| *c == "create").count();
    assert_eq!(creates, 3, "the provider was not asked a fourth time");
    // A Terminating worker still counts (its instance exists until destroyed).
    f.provider.script_destroys([DestroyStep::Fail("slow")]);
    f.manager
        .terminate_worker(&ids[0], TerminationReason::Requested)
        .unwrap();
    assert!(matches!(
        f.manager.provision_worker(&pid("test"), spec()),
        Err(Error::CapacityExceeded(_))
    ));
    f.advance(secs(1));
    f.manager.cleanup_workers().unwrap();
    assert_eq!(f.provision().state, WorkerState::Creating);
}

#[test]
fn bad_requests_are_refused_before_the_provider_is_called() {
    let f = Fixture::new(config());
    assert_eq!(
        f.manager
            .provision_worker(&pid("nope"), spec())
            .unwrap_err(),
        Error::ProviderNotFound(pid("nope"))
    );
    let bad = Arc::new(WorkerSpec::new("img").with_max_jobs(0));
    assert!(matches!(
        f.manager.provision_worker(&pid("test"), bad.clone()),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        f.manager.set_scaling_target(&pid("test"), bad),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(
        f.manager
            .set_scaling_target(&pid("nope"), spec())
            .unwrap_err(),
        Error::ProviderNotFound(pid("nope"))
    );
    assert!(f.provider.calls().is_empty());
    // A second provider with the same id.
    assert!(matches!(
        f.manager.register_provider(TestProvider::new("test")),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        WorkerLifecycleManager::new(
            f.registry.clone(),
            WorkerLifecycleConfig {
                min_ready_workers: 20,
                ..config()
            }
        ),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn a_failing_provider_gives_a_provider_error_and_an_event() {
    let f = Fixture::new(config());
    f.provider
        .script_creates([CreateStep::Fail("quota exceeded")]);
    match f.manager.provision_worker(&pid("test"), spec()) {
        Err(Error::Provider {
            provider_id,
            message,
        }) => {
            assert_eq!(provider_id, pid("test"));
            assert!(message.contains("quota exceeded"), "{message}");
        }
        other => panic!("expected a provider error, got {other:?}"),
    }
    assert_eq!(
        f.drain(),
        vec![
            EventKind::ProvisionRequested {
                provider_id: pid("test")
            },
            EventKind::ProvisionFailed {
                provider_id: pid("test"),
                error: "quota exceeded (failed)".to_owned()
            },
        ]
    );
    let stats = f.manager.stats().unwrap();
    assert_eq!((stats.in_flight, stats.provision_failures_total), (0, 1));
    assert_eq!(f.registry.count().unwrap(), 0);
    assert_eq!(f.manager.provider_backoff()[0].consecutive_failures, 1);
    // A success resets the failure count.
    f.provision();
    assert!(f.manager.provider_backoff().is_empty());
}

#[test]
fn a_panicking_provider_is_caught_and_becomes_a_provider_error() {
    let f = Fixture::new(config());
    f.provider.script_creates([CreateStep::Panic]);
    match f.manager.provision_worker(&pid("test"), spec()) {
        Err(Error::Provider { message, .. }) => {
            assert!(message.contains("panicked"), "{message}");
            assert!(message.contains("provider test exploded"), "{message}");
        }
        other => panic!("expected a provider error, got {other:?}"),
    }
    // The manager is intact: the ledger released its reservation, locks are free.
    assert_eq!(f.manager.stats().unwrap().in_flight, 0);
    assert_eq!(f.provision().state, WorkerState::Creating);
}

#[test]
fn a_handle_that_cannot_be_registered_is_destroyed_not_leaked() {
    let f = Fixture::new(config());
    let first = f.provision();
    // An id source that hands out an id already registered: the provider answers correctly,
    // the registry refuses the record.
    let taken = first.id;
    f.manager.set_worker_id_source(move || taken);
    assert_eq!(
        f.manager
            .provision_worker(&pid("test"), spec())
            .unwrap_err(),
        Error::AlreadyExists(first.id)
    );
    assert!(f.provider.calls().contains(&"destroy test-1".to_owned()));
    f.assert_no_leak();
}

/// The destroy of an instance its create left unregistered is a destroy attempt like the
/// others: when it fails it counts in `destroy_failures_total` (the metric
/// `hodei_workers_destroy_failures_total`) and in the orphan's attempts, and the ticks retry
/// it after the destroy back-off, as the failed orphan destroys of `reconcile` and of the
/// ticks' retries are. Before, this first failure was in no count (attempts 0, the counter
/// still 0) and the next tick called the failing provider again at once.
#[test]
fn a_failed_destroy_of_an_unregistered_create_is_a_counted_attempt() {
    let f = Fixture::new(WorkerLifecycleConfig {
        min_ready_workers: 0,
        ..config()
    });
    let first = f.provision();
    let taken = first.id;
    f.manager.set_worker_id_source(move || taken);
    f.provider.script_destroys([DestroyStep::Fail("api down")]);
    let err = f
        .manager
        .provision_worker(&pid("test"), spec())
        .unwrap_err();
    assert_eq!(err, Error::AlreadyExists(first.id));
    assert_eq!(f.manager.stats().unwrap().destroy_failures_total, 1);
    assert!(
        f.manager
            .metrics_text()
            .contains("\nhodei_workers_destroy_failures_total 1\n"),
        "{}",
        f.manager.metrics_text()
    );
    let orphans = f.manager.pending_orphans();
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    assert_eq!(orphans[0].resource_id, "test-1");
    assert_eq!(orphans[0].attempts, 1, "one failed attempt: {orphans:?}");
    // Not retried before the destroy back-off has run out, then destroyed.
    f.manager.tick(0);
    assert_eq!(f.manager.pending_orphans().len(), 1);
    f.advance(f.manager.config().destroy_retry_initial + ms(1));
    f.manager.tick(0);
    assert!(f.manager.pending_orphans().is_empty());
    assert_eq!(f.manager.stats().unwrap().destroy_failures_total, 1);
    f.assert_no_leak();
}

#[test]
fn a_provision_in_flight_counts_against_max_workers_and_demand() {
    let f = Fixture::new(WorkerLifecycleConfig {
        max_workers: 2,
        min_ready_workers: 0,
        ..config()
    });
    f.provider.script_creates([CreateStep::Stall]);
    let manager = f.manager.clone();
    let stalled = std::thread::spawn(move || manager.provision_worker(&pid("test"), spec()));
    // The stalled thread must have taken its scripted stall (not just reserved its place in
    // the ledger) before this thread calls the provider, or this one would take it and block.
    while f.manager.stats().unwrap().in_flight == 0 || !f.provider.creates.lock().is_empty() {
        std::thread::yield_now();
    }
    let plan = f.manager.plan_scaling(1).unwrap();
    assert_eq!((plan.in_flight, plan.wanted, plan.total), (1, 0, 1));
    f.provision();
    assert!(matches!(
        f.manager.provision_worker(&pid("test"), spec()),
        Err(Error::CapacityExceeded(_))
    ));
    f.provider.release_stalled(1);
    let w = stalled.join().unwrap().unwrap();
    assert_eq!(w.state, WorkerState::Creating);
    assert_eq!(f.registry.count().unwrap(), 2);
    assert_eq!(f.manager.stats().unwrap().in_flight, 0);
}

#[test]
fn concurrent_provision_worker_never_exceeds_max_workers() {
    for round in 0..5 {
        let f = Fixture::new(WorkerLifecycleConfig {
            max_workers: 5,
            ..config()
        });
        *f.provider.create_delay.lock() = Some(Duration::from_millis(1));
        let threads = 8;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let manager = f.manager.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    (0..3)
                        .map(|_| manager.provision_worker(&pid("test"), spec()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let results: Vec<Result<Worker>> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(Error::CapacityExceeded(_))))
            .count();
        assert_eq!((ok, refused), (5, 19), "round {round}");
        let creates = f.provider.calls().iter().filter(|c| *c == "create").count();
        assert_eq!(
            creates, 5,
            "round {round}: the provider was asked exactly 5 times"
        );
        assert_eq!(f.registry.count().unwrap(), 5);
        assert_eq!(f.provider.instance_ids().len(), 5);
        assert_eq!(f.manager.stats().unwrap().in_flight, 0);
    }
}

#[test]
fn provider_calls_can_reenter_the_manager_and_registry_without_deadlock() {
    // The fixture's provider calls stats, plan_scaling, find, count and snapshot from inside
    // every create, destroy and list: any lock held across a provider call would deadlock.
    let f = Fixture::new(config());
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let manager = f.manager.clone();
    let registry = f.registry.clone();
    let clock = f.clock.clone();
    std::thread::spawn(move || {
        manager.set_scaling_target(&pid("test"), spec()).unwrap();
        let r = manager.tick(3);
        assert_eq!(r.provisioned.len(), 4);
        for p in &r.provisioned {
            registry
                .update_state(&p.worker_id, WorkerState::Ready)
                .unwrap();
        }
        manager.provision_worker(&pid("test"), spec()).unwrap();
        manager
            .terminate_worker(&r.provisioned[0].worker_id, TerminationReason::Requested)
            .unwrap();
        manager.reconcile().unwrap();
        clock.advance(Duration::from_secs(400));
        manager.tick(0);
        manager.run_health_check().unwrap();
        manager.cleanup_workers().unwrap();
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a lock was held across a provider call (deadlock)");
    let calls = f.provider.calls();
    assert!(calls.iter().any(|c| c == "create"));
    assert!(calls.iter().any(|c| c.starts_with("destroy")));
    assert!(calls.iter().any(|c| c == "list"));
}

#[test]
fn a_second_concurrent_tick_is_skipped() {
    let f = Fixture::new(config());
    f.provider.script_creates([CreateStep::Stall]);
    f.manager.set_scaling_target(&pid("test"), spec()).unwrap();
    let manager = f.manager.clone();
    let first = std::thread::spawn(move || manager.tick(0));
    // The stalled thread must have taken its scripted stall (not just reserved its place in
    // the ledger) before this thread calls the provider, or this one would take it and block.
    while f.manager.stats().unwrap().in_flight == 0 || !f.provider.creates.lock().is_empty() {
        std::thread::yield_now();
    }
    let second = f.manager.tick(0);
    assert!(second.skipped);
    assert_eq!(second.actions, 0);
    f.provider.release_stalled(1);
    let first = first.join().unwrap();
    assert!(!first.skipped);
    assert_eq!(first.provisioned.len(), 1);
}

/// Two replicas, a and b, of a manager on one registry of the backend under test, sharing an
/// [`InMemoryLease`] on the registry's clock (which is their own clock too), the test provider
/// registered on both: a create of a's that spans lease changes.
struct Replicas {
    clock: Arc<ManualClock>,
    registry: Arc<dyn WorkerRegistry>,
    provider: Arc<TestProvider>,
    a: Arc<WorkerLifecycleManager>,
    b: Arc<WorkerLifecycleManager>,
}

const TTL: Duration = Duration::from_secs(15);

impl Replicas {
    fn new() -> Replicas {
        let clock = Arc::new(ManualClock::new(T0));
        let registry = crate::backend::new_registry(clock.clone());
        let provider = TestProvider::new("test");
        let lease = InMemoryLease::new(clock.clone(), "a", TTL);
        let replica = |holder: &str| {
            let manager = WorkerLifecycleManager::with_leadership(
                registry.clone(),
                WorkerLifecycleConfig {
                    min_ready_workers: 0,
                    // No brake: the health check expires what it finds expired.
                    max_unhealthy_fraction: 1.0,
                    ..config()
                },
                Arc::new(lease.replica(holder)),
                clock.clone(),
            )
            .unwrap();
            manager.register_provider(provider.clone()).unwrap();
            Arc::new(manager)
        };
        let (a, b) = (replica("a"), replica("b"));
        Replicas {
            clock,
            registry,
            provider,
            a,
            b,
        }
    }

    /// a leads (term 1) and provisions on a thread of its own into a create that does `step`
    /// (a stall). Returns once the create is inside the provider.
    fn a_provisions_into(&self, step: CreateStep) -> std::thread::JoinHandle<Result<Worker>> {
        assert!(self.a.tick(0).leading);
        self.provider.script_creates([step]);
        let a = Arc::clone(&self.a);
        let pid = self.provider.id.clone();
        let provisioning = std::thread::spawn(move || a.provision_worker(&pid, spec()));
        TestProvider::wait_for(&self.provider.creating_now, 1);
        provisioning
    }

    /// a stays inside its create past the ttl; b takes the lease over (term 2: its takeover
    /// reconcile lists the provider) and steps down; a leads again (term 3).
    fn b_leads_in_between(&self) {
        self.clock.advance(TTL + secs(1));
        assert!(self.b.tick(0).leading);
        self.b.step_down().unwrap();
        assert!(self.a.tick(0).leading);
    }

    fn count(&self, call: &str) -> usize {
        self.provider.calls().iter().filter(|c| *c == call).count()
    }
}

/// a's create spans b's term: b's takeover reconcile found a's new instance without a record
/// and destroyed it as an orphan. When a's create returns under term 3 (terms are consecutive:
/// someone led in between), a asks the provider, which no longer lists the instance: a neither
/// registers the worker nor destroys the instance again, and says so; not a failure of the
/// provider (no back-off, no `ProvisionFailed`). Before (clarified 2026-12-07), a registered
/// it: the worker never reported in, a's health check expired it at `startup_timeout` and
/// destroyed its instance a second time.
#[test]
fn a_create_whose_instance_another_leader_destroyed_meanwhile_is_not_registered() {
    let r = Replicas::new();
    let provisioning = r.a_provisions_into(CreateStep::StallReply);
    let resource = r.provider.instance_ids()[0].clone();
    r.b_leads_in_between();
    assert_eq!(
        r.provider.destroys_of(&resource),
        1,
        "b's reconcile destroyed it"
    );
    r.provider.release_stalled(1);
    let outcome = provisioning.join().unwrap();
    // What a's ticks do with a record of it: expired at `startup_timeout`, and destroyed.
    for _ in 0..11 {
        r.clock.advance(config().health_check_interval);
        r.a.tick(0);
    }
    assert_eq!(
        r.provider.destroys_of(&resource),
        1,
        "instance {resource} destroyed twice: {:?}; {outcome:?}",
        r.provider.calls()
    );
    assert_eq!(r.registry.count().unwrap(), 0, "{outcome:?}");
    let err = outcome.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotLeader, "{err}");
    assert!(
        err.to_string().contains("no longer lists instance test-0"),
        "{err}"
    );
    assert!(r.a.provider_backoff().is_empty());
    assert_eq!(r.a.stats().unwrap().in_flight, 0);
}

/// a's create spans its own loss and re-acquisition of the lease, nobody leading in between
/// (term 1, then 2): registered as a create of one term is, without asking the provider.
#[test]
fn a_create_that_outlives_its_own_re_acquisition_is_registered() {
    let r = Replicas::new();
    let provisioning = r.a_provisions_into(CreateStep::StallReply);
    r.a.step_down().unwrap();
    assert!(r.a.tick(0).leading);
    let lists = r.count("list");
    r.provider.release_stalled(1);
    let worker = provisioning.join().unwrap().unwrap();
    assert!(r.registry.get(&worker.id).unwrap().is_some());
    assert_eq!(
        r.count("list"),
        lists,
        "term 2 = 1 + 1: nobody led in between"
    );
    assert_eq!(r.count("destroy"), 0, "{:?}", r.provider.calls());
}

/// a's create spans b's term, but b's reconcile did not see the instance (the cloud made it
/// after b's listing): still listed when a asks, it is registered.
#[test]
fn a_create_that_outlives_another_leaders_term_is_registered_when_still_listed() {
    let r = Replicas::new();
    let provisioning = r.a_provisions_into(CreateStep::Stall);
    r.b_leads_in_between();
    let lists = r.count("list");
    r.provider.release_stalled(1);
    let worker = provisioning.join().unwrap().unwrap();
    assert!(r.registry.get(&worker.id).unwrap().is_some());
    assert_eq!(r.count("list"), lists + 1, "a asked the provider");
    assert_eq!(r.count("destroy"), 0, "{:?}", r.provider.calls());
}

/// The same when the provider's listing fails: nobody can say whether the instance is still
/// there, and it is registered, as before (the residual risk DESIGN.md states: had b's
/// reconcile destroyed it, its record expires at `startup_timeout` and its destroy is the
/// second).
#[test]
fn a_create_that_outlives_another_leaders_term_is_registered_when_the_listing_fails() {
    let r = Replicas::new();
    let provisioning = r.a_provisions_into(CreateStep::Stall);
    r.b_leads_in_between();
    let lists = r.count("list");
    r.provider.list_failures.lock().push_back("cloud API down");
    r.provider.release_stalled(1);
    let worker = provisioning.join().unwrap().unwrap();
    assert!(r.registry.get(&worker.id).unwrap().is_some());
    assert_eq!(r.count("list"), lists + 1, "a asked the provider");
    assert!(r.a.provider_backoff().is_empty());
}

/// The create of the first test above, whose replica's trust window closes (a renews nothing:
/// its clock moves past the ttl while nobody takes the lease) after it led again under term 3:
/// its fence after the create fails while it still holds term 3. The instance b's reconcile
/// destroyed is not remembered as an orphan of a's: a's next tick, renewing term 3, would
/// destroy it a second time. Left to a reconcile of whoever leads (if it is still there).
#[test]
fn a_create_whose_window_closed_after_another_leaders_term_destroys_nothing() {
    let r = Replicas::new();
    let provisioning = r.a_provisions_into(CreateStep::StallReply);
    let resource = r.provider.instance_ids()[0].clone();
    r.b_leads_in_between();
    assert_eq!(
        r.provider.destroys_of(&resource),
        1,
        "b's reconcile destroyed it"
    );
    r.clock.advance(TTL);
    r.provider.release_stalled(1);
    let outcome = provisioning.join().unwrap();
    for _ in 0..2 {
        assert!(r.a.tick(0).leading, "a renews term 3");
    }
    assert_eq!(
        r.provider.destroys_of(&resource),
        1,
        "instance {resource} destroyed twice: {:?}; {outcome:?}",
        r.provider.calls()
    );
    assert_eq!(r.registry.count().unwrap(), 0, "{outcome:?}");
    let err = outcome.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotLeader, "{err}");
    assert!(err.to_string().contains("trust window closed"), "{err}");
    assert!(r.a.pending_orphans().is_empty());
}
