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
    assert_eq!(orphans[0].1, "test-1");
    assert_eq!(orphans[0].2, 1, "one failed attempt: {orphans:?}");
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
