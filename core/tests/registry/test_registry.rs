//! [`TestRegistry`]: a backend's registry as a value that is itself a `WorkerRegistry`, with an
//! optional clean-up (a database schema to drop). Shared by the registry and lifecycle suites
//! and by the PostgreSQL crate's copies of them.
#![allow(dead_code)] // each test crate uses a different part of it

use std::sync::Arc;

use hodei_workers::*;

/// The backend's registry as a value that is itself a [`WorkerRegistry`], so that `&registry`
/// passes where a `&dyn WorkerRegistry` is asked for (an `Arc<dyn WorkerRegistry>` does not:
/// the unsizing coercion is tried before deref). Every method forwards, none falls back on a
/// default body: a backend's own implementation is what is tested.
///
/// A backend whose registries leave something behind (a database schema) attaches a clean-up
/// with [`TestRegistry::with_cleanup`]: it runs once the last clone is gone.
#[derive(Debug, Clone)]
pub struct TestRegistry(pub Arc<dyn WorkerRegistry>, Option<Arc<Cleanup>>);

impl TestRegistry {
    /// Wraps a registry.
    pub fn new(inner: Arc<dyn WorkerRegistry>) -> Self {
        TestRegistry(inner, None)
    }

    /// Wraps a registry and runs `cleanup` after the last clone has dropped it.
    pub fn with_cleanup(
        inner: Arc<dyn WorkerRegistry>,
        cleanup: impl FnOnce() + Send + 'static,
    ) -> Self {
        TestRegistry(
            inner,
            Some(Arc::new(Cleanup(std::sync::Mutex::new(Some(Box::new(
                cleanup,
            )))))),
        )
    }

    /// The registry, shareable (a manager takes one).
    pub fn shared(&self) -> Arc<dyn WorkerRegistry> {
        Arc::new(self.clone())
    }
}

/// Runs its closure when dropped (see [`TestRegistry::with_cleanup`]).
pub struct Cleanup(std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>);

impl std::fmt::Debug for Cleanup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cleanup")
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let cleanup = self.0.get_mut().ok().and_then(Option::take);
        if let Some(cleanup) = cleanup {
            cleanup();
        }
    }
}

impl WorkerRegistry for TestRegistry {
    fn now(&self) -> Timestamp {
        self.0.now()
    }
    fn register(&self, handle: WorkerHandle, spec: Arc<WorkerSpec>) -> Result<Worker> {
        self.0.register(handle, spec)
    }
    fn unregister(&self, id: &WorkerId, reason: TerminationReason) -> Result<Worker> {
        self.0.unregister(id, reason)
    }
    fn get(&self, id: &WorkerId) -> Result<Option<Worker>> {
        self.0.get(id)
    }
    fn find(&self, filter: &WorkerFilter) -> Result<Vec<Worker>> {
        self.0.find(filter)
    }
    fn find_available(&self) -> Result<Vec<Worker>> {
        self.0.find_available()
    }
    fn find_by_provider(&self, provider_id: &ProviderId) -> Result<Vec<Worker>> {
        self.0.find_by_provider(provider_id)
    }
    fn update_state(&self, id: &WorkerId, state: WorkerState) -> Result<Worker> {
        self.0.update_state(id, state)
    }
    fn heartbeat(&self, id: &WorkerId) -> Result<()> {
        self.0.heartbeat(id)
    }
    fn assign_to_job(&self, id: &WorkerId, job: JobId) -> Result<Worker> {
        self.0.assign_to_job(id, job)
    }
    fn release_from_job(&self, id: &WorkerId, expected_job: Option<&JobId>) -> Result<JobId> {
        self.0.release_from_job(id, expected_job)
    }
    fn claim(&self, filter: &WorkerFilter, job: JobId) -> Result<Option<Worker>> {
        self.0.claim(filter, job)
    }
    fn find_unhealthy(&self, heartbeat_timeout: std::time::Duration) -> Result<Vec<Worker>> {
        self.0.find_unhealthy(heartbeat_timeout)
    }
    fn find_startup_expired(&self, startup_timeout: std::time::Duration) -> Result<Vec<Worker>> {
        self.0.find_startup_expired(startup_timeout)
    }
    fn find_for_termination(&self) -> Result<Vec<(Worker, TerminationReason)>> {
        self.0.find_for_termination()
    }
    fn grant_grace(&self, since: Timestamp) -> Result<()> {
        self.0.grant_grace(since)
    }
    fn stats(&self) -> Result<WorkerRegistryStats> {
        self.0.stats()
    }
    fn count(&self) -> Result<usize> {
        self.0.count()
    }
    fn subscribe(&self, options: SubscribeOptions) -> Result<Subscription> {
        self.0.subscribe(options)
    }
    fn publish(&self, kind: EventKind) -> Result<()> {
        self.0.publish(kind)
    }
    fn snapshot(&self) -> Result<Snapshot> {
        self.0.snapshot()
    }
    fn restore(&self, snapshot: Snapshot) -> Result<()> {
        self.0.restore(snapshot)
    }
    fn heartbeat_many(&self, ids: &[WorkerId]) -> Result<Vec<Result<()>>> {
        self.0.heartbeat_many(ids)
    }
    fn transition_if(
        &self,
        id: &WorkerId,
        guard: &TransitionGuard,
        to: WorkerState,
    ) -> Result<Option<Transitioned>> {
        self.0.transition_if(id, guard, to)
    }
    fn longest_idle(&self, n: usize) -> Result<Vec<Worker>> {
        self.0.longest_idle(n)
    }
}
