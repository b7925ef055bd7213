//! [`TestRegistry`]: the one delegating registry of the tests — a backend's registry as a value
//! that is itself a `WorkerRegistry`, with [`Hooks`] that run around each call (fault
//! injection, counting, the host's move at the worst moment) and an optional clean-up (a
//! database schema to drop). Shared by the registry and lifecycle suites and by the PostgreSQL
//! crate's copies of them (included with `#[path]` as module `test_registry`).
#![allow(dead_code)] // each test crate uses a different part of it

use std::sync::Arc;
use std::time::Duration;

use hodei_workers::*;

/// A call of [`WorkerRegistry`] as the [`Hooks`] see it: which method, the worker it names (if
/// any), for a move the state it moves to, for a `find` its filter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Call<'a> {
    Register(&'a WorkerId),
    Unregister(&'a WorkerId),
    Get(&'a WorkerId),
    /// `find` (with its filter), `find_available` and `find_by_provider` (`None`): a scan of
    /// the fleet.
    Find(Option<&'a WorkerFilter>),
    /// `find_by_resource_ids` (with the provider asked about): the records of one provider
    /// holding the given resource ids, no scan of the fleet's snapshots.
    FindByResourceIds(&'a ProviderId),
    /// `terminal_ids`: the ids of the terminal records, no snapshot.
    TerminalIds,
    UpdateState(&'a WorkerId, WorkerState),
    TransitionIf(&'a WorkerId, WorkerState),
    Heartbeat(&'a WorkerId),
    HeartbeatMany,
    AssignToJob(&'a WorkerId),
    ReleaseFromJob(&'a WorkerId),
    Claim,
    LongestIdle,
    FindUnhealthy,
    /// `count_unhealthy`: the backend's own count (no snapshot), a deadline query too.
    CountUnhealthy,
    FindStartupExpired,
    FindForTermination,
    /// `grant_grace`: every worker's deadlines start again.
    GrantGrace,
    /// `publish` of one of the manager's events (a write to the outbox on a shared store).
    Publish(&'a EventKind),
    /// `stats`: the maintained counts (what `stats()` and a metrics scrape read).
    Stats,
}

impl Call<'_> {
    /// A move of a worker to `state` (`update_state` or `transition_if`).
    pub fn moves_to(&self, state: WorkerState) -> Option<&WorkerId> {
        match *self {
            Call::UpdateState(id, to) | Call::TransitionIf(id, to) if to == state => Some(id),
            _ => None,
        }
    }

    /// One of the deadline queries of the health check and the cleanup.
    pub fn is_deadline_query(&self) -> bool {
        matches!(
            self,
            Call::FindUnhealthy
                | Call::CountUnhealthy
                | Call::FindStartupExpired
                | Call::FindForTermination
        )
    }
}

/// What a test adds around the backend's calls. Both methods default to doing nothing.
pub trait Hooks: Send + Sync + std::fmt::Debug {
    /// Runs before `call` reaches the backend (`inner`); an error is the call's answer and the
    /// backend is not called.
    fn before(&self, call: Call<'_>, inner: &dyn WorkerRegistry) -> Result<()> {
        let _ = (call, inner);
        Ok(())
    }

    /// Runs after the backend answered `call` (whatever the answer), before the caller gets
    /// the answer: the place for the host's move between the manager's look and its action.
    fn after(&self, call: Call<'_>, inner: &dyn WorkerRegistry) {
        let _ = (call, inner);
    }

    /// Runs after the backend applied `call` successfully (after [`after`](Self::after)):
    /// `Some(error)` is the caller's answer instead — the reply lost after the commit (a
    /// connection dropped before the server's answer arrived), an ambiguous failure.
    fn lose_reply(&self, call: Call<'_>) -> Option<Error> {
        let _ = call;
        None
    }
}

/// No hooks: plain delegation.
#[derive(Debug)]
struct Plain;

impl Hooks for Plain {}

/// The backend's registry as a value that is itself a [`WorkerRegistry`], so that `&registry`
/// passes where a `&dyn WorkerRegistry` is asked for (an `Arc<dyn WorkerRegistry>` does not:
/// the unsizing coercion is tried before deref).
///
/// Every method of the trait, the provided ones too, forwards to the backend: a backend's own
/// implementation is what is tested, never the trait's default body (a backend that overrides
/// `count_unhealthy` or the metrics reads is tested on its override). The calls named by
/// [`Call`] go through the hooks; the others (`stats`, `count`, subscriptions, snapshots, the
/// metrics reads, `lease`) go straight to the backend. `lease` is the backend's: a
/// `replicated` manager on a test registry competes for the backend's lease, as on the
/// backend itself; `fenced` wraps the backend's view in a test registry with the same hooks
/// (and clean-up), so that a manager's fenced writes do not bypass them.
///
/// A backend whose registries leave something behind (a database schema) attaches a clean-up
/// with [`TestRegistry::with_cleanup`]: it runs once the last clone is gone.
#[derive(Debug, Clone)]
pub struct TestRegistry {
    inner: Arc<dyn WorkerRegistry>,
    hooks: Arc<dyn Hooks>,
    cleanup: Option<Arc<Cleanup>>,
}

impl TestRegistry {
    /// Wraps a registry.
    pub fn new(inner: Arc<dyn WorkerRegistry>) -> Self {
        TestRegistry {
            inner,
            hooks: Arc::new(Plain),
            cleanup: None,
        }
    }

    /// Wraps a registry and runs `cleanup` after the last clone has dropped it.
    pub fn with_cleanup(
        inner: Arc<dyn WorkerRegistry>,
        cleanup: impl FnOnce() + Send + 'static,
    ) -> Self {
        TestRegistry {
            cleanup: Some(Arc::new(Cleanup(std::sync::Mutex::new(Some(Box::new(
                cleanup,
            )))))),
            ..Self::new(inner)
        }
    }

    /// Wraps a registry with `hooks` around its calls.
    pub fn with_hooks(inner: Arc<dyn WorkerRegistry>, hooks: Arc<dyn Hooks>) -> Self {
        TestRegistry {
            hooks,
            ..Self::new(inner)
        }
    }

    /// The registry, shareable (a manager takes one).
    pub fn shared(&self) -> Arc<dyn WorkerRegistry> {
        Arc::new(self.clone())
    }

    /// The wrapped registry (calls on it bypass the hooks).
    pub fn inner(&self) -> &Arc<dyn WorkerRegistry> {
        &self.inner
    }

    /// Runs `op` on the backend between the hooks of `call`.
    fn call<T>(
        &self,
        call: Call<'_>,
        op: impl FnOnce(&dyn WorkerRegistry) -> Result<T>,
    ) -> Result<T> {
        self.hooks.before(call, &*self.inner)?;
        let answer = op(&*self.inner);
        self.hooks.after(call, &*self.inner);
        match answer {
            Ok(value) => match self.hooks.lose_reply(call) {
                Some(error) => Err(error),
                None => Ok(value),
            },
            Err(e) => Err(e),
        }
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
        self.inner.now()
    }
    fn register(&self, handle: WorkerHandle, spec: Arc<WorkerSpec>) -> Result<Worker> {
        let id = handle.worker_id;
        self.call(Call::Register(&id), |r| r.register(handle, spec))
    }
    fn unregister(&self, id: &WorkerId, reason: TerminationReason) -> Result<Worker> {
        self.call(Call::Unregister(id), |r| r.unregister(id, reason))
    }
    fn get(&self, id: &WorkerId) -> Result<Option<Worker>> {
        self.call(Call::Get(id), |r| r.get(id))
    }
    fn find(&self, filter: &WorkerFilter) -> Result<Vec<Worker>> {
        self.call(Call::Find(Some(filter)), |r| r.find(filter))
    }
    fn find_available(&self) -> Result<Vec<Worker>> {
        self.call(Call::Find(None), |r| r.find_available())
    }
    fn find_by_provider(&self, provider_id: &ProviderId) -> Result<Vec<Worker>> {
        self.call(Call::Find(None), |r| r.find_by_provider(provider_id))
    }
    fn find_by_resource_ids(
        &self,
        provider_id: &ProviderId,
        resource_ids: &[&str],
    ) -> Result<Vec<Worker>> {
        self.call(Call::FindByResourceIds(provider_id), |r| {
            r.find_by_resource_ids(provider_id, resource_ids)
        })
    }
    fn terminal_ids(&self) -> Result<Vec<WorkerId>> {
        self.call(Call::TerminalIds, |r| r.terminal_ids())
    }
    fn update_state(&self, id: &WorkerId, state: WorkerState) -> Result<Worker> {
        self.call(Call::UpdateState(id, state), |r| r.update_state(id, state))
    }
    fn heartbeat(&self, id: &WorkerId) -> Result<()> {
        self.call(Call::Heartbeat(id), |r| r.heartbeat(id))
    }
    fn assign_to_job(&self, id: &WorkerId, job: JobId) -> Result<Worker> {
        self.call(Call::AssignToJob(id), |r| r.assign_to_job(id, job))
    }
    fn release_from_job(&self, id: &WorkerId, expected_job: Option<&JobId>) -> Result<JobId> {
        self.call(Call::ReleaseFromJob(id), |r| {
            r.release_from_job(id, expected_job)
        })
    }
    fn claim(&self, filter: &WorkerFilter, job: JobId) -> Result<Option<Worker>> {
        self.call(Call::Claim, |r| r.claim(filter, job))
    }
    fn find_unhealthy(&self, heartbeat_timeout: Duration) -> Result<Vec<Worker>> {
        self.call(Call::FindUnhealthy, |r| r.find_unhealthy(heartbeat_timeout))
    }
    fn count_unhealthy(&self, heartbeat_timeout: Duration) -> Result<usize> {
        self.call(Call::CountUnhealthy, |r| {
            r.count_unhealthy(heartbeat_timeout)
        })
    }
    fn find_startup_expired(&self, startup_timeout: Duration) -> Result<Vec<Worker>> {
        self.call(Call::FindStartupExpired, |r| {
            r.find_startup_expired(startup_timeout)
        })
    }
    fn find_for_termination(&self) -> Result<Vec<(Worker, TerminationReason)>> {
        self.call(Call::FindForTermination, |r| r.find_for_termination())
    }
    fn grant_grace(&self, since: Timestamp) -> Result<()> {
        self.call(Call::GrantGrace, |r| r.grant_grace(since))
    }
    fn stats(&self) -> Result<WorkerRegistryStats> {
        self.call(Call::Stats, |r| r.stats())
    }
    fn count(&self) -> Result<usize> {
        self.inner.count()
    }
    fn subscribe(&self, options: SubscribeOptions) -> Result<Subscription> {
        self.inner.subscribe(options)
    }
    fn publish(&self, kind: EventKind) -> Result<()> {
        let seen = kind.clone();
        self.call(Call::Publish(&seen), |r| r.publish(kind))
    }
    fn snapshot(&self) -> Result<Snapshot> {
        self.inner.snapshot()
    }
    fn restore(&self, snapshot: Snapshot) -> Result<()> {
        self.inner.restore(snapshot)
    }
    fn heartbeat_many(&self, ids: &[WorkerId]) -> Result<Vec<Result<()>>> {
        self.call(Call::HeartbeatMany, |r| r.heartbeat_many(ids))
    }
    fn transition_if(
        &self,
        id: &WorkerId,
        guard: &TransitionGuard,
        to: WorkerState,
    ) -> Result<Option<Transitioned>> {
        self.call(Call::TransitionIf(id, to), |r| {
            r.transition_if(id, guard, to)
        })
    }
    fn longest_idle(&self, n: usize) -> Result<Vec<Worker>> {
        self.call(Call::LongestIdle, |r| r.longest_idle(n))
    }
    fn lease(&self, holder: &str, ttl: Duration) -> Result<Option<Arc<dyn Leadership>>> {
        self.inner.lease(holder, ttl)
    }
    fn fenced(&self, lease: &dyn Leadership, term: Term) -> Option<Arc<dyn WorkerRegistry>> {
        let view = self.inner.fenced(lease, term)?;
        Some(Arc::new(TestRegistry {
            inner: view,
            hooks: Arc::clone(&self.hooks),
            cleanup: self.cleanup.clone(),
        }))
    }
    fn job_totals(&self) -> Result<Option<JobTotals>> {
        self.inner.job_totals()
    }
    fn heartbeat_age_histogram(&self) -> Result<Option<HeartbeatAges>> {
        self.inner.heartbeat_age_histogram()
    }
    fn subscriber_drops(&self) -> Result<Vec<SubscriberDrops>> {
        self.inner.subscriber_drops()
    }
}
