//! `find` and each field of its filter.

use std::sync::Arc;
use std::time::Duration;

use super::{ids, secs, set, MS};
use crate::common::*;
use hodei_workers::*;

#[test]
fn find_with_the_empty_filter_returns_everyone() {
    let (_, registry) = registry();
    let a = register(&registry, spec());
    let b = ready(&registry, spec());
    let c = in_state(&registry, WorkerState::Terminated, None);
    assert_eq!(
        ids(&registry.find(&WorkerFilter::new()).unwrap()),
        set([a, b, c])
    );
}

#[test]
fn find_by_states() {
    let (_, registry) = registry();
    let creating = register(&registry, spec());
    let ready_id = ready(&registry, spec());
    let busy = in_state(&registry, WorkerState::Busy, Some("j"));
    let draining = in_state(&registry, WorkerState::Draining, None);
    let f = |states: &[WorkerState]| {
        ids(&registry
            .find(&WorkerFilter::new().states(states.iter().copied()))
            .unwrap())
    };
    assert_eq!(f(&[WorkerState::Creating]), set([creating]));
    assert_eq!(
        f(&[WorkerState::Ready, WorkerState::Busy]),
        set([ready_id, busy])
    );
    assert_eq!(f(&[WorkerState::Draining]), set([draining]));
    assert_eq!(f(&[WorkerState::Terminated]), set([]));
    let one = registry
        .find(&WorkerFilter::new().state(WorkerState::Busy))
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].current_job, Some(job("j")));
}

#[test]
fn find_by_provider_id_and_type() {
    let (_, registry) = registry();
    let custom = ProviderType::custom("nomad").unwrap();
    let mk = |p: &str, t: ProviderType| {
        registry
            .register(WorkerHandle::new(provider(p), t, "r"), spec())
            .unwrap()
            .id
    };
    let d1 = mk("docker-a", ProviderType::Docker);
    let d2 = mk("docker-b", ProviderType::Docker);
    let k = mk("docker-a", ProviderType::Kubernetes);
    let n = mk("nomad-1", custom.clone());

    let by_id = |p: &str| {
        ids(&registry
            .find(&WorkerFilter::new().provider_id(provider(p)))
            .unwrap())
    };
    assert_eq!(by_id("docker-a"), set([d1, k]));
    assert_eq!(by_id("docker-b"), set([d2]));
    assert_eq!(by_id("nobody"), set([]));
    assert_eq!(
        ids(&registry.find_by_provider(&provider("docker-a")).unwrap()),
        set([d1, k])
    );

    let by_type = |t: ProviderType| {
        ids(&registry
            .find(&WorkerFilter::new().provider_type(t))
            .unwrap())
    };
    assert_eq!(by_type(ProviderType::Docker), set([d1, d2]));
    assert_eq!(by_type(ProviderType::Kubernetes), set([k]));
    assert_eq!(by_type(custom), set([n]));
    assert_eq!(by_type(ProviderType::Lambda), set([]));
    assert_eq!(
        ids(&registry
            .find(
                &WorkerFilter::new()
                    .provider_id(provider("docker-a"))
                    .provider_type(ProviderType::Docker)
            )
            .unwrap()),
        set([d1]),
        "conditions are a conjunction"
    );

    let stats = registry.stats().unwrap();
    assert_eq!(stats.by_provider[&provider("docker-a")], 2);
    assert_eq!(stats.by_provider_type[&ProviderType::Docker], 2);
    assert_invariants(&registry);
}

#[test]
fn find_accepting_jobs_and_find_available() {
    let (_, registry) = registry();
    let r1 = ready(&registry, spec());
    let r2 = ready(&registry, spec());
    let busy = in_state(&registry, WorkerState::Busy, Some("j"));
    let creating = register(&registry, spec());
    let draining = in_state(&registry, WorkerState::Draining, None);
    assert_eq!(
        ids(&registry
            .find(&WorkerFilter::new().accepting_jobs(true))
            .unwrap()),
        set([r1, r2])
    );
    assert_eq!(ids(&registry.find_available().unwrap()), set([r1, r2]));
    assert_eq!(
        ids(&registry
            .find(&WorkerFilter::new().accepting_jobs(false))
            .unwrap()),
        set([busy, creating, draining])
    );
}

#[test]
fn find_idle_for_counts_from_entering_ready() {
    let (clock, registry) = registry();
    let early = ready(&registry, spec());
    clock.advance(secs(10));
    let late = ready(&registry, spec());
    let busy = in_state(&registry, WorkerState::Busy, Some("j"));
    let f = |d: Duration| ids(&registry.find(&WorkerFilter::new().idle_for(d)).unwrap());
    assert_eq!(f(Duration::ZERO), set([early, late]), "busy never idles");
    assert_eq!(f(secs(10)), set([early]), "idle for at least 10 s");
    assert_eq!(f(secs(10) + MS), set([]));
    clock.advance(secs(10));
    assert_eq!(f(secs(10)), set([early, late]));
    // A heartbeat does not reset idleness; a job and its release do.
    registry.heartbeat(&early).unwrap();
    assert_eq!(f(secs(20)), set([early]));
    registry.assign_to_job(&early, job("k")).unwrap();
    registry.release_from_job(&early, None).unwrap();
    assert_eq!(f(secs(10)), set([late]));
    assert!(!f(Duration::ZERO).contains(&busy));
}

#[test]
fn find_unhealthy_for_is_strict() {
    let (clock, registry) = registry();
    let quiet = ready(&registry, spec());
    clock.advance(secs(30));
    let chatty = ready(&registry, spec());
    let f = |d: Duration| {
        ids(&registry
            .find(&WorkerFilter::new().unhealthy_for(d))
            .unwrap())
    };
    assert_eq!(f(secs(30)), set([]), "silent exactly 30 s is not past 30 s");
    assert_eq!(f(secs(30) - MS), set([quiet]));
    clock.advance(MS);
    assert_eq!(f(secs(30)), set([quiet]));
    registry.heartbeat(&quiet).unwrap();
    assert_eq!(f(Duration::ZERO), set([chatty]));
}

#[test]
fn find_by_labels_and_capabilities_requires_all() {
    let (_, registry) = registry();
    let ci_gpu = ready(
        &registry,
        Arc::new(
            WorkerSpec::new("img")
                .with_label("pool", "ci")
                .with_label("zone", "a")
                .with_capability("gpu")
                .with_capability("docker"),
        ),
    );
    let ci = ready(
        &registry,
        Arc::new(WorkerSpec::new("img").with_label("pool", "ci")),
    );
    let batch = ready(
        &registry,
        Arc::new(
            WorkerSpec::new("img")
                .with_label("pool", "batch")
                .with_capability("gpu"),
        ),
    );
    let f = |filter: WorkerFilter| ids(&registry.find(&filter).unwrap());
    assert_eq!(
        f(WorkerFilter::new().label("pool", "ci")),
        set([ci_gpu, ci])
    );
    assert_eq!(
        f(WorkerFilter::new().label("pool", "ci").label("zone", "a")),
        set([ci_gpu])
    );
    assert_eq!(f(WorkerFilter::new().label("pool", "nope")), set([]));
    assert_eq!(
        f(WorkerFilter::new().label("zone", "b")),
        set([]),
        "a label's value must match"
    );
    assert_eq!(
        f(WorkerFilter::new().capability("gpu")),
        set([ci_gpu, batch])
    );
    assert_eq!(
        f(WorkerFilter::new().capability("gpu").capability("docker")),
        set([ci_gpu])
    );
    assert_eq!(
        f(WorkerFilter::new().capability("gpu").label("pool", "batch")),
        set([batch])
    );
}

#[test]
fn find_limit_caps_the_results() {
    let (_, registry) = registry();
    for _ in 0..10 {
        ready(&registry, spec());
    }
    register(&registry, spec());
    assert_eq!(
        registry.find(&WorkerFilter::new().limit(3)).unwrap().len(),
        3
    );
    assert_eq!(
        registry.find(&WorkerFilter::new().limit(0)).unwrap().len(),
        0
    );
    assert_eq!(
        registry
            .find(&WorkerFilter::new().limit(100))
            .unwrap()
            .len(),
        11
    );
    let limited = registry
        .find(&WorkerFilter::new().state(WorkerState::Creating).limit(5))
        .unwrap();
    assert_eq!(
        limited.len(),
        1,
        "the limit counts matches, not records seen"
    );
    assert_eq!(limited[0].state, WorkerState::Creating);
}
