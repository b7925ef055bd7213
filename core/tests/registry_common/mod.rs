//! Helpers shared by the `registry_*` integration tests: a registry on a [`ManualClock`],
//! workers brought into a given state, and a full check of the invariants of DESIGN.md §3.
#![allow(dead_code)] // each test crate uses a different part of it

use std::collections::HashMap;
use std::sync::Arc;

use hodei_workers::*;

/// Where the manual clock starts: far enough from zero that `now - timeout` never saturates.
pub const T0: Timestamp = 1_700_000_000_000;

/// A registry on a manual clock reading [`T0`].
pub fn registry() -> (Arc<ManualClock>, InMemoryWorkerRegistry) {
    let clock = Arc::new(ManualClock::new(T0));
    let registry = InMemoryWorkerRegistry::with_clock(clock.clone());
    (clock, registry)
}

pub fn provider(name: &str) -> ProviderId {
    ProviderId::new(name).expect("valid provider id")
}

pub fn job(name: &str) -> JobId {
    JobId::new(name).expect("valid job id")
}

pub fn docker_handle() -> WorkerHandle {
    WorkerHandle::new(provider("docker-local"), ProviderType::Docker, "c")
}

pub fn spec() -> Arc<WorkerSpec> {
    Arc::new(WorkerSpec::new("img"))
}

/// Registers a worker with `spec` under the docker provider.
pub fn register(registry: &dyn WorkerRegistry, spec: Arc<WorkerSpec>) -> WorkerId {
    registry
        .register(docker_handle(), spec)
        .expect("register")
        .id
}

/// Registers a worker and moves it to `Ready`.
pub fn ready(registry: &dyn WorkerRegistry, spec: Arc<WorkerSpec>) -> WorkerId {
    let id = register(registry, spec);
    registry
        .update_state(&id, WorkerState::Ready)
        .expect("to ready");
    id
}

/// Registers a worker and brings it into `state` by legal moves; a `Busy` worker (and, with
/// `with_job`, a `Draining` one) holds `job_name`.
pub fn in_state(
    registry: &dyn WorkerRegistry,
    state: WorkerState,
    with_job: Option<&str>,
) -> WorkerId {
    use WorkerState::*;
    let id = register(registry, spec());
    let path: &[WorkerState] = match state {
        Creating => &[],
        Connecting => &[Connecting],
        Ready | Busy => &[Ready],
        Draining => &[Ready],
        Terminating => &[Terminating],
        Terminated => &[Terminated],
    };
    for s in path {
        registry.update_state(&id, *s).expect("legal move");
    }
    if let Some(name) = with_job {
        registry.assign_to_job(&id, job(name)).expect("assign");
    }
    if state == Draining {
        registry.update_state(&id, Draining).expect("to draining");
    }
    assert_eq!(registry.get(&id).unwrap().unwrap().state, state);
    id
}

/// Checks the invariants of DESIGN.md §3 on the whole registry, and that `stats()` and
/// `count()` equal a recount of `find(&WorkerFilter::new())`. Call it when no other thread is
/// changing the registry.
pub fn assert_invariants(registry: &dyn WorkerRegistry) -> Vec<Worker> {
    let all = registry.find(&WorkerFilter::new()).expect("find");
    let mut holders: HashMap<&JobId, WorkerId> = HashMap::new();
    for w in &all {
        match &w.current_job {
            Some(job) => {
                assert!(
                    matches!(w.state, WorkerState::Busy | WorkerState::Draining),
                    "invariant 1: {} holds {job} in {}",
                    w.id,
                    w.state
                );
                if let Some(other) = holders.insert(job, w.id) {
                    panic!("invariant 2: {job} held by {other} and {}", w.id);
                }
            }
            None => assert_ne!(
                w.state,
                WorkerState::Busy,
                "invariant 1: {} busy without a job",
                w.id
            ),
        }
        assert_eq!(w.handle.worker_id, w.id, "record under its own id");
        if w.state == WorkerState::Ready {
            assert!(w.idle_since.is_some(), "{} ready without idle_since", w.id);
        }
        assert_eq!(registry.get(&w.id).unwrap().as_ref(), Some(w));
    }
    let stats = registry.stats().expect("stats");
    assert_eq!(
        stats,
        WorkerRegistryStats::recount(&all),
        "invariant 4: stats equal a recount"
    );
    assert_eq!(registry.count().unwrap(), all.len());
    all
}

/// The kinds of the events queued on `sub`, in order.
pub fn kinds(sub: &Subscription) -> Vec<EventKind> {
    sub.drain().into_iter().map(|e| e.kind).collect()
}
