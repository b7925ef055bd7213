//! The manager on a registry that can fail (as a shared-database backend may): no panic, errors
//! reported, and no instance forgotten while the registry cannot answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use hodei_workers::*;

/// A registry of the backend under test whose `get`, `unregister` and deadline queries fail on demand.
#[derive(Debug)]
struct Flaky {
    inner: Arc<dyn WorkerRegistry>,
    fail_get: AtomicBool,
    fail_unregister: AtomicBool,
    fail_queries: AtomicBool,
    /// Simulates the agent's release arriving between the manager's two state changes.
    release_before_terminating: AtomicBool,
}

fn down() -> Error {
    Error::Backend("database unreachable".to_owned())
}

impl Flaky {
    fn check(flag: &AtomicBool) -> Result<()> {
        if flag.load(Ordering::SeqCst) {
            Err(down())
        } else {
            Ok(())
        }
    }
}

impl WorkerRegistry for Flaky {
    fn now(&self) -> Timestamp {
        self.inner.now()
    }
    fn register(&self, handle: WorkerHandle, spec: Arc<WorkerSpec>) -> Result<Worker> {
        self.inner.register(handle, spec)
    }
    fn unregister(&self, id: &WorkerId, reason: TerminationReason) -> Result<Worker> {
        Self::check(&self.fail_unregister)?;
        self.inner.unregister(id, reason)
    }
    fn get(&self, id: &WorkerId) -> Result<Option<Worker>> {
        Self::check(&self.fail_get)?;
        self.inner.get(id)
    }
    fn find(&self, filter: &WorkerFilter) -> Result<Vec<Worker>> {
        self.inner.find(filter)
    }
    fn update_state(&self, id: &WorkerId, state: WorkerState) -> Result<Worker> {
        if state == WorkerState::Terminating
            && self
                .release_before_terminating
                .swap(false, Ordering::SeqCst)
        {
            self.inner.release_from_job(id, None)?;
        }
        self.inner.update_state(id, state)
    }
    fn heartbeat(&self, id: &WorkerId) -> Result<()> {
        self.inner.heartbeat(id)
    }
    fn assign_to_job(&self, id: &WorkerId, job: JobId) -> Result<Worker> {
        self.inner.assign_to_job(id, job)
    }
    fn release_from_job(&self, id: &WorkerId, expected_job: Option<&JobId>) -> Result<JobId> {
        self.inner.release_from_job(id, expected_job)
    }
    fn claim(&self, filter: &WorkerFilter, job: JobId) -> Result<Option<Worker>> {
        self.inner.claim(filter, job)
    }
    fn heartbeat_many(&self, ids: &[WorkerId]) -> Result<Vec<Result<()>>> {
        self.inner.heartbeat_many(ids)
    }
    fn transition_if(
        &self,
        id: &WorkerId,
        guard: &TransitionGuard,
        to: WorkerState,
    ) -> Result<Option<Transitioned>> {
        if to == WorkerState::Terminating
            && self
                .release_before_terminating
                .swap(false, Ordering::SeqCst)
        {
            self.inner.release_from_job(id, None)?;
        }
        self.inner.transition_if(id, guard, to)
    }
    fn longest_idle(&self, n: usize) -> Result<Vec<Worker>> {
        self.inner.longest_idle(n)
    }
    fn find_unhealthy(&self, heartbeat_timeout: Duration) -> Result<Vec<Worker>> {
        Self::check(&self.fail_queries)?;
        self.inner.find_unhealthy(heartbeat_timeout)
    }
    fn find_startup_expired(&self, startup_timeout: Duration) -> Result<Vec<Worker>> {
        Self::check(&self.fail_queries)?;
        self.inner.find_startup_expired(startup_timeout)
    }
    fn find_for_termination(&self) -> Result<Vec<(Worker, TerminationReason)>> {
        Self::check(&self.fail_queries)?;
        self.inner.find_for_termination()
    }
    fn grant_grace(&self, since: Timestamp) -> Result<()> {
        self.inner.grant_grace(since)
    }
    fn stats(&self) -> Result<WorkerRegistryStats> {
        self.inner.stats()
    }
    fn count(&self) -> Result<usize> {
        self.inner.count()
    }
    fn subscribe(&self, options: SubscribeOptions) -> Result<Subscription> {
        self.inner.subscribe(options)
    }
    fn publish(&self, kind: EventKind) -> Result<()> {
        self.inner.publish(kind)
    }
    fn snapshot(&self) -> Result<Snapshot> {
        self.inner.snapshot()
    }
    fn restore(&self, snapshot: Snapshot) -> Result<()> {
        self.inner.restore(snapshot)
    }
}

fn setup() -> (
    Arc<ManualClock>,
    Arc<Flaky>,
    WorkerLifecycleManager,
    Arc<TestProvider>,
) {
    let clock = Arc::new(ManualClock::new(T0));
    let flaky = Arc::new(Flaky {
        inner: crate::backend::new_registry(clock.clone()),
        fail_get: AtomicBool::new(false),
        fail_unregister: AtomicBool::new(false),
        fail_queries: AtomicBool::new(false),
        release_before_terminating: AtomicBool::new(false),
    });
    let manager = WorkerLifecycleManager::new(flaky.clone(), config()).unwrap();
    let provider = TestProvider::new("test");
    manager.register_provider(provider.clone()).unwrap();
    (clock, flaky, manager, provider)
}

#[test]
fn a_record_that_cannot_be_unregistered_stays_queued_until_it_can() {
    let (clock, flaky, manager, provider) = setup();
    let w = manager.provision_worker(&pid("test"), spec()).unwrap();
    flaky.fail_unregister.store(true, Ordering::SeqCst);
    let r = manager
        .terminate_worker(&w.id, TerminationReason::Requested)
        .unwrap();
    assert!(
        r.terminated.is_empty(),
        "not confirmed while the record stays"
    );
    assert!(
        provider.instance_ids().is_empty(),
        "the instance is destroyed"
    );
    assert_eq!(manager.pending_destroys().len(), 1);
    assert_eq!(
        flaky.get(&w.id).unwrap().unwrap().state,
        WorkerState::Terminating
    );

    flaky.fail_unregister.store(false, Ordering::SeqCst);
    clock.advance(secs(1));
    // The provider answers NotFound for the instance already gone: that confirms it.
    provider.script_destroys([DestroyStep::NotFound]);
    let c = manager.cleanup_workers().unwrap();
    assert_eq!(c.terminated.len(), 1);
    assert!(flaky.get(&w.id).unwrap().is_none());
    assert!(manager.pending_destroys().is_empty());
}

#[test]
fn a_registry_that_cannot_say_whether_a_worker_exists_keeps_its_destroy_queued() {
    let (clock, flaky, manager, provider) = setup();
    let w = manager.provision_worker(&pid("test"), spec()).unwrap();
    provider.script_destroys([DestroyStep::Fail("later")]);
    manager
        .terminate_worker(&w.id, TerminationReason::Requested)
        .unwrap();
    flaky.fail_get.store(true, Ordering::SeqCst);
    clock.advance(secs(1));
    let c = manager.cleanup_workers().unwrap();
    assert!(c.terminated.is_empty() && c.failed.is_empty());
    assert_eq!(manager.pending_destroys().len(), 1, "not forgotten");
    assert_eq!(provider.instance_ids().len(), 1);
    flaky.fail_get.store(false, Ordering::SeqCst);
    clock.advance(secs(2));
    assert_eq!(manager.cleanup_workers().unwrap().terminated.len(), 1);
    assert!(provider.instance_ids().is_empty());
}

#[test]
fn tick_reports_registry_errors_instead_of_failing() {
    let (_clock, flaky, manager, _provider) = setup();
    flaky.fail_queries.store(true, Ordering::SeqCst);
    let r = manager.tick(0);
    assert!(!r.health_checked);
    assert!(r
        .decisions
        .iter()
        .any(|d| d == "health check failed: backend error: database unreachable"));
    assert!(r
        .decisions
        .iter()
        .any(|d| d == "cleanup failed: backend error: database unreachable"));
    assert_eq!(manager.run_health_check().unwrap_err(), down());
    assert_eq!(manager.cleanup_workers().unwrap_err(), down());
    flaky.fail_queries.store(false, Ordering::SeqCst);
    assert!(manager.tick(0).health_checked, "retried on the next tick");
}

#[test]
fn a_job_released_while_its_worker_is_taken_out_of_service_is_not_reported_lost() {
    let (_clock, flaky, manager, _provider) = setup();
    let w = manager.provision_worker(&pid("test"), spec()).unwrap().id;
    flaky.update_state(&w, WorkerState::Ready).unwrap();
    flaky.assign_to_job(&w, job("done-just-now")).unwrap();
    let events = flaky.subscribe(SubscribeOptions::default()).unwrap();
    flaky
        .release_before_terminating
        .store(true, Ordering::SeqCst);
    let r = manager
        .terminate_worker(&w, TerminationReason::Requested)
        .unwrap();
    assert!(
        r.lost_jobs.is_empty(),
        "it finished: requeueing would run it twice"
    );
    let names: Vec<&str> = events.drain().iter().map(|e| e.kind.name()).collect();
    assert_eq!(
        names,
        // The release lands just before the conditional move to Terminating (no Draining step
        // any more: `transition_if` returns exactly the job the move took, here none).
        vec![
            "released_from_job",
            "state_changed",
            "state_changed",
            "unregistered"
        ]
    );
    // And without the release, the same path reports the job.
    let w = manager.provision_worker(&pid("test"), spec()).unwrap().id;
    flaky.update_state(&w, WorkerState::Ready).unwrap();
    flaky.assign_to_job(&w, job("running")).unwrap();
    let r = manager
        .terminate_worker(&w, TerminationReason::Requested)
        .unwrap();
    assert_eq!(
        r.lost_jobs,
        vec![LostJob {
            worker_id: w,
            job_id: job("running")
        }]
    );
}
