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
