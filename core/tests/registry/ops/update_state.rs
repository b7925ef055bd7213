//! `update_state`: every pair of states, same-state no-ops, and what a transition does to a job.

use super::{secs, worker};
use crate::common::*;
use hodei_workers::*;

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
