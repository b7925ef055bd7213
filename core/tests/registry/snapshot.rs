//! Snapshots: a round trip through JSON restores an equal registry that carries on (event
//! `seq`, deadline indexes, job holders); a truncated, edited or foreign snapshot is refused
//! with `Error::Snapshot` and leaves the target registry exactly as it was; a non-empty
//! registry refuses any restore.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use hodei_workers::*;
use serde_json::Value;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A registry with a bit of everything: every state, jobs held by `Busy` and `Draining`
/// workers, heartbeats, released jobs, labels, metadata, two providers, events published.
fn busy_registry() -> (Arc<ManualClock>, TestRegistry) {
    let (clock, registry) = registry();
    for state in WorkerState::ALL {
        let job_name = format!("job-{state}");
        let with_job =
            matches!(state, WorkerState::Busy | WorkerState::Draining).then_some(job_name.as_str());
        in_state(&registry, state, with_job);
        clock.advance(Duration::from_millis(1_234));
    }
    let spec = Arc::new(
        WorkerSpec::new("gpu-img")
            .with_label("pool", "gpu")
            .with_capability("cuda")
            .with_max_jobs(3)
            .with_idle_timeout(secs(30))
            .with_max_lifetime(secs(90)),
    );
    for i in 0..5 {
        let handle = WorkerHandle::new(
            provider("k8s"),
            ProviderType::Kubernetes,
            format!("pod-{i}"),
        )
        .with_metadata("node", format!("n{i}"));
        let id = registry.register(handle, spec.clone()).unwrap().id;
        registry.update_state(&id, WorkerState::Ready).unwrap();
        clock.advance(Duration::from_millis(777));
        if i % 2 == 0 {
            registry
                .assign_to_job(&id, job(&format!("gpu-{i}")))
                .unwrap();
            registry.release_from_job(&id, None).unwrap();
        }
        registry.heartbeat(&id).unwrap();
    }
    let gone = register(&registry, spec.clone());
    registry
        .unregister(&gone, TerminationReason::Requested)
        .unwrap();
    registry
        .publish(EventKind::ProvisionRequested {
            provider_id: provider("k8s"),
        })
        .unwrap();
    (clock, registry)
}

fn sorted(mut workers: Vec<Worker>) -> Vec<Worker> {
    workers.sort_by_key(|w| w.id);
    workers
}

/// Everything observable about a registry's content, to check that a refused call left it
/// alone.
fn observe(registry: &dyn WorkerRegistry) -> (Vec<Worker>, WorkerRegistryStats, Snapshot) {
    (
        sorted(registry.find(&WorkerFilter::new()).unwrap()),
        registry.stats().unwrap(),
        registry.snapshot().unwrap(),
    )
}

/// The seq the next event of `registry` gets (publishes one to find out).
fn next_seq(registry: &dyn WorkerRegistry) -> u64 {
    let sub = registry.subscribe(SubscribeOptions::default()).unwrap();
    registry
        .publish(EventKind::ProvisionRequested {
            provider_id: provider("probe"),
        })
        .unwrap();
    sub.try_recv().unwrap().seq
}

#[test]
fn round_trip_restores_an_equal_registry_that_carries_on() {
    let (clock, original) = busy_registry();
    let snapshot = original.snapshot().unwrap();
    assert_eq!(snapshot.format, SNAPSHOT_FORMAT);
    assert_eq!(snapshot.taken_at, clock.now());
    assert_eq!(snapshot.workers.len(), original.count().unwrap());
    let json = snapshot.to_json().unwrap();
    let read = Snapshot::from_json(&json).unwrap();
    assert_eq!(read, snapshot, "JSON round trip");

    let copy = registry_on(clock.clone());
    copy.restore(read).unwrap();
    assert_eq!(
        sorted(copy.find(&WorkerFilter::new()).unwrap()),
        sorted(original.find(&WorkerFilter::new()).unwrap()),
        "every record, every field"
    );
    assert_eq!(copy.stats().unwrap(), original.stats().unwrap());
    assert_eq!(
        copy.snapshot().unwrap(),
        snapshot,
        "a snapshot of the copy is the same"
    );
    assert_invariants(&copy);

    // The event stream continues after the snapshot's seq, in step with the original.
    assert_eq!(next_seq(&copy), snapshot.seq + 1);
    assert_eq!(next_seq(&original), snapshot.seq + 1);
}

#[test]
fn a_restored_registry_behaves_like_the_original() {
    // Run the same operations on the original and its copy: same results, same records, same
    // answers from every deadline index, at every step.
    let (clock, original) = busy_registry();
    let copy = registry_on(clock.clone());
    copy.restore(Snapshot::from_json(&original.snapshot().unwrap().to_json().unwrap()).unwrap())
        .unwrap();
    // Restoring grants grace from now (issue 10 item 6): the same grace for the original.
    let restored_at = clock.now();
    original.grant_grace(restored_at).unwrap();
    let both = [&original, &copy];

    let same = |what: &str| {
        let a = sorted(original.find(&WorkerFilter::new()).unwrap());
        let b = sorted(copy.find(&WorkerFilter::new()).unwrap());
        assert_eq!(a, b, "{what}: records");
        let now = clock.now();
        for r in both {
            assert_eq!(termination_map(r), expected_termination(&a, now), "{what}");
            for timeout in [secs(1), secs(5), secs(20)] {
                assert_eq!(
                    id_set(&r.find_unhealthy(timeout).unwrap()),
                    expected_unhealthy(&a, now, timeout, restored_at),
                    "{what}: unhealthy after {timeout:?}"
                );
                assert_eq!(
                    id_set(&r.find_startup_expired(timeout).unwrap()),
                    expected_startup_expired(&a, now, timeout, restored_at),
                    "{what}: startup after {timeout:?}"
                );
            }
        }
        assert_eq!(original.stats().unwrap(), copy.stats().unwrap());
    };
    same("restored");

    // Claims pick the same (most recently idle) workers, in the same order.
    for i in 0..3 {
        let filter = WorkerFilter::new().label("pool", "gpu");
        let a = original.claim(&filter, job(&format!("new-{i}"))).unwrap();
        let b = copy.claim(&filter, job(&format!("new-{i}"))).unwrap();
        assert!(a.is_some());
        assert_eq!(a, b, "claim {i}");
    }
    same("after claims");
    // A job held in the snapshot is held in the copy.
    let held = job(&format!("job-{}", WorkerState::Busy));
    for r in both {
        assert!(matches!(
            r.claim(&WorkerFilter::new(), held.clone()),
            Err(Error::JobAlreadyAssigned { .. })
        ));
    }
    let holder = original
        .find(&WorkerFilter::new().state(WorkerState::Busy))
        .unwrap()
        .into_iter()
        .find(|w| w.current_job.as_ref() == Some(&held))
        .unwrap()
        .id;
    for r in both {
        assert_eq!(r.release_from_job(&holder, Some(&held)), Ok(held.clone()));
    }
    same("after a release");

    // Time passes over every deadline: idle, lifetime, heartbeat, startup agree throughout.
    let base = clock.now();
    for step in [1, 10, 20, 29, 30, 31, 60, 89, 90, 91, 200, 3_600, 4_000] {
        clock.set(base + step * 1_000 + 1);
        same(&format!("T0+{step}s"));
    }
}

// ---------------------------------------------------------------------------------------------
// refused snapshots

/// An empty registry that has published a few events: a refused restore must leave its seq too.
fn empty_target() -> TestRegistry {
    let (_, target) = registry();
    let id = register(&target, spec());
    target
        .unregister(&id, TerminationReason::Requested)
        .unwrap();
    target
}

/// Checks that `text` is refused with `Error::Snapshot` by `Snapshot::from_json`, and that a
/// restore of its parsed form (when it parses at all) is refused too, leaving `target` as it
/// was.
fn assert_refused(text: &str, what: &str) {
    let err = Snapshot::from_json(text).unwrap_err();
    assert!(matches!(err, Error::Snapshot(_)), "{what}: {err:?}");
    let target = empty_target();
    let before = observe(&target);
    if let Ok(parsed) = serde_json::from_str::<Snapshot>(text) {
        // It parses but does not validate: restore must check it whole itself.
        let err = target.restore(parsed).unwrap_err();
        assert!(matches!(err, Error::Snapshot(_)), "{what}: {err:?}");
    }
    assert_eq!(observe(&target), before, "{what}: target unchanged");
    assert_eq!(next_seq(&target), 3, "{what}: seq unchanged");
}

/// Applies `edit` to the JSON form of a good snapshot.
fn edited(edit: impl FnOnce(&mut Value)) -> String {
    let (_, original) = busy_registry();
    let mut value = serde_json::to_value(original.snapshot().unwrap()).unwrap();
    edit(&mut value);
    value.to_string()
}

fn worker_where<'a>(value: &'a mut Value, state: &str) -> &'a mut Value {
    value["workers"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|w| w["state"] == state)
        .unwrap_or_else(|| panic!("a {state} worker in the snapshot"))
}

#[test]
fn a_truncated_snapshot_is_refused_and_changes_nothing() {
    let (_, original) = busy_registry();
    let json = original.snapshot().unwrap().to_json().unwrap();
    assert!(Snapshot::from_json(&json).is_ok());
    let cuts: Vec<usize> = (0..json.len())
        .step_by(89)
        .chain([json.len() - 1])
        .collect();
    for cut in cuts {
        if json.is_char_boundary(cut) {
            assert_refused(&json[..cut], &format!("cut at {cut} of {}", json.len()));
        }
    }
    assert_refused("", "empty");
    assert_refused("null", "null");
    assert_refused("[]", "an array");
}

#[test]
fn an_edited_snapshot_is_refused_and_changes_nothing() {
    let cases: Vec<(&str, String)> = vec![
        (
            "duplicate worker",
            edited(|v| {
                let first = v["workers"][0].clone();
                v["workers"].as_array_mut().unwrap().push(first);
            }),
        ),
        (
            "busy without a job",
            edited(|v| worker_where(v, "busy")["current_job"] = Value::Null),
        ),
        (
            "a job on a ready worker",
            edited(|v| worker_where(v, "ready")["current_job"] = "extra".into()),
        ),
        (
            "a job on a terminating worker",
            edited(|v| worker_where(v, "terminating")["current_job"] = "extra".into()),
        ),
        (
            "job held twice",
            edited(|v| {
                let job = worker_where(v, "busy")["current_job"].clone();
                worker_where(v, "draining")["current_job"] = job;
            }),
        ),
        (
            "foreign format",
            edited(|v| v["format"] = "hodei-workers.snapshot/999".into()),
        ),
        (
            "no format",
            edited(|v| {
                v.as_object_mut().unwrap().remove("format");
            }),
        ),
        (
            "unknown top-level field",
            edited(|v| v["comment"] = "hello".into()),
        ),
        (
            "unknown worker field",
            edited(|v| v["workers"][0]["colour"] = "blue".into()),
        ),
        (
            "unknown handle field",
            edited(|v| v["workers"][0]["handle"]["colour"] = "blue".into()),
        ),
        (
            "unknown spec field",
            edited(|v| v["workers"][0]["spec"]["idle_timout"] = 5.into()),
        ),
        (
            "handle of another worker",
            edited(|v| v["workers"][0]["handle"]["worker_id"] = WorkerId::new().to_string().into()),
        ),
        (
            "ready without idle_since",
            edited(|v| worker_where(v, "ready")["idle_since"] = Value::Null),
        ),
        (
            "invalid spec",
            edited(|v| v["workers"][0]["spec"]["max_jobs"] = 0.into()),
        ),
        (
            "unknown state",
            edited(|v| v["workers"][0]["state"] = "sleeping".into()),
        ),
        (
            "invalid worker id",
            edited(|v| v["workers"][0]["id"] = "not-a-uuid".into()),
        ),
        (
            "empty job id",
            edited(|v| worker_where(v, "busy")["current_job"] = "".into()),
        ),
        (
            "negative timestamp",
            edited(|v| v["workers"][0]["created_at"] = (-5).into()),
        ),
        ("seq as a string", edited(|v| v["seq"] = "12".into())),
    ];
    for (what, text) in cases {
        assert_refused(&text, what);
    }
}

#[test]
fn restore_checks_the_snapshot_it_is_given_directly() {
    // Snapshots built in code (not read from JSON) get the same checks.
    let (_, original) = busy_registry();
    let good = original.snapshot().unwrap();
    let mut duplicate = good.clone();
    duplicate.workers.push(good.workers[0].clone());
    let mut busy_without_job = good.clone();
    for w in &mut busy_without_job.workers {
        if w.state == WorkerState::Busy {
            w.current_job = None;
        }
    }
    let mut foreign = good.clone();
    foreign.format = "other".into();
    for (what, bad) in [
        ("duplicate", duplicate),
        ("busy without job", busy_without_job),
        ("foreign", foreign),
    ] {
        let target = empty_target();
        let before = observe(&target);
        assert!(
            matches!(target.restore(bad), Err(Error::Snapshot(_))),
            "{what}"
        );
        assert_eq!(observe(&target), before, "{what}");
        assert_eq!(next_seq(&target), 3, "{what}");
        // And the target is still usable: the good snapshot restores.
        target.restore(good.clone()).unwrap();
        assert_eq!(target.count().unwrap(), good.workers.len());
    }
}

#[test]
fn a_snapshot_seq_no_registry_can_continue_from_is_refused() {
    // A registry restored at seq u64::MAX could not number its next event: the snapshot is
    // corrupt, not a panic waiting for the next call.
    for seq in [u64::MAX, u64::MAX - 1, 1 << 63] {
        let text = edited(|v| v["seq"] = seq.into());
        assert_refused(&text, &format!("seq {seq}"));
    }
    let fine = edited(|v| v["seq"] = ((1u64 << 63) - 1).into());
    let target = registry().1;
    target.restore(Snapshot::from_json(&fine).unwrap()).unwrap();
    register(&target, spec());
    assert_eq!(next_seq(&target), (1 << 63) + 1);
}

#[test]
fn extreme_values_in_a_snapshot_do_not_break_the_registry() {
    // Whatever numbers a valid snapshot carries, the restored registry keeps working: no
    // overflow on the next release, deadlines saturate instead of wrapping. (Valid since issue
    // 10: times at most `taken_at`, durations at most MAX_SPEC_DURATION; and times at the end
    // of the clock only for a registry whose clock is there too, restore_clock.)
    let end = u64::MAX - 1 - 5_000;
    let text = edited(|v| {
        v["taken_at"] = end.into();
        let busy = worker_where(v, "busy");
        busy["jobs_executed"] = u64::MAX.into();
        busy["spec"]["max_lifetime"] = MAX_SPEC_DURATION.as_secs().into();
        busy["spec"]["idle_timeout"] = 1.into(); // 1 s: idle 5 s at u64::MAX - 1
        busy["created_at"] = end.into();
        let ready = worker_where(v, "ready");
        ready["idle_since"] = end.into();
        ready["last_heartbeat"] = end.into();
        ready["created_at"] = end.into();
    });
    let (clock, target) = registry();
    // Restored at T0, these times would be from the future (immortal workers): refused.
    assert!(matches!(
        target.restore(Snapshot::from_json(&text).unwrap()),
        Err(Error::Snapshot(_))
    ));
    clock.set(end);
    target.restore(Snapshot::from_json(&text).unwrap()).unwrap();
    let busy = target
        .find(&WorkerFilter::new().state(WorkerState::Busy))
        .unwrap()
        .remove(0);
    target.release_from_job(&busy.id, None).unwrap();
    let after = target.get(&busy.id).unwrap().unwrap();
    assert_eq!(after.jobs_executed, u64::MAX);
    clock.set(u64::MAX - 1);
    let due = termination_map(&target);
    let all = assert_invariants(&target);
    assert_eq!(due, expected_termination(&all, u64::MAX - 1));
    assert_eq!(
        due.get(&busy.id),
        Some(&TerminationReason::Idle),
        "a lifetime that would end past u64::MAX never ends (the deadline saturates); its idle \
         time does"
    );
    for timeout in [Duration::ZERO, secs(1)] {
        assert_eq!(
            id_set(&target.find_unhealthy(timeout).unwrap()),
            expected_unhealthy(&all, u64::MAX - 1, timeout, end)
        );
    }
    assert!(target
        .claim(&WorkerFilter::new(), job("any"))
        .unwrap()
        .is_some());
}

#[test]
fn restore_into_a_non_empty_registry_is_refused_and_changes_nothing() {
    let (_, source) = busy_registry();
    let snapshot = source.snapshot().unwrap();
    let (_, target) = registry();
    let resident = ready(&target, spec());
    target.assign_to_job(&resident, job("resident")).unwrap();
    let before = observe(&target);
    let seq = next_seq(&target);
    let err = target.restore(snapshot.clone()).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(err.to_string().contains("empty"), "{err}");
    let (workers, stats, snap) = observe(&target);
    assert_eq!((workers, stats), (before.0, before.1));
    assert_eq!(snap.workers, before.2.workers);
    assert_eq!(next_seq(&target), seq + 1, "no seq jump");
    // Restoring the same snapshot twice: the second is refused.
    let (_, fresh) = registry();
    fresh.restore(snapshot.clone()).unwrap();
    assert!(matches!(
        fresh.restore(snapshot),
        Err(Error::InvalidArgument(_))
    ));
    assert_invariants(&fresh);
}

#[test]
fn an_empty_snapshot_round_trips() {
    let (_, empty) = registry();
    let snapshot = empty.snapshot().unwrap();
    assert!(snapshot.workers.is_empty());
    let (_, copy) = registry();
    copy.restore(Snapshot::from_json(&snapshot.to_json().unwrap()).unwrap())
        .unwrap();
    assert_eq!(copy.count().unwrap(), 0);
    assert_eq!(copy.stats().unwrap(), WorkerRegistryStats::default());
    // A snapshot's seq never moves a registry's numbering backwards.
    let (_, busy) = busy_registry();
    let seq_before = next_seq(&busy);
    let ids: Vec<WorkerId> = busy
        .find(&WorkerFilter::new())
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    for id in ids {
        busy.unregister(&id, TerminationReason::Requested).unwrap();
    }
    let seq_empty = next_seq(&busy);
    assert!(seq_empty > seq_before);
    busy.restore(snapshot).unwrap();
    assert_eq!(next_seq(&busy), seq_empty + 1);
}

#[test]
fn a_subscription_taken_before_a_restore_sees_what_follows_it() {
    // A host subscribes first, then loads its snapshot: the events after the restore reach it,
    // numbered after the snapshot's seq.
    let (clock, original) = busy_registry();
    let snapshot = original.snapshot().unwrap();
    let seq = snapshot.seq;
    let copy = registry_on(clock.clone());
    let events = copy.subscribe(SubscribeOptions::default()).unwrap();
    copy.restore(snapshot).unwrap();
    let id = register(&copy, spec());
    let got = events.drain();
    assert_eq!(
        got.iter().map(|e| e.kind.clone()).collect::<Vec<_>>(),
        vec![EventKind::Registered {
            worker_id: id,
            provider_id: provider("docker-local"),
            provider_type: ProviderType::Docker,
        }]
    );
    assert!(
        got[0].seq > seq,
        "seq {} after the snapshot's {seq}",
        got[0].seq
    );
}
