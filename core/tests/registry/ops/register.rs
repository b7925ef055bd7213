//! `register`, `unregister` and `get`: the new record, refusals, and what unregister reports.

use std::sync::Arc;
use std::time::Duration;

use super::{secs, worker};
use crate::common::*;
use hodei_workers::*;

#[test]
fn register_starts_in_creating_with_every_timestamp_now() {
    let (clock, registry) = registry();
    clock.advance(secs(5));
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    let handle = WorkerHandle::new(provider("k8s-east"), ProviderType::Kubernetes, "pod-7")
        .with_metadata("zone", "a");
    let id = handle.worker_id;
    let spec = Arc::new(WorkerSpec::new("img").with_label("pool", "ci"));
    let w = registry.register(handle.clone(), spec.clone()).unwrap();

    let now = T0 + 5_000;
    assert_eq!(w.id, id);
    assert_eq!(*w.handle, handle);
    assert_eq!(w.spec, spec);
    assert_eq!(w.state, WorkerState::Creating);
    assert_eq!(w.current_job, None);
    assert_eq!(w.jobs_executed, 0);
    assert_eq!(
        (
            w.created_at,
            w.updated_at,
            w.state_changed_at,
            w.last_heartbeat
        ),
        (now, now, now, now)
    );
    assert_eq!(w.idle_since, None);
    assert_eq!(registry.get(&id).unwrap(), Some(w));
    assert_eq!(
        kinds(&events),
        vec![EventKind::Registered {
            worker_id: id,
            provider_id: provider("k8s-east"),
            provider_type: ProviderType::Kubernetes,
        }]
    );
    assert_invariants(&registry);
}

#[test]
fn register_twice_is_already_exists_and_changes_nothing() {
    let (clock, registry) = registry();
    let handle = docker_handle();
    let first = registry.register(handle.clone(), spec()).unwrap();
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    clock.advance(secs(1));
    let other_spec = Arc::new(WorkerSpec::new("other"));
    assert_eq!(
        registry.register(handle.clone(), other_spec),
        Err(Error::AlreadyExists(handle.worker_id))
    );
    assert_eq!(worker(&registry, &handle.worker_id), first);
    assert_eq!(registry.count().unwrap(), 1);
    assert!(events.is_empty(), "a refused call publishes nothing");
    assert_invariants(&registry);
}

#[test]
fn register_refuses_an_invalid_spec() {
    let (_, registry) = registry();
    let mut nan_cpu = WorkerSpec::new("img");
    nan_cpu.resources.cpu_cores = f64::NAN;
    let mut negative_cpu = WorkerSpec::new("img");
    negative_cpu.resources.cpu_cores = -1.0;
    let bad = [
        WorkerSpec::new("img").with_max_jobs(0),
        WorkerSpec::new("img").with_idle_timeout(Duration::ZERO),
        WorkerSpec::new("img").with_max_lifetime(Duration::from_micros(999)),
        nan_cpu,
        negative_cpu,
    ];
    for spec in bad {
        let handle = docker_handle();
        let err = registry
            .register(handle.clone(), Arc::new(spec.clone()))
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument(_)),
            "{spec:?}: got {err:?}"
        );
        assert_eq!(registry.get(&handle.worker_id).unwrap(), None);
    }
    assert_eq!(registry.count().unwrap(), 0);
    assert_invariants(&registry);
}

#[test]
fn register_refuses_an_invalid_custom_provider_type() {
    // The variant can be built directly, bypassing ProviderType::custom; such a name would
    // not survive the snapshot's text form.
    let (_, registry) = registry();
    for name in ["", "a:b", "tab\there", &"x".repeat(65)] {
        let handle = WorkerHandle::new(provider("p"), ProviderType::Custom(name.to_string()), "r");
        assert!(
            matches!(
                registry.register(handle, spec()),
                Err(Error::InvalidArgument(_))
            ),
            "{name:?}"
        );
    }
    assert_eq!(registry.count().unwrap(), 0);
    let ok = WorkerHandle::new(provider("p"), ProviderType::Custom("nomad".into()), "r");
    registry.register(ok, spec()).unwrap();
    let json = registry.snapshot().unwrap().to_json().unwrap();
    assert_eq!(Snapshot::from_json(&json).unwrap().workers.len(), 1);
}

#[test]
fn unregister_unknown_is_not_found() {
    let (_, registry) = registry();
    let id = WorkerId::new();
    assert_eq!(
        registry.unregister(&id, TerminationReason::Requested),
        Err(Error::NotFound(id))
    );
}

#[test]
fn unregister_returns_the_last_snapshot_and_reports_the_reason() {
    let (clock, registry) = registry();
    let id = ready(&registry, spec());
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    clock.advance(secs(3));
    let before = worker(&registry, &id);
    let last = registry
        .unregister(&id, TerminationReason::ScaledDown)
        .unwrap();
    assert_eq!(last, before);
    assert_eq!(registry.get(&id).unwrap(), None);
    assert_eq!(registry.count().unwrap(), 0);
    let stats = registry.stats().unwrap();
    assert!(stats.by_provider.is_empty() && stats.by_provider_type.is_empty());
    let got = events.drain();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].at, T0 + 3_000);
    assert_eq!(
        got[0].kind,
        EventKind::Unregistered {
            worker_id: id,
            reason: TerminationReason::ScaledDown
        }
    );
    // Gone for good: every call on the id says so (ids are never reused).
    assert_eq!(
        registry.unregister(&id, TerminationReason::Requested),
        Err(Error::NotFound(id))
    );
    assert_eq!(registry.heartbeat(&id), Err(Error::NotFound(id)));
    assert_eq!(
        registry.update_state(&id, WorkerState::Draining),
        Err(Error::NotFound(id))
    );
    assert_eq!(
        registry.assign_to_job(&id, job("j")),
        Err(Error::NotFound(id))
    );
    // Nothing of it lingers in the indexes: a claim, a health check, a cleanup find nothing.
    clock.advance(secs(100_000));
    assert_eq!(registry.claim(&WorkerFilter::new(), job("j")), Ok(None));
    assert_eq!(registry.find_unhealthy(secs(1)), Ok(vec![]));
    assert_eq!(registry.find_for_termination(), Ok(vec![]));
    assert_invariants(&registry);
}

#[test]
fn unregister_with_a_job_reports_it_lost_and_frees_it() {
    let (_, registry) = registry();
    let id = in_state(&registry, WorkerState::Busy, Some("j1"));
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    let last = registry
        .unregister(&id, TerminationReason::Unhealthy)
        .unwrap();
    assert_eq!(last.current_job, Some(job("j1")));
    assert_eq!(
        kinds(&events),
        vec![
            EventKind::JobLost {
                worker_id: id,
                job_id: job("j1")
            },
            EventKind::Unregistered {
                worker_id: id,
                reason: TerminationReason::Unhealthy
            },
        ]
    );
    let other = ready(&registry, spec());
    assert_eq!(
        registry
            .assign_to_job(&other, job("j1"))
            .unwrap()
            .current_job,
        Some(job("j1")),
        "the lost job can be given to another worker"
    );
    assert_invariants(&registry);
}

#[test]
fn get_unknown_is_none() {
    let (_, registry) = registry();
    register(&registry, spec());
    assert_eq!(registry.get(&WorkerId::new()), Ok(None));
}
