//! Every operation of [`WorkerRegistry`] and every error path, one behaviour per test, on
//! the backend under test driven by a [`ManualClock`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use hodei_workers::*;

const MS: Duration = Duration::from_millis(1);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn worker(registry: &dyn WorkerRegistry, id: &WorkerId) -> Worker {
    registry.get(id).unwrap().expect("worker present")
}

// ---------------------------------------------------------------------------------------------
// register / unregister / get

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

// ---------------------------------------------------------------------------------------------
// find and its filter

fn ids(workers: &[Worker]) -> BTreeSet<WorkerId> {
    workers.iter().map(|w| w.id).collect()
}

fn set<const N: usize>(ids: [WorkerId; N]) -> BTreeSet<WorkerId> {
    ids.into_iter().collect()
}

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

// ---------------------------------------------------------------------------------------------
// update_state

/// DESIGN.md §3, written out pair by pair, for `update_state`: the table minus the two job
/// moves (`Ready -> Busy` is assign/claim, `Busy -> Ready` is release).
fn update_allowed(from: WorkerState, to: WorkerState) -> bool {
    use WorkerState::*;
    match from {
        Creating => matches!(to, Connecting | Ready | Terminating | Terminated),
        Connecting => matches!(to, Ready | Terminating | Terminated),
        Ready => matches!(to, Draining | Terminating | Terminated),
        Busy => matches!(to, Draining | Terminating | Terminated),
        Draining => matches!(to, Ready | Terminating | Terminated),
        Terminating => matches!(to, Terminated),
        Terminated => false,
    }
}

#[test]
fn update_state_every_pair_from_every_state() {
    use WorkerState::*;
    // (state, holds a job) — a Draining worker both with and without its job.
    let starts = [
        (Creating, false),
        (Connecting, false),
        (Ready, false),
        (Busy, true),
        (Draining, false),
        (Draining, true),
        (Terminating, false),
        (Terminated, false),
    ];
    let mut allowed_seen = 0;
    let mut refused_seen = 0;
    for (from, has_job) in starts {
        for to in WorkerState::ALL {
            if to == from {
                continue;
            }
            let (clock, registry) = registry();
            let id = in_state(&registry, from, has_job.then_some("j"));
            let events = registry.subscribe(SubscribeOptions::default()).unwrap();
            clock.advance(secs(1));
            let before = worker(&registry, &id);
            let allowed = update_allowed(from, to) && !(to == Ready && has_job);
            let result = registry.update_state(&id, to);
            if allowed {
                allowed_seen += 1;
                let w = result.unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
                assert_eq!(w.state, to);
                assert_eq!(w, worker(&registry, &id));
                assert_eq!((w.updated_at, w.state_changed_at), (T0 + 1_000, T0 + 1_000));
                let mut expected = vec![EventKind::StateChanged {
                    worker_id: id,
                    from,
                    to,
                }];
                if has_job && matches!(to, Terminating | Terminated) {
                    assert_eq!(w.current_job, None, "{from} -> {to} clears the job");
                    expected.push(EventKind::JobLost {
                        worker_id: id,
                        job_id: job("j"),
                    });
                } else {
                    assert_eq!(w.current_job, before.current_job, "{from} -> {to}");
                }
                assert_eq!(kinds(&events), expected, "{from} -> {to}");
            } else {
                refused_seen += 1;
                assert_eq!(
                    result,
                    Err(Error::InvalidTransition {
                        worker_id: id,
                        from,
                        to
                    }),
                    "{from} -> {to} (job: {has_job})"
                );
                assert_eq!(
                    worker(&registry, &id),
                    before,
                    "a refused move changes nothing"
                );
                assert!(events.is_empty(), "{from} -> {to}: no event");
            }
            assert_invariants(&registry);
        }
    }
    // 8 starting points x 6 targets; the table has 17 moves open to update_state, plus the
    // Draining-with-job row again without its un-drain.
    assert_eq!(allowed_seen + refused_seen, 48);
    assert_eq!(allowed_seen, 19);
}

#[test]
fn update_state_to_the_same_state_is_a_silent_no_op() {
    let (clock, registry) = registry();
    for state in WorkerState::ALL {
        let id = in_state(
            &registry,
            state,
            (state == WorkerState::Busy).then_some("j"),
        );
        let events = registry.subscribe(SubscribeOptions::default()).unwrap();
        clock.advance(secs(1));
        let before = worker(&registry, &id);
        assert_eq!(
            registry.update_state(&id, state),
            Ok(before.clone()),
            "{state}"
        );
        assert_eq!(worker(&registry, &id), before, "updated_at untouched");
        assert!(events.is_empty(), "{state}: no event");
    }
}

#[test]
fn update_state_unknown_is_not_found() {
    let (_, registry) = registry();
    let id = WorkerId::new();
    assert_eq!(
        registry.update_state(&id, WorkerState::Ready),
        Err(Error::NotFound(id))
    );
}

#[test]
fn un_draining_with_a_job_is_refused_and_without_restarts_idle() {
    let (clock, registry) = registry();
    let id = in_state(&registry, WorkerState::Busy, Some("j"));
    // A lifetime drain: the job finishes first.
    let w = registry.update_state(&id, WorkerState::Draining).unwrap();
    assert_eq!(w.current_job, Some(job("j")));
    assert_eq!(
        registry.update_state(&id, WorkerState::Ready),
        Err(Error::InvalidTransition {
            worker_id: id,
            from: WorkerState::Draining,
            to: WorkerState::Ready
        })
    );
    clock.advance(secs(7));
    assert_eq!(
        registry.release_from_job(&id, Some(&job("j"))),
        Ok(job("j"))
    );
    let w = worker(&registry, &id);
    assert_eq!((w.state, w.jobs_executed), (WorkerState::Draining, 1));
    clock.advance(secs(1));
    let w = registry.update_state(&id, WorkerState::Ready).unwrap();
    assert_eq!(
        w.idle_since,
        Some(T0 + 8_000),
        "un-drain restarts the idle clock"
    );
    assert_eq!(
        registry
            .claim(&WorkerFilter::new(), job("next"))
            .unwrap()
            .map(|w| w.id),
        Some(id),
        "an un-drained worker is claimable again"
    );
    assert_invariants(&registry);
}

#[test]
fn terminating_a_busy_worker_reports_its_job_lost() {
    for target in [WorkerState::Terminating, WorkerState::Terminated] {
        let (_, registry) = registry();
        let id = in_state(&registry, WorkerState::Busy, Some("j"));
        let events = registry.subscribe(SubscribeOptions::default()).unwrap();
        let w = registry.update_state(&id, target).unwrap();
        assert_eq!((w.state, w.current_job.clone()), (target, None));
        assert_eq!(
            kinds(&events),
            vec![
                EventKind::StateChanged {
                    worker_id: id,
                    from: WorkerState::Busy,
                    to: target
                },
                EventKind::JobLost {
                    worker_id: id,
                    job_id: job("j")
                },
            ]
        );
        assert_eq!(
            registry.release_from_job(&id, None),
            Err(Error::NotBusy {
                worker_id: id,
                expected: None
            }),
            "the job is gone from the worker"
        );
        let other = ready(&registry, spec());
        assert_eq!(
            registry
                .claim(&WorkerFilter::new(), job("j"))
                .unwrap()
                .map(|w| w.id),
            Some(other),
            "and free for another"
        );
        assert_invariants(&registry);
    }
}

// ---------------------------------------------------------------------------------------------
// heartbeat

#[test]
fn heartbeat_unknown_is_not_found() {
    let (_, registry) = registry();
    let id = WorkerId::new();
    assert_eq!(registry.heartbeat(&id), Err(Error::NotFound(id)));
}

#[test]
fn heartbeat_updates_last_heartbeat_only() {
    let (clock, registry) = registry();
    for state in WorkerState::ALL {
        let id = in_state(
            &registry,
            state,
            (state == WorkerState::Busy).then_some("j"),
        );
        let before = worker(&registry, &id);
        clock.advance(secs(2));
        registry.heartbeat(&id).unwrap();
        let after = worker(&registry, &id);
        assert_eq!(after.last_heartbeat, clock.now(), "{state}");
        assert_eq!(
            Worker {
                last_heartbeat: before.last_heartbeat,
                ..after
            },
            before,
            "{state}: nothing else moves"
        );
    }
    assert_invariants(&registry);
}

#[test]
fn heartbeat_events_only_for_subscribers_that_opt_in() {
    let (_, registry) = registry();
    let id = ready(&registry, spec());
    let plain = registry.subscribe(SubscribeOptions::default()).unwrap();
    let keen = registry
        .subscribe(SubscribeOptions::default().heartbeats(true))
        .unwrap();
    registry.heartbeat(&id).unwrap();
    registry.heartbeat(&id).unwrap();
    assert!(plain.is_empty());
    assert_eq!(
        kinds(&keen),
        vec![EventKind::HeartbeatReceived { worker_id: id }; 2]
    );
}

// ---------------------------------------------------------------------------------------------
// assign_to_job

#[test]
fn assign_makes_a_ready_worker_busy() {
    let (clock, registry) = registry();
    let id = ready(&registry, spec());
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    clock.advance(secs(1));
    let w = registry.assign_to_job(&id, job("j1")).unwrap();
    assert_eq!(w.state, WorkerState::Busy);
    assert_eq!(w.current_job, Some(job("j1")));
    assert_eq!(w.state_changed_at, T0 + 1_000);
    assert_eq!(w, worker(&registry, &id));
    assert_eq!(
        kinds(&events),
        vec![
            EventKind::StateChanged {
                worker_id: id,
                from: WorkerState::Ready,
                to: WorkerState::Busy
            },
            EventKind::AssignedToJob {
                worker_id: id,
                job_id: job("j1")
            },
        ]
    );
    assert_invariants(&registry);
}

#[test]
fn assign_to_a_worker_that_is_not_ready_is_not_available() {
    let (_, registry) = registry();
    for (state, job_name) in [
        (WorkerState::Creating, None),
        (WorkerState::Connecting, None),
        (WorkerState::Busy, Some("held")),
        (WorkerState::Draining, None),
        (WorkerState::Terminating, None),
        (WorkerState::Terminated, None),
    ] {
        let id = in_state(&registry, state, job_name);
        let before = worker(&registry, &id);
        assert_eq!(
            registry.assign_to_job(&id, job("new")),
            Err(Error::NotAvailable {
                worker_id: id,
                state
            })
        );
        assert_eq!(worker(&registry, &id), before);
    }
    let id = WorkerId::new();
    assert_eq!(
        registry.assign_to_job(&id, job("new")),
        Err(Error::NotFound(id))
    );
    assert_invariants(&registry);
}

#[test]
fn assign_of_a_job_held_elsewhere_is_job_already_assigned() {
    let (_, registry) = registry();
    let holder = in_state(&registry, WorkerState::Busy, Some("j"));
    let other = ready(&registry, spec());
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    let err = registry.assign_to_job(&other, job("j")).unwrap_err();
    assert_eq!(
        err,
        Error::JobAlreadyAssigned {
            job_id: job("j"),
            worker_id: holder
        }
    );
    assert!(err.to_string().contains(&holder.to_string()), "{err}");
    assert_eq!(worker(&registry, &other).state, WorkerState::Ready);
    assert!(events.is_empty());
    // A draining worker still holding the job holds it too.
    registry
        .update_state(&holder, WorkerState::Draining)
        .unwrap();
    assert!(matches!(
        registry.assign_to_job(&other, job("j")),
        Err(Error::JobAlreadyAssigned { .. })
    ));
    assert_invariants(&registry);
}

// ---------------------------------------------------------------------------------------------
// release_from_job

#[test]
fn release_returns_the_job_and_restarts_idle() {
    let (clock, registry) = registry();
    let id = in_state(&registry, WorkerState::Busy, Some("j"));
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    clock.advance(secs(42));
    assert_eq!(registry.release_from_job(&id, None), Ok(job("j")));
    let w = worker(&registry, &id);
    assert_eq!(w.state, WorkerState::Ready);
    assert_eq!(w.current_job, None);
    assert_eq!(w.jobs_executed, 1);
    assert_eq!(w.idle_since, Some(T0 + 42_000));
    assert_eq!(
        kinds(&events),
        vec![
            EventKind::ReleasedFromJob {
                worker_id: id,
                job_id: job("j")
            },
            EventKind::StateChanged {
                worker_id: id,
                from: WorkerState::Busy,
                to: WorkerState::Ready
            },
        ]
    );
    // With the expected job named, too.
    registry.assign_to_job(&id, job("k")).unwrap();
    assert_eq!(
        registry.release_from_job(&id, Some(&job("k"))),
        Ok(job("k"))
    );
    assert_eq!(worker(&registry, &id).jobs_executed, 2);
    assert_invariants(&registry);
}

#[test]
fn release_without_a_job_is_not_busy() {
    let (_, registry) = registry();
    for state in [
        WorkerState::Creating,
        WorkerState::Ready,
        WorkerState::Draining,
        WorkerState::Terminated,
    ] {
        let id = in_state(&registry, state, None);
        let before = worker(&registry, &id);
        assert_eq!(
            registry.release_from_job(&id, None),
            Err(Error::NotBusy {
                worker_id: id,
                expected: None
            })
        );
        assert_eq!(
            registry.release_from_job(&id, Some(&job("x"))),
            Err(Error::NotBusy {
                worker_id: id,
                expected: Some(job("x"))
            })
        );
        assert_eq!(worker(&registry, &id), before);
    }
    let id = WorkerId::new();
    assert_eq!(
        registry.release_from_job(&id, None),
        Err(Error::NotFound(id))
    );
}

#[test]
fn a_late_release_of_an_old_job_changes_nothing() {
    let (clock, registry) = registry();
    let id = in_state(&registry, WorkerState::Busy, Some("old"));
    registry.release_from_job(&id, Some(&job("old"))).unwrap();
    registry.assign_to_job(&id, job("new")).unwrap();
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    clock.advance(secs(1));
    let before = worker(&registry, &id);
    let err = registry
        .release_from_job(&id, Some(&job("old")))
        .unwrap_err();
    assert_eq!(
        err,
        Error::NotBusy {
            worker_id: id,
            expected: Some(job("old"))
        }
    );
    assert!(err.to_string().contains("old"), "{err}");
    assert_eq!(worker(&registry, &id), before, "the new job is untouched");
    assert!(events.is_empty());
    assert_invariants(&registry);
}

#[test]
fn release_of_a_draining_worker_keeps_it_draining() {
    let (_, registry) = registry();
    let id = in_state(&registry, WorkerState::Draining, Some("j"));
    assert_eq!(registry.find_for_termination().unwrap(), vec![]);
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    assert_eq!(registry.release_from_job(&id, None), Ok(job("j")));
    let w = worker(&registry, &id);
    assert_eq!(
        (w.state, w.current_job.clone(), w.jobs_executed),
        (WorkerState::Draining, None, 1)
    );
    assert_eq!(
        kinds(&events),
        vec![EventKind::ReleasedFromJob {
            worker_id: id,
            job_id: job("j")
        }],
        "no state change"
    );
    assert_eq!(
        registry.find_for_termination().unwrap(),
        vec![(w, TerminationReason::Drained)]
    );
    assert_invariants(&registry);
}

#[test]
fn reaching_max_jobs_drains_the_worker() {
    let (_, registry) = registry();
    let id = ready(&registry, Arc::new(WorkerSpec::new("img").with_max_jobs(2)));
    registry.assign_to_job(&id, job("a")).unwrap();
    registry.release_from_job(&id, None).unwrap();
    assert_eq!(worker(&registry, &id).state, WorkerState::Ready);
    assert_eq!(registry.find_for_termination().unwrap(), vec![]);
    registry.assign_to_job(&id, job("b")).unwrap();
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    registry.release_from_job(&id, None).unwrap();
    let w = worker(&registry, &id);
    assert_eq!((w.state, w.jobs_executed), (WorkerState::Draining, 2));
    assert_eq!(
        kinds(&events),
        vec![
            EventKind::ReleasedFromJob {
                worker_id: id,
                job_id: job("b")
            },
            EventKind::StateChanged {
                worker_id: id,
                from: WorkerState::Busy,
                to: WorkerState::Draining
            },
        ]
    );
    assert_eq!(
        registry.find_for_termination().unwrap(),
        vec![(w, TerminationReason::MaxJobs)]
    );
    assert_eq!(registry.claim(&WorkerFilter::new(), job("c")), Ok(None));
    assert_invariants(&registry);
}

#[test]
fn a_stale_release_after_unregister_is_not_found() {
    let (_, registry) = registry();
    let id = in_state(&registry, WorkerState::Busy, Some("j"));
    registry
        .unregister(&id, TerminationReason::Requested)
        .unwrap();
    assert_eq!(
        registry.release_from_job(&id, Some(&job("j"))),
        Err(Error::NotFound(id))
    );
}

// ---------------------------------------------------------------------------------------------
// claim

#[test]
fn claim_prefers_the_most_recently_idle_worker() {
    let (clock, registry) = registry();
    let oldest = ready(&registry, spec());
    clock.advance(secs(1));
    let middle = ready(&registry, spec());
    clock.advance(secs(1));
    let newest = ready(&registry, spec());
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    let w = registry
        .claim(&WorkerFilter::new(), job("a"))
        .unwrap()
        .unwrap();
    assert_eq!(w.id, newest);
    assert_eq!(
        (w.state, w.current_job.clone()),
        (WorkerState::Busy, Some(job("a")))
    );
    assert_eq!(w, worker(&registry, &newest));
    assert_eq!(
        kinds(&events),
        vec![
            EventKind::StateChanged {
                worker_id: newest,
                from: WorkerState::Ready,
                to: WorkerState::Busy
            },
            EventKind::AssignedToJob {
                worker_id: newest,
                job_id: job("a")
            },
        ]
    );
    assert_eq!(
        registry
            .claim(&WorkerFilter::new(), job("b"))
            .unwrap()
            .unwrap()
            .id,
        middle
    );
    // Released now, `newest` is again the most recently idle.
    clock.advance(secs(1));
    registry.release_from_job(&newest, None).unwrap();
    assert_eq!(
        registry
            .claim(&WorkerFilter::new(), job("c"))
            .unwrap()
            .unwrap()
            .id,
        newest
    );
    assert_eq!(
        registry
            .claim(&WorkerFilter::new(), job("d"))
            .unwrap()
            .unwrap()
            .id,
        oldest
    );
    assert_eq!(
        registry.claim(&WorkerFilter::new(), job("e")),
        Ok(None),
        "none left"
    );
    assert_invariants(&registry);
}

#[test]
fn claim_honours_every_filter_field() {
    let (clock, registry) = registry();
    let gpu = ready(
        &registry,
        Arc::new(
            WorkerSpec::new("img")
                .with_label("pool", "ci")
                .with_capability("gpu"),
        ),
    );
    clock.advance(secs(10));
    let k8s = registry
        .register(
            WorkerHandle::new(provider("k8s"), ProviderType::Kubernetes, "pod"),
            Arc::new(WorkerSpec::new("img").with_label("pool", "batch")),
        )
        .unwrap()
        .id;
    registry.update_state(&k8s, WorkerState::Ready).unwrap();
    // The newest ready worker of all: it wins whenever it matches.
    clock.advance(secs(10));
    let plain = ready(&registry, spec());
    registry.heartbeat(&gpu).unwrap();

    let claim_id = |filter: WorkerFilter, j: &str| {
        let got = registry.claim(&filter, job(j)).unwrap().map(|w| w.id);
        if let Some(id) = got {
            registry.release_from_job(&id, None).unwrap();
        }
        got
    };
    // Releases restart the idle clocks: measure everything before any claim succeeds.
    assert_eq!(
        claim_id(WorkerFilter::new().state(WorkerState::Busy), "x"),
        None
    );
    assert_eq!(
        claim_id(WorkerFilter::new().accepting_jobs(false), "x"),
        None
    );
    assert_eq!(claim_id(WorkerFilter::new().limit(0), "x"), None);
    assert_eq!(
        claim_id(WorkerFilter::new().label("pool", "none"), "x"),
        None
    );
    assert_eq!(claim_id(WorkerFilter::new().idle_for(secs(21)), "x"), None);
    assert_eq!(
        claim_id(WorkerFilter::new().unhealthy_for(secs(21)), "x"),
        None
    );
    assert_eq!(
        claim_id(
            WorkerFilter::new()
                .states([WorkerState::Ready, WorkerState::Busy])
                .accepting_jobs(true)
                .limit(1),
            "x"
        ),
        Some(plain)
    );
    clock.advance(secs(1)); // plain: idle 1 s, k8s: 11 s, gpu: 21 s
    assert_eq!(
        claim_id(WorkerFilter::new().idle_for(secs(11)), "a"),
        Some(k8s)
    );
    clock.advance(secs(1)); // plain 2, gpu 22, k8s 1
    assert_eq!(
        claim_id(WorkerFilter::new().idle_for(secs(3)), "b"),
        Some(gpu)
    );
    clock.advance(secs(1)); // last heartbeats: plain 3 s ago, k8s 13 s, gpu 3 s
    assert_eq!(
        claim_id(WorkerFilter::new().unhealthy_for(secs(13)), "c"),
        None,
        "strict"
    );
    assert_eq!(
        claim_id(WorkerFilter::new().unhealthy_for(secs(12)), "c"),
        Some(k8s)
    );
    assert_eq!(
        claim_id(WorkerFilter::new().label("pool", "ci"), "d"),
        Some(gpu)
    );
    assert_eq!(
        claim_id(WorkerFilter::new().capability("gpu"), "e"),
        Some(gpu)
    );
    assert_eq!(
        claim_id(
            WorkerFilter::new().provider_type(ProviderType::Kubernetes),
            "f"
        ),
        Some(k8s)
    );
    assert_eq!(
        claim_id(WorkerFilter::new().provider_id(provider("k8s")), "g"),
        Some(k8s)
    );
    assert_eq!(
        claim_id(
            WorkerFilter::new().provider_id(provider("docker-local")),
            "h"
        ),
        Some(gpu)
    );
    assert_invariants(&registry);
}

#[test]
fn claim_of_a_job_held_elsewhere_is_job_already_assigned() {
    let (_, registry) = registry();
    let holder = in_state(&registry, WorkerState::Busy, Some("j"));
    let expected = Err(Error::JobAlreadyAssigned {
        job_id: job("j"),
        worker_id: holder,
    });
    assert_eq!(
        registry.claim(&WorkerFilter::new(), job("j")),
        expected,
        "with no ready worker"
    );
    let idle = ready(&registry, spec());
    assert_eq!(registry.claim(&WorkerFilter::new(), job("j")), expected);
    // Whatever the filter: a filter nobody can match does not hide the double assignment.
    for filter in [
        WorkerFilter::new().limit(0),
        WorkerFilter::new().accepting_jobs(false),
        WorkerFilter::new().state(WorkerState::Creating),
        WorkerFilter::new().idle_for(Duration::from_secs(u64::MAX / 2)),
    ] {
        assert_eq!(registry.claim(&filter, job("j")), expected, "{filter:?}");
    }
    assert_eq!(worker(&registry, &idle).state, WorkerState::Ready);
    assert_invariants(&registry);
}

#[test]
fn claim_with_no_match_is_none() {
    let (_, registry) = registry();
    assert_eq!(registry.claim(&WorkerFilter::new(), job("j")), Ok(None));
    in_state(&registry, WorkerState::Creating, None);
    in_state(&registry, WorkerState::Connecting, None);
    in_state(&registry, WorkerState::Busy, Some("b"));
    in_state(&registry, WorkerState::Draining, None);
    in_state(&registry, WorkerState::Terminating, None);
    assert_eq!(registry.claim(&WorkerFilter::new(), job("j")), Ok(None));
    assert_invariants(&registry);
}

#[test]
fn claim_looks_past_candidates_that_fail_the_live_checks() {
    // claim pre-filters ready workers on what never changes and re-checks the heartbeat on
    // the live record, a few candidates at a time: the one match is the least recently idle
    // of twenty, behind many batches of candidates that fail the re-check.
    let (clock, registry) = registry();
    let mut all = Vec::new();
    for _ in 0..20 {
        all.push(ready(&registry, spec()));
        clock.advance(MS);
    }
    let wanted = ready(
        &registry,
        Arc::new(WorkerSpec::new("img").with_label("pool", "rare")),
    );
    assert_eq!(
        registry
            .claim(&WorkerFilter::new().label("pool", "rare"), job("j"))
            .unwrap()
            .map(|w| w.id),
        Some(wanted)
    );
    clock.advance(secs(10));
    let silent = all[0];
    for id in &all[1..] {
        registry.heartbeat(id).unwrap();
    }
    let filter = WorkerFilter::new().unhealthy_for(secs(5));
    assert_eq!(
        registry.claim(&filter, job("k")).unwrap().map(|w| w.id),
        Some(silent)
    );
    assert_eq!(registry.claim(&filter, job("l")), Ok(None));
    assert_eq!(
        registry
            .claim(&WorkerFilter::new(), job("l"))
            .unwrap()
            .map(|w| w.id),
        Some(all[19]),
        "without the condition, the most recently idle"
    );
    assert_invariants(&registry);
}

// ---------------------------------------------------------------------------------------------
// find_for_termination, grant_grace

#[test]
fn find_for_termination_reports_each_reason() {
    let (clock, registry) = registry();
    let short = |idle: u64, life: u64| {
        Arc::new(
            WorkerSpec::new("img")
                .with_idle_timeout(secs(idle))
                .with_max_lifetime(secs(life)),
        )
    };
    let idle = ready(&registry, short(10, 1_000));
    let old_ready = ready(&registry, short(10, 20));
    let old_busy = ready(&registry, short(1_000, 20));
    registry.assign_to_job(&old_busy, job("long")).unwrap();
    let old_creating = register(&registry, short(10, 20));
    let drained = in_state(&registry, WorkerState::Draining, None);
    let one_shot = ready(&registry, Arc::new(WorkerSpec::new("img").with_max_jobs(1)));
    registry.assign_to_job(&one_shot, job("once")).unwrap();
    registry.release_from_job(&one_shot, None).unwrap();
    let draining_busy = in_state(&registry, WorkerState::Draining, Some("still"));
    let fresh = ready(&registry, spec());

    let reasons = || -> BTreeMap<WorkerId, TerminationReason> {
        let list = registry.find_for_termination().unwrap();
        let map: BTreeMap<_, _> = list
            .iter()
            .map(|(w, r)| {
                assert_eq!(Some(w), registry.get(&w.id).unwrap().as_ref());
                (w.id, *r)
            })
            .collect();
        assert_eq!(map.len(), list.len(), "each worker once");
        map
    };
    let sorted =
        |v: Vec<(WorkerId, TerminationReason)>| -> BTreeMap<_, _> { v.into_iter().collect() };
    assert_eq!(
        reasons(),
        sorted(vec![
            (drained, TerminationReason::Drained),
            (one_shot, TerminationReason::MaxJobs),
        ])
    );
    clock.advance(secs(11));
    assert_eq!(
        reasons(),
        sorted(vec![
            (idle, TerminationReason::Idle),
            (old_ready, TerminationReason::Idle),
            (drained, TerminationReason::Drained),
            (one_shot, TerminationReason::MaxJobs),
        ])
    );
    clock.advance(secs(10));
    assert_eq!(
        reasons(),
        sorted(vec![
            (idle, TerminationReason::Idle),
            // Lifetime wins over idle; a busy worker is reported so the manager drains it.
            (old_ready, TerminationReason::Lifetime),
            (old_busy, TerminationReason::Lifetime),
            (old_creating, TerminationReason::Lifetime),
            (drained, TerminationReason::Drained),
            (one_shot, TerminationReason::MaxJobs),
        ])
    );
    // The manager drains the busy one: it is no longer due until its job is done.
    registry
        .update_state(&old_busy, WorkerState::Draining)
        .unwrap();
    assert!(!reasons().contains_key(&old_busy));
    registry.release_from_job(&old_busy, None).unwrap();
    assert_eq!(reasons().get(&old_busy), Some(&TerminationReason::Drained));
    assert!(!reasons().contains_key(&draining_busy) && !reasons().contains_key(&fresh));
    // Retired workers leave the list.
    for id in reasons().into_keys() {
        registry
            .update_state(&id, WorkerState::Terminating)
            .unwrap();
    }
    assert_eq!(reasons(), BTreeMap::new());
    assert_invariants(&registry);
}

#[test]
fn grant_grace_holds_back_heartbeat_and_startup_expiry() {
    let (clock, registry) = registry();
    let silent = ready(&registry, spec());
    let starting = register(&registry, spec());
    clock.advance(secs(100));
    assert_eq!(
        ids(&registry.find_unhealthy(secs(60)).unwrap()),
        set([silent])
    );
    assert_eq!(
        ids(&registry.find_startup_expired(secs(60)).unwrap()),
        set([starting])
    );
    registry.grant_grace(clock.now()).unwrap();
    assert_eq!(registry.find_unhealthy(secs(60)), Ok(vec![]));
    assert_eq!(registry.find_startup_expired(secs(60)), Ok(vec![]));
    clock.advance(secs(61));
    assert_eq!(
        ids(&registry.find_unhealthy(secs(60)).unwrap()),
        set([silent])
    );
    assert_eq!(
        ids(&registry.find_startup_expired(secs(60)).unwrap()),
        set([starting])
    );
}

// ---------------------------------------------------------------------------------------------
// stats, count

#[test]
fn stats_follow_every_change() {
    let (_, registry) = registry();
    assert_eq!(registry.stats().unwrap(), WorkerRegistryStats::default());
    let a = register(&registry, spec());
    let b = ready(&registry, spec());
    let c = registry
        .register(
            WorkerHandle::new(provider("lambda"), ProviderType::Lambda, "fn"),
            spec(),
        )
        .unwrap()
        .id;
    registry.assign_to_job(&b, job("j")).unwrap();
    let s = registry.stats().unwrap();
    assert_eq!(s.total, 3);
    assert_eq!(
        (s.by_state.creating, s.by_state.busy, s.by_state.ready),
        (2, 1, 0)
    );
    assert_eq!(s.by_state.get(WorkerState::Busy), 1);
    assert_eq!(s.by_state.starting(), 2);
    assert_eq!(s.by_state.live(), 3);
    assert_eq!(s.by_provider[&provider("docker-local")], 2);
    assert_eq!(s.by_provider_type[&ProviderType::Lambda], 1);
    assert_eq!(registry.count().unwrap(), 3);
    registry.update_state(&a, WorkerState::Terminating).unwrap();
    registry
        .unregister(&c, TerminationReason::Requested)
        .unwrap();
    let s = registry.stats().unwrap();
    assert_eq!(
        (s.total, s.by_state.terminating, s.by_state.live()),
        (2, 1, 1)
    );
    assert!(
        !s.by_provider.contains_key(&provider("lambda")),
        "empty entries go"
    );
    assert!(!s.by_provider_type.contains_key(&ProviderType::Lambda));
    assert_invariants(&registry);
}

// ---------------------------------------------------------------------------------------------
// subscribe, publish

#[test]
fn event_seq_strictly_increases_and_at_is_the_clock() {
    let (clock, registry) = registry();
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    let id = register(&registry, spec());
    clock.advance(secs(1));
    registry.update_state(&id, WorkerState::Ready).unwrap();
    registry.claim(&WorkerFilter::new(), job("j")).unwrap();
    clock.advance(secs(1));
    registry.release_from_job(&id, None).unwrap();
    registry.unregister(&id, TerminationReason::Idle).unwrap();
    let got = events.drain();
    assert_eq!(got.len(), 7);
    for pair in got.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1, "no gap without drops");
        assert!(pair[1].at >= pair[0].at);
    }
    assert_eq!(got[0].at, T0);
    assert_eq!(got[6].at, T0 + 2_000);
    assert_eq!(events.dropped(), 0);
}

#[test]
fn a_full_subscriber_loses_events_without_blocking_anyone() {
    let (_, registry) = registry();
    let small = registry
        .subscribe(SubscribeOptions::default().capacity(2))
        .unwrap();
    let big = registry.subscribe(SubscribeOptions::default()).unwrap();
    // Capacity 0 is refused (issue 10 item 22; it used to mean 1).
    assert!(matches!(
        registry.subscribe(SubscribeOptions::default().capacity(0)),
        Err(Error::InvalidArgument(_))
    ));
    for _ in 0..5 {
        register(&registry, spec()); // would hang here if a full channel blocked
    }
    assert_eq!(small.len(), 2);
    assert_eq!(small.dropped(), 3);
    assert_eq!(big.dropped(), 0);
    let all = big.drain();
    assert_eq!(all.len(), 5);
    // The small subscriber kept the first two; the seq gap after them shows the loss.
    let kept = small.drain();
    assert_eq!(kept, all[..2].to_vec());
    assert!(small.is_empty());
    register(&registry, spec());
    let next = small.try_recv().unwrap();
    assert_eq!(
        next.seq,
        all[4].seq + 1,
        "after draining, events flow again"
    );
    assert_eq!(small.dropped(), 3);
}

#[test]
fn any_capacity_is_safe_to_ask_for() {
    // Capacities come from C and Python callers: a huge one must neither abort the process
    // (allocating it up front) nor panic.
    let (_, registry) = registry();
    let huge = registry
        .subscribe(SubscribeOptions::default().capacity(usize::MAX))
        .unwrap();
    let large = registry
        .subscribe(SubscribeOptions::default().capacity(1 << 40))
        .unwrap();
    let n = scaled(10_000, 300);
    for _ in 0..n {
        register(&registry, spec());
    }
    assert_eq!((huge.len(), huge.dropped()), (n, 0));
    assert_eq!((large.len(), large.dropped()), (n, 0));
}

#[test]
fn dropping_a_subscription_unsubscribes() {
    let (_, registry) = registry();
    let id = ready(&registry, spec());
    let plain = registry.subscribe(SubscribeOptions::default()).unwrap();
    let keen = registry
        .subscribe(SubscribeOptions::default().heartbeats(true))
        .unwrap();
    registry.heartbeat(&id).unwrap();
    registry
        .publish(EventKind::ProvisionRequested {
            provider_id: provider("p"),
        })
        .unwrap();
    let first = plain.drain();
    assert_eq!(keen.drain().len(), 2);
    drop(keen);
    // With the only heartbeat subscriber gone, heartbeats publish nothing (no seq is spent).
    registry.heartbeat(&id).unwrap();
    registry
        .publish(EventKind::ProvisionRequested {
            provider_id: provider("p"),
        })
        .unwrap();
    let second = plain.drain();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].seq, first[0].seq + 1);
}

#[test]
fn a_subscription_outliving_its_registry_ends() {
    let (_, registry) = registry();
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    register(&registry, spec());
    drop(registry);
    assert!(
        events.recv(None).is_some(),
        "queued events are still delivered"
    );
    assert_eq!(
        events.recv(None),
        None,
        "then the stream ends instead of hanging"
    );
    assert_eq!(events.recv(Some(MS)), None);
}

#[test]
fn publish_puts_host_events_on_the_stream() {
    let (clock, registry) = registry();
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    register(&registry, spec());
    clock.advance(secs(3));
    let kind = EventKind::ProvisionFailed {
        provider_id: provider("docker-local"),
        error: "quota".into(),
    };
    registry.publish(kind.clone()).unwrap();
    let got = events.drain();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].kind, kind);
    assert_eq!(got[1].seq, got[0].seq + 1);
    assert_eq!(got[1].at, T0 + 3_000);
}

// ---------------------------------------------------------------------------------------------
// errors

/// Every error kind the registry itself can produce, produced, each message naming the worker.
/// (`ProviderNotFound`, `Provider` and `CapacityExceeded` belong to the manager, `Backend` to
/// shared-database backends.)
#[test]
fn every_registry_error_kind_is_produced() {
    let (_, registry) = registry();
    let busy = in_state(&registry, WorkerState::Busy, Some("j"));
    let creating = register(&registry, spec());
    let missing = WorkerId::new();
    let snapshot = registry.snapshot().unwrap();
    let mut foreign = snapshot.clone();
    foreign.format = "someone-else/1".into();

    let errors = vec![
        registry.heartbeat(&missing).unwrap_err(),
        registry
            .register(
                (*registry.get(&busy).unwrap().unwrap().handle).clone(),
                spec(),
            )
            .unwrap_err(),
        registry
            .update_state(&creating, WorkerState::Busy)
            .unwrap_err(),
        registry.assign_to_job(&creating, job("k")).unwrap_err(),
        registry.release_from_job(&creating, None).unwrap_err(),
        registry.claim(&WorkerFilter::new(), job("j")).unwrap_err(),
        registry
            .register(
                docker_handle(),
                Arc::new(WorkerSpec::new("i").with_max_jobs(0)),
            )
            .unwrap_err(),
        registry.restore(snapshot).unwrap_err(),
        crate::common::registry().1.restore(foreign).unwrap_err(),
    ];
    let produced: BTreeSet<&str> = errors.iter().map(Error::kind_name).collect();
    let expected: BTreeSet<&str> = [
        "not_found",
        "already_exists",
        "invalid_transition",
        "not_available",
        "not_busy",
        "job_already_assigned",
        "invalid_argument",
        "snapshot",
    ]
    .into();
    assert_eq!(produced, expected);
    for (err, id) in [
        (&errors[0], missing),
        (&errors[1], busy),
        (&errors[2], creating),
        (&errors[3], creating),
        (&errors[4], creating),
        (&errors[5], busy),
    ] {
        assert!(err.to_string().contains(&id.to_string()), "{err}");
    }
    assert!(
        errors[2].to_string().contains("creating -> busy"),
        "{}",
        errors[2]
    );
}

#[test]
fn events_after_refused_calls_arrive_at_once() {
    // A refused call publishes nothing, and leaves nothing that holds back the events of the
    // calls after it: each is queued by the time its call returns.
    let (_, registry) = registry();
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    let busy = ready(&registry, spec());
    registry.assign_to_job(&busy, job("j")).unwrap();
    events.drain();
    let refused = [
        registry.claim(&WorkerFilter::new(), job("j")).unwrap_err(),
        registry.assign_to_job(&busy, job("k")).unwrap_err(),
        registry
            .release_from_job(&busy, Some(&job("k")))
            .unwrap_err(),
        registry
            .register(
                (*registry.get(&busy).unwrap().unwrap().handle).clone(),
                spec(),
            )
            .unwrap_err(),
        registry
            .update_state(&busy, WorkerState::Creating)
            .unwrap_err(),
    ];
    assert_eq!(refused.len(), 5);
    assert!(events.is_empty(), "a refused call publishes nothing");
    for expected in ["released_from_job", "registered"] {
        match expected {
            "released_from_job" => {
                registry.release_from_job(&busy, Some(&job("j"))).unwrap();
            }
            _ => {
                register(&registry, spec());
            }
        }
        let got: Vec<&str> = events.drain().iter().map(|e| e.kind.name()).collect();
        assert!(
            got.contains(&expected),
            "{expected} queued when its call returned: {got:?}"
        );
    }
}
