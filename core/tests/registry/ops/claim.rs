//! `claim`: which worker it takes, every filter field, and its refusals.

use std::sync::Arc;
use std::time::Duration;

use super::{secs, worker, MS};
use crate::common::*;
use hodei_workers::*;

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

/// Every id but the nil one names a worker, the largest UUID too (a caller may choose ids:
/// `hw_registry_register_with_id`, `worker_id=`). A claim with `idle_for(d)` takes a worker
/// ready for exactly `d`, whatever its id, as `find` with the same filter lists it.
#[test]
fn claim_idle_for_takes_a_worker_idle_exactly_that_long_whatever_its_id() {
    let (clock, registry) = registry();
    let max = WorkerId::parse("ffffffff-ffff-ffff-ffff-ffffffffffff").unwrap();
    let mut handle = docker_handle();
    handle.worker_id = max;
    registry.register(handle, spec()).unwrap();
    registry.update_state(&max, WorkerState::Ready).unwrap();
    for (idle, job_name) in [(Duration::ZERO, "now"), (secs(10), "ten")] {
        clock.advance(idle);
        let filter = WorkerFilter::new().idle_for(idle);
        let found: Vec<WorkerId> = registry
            .find(&filter)
            .unwrap()
            .iter()
            .map(|w| w.id)
            .collect();
        assert_eq!(found, vec![max], "find {filter:?}");
        let taken = registry.claim(&filter, job(job_name)).unwrap();
        assert_eq!(taken.map(|w| w.id), Some(max), "claim {filter:?}");
        registry.release_from_job(&max, None).unwrap();
    }
}
