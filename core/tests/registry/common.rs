//! Helpers shared by the registry conformance suite: a registry of the backend under test on a
//! [`ManualClock`], workers brought into a given state, and a full check of the invariants of
//! DESIGN.md §3. Backend-neutral: the registry comes from `crate::backend`, so the PostgreSQL
//! crate's tests include this file as it is.
#![allow(dead_code)] // each test crate uses a different part of it

use std::sync::Arc;

use hodei_workers::*;

/// Where the manual clock starts: far enough from zero that `now - timeout` never saturates.
pub const T0: Timestamp = 1_700_000_000_000;

pub use crate::invariants::assert_invariants;
pub use crate::test_registry::TestRegistry;

/// A fresh, empty registry of the backend under test on a manual clock reading [`T0`].
pub fn registry() -> (Arc<ManualClock>, TestRegistry) {
    let clock = Arc::new(ManualClock::new(T0));
    let registry = registry_on(clock.clone());
    (clock, registry)
}

/// Cases per property test: `PROPTEST_CASES` from the environment (a longer hunt), else the
/// backend's own count (`crate::backend::PROPTEST_CASES`: a database backend affords fewer).
pub fn proptest_cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(crate::backend::PROPTEST_CASES)
}

/// `n` (a count of workers, rounds, iterations) scaled to the backend's
/// [`crate::backend::STRESS_SCALE`] (a database round trip costs far more than a shard lock),
/// never below `min` (what the test needs to mean something). In memory: `n` itself.
pub fn scaled(n: usize, min: usize) -> usize {
    ((n as f64 * crate::backend::STRESS_SCALE) as usize).clamp(min.min(n), n)
}

/// Another fresh, empty registry of the backend under test on `clock` (a restore target).
pub fn registry_on(clock: Arc<ManualClock>) -> TestRegistry {
    TestRegistry::new(crate::backend::new_registry(clock))
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

/// The kinds of the events queued on `sub`, in order.
pub fn kinds(sub: &Subscription) -> Vec<EventKind> {
    sub.drain().into_iter().map(|e| e.kind).collect()
}

/// Milliseconds of a duration (deadline arithmetic as DESIGN.md §3 states it).
pub fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Brute force: the workers past their heartbeat deadline at `now` (monitored state, silent for
/// longer than `timeout` since their last heartbeat or the grace floor, whichever is later).
pub fn expected_unhealthy(
    all: &[Worker],
    now: Timestamp,
    timeout: std::time::Duration,
    floor: Timestamp,
) -> std::collections::BTreeSet<WorkerId> {
    all.iter()
        .filter(|w| {
            w.state.heartbeat_monitored()
                && now.saturating_sub(w.last_heartbeat.max(floor)) > ms(timeout)
        })
        .map(|w| w.id)
        .collect()
}

/// Brute force: the workers past their startup deadline at `now`.
pub fn expected_startup_expired(
    all: &[Worker],
    now: Timestamp,
    timeout: std::time::Duration,
    floor: Timestamp,
) -> std::collections::BTreeSet<WorkerId> {
    all.iter()
        .filter(|w| {
            w.state.is_starting() && now.saturating_sub(w.created_at.max(floor)) > ms(timeout)
        })
        .map(|w| w.id)
        .collect()
}

/// Brute force: who is due for retirement at `now`, and why (DESIGN.md §3–§4): lifetime
/// (anything not yet draining or leaving; it wins over idle), idle (`Ready` only, from
/// `idle_since`), drained / max jobs (`Draining` without a job).
pub fn expected_termination(
    all: &[Worker],
    now: Timestamp,
) -> std::collections::BTreeMap<WorkerId, TerminationReason> {
    use WorkerState::*;
    let mut due = std::collections::BTreeMap::new();
    for w in all {
        let lifetime_tracked = matches!(w.state, Creating | Connecting | Ready | Busy);
        let reason =
            if lifetime_tracked && now.saturating_sub(w.created_at) > ms(w.spec.max_lifetime) {
                Some(TerminationReason::Lifetime)
            } else if w.state == Ready
                && now.saturating_sub(w.idle_since.expect("ready has idle_since"))
                    > ms(w.spec.idle_timeout)
            {
                Some(TerminationReason::Idle)
            } else if w.state == Draining && w.current_job.is_none() {
                let exhausted = w
                    .spec
                    .max_jobs
                    .is_some_and(|m| w.jobs_executed >= u64::from(m));
                Some(if exhausted {
                    TerminationReason::MaxJobs
                } else {
                    TerminationReason::Drained
                })
            } else {
                None
            };
        if let Some(r) = reason {
            due.insert(w.id, r);
        }
    }
    due
}

/// `find_for_termination` as a map, checking that each worker appears once and that every
/// reported snapshot is the live record.
pub fn termination_map(
    registry: &dyn WorkerRegistry,
) -> std::collections::BTreeMap<WorkerId, TerminationReason> {
    let list = registry
        .find_for_termination()
        .expect("find_for_termination");
    let map: std::collections::BTreeMap<_, _> = list.iter().map(|(w, r)| (w.id, *r)).collect();
    assert_eq!(map.len(), list.len(), "each worker reported once");
    for (w, _) in &list {
        assert_eq!(
            registry.get(&w.id).unwrap().as_ref(),
            Some(w),
            "live snapshot"
        );
    }
    map
}

/// The ids of `workers`, as a set.
pub fn id_set(workers: &[Worker]) -> std::collections::BTreeSet<WorkerId> {
    workers.iter().map(|w| w.id).collect()
}
