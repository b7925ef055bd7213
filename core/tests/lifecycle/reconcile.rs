//! Reconcile: orphans destroyed, vanished instances expired, providers without `list_workers`
//! skipped, `Terminating` records adopted after a restore.

use std::sync::Arc;

use crate::common::*;
use hodei_workers::*;

#[test]
fn orphan_instances_are_destroyed_and_known_ones_kept() {
    let f = Fixture::new(config());
    let kept = f.ready();
    f.provider.add_orphan("ghost-1");
    f.provider.add_orphan("ghost-2");
    let r = f.manager.reconcile().unwrap();
    assert_eq!(r.checked, vec![pid("test")]);
    assert_eq!(
        r.orphans,
        vec![
            OrphanInstance {
                provider_id: pid("test"),
                resource_id: "ghost-1".to_owned(),
                error: None
            },
            OrphanInstance {
                provider_id: pid("test"),
                resource_id: "ghost-2".to_owned(),
                error: None
            },
        ]
    );
    assert!(r.vanished.is_empty());
    assert_eq!(f.state(&kept), Some(WorkerState::Ready));
    f.assert_no_leak();
    // A failed orphan destroy is reported and tried again next time.
    f.provider.add_orphan("ghost-3");
    f.provider.script_destroys([DestroyStep::Fail("busy")]);
    let r = f.manager.reconcile().unwrap();
    assert_eq!(r.orphans[0].error.as_deref(), Some("busy (failed)"));
    let r = f.manager.reconcile().unwrap();
    assert_eq!(r.orphans[0].error, None);
    f.assert_no_leak();
}

#[test]
fn a_record_whose_instance_vanished_is_expired_with_reason_vanished_and_its_job_reported() {
    let f = Fixture::new(config());
    let w = f.ready();
    let other = f.ready();
    f.registry.assign_to_job(&w, job("j9")).unwrap();
    let resource = f
        .registry
        .get(&w)
        .unwrap()
        .unwrap()
        .handle
        .resource_id
        .clone();
    f.advance(secs(1));
    f.provider.lose(&resource);
    f.drain();
    let r = f.manager.reconcile().unwrap();
    assert_eq!(r.vanished, vec![w]);
    assert_eq!(
        r.lost_jobs,
        vec![LostJob {
            worker_id: w,
            job_id: job("j9")
        }]
    );
    assert_eq!(
        f.drain(),
        vec![
            EventKind::JobLost {
                worker_id: w,
                job_id: job("j9")
            },
            EventKind::Unregistered {
                worker_id: w,
                reason: TerminationReason::Vanished
            },
        ]
    );
    assert_eq!(f.state(&w), None);
    assert_eq!(f.state(&other), Some(WorkerState::Ready));
    assert!(!f.provider.calls().contains(&format!("destroy {resource}")));
    f.assert_no_leak();
}

#[test]
fn a_worker_registered_during_the_listing_is_not_taken_for_vanished() {
    // A record created at the very instant of the listing may not be listed yet.
    let f = Fixture::new(config());
    let fresh = f.provision();
    f.provider.lose(&fresh.handle.resource_id);
    let r = f.manager.reconcile().unwrap();
    assert!(r.vanished.is_empty(), "{r:?}");
    f.advance(ms(1));
    let r = f.manager.reconcile().unwrap();
    assert_eq!(r.vanished, vec![fresh.id]);
}

#[test]
fn providers_without_list_workers_are_skipped() {
    let f = Fixture::new(config());
    let other = TestProvider::without_list("nolist");
    f.manager.register_provider(other).unwrap();
    let r = f.manager.reconcile().unwrap();
    assert_eq!(r.checked, vec![pid("test")]);
    assert_eq!(r.unsupported, vec![pid("nolist")]);
}

#[test]
fn orphans_are_left_alone_while_a_provision_is_in_flight() {
    let f = Fixture::new(config());
    f.provider.script_creates([CreateStep::Stall]);
    let m = f.manager.clone();
    let stalled = std::thread::spawn(move || m.provision_worker(&pid("test"), spec()));
    // The stalled thread must have taken its scripted stall (not just reserved its place in
    // the ledger) before this thread calls the provider, or this one would take it and block.
    while f.manager.stats().unwrap().in_flight == 0 || !f.provider.creates.lock().is_empty() {
        std::thread::yield_now();
    }
    f.provider.add_orphan("ghost");
    let r = f.manager.reconcile().unwrap();
    assert_eq!(r.orphan_check_skipped, vec![pid("test")]);
    assert!(r.orphans.is_empty());
    f.provider.release_stalled(1);
    let w = stalled.join().unwrap().unwrap();
    let r = f.manager.reconcile().unwrap();
    assert_eq!(r.orphans.len(), 1);
    assert_eq!(r.orphans[0].resource_id, "ghost");
    assert_eq!(
        f.state(&w.id),
        Some(WorkerState::Creating),
        "the new worker is kept"
    );
    f.assert_no_leak();
}

#[test]
fn terminating_records_from_a_restore_are_adopted_and_destroyed() {
    let f = Fixture::new(config());
    let w = f.ready();
    f.registry
        .update_state(&w, WorkerState::Terminating)
        .unwrap();
    let snapshot = f.registry.snapshot().unwrap();

    // A new host process: fresh registry restored from the snapshot, fresh manager.
    let clock = f.clock.clone();
    let registry: Arc<dyn WorkerRegistry> = crate::backend::new_registry(clock.clone());
    registry.restore(snapshot).unwrap();
    let manager = WorkerLifecycleManager::new(registry.clone(), config()).unwrap();
    manager.register_provider(f.provider.clone()).unwrap();
    // (A cleanup or tick would adopt it too, by itself: see lifecycle_contract.rs. This one
    // asked reconcile first.)
    let r = manager.reconcile().unwrap();
    assert_eq!(r.adopted_terminating, vec![w]);
    let t = manager.tick(0);
    assert_eq!(t.terminated.len(), 1);
    assert_eq!(t.terminated[0].reason, TerminationReason::Requested);
    assert_eq!(registry.count().unwrap(), 0);
    assert!(f.provider.instance_ids().is_empty());
}

#[test]
fn a_failing_list_is_reported_not_fatal() {
    #[derive(Debug)]
    struct Broken;
    impl WorkerProvider for Broken {
        fn provider_id(&self) -> ProviderId {
            pid("broken")
        }
        fn provider_type(&self) -> ProviderType {
            ProviderType::Ec2
        }
        fn create_worker(&self, _: WorkerId, _: &WorkerSpec) -> ProviderResult<WorkerHandle> {
            Err(ProviderError::new("no"))
        }
        fn destroy_worker(&self, _: &WorkerHandle) -> ProviderResult<()> {
            Ok(())
        }
        fn list_workers(&self) -> ProviderResult<Vec<WorkerHandle>> {
            panic!("list exploded")
        }
    }
    let f = Fixture::new(config());
    f.manager.register_provider(Arc::new(Broken)).unwrap();
    let r = f.manager.reconcile().unwrap();
    assert_eq!(r.checked, vec![pid("test")]);
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].0, pid("broken"));
    assert!(r.errors[0].1.contains("list exploded"), "{}", r.errors[0].1);
}

// ----- the periodic reconcile (`reconcile_interval`) -----------------------------------------

/// Ticks the managers every `step` of everyone's time (the store's and the replicas' own
/// clocks) until `done` holds or `limit` has passed; returns the time it took, if it did.
fn tick_until(
    clocks: &[&Arc<ManualClock>],
    managers: &[&WorkerLifecycleManager],
    step: std::time::Duration,
    limit: std::time::Duration,
    mut done: impl FnMut(&[TickReport]) -> bool,
) -> Option<std::time::Duration> {
    let mut waited = std::time::Duration::ZERO;
    while waited < limit {
        for c in clocks {
            c.advance(step);
        }
        waited += step;
        let reports: Vec<TickReport> = managers.iter().map(|m| m.tick(0)).collect();
        if done(&reports) {
            return Some(waited);
        }
    }
    None
}

/// A leader that lost its lease during a create registers nothing and destroys nothing: the
/// instance is the new leader's. But when the create returns after the new leader's takeover
/// reconcile, nothing ever looked again: on hosts that only tick (no `reconcile()` call), the
/// instance ran for ever. The new leader's periodic reconcile destroys it within
/// `reconcile_interval` (default 600 s).
#[test]
fn a_create_returning_after_the_new_leaders_takeover_reconcile_is_destroyed_by_its_ticks() {
    const TTL: std::time::Duration = std::time::Duration::from_secs(15);
    let store = Arc::new(ManualClock::new(T0));
    let registry: Arc<dyn WorkerRegistry> = crate::backend::new_registry(store.clone());
    let provider = TestProvider::new("test");
    let lease = InMemoryLease::new(store.clone(), "a", TTL);
    let config = WorkerLifecycleConfig {
        min_ready_workers: 0,
        ..config()
    };
    let interval = config.reconcile_interval;
    let replica = |name: &str| {
        let local = Arc::new(ManualClock::new(0));
        let manager = Arc::new(
            WorkerLifecycleManager::with_leadership(
                registry.clone(),
                config.clone(),
                Arc::new(lease.replica(name)),
                local.clone(),
            )
            .unwrap(),
        );
        manager.register_provider(provider.clone()).unwrap();
        (manager, local)
    };
    let (a, a_clock) = replica("a");
    let (b, b_clock) = replica("b");
    let clocks = [&store, &a_clock, &b_clock];
    assert!(a.tick(0).leading);

    // a's create stalls inside the provider past the ttl; b takes over meanwhile, and its
    // takeover reconcile completes before the instance exists.
    provider.script_creates([CreateStep::Stall]);
    let provisioning = {
        let a = Arc::clone(&a);
        std::thread::spawn(move || a.provision_worker(&pid("test"), spec()))
    };
    TestProvider::wait_for(&provider.creating_now, 1);
    for c in clocks {
        c.advance(TTL + secs(1));
    }
    let rb = b.tick(0);
    assert!(rb.leading, "{:?}", rb.decisions);
    assert!(provider.instance_ids().is_empty());
    provider.release_stalled(1);
    let err = provisioning.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::NotLeader(_)), "{err}");
    let orphan = provider.instance_ids();
    assert_eq!(orphan.len(), 1, "the late create made an instance");
    assert_eq!(registry.count().unwrap(), 0, "and registered nothing");

    // Only ticks from here on, both replicas'.
    let mut destroyed_by = None;
    let took = tick_until(
        &clocks,
        &[&a, &b],
        secs(5),
        interval + secs(10),
        |reports| {
            if provider.instance_ids().is_empty() {
                destroyed_by = reports
                    .iter()
                    .position(|r| r.decisions.iter().any(|d| d.contains("periodic reconcile")));
                return true;
            }
            false
        },
    );
    let took = took.unwrap_or_else(|| {
        panic!(
            "orphan {orphan:?} still listed after {} s of ticks (reconcile_interval {} s)",
            (interval + secs(10)).as_secs(),
            interval.as_secs()
        )
    });
    assert!(took <= interval + secs(5), "destroyed after {took:?}");
    assert_eq!(destroyed_by, Some(1), "b, the leader, destroyed it");
    assert_eq!(
        provider
            .calls()
            .iter()
            .filter(|c| c.starts_with("destroy"))
            .count(),
        1,
        "destroyed once: {:?}",
        provider.calls()
    );
}

/// A single manager: an orphan instance that appears after the last reconcile (a host's call
/// here) is destroyed by the ticks `reconcile_interval` after that call, not before, and the
/// tick reports it as a takeover's reconcile is reported.
#[test]
fn an_orphan_that_appears_after_the_last_reconcile_is_destroyed_by_the_periodic_one() {
    let f = Fixture::new(WorkerLifecycleConfig {
        min_ready_workers: 0,
        ..config()
    });
    let interval = f.manager.config().reconcile_interval;
    let busy = f.ready();
    f.registry.assign_to_job(&busy, job("j1")).unwrap();
    f.advance(secs(100));
    // The host reconciles (at startup, say): the next periodic one counts from here.
    assert!(f.manager.reconcile().unwrap().orphans.is_empty());
    let reconciled_at = f.now();
    f.advance(secs(50));
    f.provider.add_orphan("ghost");
    let lists = || f.provider.calls().iter().filter(|c| *c == "list").count();
    let lists_before = lists();
    let mut report = None;
    while f.now() < reconciled_at + interval.as_millis() as u64 {
        f.advance(secs(10));
        f.registry.heartbeat(&busy).unwrap();
        let r = f.manager.tick(0);
        if f.now() < reconciled_at + interval.as_millis() as u64 {
            assert_eq!(lists(), lists_before, "reconciled early: {:?}", r.decisions);
            assert_eq!(f.provider.instance_ids().len(), 2);
        } else {
            report = Some(r);
        }
    }
    let report = report.unwrap();
    assert!(
        !f.provider.instance_ids().contains(&"ghost".to_owned()),
        "orphan still listed {} s after the last reconcile: {:?}",
        interval.as_secs(),
        report.decisions
    );
    assert_eq!(lists(), lists_before + 1, "{:?}", report.decisions);
    assert!(
        report.decisions.iter().any(|d| {
            d
            == "periodic reconcile: 0 Terminating adopted, 1 orphan instances destroyed, 0 vanished"
        }),
        "{:?}",
        report.decisions
    );
    assert_eq!(
        f.state(&busy),
        Some(WorkerState::Busy),
        "the known one is kept"
    );
    f.assert_no_leak();
}

/// `reconcile_interval` zero: the ticks never reconcile by themselves (no listing at all), and
/// a host's `reconcile()` still works.
#[test]
fn a_zero_reconcile_interval_never_reconciles_on_ticks() {
    let f = Fixture::new(WorkerLifecycleConfig {
        min_ready_workers: 0,
        reconcile_interval: std::time::Duration::ZERO,
        ..config()
    });
    f.provider.add_orphan("ghost");
    f.manager.reconcile().unwrap();
    f.provider.add_orphan("ghost-2");
    for _ in 0..200 {
        f.advance(secs(60));
        let r = f.manager.tick(0);
        assert!(
            !r.decisions.iter().any(|d| d.contains("reconcile")),
            "{:?}",
            r.decisions
        );
    }
    assert_eq!(
        f.provider.calls().iter().filter(|c| *c == "list").count(),
        1,
        "only the host's reconcile listed"
    );
    assert_eq!(f.provider.instance_ids(), ["ghost-2"]);
    assert_eq!(f.manager.reconcile().unwrap().orphans.len(), 1);
    f.assert_no_leak();
}

/// A periodic reconcile that could not look at every provider's instances (a listing failed)
/// runs again after a back-off (`destroy_retry_initial` at first), as the takeover's does,
/// until it could; then the next one is `reconcile_interval` later.
#[test]
fn an_incomplete_periodic_reconcile_runs_again_after_a_back_off() {
    #[derive(Debug)]
    struct FlakyList {
        lists: std::sync::atomic::AtomicUsize,
        orphan_destroyed: std::sync::atomic::AtomicBool,
    }
    impl WorkerProvider for FlakyList {
        fn provider_id(&self) -> ProviderId {
            pid("flaky-list")
        }
        fn provider_type(&self) -> ProviderType {
            ProviderType::Ec2
        }
        fn create_worker(&self, _: WorkerId, _: &WorkerSpec) -> ProviderResult<WorkerHandle> {
            Err(ProviderError::new("no creates here"))
        }
        fn destroy_worker(&self, _: &WorkerHandle) -> ProviderResult<()> {
            self.orphan_destroyed
                .store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
        fn list_workers(&self) -> ProviderResult<Vec<WorkerHandle>> {
            use std::sync::atomic::Ordering::SeqCst;
            if self.lists.fetch_add(1, SeqCst) == 0 {
                return Err(ProviderError::new("throttled"));
            }
            if self.orphan_destroyed.load(SeqCst) {
                return Ok(Vec::new());
            }
            Ok(vec![WorkerHandle::new(
                self.provider_id(),
                self.provider_type(),
                "i-orphan",
            )])
        }
    }
    let f = Fixture::new(WorkerLifecycleConfig {
        min_ready_workers: 0,
        ..config()
    });
    let (interval, retry) = (
        f.manager.config().reconcile_interval,
        f.manager.config().destroy_retry_initial,
    );
    let flaky = Arc::new(FlakyList {
        lists: 0.into(),
        orphan_destroyed: false.into(),
    });
    f.manager.register_provider(flaky.clone()).unwrap();
    let lists = || flaky.lists.load(std::sync::atomic::Ordering::SeqCst);
    // Ticks every 10 s up to the first periodic run: it fails on the listing.
    let mut report = None;
    while f.now() < T0 + interval.as_millis() as u64 {
        f.advance(secs(10));
        report = Some(f.manager.tick(0));
    }
    let r = report.unwrap();
    assert_eq!(lists(), 1, "{:?}", r.decisions);
    assert!(
        r.decisions
            .iter()
            .any(|d| d == "periodic reconcile incomplete: run again in 1 s"),
        "{:?}",
        r.decisions
    );
    // Not again before the back-off; then again, complete, the orphan destroyed.
    f.advance(retry - ms(1));
    f.manager.tick(0);
    assert_eq!(lists(), 1);
    f.advance(ms(1));
    let r = f.manager.tick(0);
    assert_eq!(lists(), 2, "{:?}", r.decisions);
    assert!(
        flaky
            .orphan_destroyed
            .load(std::sync::atomic::Ordering::SeqCst),
        "{:?}",
        r.decisions
    );
    assert!(
        r.decisions.iter().any(|d| d.starts_with(
            "periodic reconcile (again): 0 Terminating adopted, 1 orphan instances destroyed"
        )),
        "{:?}",
        r.decisions
    );
    // Complete: the next run is a whole interval later.
    let again_at = f.now();
    while f.now() < again_at + interval.as_millis() as u64 - 10_000 {
        f.advance(secs(10));
        f.manager.tick(0);
    }
    assert_eq!(lists(), 2);
    f.advance(secs(10));
    f.manager.tick(0);
    assert_eq!(lists(), 3);
}

/// A failed orphan destroy in `reconcile` is a failed destroy attempt like any other: counted
/// in `destroy_failures_total` (and the metric `hodei_workers_destroy_failures_total`), as the
/// ticks' retries of the same orphan are. Before, only the retries were.
#[test]
fn a_failed_orphan_destroy_in_reconcile_is_counted() {
    let f = Fixture::new(WorkerLifecycleConfig {
        min_ready_workers: 0,
        ..config()
    });
    f.provider.add_orphan("ghost");
    f.provider
        .script_destroys([DestroyStep::Fail("busy"), DestroyStep::Fail("busy")]);
    let r = f.manager.reconcile().unwrap();
    assert_eq!(r.orphans[0].error.as_deref(), Some("busy (failed)"));
    assert_eq!(f.manager.stats().unwrap().destroy_failures_total, 1);
    // The ticks' retry fails too: the second attempt, counted the same way.
    f.advance(f.manager.config().destroy_retry_initial + ms(1));
    let t = f.manager.tick(0);
    assert_eq!(t.failed.len(), 1, "{:?}", t.decisions);
    assert_eq!(t.failed[0].attempts, 2);
    assert_eq!(f.manager.stats().unwrap().destroy_failures_total, 2);
}

/// The periodic reconcile judges no record younger than `startup_timeout` as vanished: a
/// provider's listing may lag behind its creates (a cloud API's eventual consistency), and a
/// fresh worker must not be expired, job and all, for not being listed yet. An older record
/// whose instance is gone is expired as before, and a host's own `reconcile()` is unchanged.
#[test]
fn the_periodic_reconcile_spares_a_worker_too_young_to_be_listed() {
    let f = Fixture::new(WorkerLifecycleConfig {
        min_ready_workers: 0,
        ..config()
    });
    let interval = f.manager.config().reconcile_interval;
    let resource = |id: &WorkerId| {
        f.registry
            .get(id)
            .unwrap()
            .unwrap()
            .handle
            .resource_id
            .clone()
    };
    let old = f.ready();
    f.registry.assign_to_job(&old, job("j-old")).unwrap();
    f.manager.reconcile().unwrap();
    let due = f.now() + interval.as_millis() as u64;
    let mut young = None;
    let mut report = None;
    while report.is_none() {
        f.advance(secs(10));
        if young.is_none() && f.now() + 20_000 >= due {
            // Registered 20 s before the periodic run; its instance not listed yet, and the old
            // worker's instance gone.
            let id = f.ready();
            f.registry.assign_to_job(&id, job("j-young")).unwrap();
            f.provider.lose(&resource(&id));
            f.provider.lose(&resource(&old));
            young = Some(id);
        }
        for id in [Some(old), young].into_iter().flatten() {
            if f.state(&id).is_some() {
                f.registry.heartbeat(&id).unwrap();
            }
        }
        let r = f.manager.tick(0);
        if r.decisions
            .iter()
            .any(|d| d.starts_with("periodic reconcile"))
        {
            report = Some(r);
        }
        assert!(f.now() <= due, "no periodic reconcile by {due}");
    }
    let (report, young) = (report.unwrap(), young.unwrap());
    assert_eq!(f.state(&old), None, "{:?}", report.decisions);
    assert_eq!(
        report.lost_jobs,
        vec![LostJob {
            worker_id: old,
            job_id: job("j-old")
        }]
    );
    assert_eq!(
        f.state(&young),
        Some(WorkerState::Busy),
        "a worker registered 20 s before was expired: {:?}",
        report.decisions
    );
    // The host's own reconcile judges every record the listing misses, as before.
    assert_eq!(f.manager.reconcile().unwrap().vanished, vec![young]);
}

// ----- the ticks' reconcile and the action cap, the back-off of an incomplete one -----------

/// The tick's reconcile spends the tick's action budget (`max_actions_per_tick`): each orphan
/// destroy is one action, and the orphans over the budget are kept and destroyed by the next
/// ticks' orphan retries, within the budget too, without listing again. Before, a takeover
/// reconcile that found 10 orphans destroyed all 10 in one tick with a cap of 3.
#[test]
fn a_takeover_reconcile_destroys_no_more_orphans_per_tick_than_the_action_cap() {
    const TTL: std::time::Duration = std::time::Duration::from_secs(15);
    let store = Arc::new(ManualClock::new(T0));
    let local = Arc::new(ManualClock::new(0));
    let registry: Arc<dyn WorkerRegistry> = crate::backend::new_registry(store.clone());
    let provider = TestProvider::new("test");
    for i in 0..10 {
        provider.add_orphan(&format!("ghost-{i}"));
    }
    let manager = WorkerLifecycleManager::with_leadership(
        registry,
        WorkerLifecycleConfig {
            min_ready_workers: 0,
            max_actions_per_tick: 3,
            // The brake allows the ticks 10 orphans of an empty registry (this test is about
            // the cap, not about the brake on orphans).
            unhealthy_floor: 10,
            ..config()
        },
        Arc::new(InMemoryLease::new(store.clone(), "a", TTL)),
        local.clone(),
    )
    .unwrap();
    manager.register_provider(provider.clone()).unwrap();

    let r = manager.tick(0);
    assert!(r.leading, "{:?}", r.decisions);
    assert_eq!(
        provider.destroy_calls().len(),
        3,
        "the takeover reconcile's destroys: {:?}",
        r.decisions
    );
    assert_eq!((r.actions, r.capped), (3, true), "{:?}", r.decisions);
    assert!(
        r.decisions.iter().any(|d| d
            == "takeover reconcile: 7 orphan instances over max_actions_per_tick 3: destroyed by \
                the next ticks"),
        "{:?}",
        r.decisions
    );
    assert_eq!(manager.pending_orphans().len(), 7);

    for left in [4, 1, 0] {
        store.advance(secs(1));
        local.advance(secs(1));
        let r = manager.tick(0);
        assert!(r.leading, "{:?}", r.decisions);
        assert!(r.actions <= 3, "{} actions: {:?}", r.actions, r.decisions);
        assert_eq!(provider.instance_ids().len(), left, "{:?}", r.decisions);
    }
    assert!(manager.pending_orphans().is_empty());
    let mut destroyed = provider.destroy_calls();
    assert_eq!(destroyed.len(), 10, "{destroyed:?}");
    destroyed.dedup();
    assert_eq!(destroyed.len(), 10, "an orphan destroyed twice");
    assert_eq!(
        provider.calls().iter().filter(|c| *c == "list").count(),
        1,
        "listed again: {:?}",
        provider.calls()
    );
}

/// The periodic reconcile spends the tick's budget as the takeover's does; the host's own
/// `reconcile()` is not capped.
#[test]
fn the_periodic_reconcile_is_capped_and_the_hosts_is_not() {
    let f = Fixture::new(WorkerLifecycleConfig {
        min_ready_workers: 0,
        max_actions_per_tick: 2,
        // The brake allows the ticks 4 orphans of an empty registry (this test is about the
        // cap, not about the brake on orphans).
        unhealthy_floor: 4,
        ..config()
    });
    let interval = f.manager.config().reconcile_interval;
    for i in 0..5 {
        f.provider.add_orphan(&format!("ghost-{i}"));
    }
    let r = f.manager.reconcile().unwrap();
    assert_eq!(r.orphans.len(), 5, "{r:?}");
    assert!(f.provider.instance_ids().is_empty());

    for i in 0..4 {
        f.provider.add_orphan(&format!("late-{i}"));
    }
    f.advance(interval);
    let r = f.manager.tick(0);
    assert_eq!(f.provider.instance_ids().len(), 2, "{:?}", r.decisions);
    assert_eq!((r.actions, r.capped), (2, true), "{:?}", r.decisions);
    f.advance(secs(1));
    let r = f.manager.tick(0);
    assert!(f.provider.instance_ids().is_empty(), "{:?}", r.decisions);
    assert_eq!(r.actions, 2, "{:?}", r.decisions);
    f.assert_no_leak();
}

/// A provider whose `list_workers` fails as long as `failing` is set; the registry clock's
/// time of every listing.
#[derive(Debug)]
struct FailingList {
    clock: Arc<ManualClock>,
    failing: std::sync::atomic::AtomicBool,
    lists: parking_lot::Mutex<Vec<Timestamp>>,
}

impl FailingList {
    fn register(f: &Fixture) -> Arc<Self> {
        let p = Arc::new(FailingList {
            clock: f.clock.clone(),
            failing: true.into(),
            lists: Default::default(),
        });
        f.manager.register_provider(p.clone()).unwrap();
        p
    }

    fn fail(&self, failing: bool) {
        self.failing
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    /// The gaps (s) between the listings from `from` on.
    fn gaps_since(&self, from: Timestamp) -> Vec<u64> {
        let lists: Vec<Timestamp> = self
            .lists
            .lock()
            .iter()
            .copied()
            .filter(|t| *t >= from)
            .collect();
        lists.windows(2).map(|w| (w[1] - w[0]) / 1000).collect()
    }
}

impl WorkerProvider for FailingList {
    fn provider_id(&self) -> ProviderId {
        pid("failing-list")
    }
    fn provider_type(&self) -> ProviderType {
        ProviderType::Ec2
    }
    fn create_worker(&self, _: WorkerId, _: &WorkerSpec) -> ProviderResult<WorkerHandle> {
        Err(ProviderError::new("no creates here"))
    }
    fn destroy_worker(&self, _: &WorkerHandle) -> ProviderResult<()> {
        Ok(())
    }
    fn list_workers(&self) -> ProviderResult<Vec<WorkerHandle>> {
        self.lists.lock().push(self.clock.now());
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ProviderError::new("throttled"));
        }
        Ok(Vec::new())
    }
}

/// Ticks every 10 s until `until`.
fn tick_every_10s_until(f: &Fixture, until: Timestamp) {
    while f.now() < until {
        f.advance(secs(10));
        f.manager.tick(0);
    }
}

/// A config whose back-off for the ticks' incomplete reconcile starts at 10 s.
fn backoff_config() -> WorkerLifecycleConfig {
    WorkerLifecycleConfig {
        min_ready_workers: 0,
        destroy_retry_initial: secs(10),
        ..config()
    }
}

/// A provider whose listing always fails made the incomplete periodic reconcile run again
/// every `health_check_interval` for ever (a failing `list_workers` call and a report line
/// every 30 s). It runs again after a back-off: `destroy_retry_initial` doubling up to
/// `reconcile_interval`.
#[test]
fn a_provider_whose_listing_always_fails_is_listed_with_growing_gaps() {
    let f = Fixture::new(backoff_config());
    let interval = f.manager.config().reconcile_interval.as_secs();
    let p = FailingList::register(&f);
    let first = T0 + interval * 1000;
    tick_every_10s_until(&f, first + 3_600_000);
    assert_eq!(p.lists.lock().first(), Some(&first));
    assert_eq!(
        p.gaps_since(first),
        [10, 20, 40, 80, 160, 320, 600, 600, 600, 600],
        "s between the listings of the failing provider"
    );
    f.advance(secs(10));
    let r = f.manager.tick(0);
    assert!(
        !r.decisions.iter().any(|d| d.contains("reconcile")),
        "{:?}",
        r.decisions
    );
}

/// The back-off of the ticks' incomplete reconcile starts again from `destroy_retry_initial`
/// after a complete reconcile: the ticks' own, or the host's.
#[test]
fn a_complete_reconcile_resets_the_back_off_of_an_incomplete_one() {
    let f = Fixture::new(backoff_config());
    let interval = f.manager.config().reconcile_interval.as_millis() as u64;
    let p = FailingList::register(&f);
    let first = T0 + interval;
    // Three failures (10 s, then 20 s apart); the retry after 40 s completes.
    tick_every_10s_until(&f, first + 30_000);
    assert_eq!(p.gaps_since(first), [10, 20]);
    p.fail(false);
    tick_every_10s_until(&f, first + 70_000);
    assert_eq!(p.gaps_since(first), [10, 20, 40]);
    // The next periodic run, a whole interval later, fails: the first retry is 10 s later.
    p.fail(true);
    let second = first + 70_000 + interval;
    tick_every_10s_until(&f, second + 30_000);
    assert_eq!(p.gaps_since(second), [10, 20]);
    // The host's reconcile completes (the provider lists again): the same.
    p.fail(false);
    let r = f.manager.reconcile().unwrap();
    assert!(r.errors.is_empty(), "{r:?}");
    let third = f.now() + interval;
    p.fail(true);
    tick_every_10s_until(&f, third + 10_000);
    assert_eq!(p.gaps_since(third), [10]);
}

/// An orphan instance has no record, so a failed destroy of it publishes no `DestroyFailed`
/// (an event about a worker the registry does not hold is refused): it is reported in the
/// tick's `failed` and counted in `destroy_failures_total` only. The ticks' retry published one
/// all the same, which reached subscribers when a record held the id by then — the host
/// re-registered the agent that reported in from the instance, as §4 tells it to — and said of
/// that live worker that it "stays Terminating and is retried", which nothing did.
#[test]
fn an_orphans_failed_destroy_publishes_no_destroy_failed_event() {
    #[derive(Debug)]
    struct ReRegistered {
        registry: Arc<dyn WorkerRegistry>,
        orphan: WorkerHandle,
        destroys: parking_lot::Mutex<u32>,
    }
    impl WorkerProvider for ReRegistered {
        fn provider_id(&self) -> ProviderId {
            pid("re-registered")
        }
        fn provider_type(&self) -> ProviderType {
            ProviderType::Ec2
        }
        fn create_worker(&self, _: WorkerId, _: &WorkerSpec) -> ProviderResult<WorkerHandle> {
            Err(ProviderError::new("no creates here"))
        }
        fn destroy_worker(&self, _: &WorkerHandle) -> ProviderResult<()> {
            let mut destroys = self.destroys.lock();
            *destroys += 1;
            if *destroys == 2 {
                // The instance's agent reports in meanwhile, and the host registers it.
                self.registry.register(self.orphan.clone(), spec()).unwrap();
            }
            Err(ProviderError::new("instance is locked"))
        }
        fn list_workers(&self) -> ProviderResult<Vec<WorkerHandle>> {
            Ok(vec![self.orphan.clone()])
        }
    }
    let f = Fixture::new(WorkerLifecycleConfig {
        min_ready_workers: 0,
        ..config()
    });
    let orphan = WorkerHandle {
        worker_id: WorkerId::new(),
        ..WorkerHandle::new(pid("re-registered"), ProviderType::Ec2, "i-orphan")
    };
    let p = Arc::new(ReRegistered {
        registry: f.registry.clone(),
        orphan: orphan.clone(),
        destroys: Default::default(),
    });
    f.manager.register_provider(p.clone()).unwrap();
    let r = f.manager.reconcile().unwrap();
    assert!(r.orphans[0].error.is_some(), "{r:?}");
    f.advance(f.manager.config().destroy_retry_initial + ms(1));
    let t = f.manager.tick(0);
    assert_eq!(*p.destroys.lock(), 2, "{:?}", t.decisions);
    assert_eq!(t.failed.len(), 1, "{:?}", t.decisions);
    assert_eq!(t.failed[0].resource_id, "i-orphan");
    assert_eq!(f.manager.stats().unwrap().destroy_failures_total, 2);
    let events = f.drain();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, EventKind::DestroyFailed { .. })),
        "{events:?}"
    );
    // The record is the host's now: the ticks forget the orphan and never destroy it.
    assert_eq!(f.state(&orphan.worker_id), Some(WorkerState::Creating));
    f.advance(secs(600));
    f.manager.tick(0);
    assert!(f.manager.pending_orphans().is_empty());
    assert_eq!(*p.destroys.lock(), 2);
}

/// With the periodic reconcile off (`reconcile_interval` zero), an incomplete takeover
/// reconcile still runs again after a back-off, capped by `destroy_retry_max` (capped by the
/// zero interval, it would run again at every tick).
#[test]
fn with_the_periodic_reconcile_off_the_back_off_is_capped_by_destroy_retry_max() {
    let store = Arc::new(ManualClock::new(T0));
    let local = Arc::new(ManualClock::new(0));
    let registry: Arc<dyn WorkerRegistry> = crate::backend::new_registry(store.clone());
    let p = Arc::new(FailingList {
        clock: store.clone(),
        failing: true.into(),
        lists: Default::default(),
    });
    let manager = WorkerLifecycleManager::with_leadership(
        registry,
        WorkerLifecycleConfig {
            reconcile_interval: std::time::Duration::ZERO,
            destroy_retry_max: secs(40),
            ..backoff_config()
        },
        Arc::new(InMemoryLease::new(store.clone(), "a", secs(15))),
        local.clone(),
    )
    .unwrap();
    manager.register_provider(p.clone()).unwrap();
    for _ in 0..30 {
        store.advance(secs(10));
        local.advance(secs(10));
        assert!(manager.tick(0).leading);
    }
    assert_eq!(
        p.lists.lock().first(),
        Some(&(T0 + 10_000)),
        "the takeover's"
    );
    assert_eq!(p.gaps_since(T0), [10, 20, 40, 40, 40, 40, 40, 40]);
}

/// A reconcile whose lease stops being trusted in the middle of a provider's orphans (a
/// destroy outlasted the trust window) destroys no more of them, and says so in `errors`: it
/// is incomplete, so the ticks run it again after the back-off. It read as complete (the
/// orphans left were in no field of the report), so when the replica kept its term at the
/// next renewal (nobody else took the lease: no takeover, no takeover reconcile) the orphans
/// left waited for the next periodic run, `reconcile_interval` later.
#[test]
fn a_reconcile_that_stops_trusting_its_lease_among_the_orphans_is_incomplete() {
    #[derive(Debug)]
    struct SlowDestroy {
        clocks: Vec<Arc<ManualClock>>,
        instances: parking_lot::Mutex<Vec<String>>,
    }
    impl WorkerProvider for SlowDestroy {
        fn provider_id(&self) -> ProviderId {
            pid("slow-destroy")
        }
        fn provider_type(&self) -> ProviderType {
            ProviderType::Ec2
        }
        fn create_worker(&self, _: WorkerId, _: &WorkerSpec) -> ProviderResult<WorkerHandle> {
            Err(ProviderError::new("no creates here"))
        }
        fn destroy_worker(&self, handle: &WorkerHandle) -> ProviderResult<()> {
            let mut instances = self.instances.lock();
            if instances.len() == 2 {
                // The first destroy takes longer than the lease.
                for c in &self.clocks {
                    c.advance(secs(30));
                }
            }
            instances.retain(|r| *r != handle.resource_id);
            Ok(())
        }
        fn list_workers(&self) -> ProviderResult<Vec<WorkerHandle>> {
            Ok(self
                .instances
                .lock()
                .iter()
                .map(|r| WorkerHandle::new(self.provider_id(), self.provider_type(), r))
                .collect())
        }
    }
    let store = Arc::new(ManualClock::new(T0));
    let local = Arc::new(ManualClock::new(0));
    let registry: Arc<dyn WorkerRegistry> = crate::backend::new_registry(store.clone());
    let p = Arc::new(SlowDestroy {
        clocks: vec![store.clone(), local.clone()],
        instances: parking_lot::Mutex::new(vec!["ghost-0".into(), "ghost-1".into()]),
    });
    let manager = WorkerLifecycleManager::with_leadership(
        registry,
        WorkerLifecycleConfig {
            min_ready_workers: 0,
            // The brake allows the ticks 2 orphans of an empty registry (this test is about
            // the lease, not about the brake on orphans).
            unhealthy_floor: 2,
            ..config()
        },
        Arc::new(InMemoryLease::new(store.clone(), "a", secs(15))),
        local.clone(),
    )
    .unwrap();
    manager.register_provider(p.clone()).unwrap();
    let r = manager.tick(0);
    assert_eq!(p.instances.lock().len(), 1, "{:?}", r.decisions);
    assert!(!r.leading, "{:?}", r.decisions);
    assert!(
        r.decisions
            .iter()
            .any(|d| d.starts_with("takeover reconcile incomplete")),
        "{:?}",
        r.decisions
    );
    // Nobody took the lease: the same term is kept, and the next ticks destroy the other.
    for _ in 0..3 {
        store.advance(secs(1));
        local.advance(secs(1));
        let r = manager.tick(0);
        assert!(r.leading, "{:?}", r.decisions);
    }
    assert!(p.instances.lock().is_empty());
}

/// The ticks' orphan retries spend an action on a destroy only: a remembered orphan whose id a
/// record holds by now (the host registered its agent) is forgotten without one. Before, each
/// look at the registry took an action, so that a tick destroying nothing reported the cap
/// reached and left the rest of its work (scaling above all) to later ticks.
#[test]
fn an_orphan_retry_that_finds_the_instance_registered_takes_no_action() {
    const TTL: std::time::Duration = std::time::Duration::from_secs(15);
    let store = Arc::new(ManualClock::new(T0));
    let local = Arc::new(ManualClock::new(0));
    let registry: Arc<dyn WorkerRegistry> = crate::backend::new_registry(store.clone());
    let provider = TestProvider::new("test");
    let orphans: Vec<WorkerHandle> = (0..6)
        .map(|i| WorkerHandle {
            worker_id: WorkerId::new(),
            ..WorkerHandle::new(pid("test"), ProviderType::Docker, format!("ghost-{i}"))
        })
        .collect();
    for h in &orphans {
        provider
            .instances
            .lock()
            .insert(h.resource_id.clone(), h.clone());
    }
    let manager = WorkerLifecycleManager::with_leadership(
        registry.clone(),
        WorkerLifecycleConfig {
            min_ready_workers: 0,
            max_actions_per_tick: 2,
            // The brake allows the ticks 6 orphans of an empty registry (this test is about
            // the retries' actions, not about the brake on orphans).
            unhealthy_floor: 6,
            ..config()
        },
        Arc::new(InMemoryLease::new(store.clone(), "a", TTL)),
        local.clone(),
    )
    .unwrap();
    manager.register_provider(provider.clone()).unwrap();
    let r = manager.tick(0);
    assert_eq!(provider.destroy_calls().len(), 2, "{:?}", r.decisions);
    assert_eq!(manager.pending_orphans().len(), 4);
    // The agents of three of the four left report in, and the host registers them.
    let left: Vec<WorkerId> = manager
        .pending_orphans()
        .iter()
        .map(|o| o.worker_id)
        .collect();
    for h in orphans.iter().filter(|h| left[..3].contains(&h.worker_id)) {
        registry.register(h.clone(), spec()).unwrap();
    }
    store.advance(secs(1));
    local.advance(secs(1));
    let r = manager.tick(0);
    assert_eq!(provider.destroy_calls().len(), 3, "{:?}", r.decisions);
    assert_eq!((r.actions, r.capped), (1, false), "{:?}", r.decisions);
    assert!(manager.pending_orphans().is_empty());
}

/// Lists an instance only once it is a minute old (a cloud API's eventual consistency).
#[derive(Debug)]
struct LaggingList {
    clock: Arc<ManualClock>,
    instances: parking_lot::Mutex<Vec<(WorkerHandle, Timestamp)>>,
}
impl WorkerProvider for LaggingList {
    fn provider_id(&self) -> ProviderId {
        pid("lagging")
    }
    fn provider_type(&self) -> ProviderType {
        ProviderType::Ec2
    }
    fn create_worker(&self, id: WorkerId, _: &WorkerSpec) -> ProviderResult<WorkerHandle> {
        let handle = WorkerHandle {
            worker_id: id,
            ..WorkerHandle::new(self.provider_id(), self.provider_type(), format!("i-{id}"))
        };
        self.instances
            .lock()
            .push((handle.clone(), self.clock.now()));
        Ok(handle)
    }
    fn destroy_worker(&self, handle: &WorkerHandle) -> ProviderResult<()> {
        self.instances
            .lock()
            .retain(|(h, _)| h.resource_id != handle.resource_id);
        Ok(())
    }
    fn list_workers(&self) -> ProviderResult<Vec<WorkerHandle>> {
        let now = self.clock.now();
        Ok(self
            .instances
            .lock()
            .iter()
            .filter(|(_, at)| at + 60_000 <= now)
            .map(|(h, _)| h.clone())
            .collect())
    }
}

/// A takeover reconcile's runs again (after its back-off) spare the records younger than
/// `startup_timeout`, as the periodic runs do: they come seconds to minutes after the
/// takeover, while the new leader creates workers that a lagging listing does not show yet.
/// Judged as the takeover's first run, such a fresh worker was expired as `Vanished`.
#[test]
fn a_takeover_reconcile_run_again_spares_a_worker_too_young_to_be_listed() {
    let store = Arc::new(ManualClock::new(T0));
    let local = Arc::new(ManualClock::new(0));
    let registry: Arc<dyn WorkerRegistry> = crate::backend::new_registry(store.clone());
    let failing = Arc::new(FailingList {
        clock: store.clone(),
        failing: true.into(),
        lists: Default::default(),
    });
    let lagging = Arc::new(LaggingList {
        clock: store.clone(),
        instances: Default::default(),
    });
    let manager = WorkerLifecycleManager::with_leadership(
        registry.clone(),
        backoff_config(),
        Arc::new(InMemoryLease::new(store.clone(), "a", secs(15))),
        local.clone(),
    )
    .unwrap();
    manager.register_provider(failing.clone()).unwrap();
    manager.register_provider(lagging.clone()).unwrap();
    let r = manager.tick(0);
    assert!(
        r.decisions
            .iter()
            .any(|d| d.starts_with("takeover reconcile incomplete")),
        "{:?}",
        r.decisions
    );
    let w = manager.provision_worker(&pid("lagging"), spec()).unwrap();
    registry.update_state(&w.id, WorkerState::Ready).unwrap();
    // Two runs again (10 s, then 20 s later) list the fresh instance's provider.
    for _ in 0..4 {
        store.advance(secs(10));
        local.advance(secs(10));
        registry.heartbeat(&w.id).unwrap();
        let r = manager.tick(0);
        assert!(r.leading, "{:?}", r.decisions);
        assert_eq!(
            registry.get(&w.id).unwrap().map(|w| w.state),
            Some(WorkerState::Ready),
            "{:?}",
            r.decisions
        );
    }
    assert!(failing.lists.lock().len() >= 3, "ran again");
}

/// A takeover's first reconcile spares the records younger than `startup_timeout` too: the old
/// leader may have provisioned a worker seconds before it died, and a lagging listing does not
/// show that instance yet. Judged as a host's own `reconcile()` judges, the fresh worker, busy
/// with a job and heartbeating, was expired as `Vanished` by the new leader and its job
/// reported lost: a failover cost the fleet its newest workers.
#[test]
fn a_takeover_reconcile_spares_a_worker_the_old_leader_provisioned_too_recently_to_be_listed() {
    let store = Arc::new(ManualClock::new(T0));
    let registry: Arc<dyn WorkerRegistry> = crate::backend::new_registry(store.clone());
    let lagging = Arc::new(LaggingList {
        clock: store.clone(),
        instances: Default::default(),
    });
    let lease = InMemoryLease::new(store.clone(), "a", secs(15));
    let replica = |holder: &str| {
        let local = Arc::new(ManualClock::new(0));
        let manager = WorkerLifecycleManager::with_leadership(
            registry.clone(),
            backoff_config(),
            Arc::new(lease.replica(holder)),
            local.clone(),
        )
        .unwrap();
        manager.register_provider(lagging.clone()).unwrap();
        (manager, local)
    };
    let (a, a_local) = replica("a");
    assert!(a.tick(0).leading);
    let w = a.provision_worker(&pid("lagging"), spec()).unwrap();
    registry.update_state(&w.id, WorkerState::Ready).unwrap();
    registry.assign_to_job(&w.id, job("j")).unwrap();
    a_local.advance(secs(1));
    // a dies. Its lease runs out; the worker's agent goes on heartbeating.
    let (b, b_local) = replica("b");
    for _ in 0..3 {
        store.advance(secs(10));
        b_local.advance(secs(10));
        registry.heartbeat(&w.id).unwrap();
        let r = b.tick(0);
        assert!(r.lost_jobs.is_empty(), "{:?}", r.decisions);
        assert_eq!(
            registry
                .get(&w.id)
                .unwrap()
                .map(|w| (w.state, w.current_job)),
            Some((WorkerState::Busy, Some(job("j")))),
            "{:?}",
            r.decisions
        );
    }
    assert!(b.is_leader(), "b took over");
    assert_eq!(lagging.instances.lock().len(), 1, "the instance lives on");
}

// ----- the brake on the ticks' reconcile: a listing that misses most of a fleet ------------

/// A provider whose listing comes back empty by mistake (a pagination bug, an API answering
/// `[]` in an outage) must not make the ticks expire its whole fleet as `Vanished`, jobs and
/// all: the brake's rule holds the run (reported, incomplete, run again after the back-off).
/// Once the listing misses only one worker, that one is expired as before.
#[test]
fn a_periodic_reconcile_whose_listing_misses_most_of_a_fleet_is_held_by_the_brake() {
    let f = Fixture::new(WorkerLifecycleConfig {
        min_ready_workers: 0,
        ..config()
    });
    assert!(f.manager.config().unhealthy_floor < 10);
    let due = f.now() + f.manager.config().reconcile_interval.as_millis() as u64;
    let fleet: Vec<(WorkerId, String)> = (0..10)
        .map(|i| {
            let id = f.ready();
            f.registry
                .assign_to_job(&id, job(&format!("j{i}")))
                .unwrap();
            let resource = f
                .registry
                .get(&id)
                .unwrap()
                .unwrap()
                .handle
                .resource_id
                .clone();
            (id, resource)
        })
        .collect();
    // The listing answers [].
    for (_, resource) in &fleet {
        f.provider.lose(resource);
    }
    let tick = || {
        f.advance(secs(10));
        for (id, _) in &fleet {
            if f.state(id).is_some() {
                f.registry.heartbeat(id).unwrap();
            }
        }
        f.manager.tick(0)
    };
    let mut held = None;
    while f.now() < due + 60_000 {
        let r = tick();
        assert!(
            r.lost_jobs.is_empty(),
            "jobs reported lost for an empty listing: {:?}",
            r.decisions
        );
        if r.decisions
            .iter()
            .any(|d| d.starts_with("periodic reconcile"))
        {
            held.get_or_insert(r);
        }
    }
    let held = held.expect("no periodic reconcile");
    for (id, _) in &fleet {
        assert_eq!(f.state(id), Some(WorkerState::Busy), "{:?}", held.decisions);
    }
    assert!(
        held.decisions.iter().any(|d| d
            == "periodic reconcile: provider test: listing of test would expire 10 of 10 \
                workers: held by the brake"),
        "{:?}",
        held.decisions
    );
    assert!(
        held.decisions
            .iter()
            .any(|d| d.starts_with("periodic reconcile incomplete: run again in")),
        "{:?}",
        held.decisions
    );
    // The listing is whole again but for one instance: the next run again expires that one.
    for (_, resource) in &fleet[1..] {
        f.provider.add_orphan(resource);
    }
    let mut lost = Vec::new();
    for _ in 0..100 {
        lost.extend(tick().lost_jobs);
        if f.state(&fleet[0].0).is_none() {
            break;
        }
    }
    assert_eq!(f.state(&fleet[0].0), None);
    assert_eq!(
        lost,
        vec![LostJob {
            worker_id: fleet[0].0,
            job_id: job("j0")
        }]
    );
    for (id, _) in &fleet[1..] {
        assert_eq!(f.state(id), Some(WorkerState::Busy));
    }
    // The host's own reconcile is not braked: the host asked.
    for (_, resource) in &fleet[1..] {
        f.provider.lose(resource);
    }
    assert_eq!(f.manager.reconcile().unwrap().vanished.len(), 9);
}

/// A manager that takes over through an in-memory lease on `store`'s clock (replica "a", ttl
/// 15 s, its own clock at 0) over `registry`, with `provider` registered and no warm pool
/// (`min_ready_workers` 0 over `config`): its first tick is a takeover.
fn takeover_leader(
    registry: Arc<dyn WorkerRegistry>,
    store: &Arc<ManualClock>,
    provider: &Arc<TestProvider>,
    config: WorkerLifecycleConfig,
) -> WorkerLifecycleManager {
    let manager = WorkerLifecycleManager::with_leadership(
        registry,
        WorkerLifecycleConfig {
            min_ready_workers: 0,
            ..config
        },
        Arc::new(InMemoryLease::new(store.clone(), "a", secs(15))),
        Arc::new(ManualClock::new(0)),
    )
    .unwrap();
    manager.register_provider(provider.clone()).unwrap();
    manager
}

/// [`takeover_leader`] of an empty registry whose provider lists five instances no record
/// knows (`i-0` … `i-4`).
fn leader_over_five_orphans(
    config: WorkerLifecycleConfig,
) -> (WorkerLifecycleManager, Arc<TestProvider>) {
    let store = Arc::new(ManualClock::new(T0));
    let registry: Arc<dyn WorkerRegistry> = crate::backend::new_registry(store.clone());
    let provider = TestProvider::new("test");
    for i in 0..5 {
        provider.add_orphan(&format!("i-{i}"));
    }
    (
        takeover_leader(registry, &store, &provider, config),
        provider,
    )
}

/// The takeover's reconcile is braked too: a new leader whose provider answers `[]` does not
/// expire the fleet it inherits.
#[test]
fn a_takeover_reconcile_whose_listing_is_empty_expires_none_of_the_fleet() {
    let store = Arc::new(ManualClock::new(T0));
    let registry: Arc<dyn WorkerRegistry> = crate::backend::new_registry(store.clone());
    let provider = TestProvider::new("test");
    // A fleet of 10 the previous leader left, running jobs; the provider lists none of them.
    let fleet: Vec<WorkerId> = (0..10)
        .map(|i| {
            let handle = WorkerHandle::new(pid("test"), ProviderType::Docker, format!("i-{i}"));
            let w = registry.register(handle, spec()).unwrap();
            registry.update_state(&w.id, WorkerState::Ready).unwrap();
            registry
                .assign_to_job(&w.id, job(&format!("j{i}")))
                .unwrap();
            w.id
        })
        .collect();
    store.advance(secs(400));
    let manager = takeover_leader(registry.clone(), &store, &provider, config());
    let r = manager.tick(0);
    assert!(r.leading, "{:?}", r.decisions);
    assert!(r.lost_jobs.is_empty(), "{:?}", r.decisions);
    for id in &fleet {
        assert_eq!(
            registry.get(id).unwrap().map(|w| w.state),
            Some(WorkerState::Busy),
            "{:?}",
            r.decisions
        );
    }
    assert!(
        r.decisions.iter().any(|d| d
            == "takeover reconcile: provider test: listing of test would expire 10 of 10 \
                workers: held by the brake"),
        "{:?}",
        r.decisions
    );
    assert!(
        r.decisions
            .iter()
            .any(|d| d.starts_with("takeover reconcile incomplete: run again in")),
        "{:?}",
        r.decisions
    );
}

/// The brake counts among the workers the listing judges: records too young for the periodic
/// run (a scale-up under way) are not judged, and must not dilute the fraction, or an empty
/// listing during a scale-up expires the older fleet after all.
#[test]
fn young_workers_do_not_dilute_the_brake_of_a_periodic_reconcile() {
    let f = Fixture::new(WorkerLifecycleConfig {
        min_ready_workers: 0,
        ..config()
    });
    let due = f.now() + f.manager.config().reconcile_interval.as_millis() as u64;
    let mut fleet: Vec<WorkerId> = (0..4)
        .map(|i| {
            let id = f.ready();
            f.registry
                .assign_to_job(&id, job(&format!("old{i}")))
                .unwrap();
            id
        })
        .collect();
    let mut held = None;
    while held.is_none() {
        f.advance(secs(10));
        if fleet.len() == 4 && f.now() + 20_000 >= due {
            // A scale-up 20 s before the periodic run: 6 young workers.
            for i in 0..6 {
                let id = f.ready();
                f.registry
                    .assign_to_job(&id, job(&format!("young{i}")))
                    .unwrap();
                fleet.push(id);
            }
            // And the listing answers [].
            for id in &fleet {
                let resource = f
                    .registry
                    .get(id)
                    .unwrap()
                    .unwrap()
                    .handle
                    .resource_id
                    .clone();
                f.provider.lose(&resource);
            }
        }
        for id in &fleet {
            if f.state(id).is_some() {
                f.registry.heartbeat(id).unwrap();
            }
        }
        let r = f.manager.tick(0);
        assert!(r.lost_jobs.is_empty(), "{:?}", r.decisions);
        if r.decisions
            .iter()
            .any(|d| d.starts_with("periodic reconcile"))
        {
            held = Some(r);
        }
        assert!(f.now() <= due, "no periodic reconcile by {due}");
    }
    let held = held.unwrap();
    assert!(
        held.decisions.iter().any(|d| d
            == "periodic reconcile: provider test: listing of test would expire 4 of 4 \
                workers: held by the brake"),
        "{:?}",
        held.decisions
    );
    for id in &fleet {
        assert_eq!(f.state(id), Some(WorkerState::Busy));
    }
}

/// A listing that shows instances that are not ours (another tenant's, another region's: a
/// misconfigured listing) must not have the ticks destroy them all as orphans. Counted against
/// the provider's records, more orphans than the brake allows are held: none destroyed, none
/// remembered for the retries, the run reported and incomplete (run again after the back-off).
/// A listing that shows as many as the brake allows has them destroyed as before, and the
/// host's own `reconcile()` is not braked (the host asked). Before, the periodic run destroyed
/// the 10 foreign instances.
#[test]
fn a_periodic_reconcile_whose_listing_shows_many_unknown_instances_is_held_by_the_brake() {
    let f = Fixture::new(WorkerLifecycleConfig {
        min_ready_workers: 0,
        ..config()
    });
    assert_eq!(f.manager.config().unhealthy_floor, 1);
    let due = f.now() + f.manager.config().reconcile_interval.as_millis() as u64;
    // 4 records: the brake allows max(1, floor(0.55 × 4)) = 2 unknown instances.
    let fleet: Vec<WorkerId> = (0..4)
        .map(|i| {
            let id = f.ready();
            f.registry
                .assign_to_job(&id, job(&format!("j{i}")))
                .unwrap();
            id
        })
        .collect();
    let foreign: Vec<String> = (0..10).map(|i| format!("theirs-{i}")).collect();
    for resource in &foreign {
        f.provider.add_orphan(resource);
    }
    let tick = || {
        f.advance(secs(10));
        for id in &fleet {
            f.registry.heartbeat(id).unwrap();
        }
        f.manager.tick(0)
    };
    let mut held = None;
    while f.now() < due + 60_000 {
        let r = tick();
        if r.decisions
            .iter()
            .any(|d| d.starts_with("periodic reconcile"))
        {
            held.get_or_insert(r);
        }
    }
    let held = held.expect("no periodic reconcile");
    assert!(
        f.provider.destroy_calls().is_empty(),
        "instances no record knows destroyed: {:?}",
        held.decisions
    );
    assert_eq!(f.provider.instance_ids().len(), 14, "{:?}", held.decisions);
    assert!(f.manager.pending_orphans().is_empty(), "deferred");
    assert!(
        held.decisions.iter().any(|d| d
            == "periodic reconcile: provider test: listing of test shows 10 instances no record \
                knows (of 4 records): held by the brake"),
        "{:?}",
        held.decisions
    );
    assert!(
        held.decisions
            .iter()
            .any(|d| d.starts_with("periodic reconcile incomplete: run again in")),
        "{:?}",
        held.decisions
    );
    for id in &fleet {
        assert_eq!(f.state(id), Some(WorkerState::Busy));
    }
    // The listing is fixed but for 2 unknown instances (as many as the brake allows): the next
    // run again destroys them.
    for resource in &foreign[2..] {
        f.provider.lose(resource);
    }
    for _ in 0..100 {
        tick();
        if f.provider.instance_ids().len() == 4 {
            break;
        }
    }
    assert_eq!(
        f.provider.destroy_calls(),
        ["destroy theirs-0", "destroy theirs-1"]
    );
    f.assert_no_leak();
    // The host's own reconcile is not braked: the host asked.
    for resource in &foreign {
        f.provider.add_orphan(resource);
    }
    assert_eq!(f.manager.reconcile().unwrap().orphans.len(), 10);
    f.assert_no_leak();
}

/// The takeover's reconcile is braked on orphans too: a new leader of an empty registry (the
/// registry lost, or a wrong one) whose provider lists many instances destroys none of them;
/// the few instances a dead leader created before registering (at most `unhealthy_floor`) are
/// still destroyed (`a_create_returning_after_the_new_leaders_takeover_reconcile_is_destroyed_by_its_ticks`).
#[test]
fn a_takeover_reconcile_of_an_empty_registry_destroys_none_of_many_listed_instances() {
    let (manager, provider) = leader_over_five_orphans(config());
    let r = manager.tick(0);
    assert!(r.leading, "{:?}", r.decisions);
    assert!(provider.destroy_calls().is_empty(), "{:?}", r.decisions);
    assert!(manager.pending_orphans().is_empty());
    assert!(
        r.decisions.iter().any(|d| d
            == "takeover reconcile: provider test: listing of test shows 5 instances no record \
                knows (of 0 records): held by the brake"),
        "{:?}",
        r.decisions
    );
    assert!(
        r.decisions
            .iter()
            .any(|d| d.starts_with("takeover reconcile incomplete: run again in")),
        "{:?}",
        r.decisions
    );
    // The host's reconcile is the way after losing a registry.
    assert_eq!(manager.reconcile().unwrap().orphans.len(), 5);
    assert!(provider.instance_ids().is_empty());
}

/// `Terminating` records are judged by the ticks' reconcile brake too. In an outage where the
/// provider's listing answers `[]` and its destroys fail, the records the manager is
/// destroying must not be unregistered as `Vanished` without a confirmed destroy (their
/// instances, still running, would then be destroyed as orphans by a later correct listing, or
/// leak): the run is held, and the destroy queue's retries confirm them once the provider is
/// back. Before, the brake counted only the live records: the periodic run unregistered the 4
/// `Terminating` records as `Vanished`.
#[test]
fn terminating_records_missing_from_an_empty_listing_are_held_by_the_brake() {
    let f = Fixture::new(WorkerLifecycleConfig {
        min_ready_workers: 0,
        ..config()
    });
    let due = f.now() + f.manager.config().reconcile_interval.as_millis() as u64;
    let fleet: Vec<(WorkerId, String)> = (0..4)
        .map(|_| {
            let id = f.ready();
            let resource = f
                .registry
                .get(&id)
                .unwrap()
                .unwrap()
                .handle
                .resource_id
                .clone();
            (id, resource)
        })
        .collect();
    // The outage: destroys fail, and the listing answers [].
    f.provider
        .script_destroys((0..1000).map(|_| DestroyStep::Fail("api down")));
    for (id, _) in &fleet {
        let r = f
            .manager
            .terminate_worker(id, TerminationReason::Requested)
            .unwrap();
        assert_eq!(r.failed.len(), 1, "{r:?}");
    }
    let hidden = f.provider.instances.lock().clone();
    for (_, resource) in &fleet {
        f.provider.lose(resource);
    }
    f.drain();
    let mut held = None;
    while f.now() < due + 60_000 {
        f.advance(secs(10));
        let r = f.manager.tick(0);
        if r.decisions
            .iter()
            .any(|d| d.starts_with("periodic reconcile"))
        {
            held.get_or_insert(r);
        }
    }
    let held = held.expect("no periodic reconcile");
    for (id, _) in &fleet {
        assert_eq!(
            f.state(id),
            Some(WorkerState::Terminating),
            "unregistered without a confirmed destroy: {:?}",
            held.decisions
        );
    }
    assert!(
        held.decisions.iter().any(|d| d
            == "periodic reconcile: provider test: listing of test would expire 4 of 4 \
                workers: held by the brake"),
        "{:?}",
        held.decisions
    );
    // The outage ends: the instances are listed again and destroys work. The destroy queue's
    // retries confirm each destroy; no record leaves as `Vanished`, no instance as an orphan.
    f.provider.destroys.lock().clear();
    f.provider.instances.lock().extend(hidden);
    for _ in 0..100 {
        f.advance(secs(10));
        f.manager.tick(0);
        if fleet.iter().all(|(id, _)| f.state(id).is_none()) {
            break;
        }
    }
    for (id, _) in &fleet {
        assert_eq!(f.state(id), None);
    }
    let reasons: Vec<TerminationReason> = f
        .drain()
        .into_iter()
        .filter_map(|e| match e {
            EventKind::Unregistered { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, vec![TerminationReason::Requested; 4]);
    f.assert_no_leak();
}

/// `max_unhealthy_fraction` 1 disables the brake (as documented), on orphans too: the orphans
/// are not among the records the fraction is of, so `1 × records` did not let them all through
/// (5 listed over an empty registry were held).
#[test]
fn a_fraction_of_one_disables_the_brake_on_orphans() {
    let (manager, provider) = leader_over_five_orphans(WorkerLifecycleConfig {
        max_unhealthy_fraction: 1.0,
        ..config()
    });
    let r = manager.tick(0);
    assert!(r.leading, "{:?}", r.decisions);
    assert!(provider.instance_ids().is_empty(), "{:?}", r.decisions);
    assert!(
        r.decisions.iter().any(|d| d
            == "takeover reconcile: 0 Terminating adopted, 5 orphan instances destroyed, 0 \
                vanished"),
        "{:?}",
        r.decisions
    );
}

/// The inner provider, its listings passed through `edit` (a cloud API whose pages shifted
/// while they were read, whose order is not stable).
struct EditedListing<F>(Arc<TestProvider>, F);

impl<F> std::fmt::Debug for EditedListing<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("EditedListing").field(&self.0).finish()
    }
}

impl<F: Fn(&mut Vec<WorkerHandle>) + Send + Sync + 'static> WorkerProvider for EditedListing<F> {
    fn provider_id(&self) -> ProviderId {
        self.0.provider_id()
    }
    fn provider_type(&self) -> ProviderType {
        self.0.provider_type()
    }
    fn create_worker(&self, id: WorkerId, spec: &WorkerSpec) -> ProviderResult<WorkerHandle> {
        self.0.create_worker(id, spec)
    }
    fn destroy_worker(&self, handle: &WorkerHandle) -> ProviderResult<()> {
        self.0.destroy_worker(handle)
    }
    fn list_workers(&self) -> ProviderResult<Vec<WorkerHandle>> {
        let mut listed = self.0.list_workers()?;
        (self.1)(&mut listed);
        Ok(listed)
    }
}

/// A listing that shows one instance twice (a paginated cloud API whose pages shifted while it
/// was read) does not have that orphan destroyed twice, nor counted twice: an instance is
/// destroyed once. Before, the second destroy call reached the provider (answered `NotFound`)
/// and the report listed the orphan twice.
#[test]
fn an_orphan_listed_twice_is_destroyed_once() {
    let clock = Arc::new(ManualClock::new(T0));
    let registry: Arc<dyn WorkerRegistry> = crate::backend::new_registry(clock);
    let manager = WorkerLifecycleManager::new(registry, config()).unwrap();
    let inner = TestProvider::new("test");
    manager
        .register_provider(Arc::new(EditedListing(
            inner.clone(),
            |listed: &mut Vec<WorkerHandle>| listed.extend(listed.clone()),
        )))
        .unwrap();
    inner.add_orphan("ghost");
    let r = manager.reconcile().unwrap();
    assert_eq!(inner.destroy_calls(), ["destroy ghost"], "{r:?}");
    assert_eq!(r.orphans.len(), 1, "{r:?}");
    assert!(inner.instance_ids().is_empty());
}

/// An orphan is the instance of the provider whose listing showed it, whatever provider id the
/// listed handle carries (a provider wrapping another, passing its handles through): its
/// retries go to that provider too. Before, a failed destroy was remembered under the handle's
/// provider id and retried through the provider registered under it — here another one,
/// which answered `Ok` for an instance it does not have: the orphan was taken for destroyed
/// and ran on.
#[test]
fn an_orphans_retry_goes_to_the_provider_that_listed_it() {
    #[derive(Debug)]
    struct Renaming(Arc<TestProvider>);
    impl WorkerProvider for Renaming {
        fn provider_id(&self) -> ProviderId {
            pid("eu")
        }
        fn provider_type(&self) -> ProviderType {
            self.0.provider_type()
        }
        fn create_worker(&self, id: WorkerId, spec: &WorkerSpec) -> ProviderResult<WorkerHandle> {
            self.0.create_worker(id, spec)
        }
        fn destroy_worker(&self, handle: &WorkerHandle) -> ProviderResult<()> {
            self.0.destroy_worker(handle)
        }
        fn list_workers(&self) -> ProviderResult<Vec<WorkerHandle>> {
            self.0.list_workers()
        }
    }
    let clock = Arc::new(ManualClock::new(T0));
    let registry: Arc<dyn WorkerRegistry> = crate::backend::new_registry(clock.clone());
    let manager = WorkerLifecycleManager::new(
        registry,
        WorkerLifecycleConfig {
            min_ready_workers: 0,
            ..config()
        },
    )
    .unwrap();
    // "eu" passes through the handles of a generic provider named "generic"; another
    // provider is registered under that name.
    let eu = TestProvider::new("generic");
    let generic = TestProvider::new("generic");
    manager
        .register_provider(Arc::new(Renaming(eu.clone())))
        .unwrap();
    manager.register_provider(generic.clone()).unwrap();
    eu.add_orphan("ghost");
    eu.script_destroys([DestroyStep::Fail("busy")]);
    let r = manager.reconcile().unwrap();
    assert_eq!(r.orphans.len(), 1, "{r:?}");
    assert_eq!(r.orphans[0].provider_id, pid("eu"));
    assert_eq!(manager.pending_orphans().len(), 1);
    for _ in 0..10 {
        clock.advance(secs(10));
        manager.tick(0);
    }
    assert!(generic.destroy_calls().is_empty(), "{:?}", generic.calls());
    assert_eq!(eu.destroy_calls(), ["destroy ghost", "destroy ghost"]);
    assert!(eu.instance_ids().is_empty());
    assert!(manager.pending_orphans().is_empty());
}

/// A listing that shows an invalid instance (an empty resource id: a Python `list_workers`
/// that yields the empty last line of a command's output) has it destroyed by no one: no
/// record can know it, and `destroy_worker("")` may mean anything to a cloud API. The
/// provider is in `errors` (the run is incomplete); its valid instances are reconciled as
/// usual. Before, the empty id was taken for an orphan and destroyed.
#[test]
fn an_invalid_listed_instance_is_not_destroyed_as_an_orphan() {
    let f = Fixture::new(config());
    let kept = f.ready();
    f.provider.add_orphan("ghost");
    let empty = WorkerHandle::new(pid("test"), ProviderType::Docker, "");
    f.provider.instances.lock().insert(String::new(), empty);
    let r = f.manager.reconcile().unwrap();
    assert_eq!(f.provider.destroy_calls(), ["destroy ghost"], "{r:?}");
    assert_eq!(r.orphans.len(), 1, "{r:?}");
    assert_eq!(r.errors.len(), 1, "{r:?}");
    assert!(
        r.errors[0]
            .1
            .starts_with("listing of test shows 1 invalid instances, not destroyed (the first: "),
        "{r:?}"
    );
    assert_eq!(f.state(&kept), Some(WorkerState::Ready));
}

/// A held reconcile is visible to operators as the health check's brake is, not only as a line
/// among the decisions: the tick's report says which provider's listing was held on which side
/// (`reconcile_held`), and `hodei_workers_reconcile_holds_total{provider, kind}` counts the
/// holds (an `orphans` hold never ends by itself: an alert must be able to see it). Before,
/// only the `held by the brake` decision line said so.
#[test]
fn a_held_reconcile_is_in_the_report_and_counted_per_provider_and_kind() {
    let f = Fixture::new(WorkerLifecycleConfig {
        min_ready_workers: 0,
        ..config()
    });
    let due = f.now() + f.manager.config().reconcile_interval.as_millis() as u64;
    // 4 records whose instances the listing misses, 10 instances no record knows: the brake
    // allows max(1, floor(0.55 × 4)) = 2 of either.
    let fleet: Vec<WorkerId> = (0..4).map(|_| f.ready()).collect();
    for (i, id) in fleet.iter().enumerate() {
        // Busy: not retired for idleness meanwhile.
        f.registry.assign_to_job(id, job(&format!("j{i}"))).unwrap();
        let w = f.registry.get(id).unwrap().unwrap();
        f.provider.lose(&w.handle.resource_id);
    }
    for i in 0..10 {
        f.provider.add_orphan(&format!("theirs-{i}"));
    }
    let mut held = Vec::new();
    while f.now() < due + 60_000 {
        f.advance(secs(10));
        for id in &fleet {
            f.registry.heartbeat(id).unwrap();
        }
        let r = f.manager.tick(0);
        if !r.reconcile_held.is_empty() {
            held.push(r);
        }
    }
    let first = held.first().expect("no held reconcile in any report");
    let provider = ProviderId::new("test").unwrap();
    assert_eq!(
        first.reconcile_held,
        vec![
            ReconcileHold {
                provider_id: provider.clone(),
                kind: ReconcileHoldKind::Orphans,
                held: 10,
                records: 4,
                allowed: 2,
            },
            ReconcileHold {
                provider_id: provider,
                kind: ReconcileHoldKind::Expire,
                held: 4,
                records: 4,
                allowed: 2,
            },
        ],
        "{:?}",
        first.decisions
    );
    let json = serde_json::to_value(first).unwrap();
    assert_eq!(json["reconcile_held"][0]["kind"], "orphans", "{json}");
    let text = f.manager.metrics_text();
    for kind in ["orphans", "expire"] {
        let sample = format!(
            "hodei_workers_reconcile_holds_total{{provider=\"test\",kind=\"{kind}\"}} {}",
            held.len()
        );
        assert!(text.contains(&sample), "no `{sample}` in:\n{text}");
    }
    assert!(
        text.contains("# TYPE hodei_workers_reconcile_holds counter"),
        "{text}"
    );
}

// ----- instances that carry a record's worker id -------------------------------------------

/// Puts at the provider a second instance `resource` of worker `id` (a provider that created
/// twice for one worker id: a retried create, a duplicated request).
fn duplicate_instance(f: &Fixture, id: WorkerId, resource: &str) {
    let handle = WorkerHandle {
        worker_id: id,
        ..WorkerHandle::new(pid("test"), ProviderType::Docker, resource)
    };
    f.provider
        .instances
        .lock()
        .insert(resource.to_owned(), handle);
}

/// The resource id of worker `id`'s record.
fn resource_of(f: &Fixture, id: &WorkerId) -> String {
    f.registry
        .get(id)
        .unwrap()
        .unwrap()
        .handle
        .resource_id
        .clone()
}

/// A listed instance is matched to a record by resource id first: a second instance carrying a
/// record's worker id under another resource id (a provider that created twice for one worker)
/// is an orphan like any other, destroyed; the record and its own instance are untouched.
/// Before, any instance carrying a record's worker id counted as known: the second one was
/// never destroyed and leaked for ever.
#[test]
fn a_second_instance_carrying_a_records_worker_id_is_destroyed_as_an_orphan() {
    let f = Fixture::new(config());
    let w = f.ready();
    let own = resource_of(&f, &w);
    duplicate_instance(&f, w, "dup");
    let r = f.manager.reconcile().unwrap();
    assert_eq!(
        r.orphans,
        vec![OrphanInstance {
            provider_id: pid("test"),
            resource_id: "dup".to_owned(),
            error: None
        }],
        "{r:?}"
    );
    assert_eq!(f.provider.destroy_calls(), ["destroy dup"]);
    assert!(r.vanished.is_empty(), "{r:?}");
    assert_eq!(f.state(&w), Some(WorkerState::Ready));
    assert_eq!(f.provider.instance_ids(), [own]);
    f.assert_no_leak();
}

/// A record whose resource id the listing does not show, but whose worker id two instances
/// carry: the record is listed (not vanished), the first instance in listing order is taken
/// for it, and the other is destroyed as an orphan. Before, both counted as the record's.
#[test]
fn of_two_instances_carrying_an_unlisted_records_worker_id_the_first_is_its_own() {
    let f = Fixture::new(config());
    let w = f.ready();
    f.provider.lose(&resource_of(&f, &w));
    duplicate_instance(&f, w, "dup-a");
    duplicate_instance(&f, w, "dup-b");
    f.advance(secs(1));
    let r = f.manager.reconcile().unwrap();
    assert!(r.vanished.is_empty(), "{r:?}");
    assert_eq!(f.provider.destroy_calls(), ["destroy dup-b"], "{r:?}");
    assert_eq!(r.orphans.len(), 1, "{r:?}");
    assert_eq!(f.provider.instance_ids(), ["dup-a"]);
    assert_eq!(f.state(&w), Some(WorkerState::Ready));
    // And so again next time: the record keeps the instance taken for it.
    f.advance(secs(1));
    let r = f.manager.reconcile().unwrap();
    assert!(r.vanished.is_empty() && r.orphans.is_empty(), "{r:?}");
    assert_eq!(f.state(&w), Some(WorkerState::Ready));
}

/// `n` busy workers (not retired for idleness), and a tick that heartbeats them 10 s later.
fn busy_fleet(f: &Fixture, n: usize) -> Vec<WorkerId> {
    (0..n)
        .map(|i| {
            let id = f.ready();
            f.registry
                .assign_to_job(&id, job(&format!("j{i}")))
                .unwrap();
            id
        })
        .collect()
}

fn tick_heartbeating(f: &Fixture, fleet: &[WorkerId]) -> TickReport {
    f.advance(secs(10));
    for id in fleet {
        f.registry.heartbeat(id).unwrap();
    }
    f.manager.tick(0)
}

/// The leader's periodic reconcile destroys such second instances too, as other orphans: one
/// action each (the one over `max_actions_per_tick` is destroyed by the next tick's orphan
/// retry), and a failed destroy is retried by the ticks after its back-off. Before, none was
/// ever destroyed (and the ticks' retries, had one been remembered, forgot it on finding a
/// record with its worker id).
#[test]
fn the_periodic_reconcile_destroys_second_instances_of_a_worker_as_orphans() {
    let f = Fixture::new(WorkerLifecycleConfig {
        min_ready_workers: 0,
        max_actions_per_tick: 1,
        // Longer than the ticks' 10 s: the deferred one is retried before the failed one.
        destroy_retry_initial: secs(30),
        ..config()
    });
    let due = f.now() + f.manager.config().reconcile_interval.as_millis() as u64;
    // 4 records: the brake allows 2 instances no record holds.
    let fleet = busy_fleet(&f, 4);
    duplicate_instance(&f, fleet[0], "dup-a");
    duplicate_instance(&f, fleet[0], "dup-b");
    f.provider.script_destroys([DestroyStep::Fail("busy")]);
    let mut decisions = Vec::new();
    while f.now() < due + 60_000 && f.provider.instance_ids().len() > 4 {
        let r = tick_heartbeating(&f, &fleet);
        decisions.extend(r.decisions);
    }
    assert_eq!(
        f.provider.destroy_calls(),
        ["destroy dup-a", "destroy dup-b", "destroy dup-a"],
        "{decisions:?}"
    );
    assert!(f.manager.pending_orphans().is_empty(), "{decisions:?}");
    for id in &fleet {
        assert_eq!(f.state(id), Some(WorkerState::Busy));
    }
    f.assert_no_leak();
}

/// Such second instances count for the ticks' brake on orphans as other instances no record
/// holds do: more than it allows against the provider's records are held (none destroyed, the
/// run incomplete); as many as it allows are destroyed by the run again.
#[test]
fn second_instances_of_a_worker_are_held_by_the_brake_as_other_orphans() {
    let f = Fixture::new(WorkerLifecycleConfig {
        min_ready_workers: 0,
        ..config()
    });
    let due = f.now() + f.manager.config().reconcile_interval.as_millis() as u64;
    // 4 records: the brake allows max(1, floor(0.55 × 4)) = 2.
    let fleet = busy_fleet(&f, 4);
    for resource in ["dup-0", "dup-1", "dup-2"] {
        duplicate_instance(&f, fleet[0], resource);
    }
    let mut held = None;
    while f.now() < due + 60_000 && held.is_none() {
        let r = tick_heartbeating(&f, &fleet);
        if !r.reconcile_held.is_empty() {
            held = Some(r);
        }
    }
    let held = held.expect("no held reconcile");
    assert!(
        held.decisions.iter().any(|d| d
            == "periodic reconcile: provider test: listing of test shows 3 instances no record \
                knows (of 4 records): held by the brake"),
        "{:?}",
        held.decisions
    );
    assert!(
        f.provider.destroy_calls().is_empty(),
        "{:?}",
        held.decisions
    );
    assert!(f.manager.pending_orphans().is_empty());
    // One of them goes: the run again destroys the other two.
    f.provider.lose("dup-2");
    for _ in 0..100 {
        tick_heartbeating(&f, &fleet);
        if f.provider.instance_ids().len() == 4 {
            break;
        }
    }
    assert_eq!(
        f.provider.destroy_calls(),
        ["destroy dup-0", "destroy dup-1"]
    );
    for id in &fleet {
        assert_eq!(f.state(id), Some(WorkerState::Busy));
    }
    f.assert_no_leak();
}

/// A manager on `registry` that keeps no ready workers and retries a failed destroy after
/// 10 s (doubling).
fn retrying_destroys_after_10s(registry: Arc<dyn WorkerRegistry>) -> WorkerLifecycleManager {
    WorkerLifecycleManager::new(
        registry,
        WorkerLifecycleConfig {
            min_ready_workers: 0,
            destroy_retry_initial: secs(10),
            ..config()
        },
    )
    .unwrap()
}

/// Two providers' orphans that share a resource id (two Kubernetes clusters, one pod name) are
/// told apart: each entry of `pending_orphans` names its provider. Before, an entry was
/// `(worker id, resource id, attempts, next attempt)`, and the two read alike but for the worker
/// id the listing made up.
#[test]
fn pending_orphans_name_their_provider_so_equal_resource_ids_are_told_apart() {
    let clock = Arc::new(ManualClock::new(T0));
    let registry: Arc<dyn WorkerRegistry> = crate::backend::new_registry(clock.clone());
    let manager = retrying_destroys_after_10s(registry);
    let (east, west) = (TestProvider::new("east"), TestProvider::new("west"));
    for provider in [&east, &west] {
        manager.register_provider(provider.clone()).unwrap();
        provider.add_orphan("runner-0");
        provider.script_destroys([DestroyStep::Fail("api down")]);
    }
    let r = manager.reconcile().unwrap();
    assert_eq!(r.orphans.len(), 2, "{r:?}");
    let pending = manager.pending_orphans();
    let seen: Vec<(ProviderId, &str, u32, Timestamp)> = pending
        .iter()
        .map(|o| {
            (
                o.provider_id.clone(),
                o.resource_id.as_str(),
                o.attempts,
                o.next_at,
            )
        })
        .collect();
    let due = clock.now() + 10_000;
    assert_eq!(
        seen,
        vec![
            (pid("east"), "runner-0", 1, due),
            (pid("west"), "runner-0", 1, due),
        ]
    );
    assert_ne!(pending[0].worker_id, pending[1].worker_id);
    // Serialized like the other report types, every field by name.
    let json = serde_json::to_value(&pending[0]).unwrap();
    assert_eq!(json["provider_id"], "east");
    assert_eq!(json["worker_id"], pending[0].worker_id.to_string());
    assert_eq!(json["resource_id"], "runner-0");
    assert_eq!(
        (json["attempts"].as_u64(), json["next_at"].as_u64()),
        (Some(1), Some(due))
    );
}

/// The ticks' retry of a failed orphan destroy backs off from when the destroy failed, as the
/// destroy queue does for records (and as `reconcile` does for the orphans it destroys): a
/// destroy call that takes a minute (a cloud API timing out) must not use up the back-off.
/// Before, the retry counted it from the tick's start: the next attempt was due before the
/// failed one returned, the orphan was destroyed again at the very next tick, and the report's
/// `next_retry_at` lay in the past.
#[test]
fn an_orphan_retry_backs_off_from_when_its_destroy_failed() {
    /// Each destroy takes a minute of the registry's clock, then does what the inner says.
    #[derive(Debug)]
    struct Slow(Arc<TestProvider>, Arc<ManualClock>);
    impl WorkerProvider for Slow {
        fn provider_id(&self) -> ProviderId {
            self.0.provider_id()
        }
        fn provider_type(&self) -> ProviderType {
            self.0.provider_type()
        }
        fn create_worker(&self, id: WorkerId, spec: &WorkerSpec) -> ProviderResult<WorkerHandle> {
            self.0.create_worker(id, spec)
        }
        fn destroy_worker(&self, handle: &WorkerHandle) -> ProviderResult<()> {
            self.1.advance(secs(60));
            self.0.destroy_worker(handle)
        }
        fn list_workers(&self) -> ProviderResult<Vec<WorkerHandle>> {
            self.0.list_workers()
        }
    }
    let clock = Arc::new(ManualClock::new(T0));
    let registry: Arc<dyn WorkerRegistry> = crate::backend::new_registry(clock.clone());
    let manager = retrying_destroys_after_10s(registry);
    let inner = TestProvider::new("test");
    manager
        .register_provider(Arc::new(Slow(inner.clone(), clock.clone())))
        .unwrap();
    inner.add_orphan("ghost");
    inner.script_destroys([
        DestroyStep::Fail("timed out"),
        DestroyStep::Fail("timed out"),
    ]);
    let r = manager.reconcile().unwrap();
    assert_eq!(r.orphans[0].error.as_deref(), Some("timed out (failed)"));
    // Due 10 s after the failure.
    let PendingOrphan {
        attempts, next_at, ..
    } = manager.pending_orphans()[0].clone();
    assert_eq!((attempts, next_at), (1, clock.now() + 10_000));
    clock.set(next_at);
    let t = manager.tick(0);
    let failed_at = clock.now();
    assert_eq!(t.failed.len(), 1, "{:?}", t.decisions);
    // Due 20 s after the second failure, which the tick's report says.
    let PendingOrphan {
        attempts, next_at, ..
    } = manager.pending_orphans()[0].clone();
    assert_eq!(
        (attempts, next_at, t.failed[0].next_retry_at),
        (2, failed_at + 20_000, failed_at + 20_000),
        "{:?}",
        t.decisions
    );
    // So the next tick, 10 s on, does not call the provider again.
    clock.advance(secs(10));
    manager.tick(0);
    assert_eq!(inner.destroy_calls().len(), 2, "{:?}", inner.calls());
}

/// An instance taken for an orphan stays one: of two instances carrying the worker id of a
/// record whose own resource id is not listed, the one a reconcile took for an orphan (its
/// destroy failed, retried by the ticks) is not taken for the record's by the next reconcile
/// when the listing shows them in another order (a cloud API's order is not stable). Else
/// that run destroys the other as an orphan while the ticks' retry destroys the first: both
/// instances of a live worker gone.
#[test]
fn an_instance_taken_for_an_orphan_is_not_taken_for_a_records_when_the_listing_reorders() {
    let clock = Arc::new(ManualClock::new(T0));
    let registry: Arc<dyn WorkerRegistry> = crate::backend::new_registry(clock.clone());
    let manager = WorkerLifecycleManager::new(
        registry.clone(),
        WorkerLifecycleConfig {
            min_ready_workers: 0,
            ..config()
        },
    )
    .unwrap();
    let inner = TestProvider::new("test");
    // Lists the inner provider's instances in reverse order once `reversed` is set.
    let reversed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reverse = reversed.clone();
    manager
        .register_provider(Arc::new(EditedListing(
            inner.clone(),
            move |listed: &mut Vec<WorkerHandle>| {
                if reverse.load(std::sync::atomic::Ordering::SeqCst) {
                    listed.reverse();
                }
            },
        )))
        .unwrap();
    let w = manager.provision_worker(&pid("test"), spec()).unwrap();
    registry.update_state(&w.id, WorkerState::Ready).unwrap();
    inner.lose(&w.handle.resource_id);
    for resource in ["dup-a", "dup-b"] {
        let handle = WorkerHandle {
            worker_id: w.id,
            ..WorkerHandle::new(pid("test"), ProviderType::Docker, resource)
        };
        inner.instances.lock().insert(resource.to_owned(), handle);
    }
    clock.advance(secs(1));
    inner.script_destroys([DestroyStep::Fail("busy")]);
    let r = manager.reconcile().unwrap();
    assert_eq!(r.orphans[0].resource_id, "dup-b", "{r:?}");
    assert_eq!(manager.pending_orphans().len(), 1);
    // The listing shows them the other way round now.
    reversed.store(true, std::sync::atomic::Ordering::SeqCst);
    let r = manager.reconcile().unwrap();
    assert_eq!(
        inner.destroy_calls(),
        ["destroy dup-b", "destroy dup-b"],
        "{r:?}"
    );
    assert_eq!(inner.instance_ids(), ["dup-a"]);
    for _ in 0..5 {
        clock.advance(secs(10));
        registry.heartbeat(&w.id).unwrap();
        manager.tick(0);
    }
    assert_eq!(inner.instance_ids(), ["dup-a"], "{:?}", inner.calls());
    assert_eq!(
        registry.get(&w.id).unwrap().map(|w| w.state),
        Some(WorkerState::Ready)
    );
}

/// The ticks' orphan retry takes a remembered orphan for owned when a record of its provider
/// holds its resource id, whatever worker id the listing gave it: a provider written in Python
/// or C lists resource ids only, and each listed handle carries a fresh random worker id (as
/// `EditedListing` does here). Before, the retry looked at the record of the orphan's worker id
/// only: an orphan instance the host registered (under its agent's worker id) between the
/// failed destroy and the retry was destroyed from under its live record.
#[test]
fn an_orphan_registered_under_another_worker_id_is_not_destroyed_by_its_retry() {
    let clock = Arc::new(ManualClock::new(T0));
    let registry: Arc<dyn WorkerRegistry> = crate::backend::new_registry(clock.clone());
    let manager = retrying_destroys_after_10s(registry.clone());
    let inner = TestProvider::new("test");
    manager
        .register_provider(Arc::new(EditedListing(
            inner.clone(),
            |listed: &mut Vec<WorkerHandle>| {
                for h in listed.iter_mut() {
                    h.worker_id = WorkerId::new();
                }
            },
        )))
        .unwrap();
    inner.add_orphan("ghost");
    inner.script_destroys([DestroyStep::Fail("instance is locked")]);
    let r = manager.reconcile().unwrap();
    assert_eq!(r.orphans.len(), 1, "{r:?}");
    assert!(r.orphans[0].error.is_some(), "{r:?}");
    let remembered = manager.pending_orphans()[0].worker_id;
    // Its agent reports in, and the host registers the instance under the agent's worker id.
    let agent = WorkerId::new();
    assert_ne!(agent, remembered);
    registry
        .register(
            WorkerHandle {
                worker_id: agent,
                ..WorkerHandle::new(pid("test"), ProviderType::Docker, "ghost")
            },
            spec(),
        )
        .unwrap();
    registry.update_state(&agent, WorkerState::Ready).unwrap();
    for _ in 0..3 {
        clock.advance(secs(11));
        registry.heartbeat(&agent).unwrap();
        let t = manager.tick(0);
        assert!(t.failed.is_empty(), "{:?}", t.decisions);
    }
    assert_eq!(
        inner.destroy_calls(),
        ["destroy ghost"],
        "only the failed one: {:?}",
        inner.calls()
    );
    assert_eq!(inner.instance_ids(), ["ghost"]);
    assert!(manager.pending_orphans().is_empty());
    assert_eq!(
        registry.get(&agent).unwrap().map(|w| w.state),
        Some(WorkerState::Ready)
    );
}

/// Refuses every read of a whole provider's records (`find_by_provider`, a `Call::Find(None)`)
/// while `armed`, and counts those refused and the looks by resource id.
#[derive(Debug, Default)]
struct NoProviderScans {
    armed: std::sync::atomic::AtomicBool,
    refused: std::sync::atomic::AtomicUsize,
    looks: std::sync::atomic::AtomicUsize,
}

impl crate::test_registry::Hooks for NoProviderScans {
    fn before(&self, call: crate::test_registry::Call<'_>, _: &dyn WorkerRegistry) -> Result<()> {
        use crate::test_registry::Call;
        use std::sync::atomic::Ordering::SeqCst;
        match call {
            Call::Find(None) if self.armed.load(SeqCst) => {
                self.refused.fetch_add(1, SeqCst);
                Err(Error::Backend("a scan of a provider's fleet".into()))
            }
            Call::FindByResourceIds(_) => {
                self.looks.fetch_add(1, SeqCst);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// The ticks' orphan retries ask the registry about the due orphans' resource ids only
/// (`find_by_resource_ids`), never for a provider's whole fleet (`find_by_provider`: at a
/// million workers, a million snapshots — or rows from PostgreSQL — at every retry tick of an
/// outage), and still forget an orphan the host registered meanwhile (under another worker
/// id) while destroying the one nobody holds. Before, each retry read every record of the
/// orphans' provider.
#[test]
fn an_orphan_retry_reads_no_whole_provider_fleet() {
    use std::sync::atomic::Ordering::SeqCst;
    let clock = Arc::new(ManualClock::new(T0));
    let hooks = Arc::new(NoProviderScans::default());
    let registry = crate::test_registry::TestRegistry::with_hooks(
        crate::backend::new_registry(clock.clone()),
        hooks.clone(),
    );
    let manager = retrying_destroys_after_10s(registry.shared());
    let provider = TestProvider::new("test");
    manager.register_provider(provider.clone()).unwrap();
    // A fleet the retry must not read, beside the two orphans.
    for _ in 0..3 {
        manager.provision_worker(&pid("test"), spec()).unwrap();
    }
    provider.add_orphan("ghost-1");
    provider.add_orphan("ghost-2");
    provider.script_destroys([
        DestroyStep::Fail("instance is locked"),
        DestroyStep::Fail("instance is locked"),
    ]);
    let r = manager.reconcile().unwrap();
    assert_eq!(r.orphans.len(), 2, "{r:?}");
    assert_eq!(manager.pending_orphans().len(), 2);
    // The host registers ghost-1 under its agent's worker id meanwhile.
    let agent = registry
        .register(
            WorkerHandle::new(pid("test"), ProviderType::Docker, "ghost-1"),
            spec(),
        )
        .unwrap()
        .id;
    hooks.armed.store(true, SeqCst);
    clock.advance(secs(11));
    let t = manager.tick(0);
    assert_eq!(
        hooks.refused.load(SeqCst),
        0,
        "the retry read the provider's whole fleet: {:?}",
        t.decisions
    );
    assert_eq!(hooks.looks.load(SeqCst), 1, "one look for the provider");
    assert!(t.failed.is_empty(), "{:?}", t.decisions);
    assert!(manager.pending_orphans().is_empty(), "{:?}", t.decisions);
    let destroys = provider.destroy_calls();
    assert_eq!(
        destroys.iter().filter(|c| c.contains("ghost-1")).count(),
        1,
        "ghost-1 is registered: destroyed only by the failed reconcile: {destroys:?}"
    );
    assert_eq!(
        destroys.iter().filter(|c| c.contains("ghost-2")).count(),
        2,
        "{destroys:?}"
    );
    assert!(provider.instance_ids().contains(&"ghost-1".to_owned()));
    assert!(!provider.instance_ids().contains(&"ghost-2".to_owned()));
    assert!(registry.get(&agent).unwrap().is_some());
}
