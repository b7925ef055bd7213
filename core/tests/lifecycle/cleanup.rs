//! Cleanup and termination: idle and lifetime expiry, draining, `max_jobs`, destroy failures
//! retried with growing delays, and no leaked instance.

use crate::common::*;
use hodei_workers::*;

fn idle_spec(idle: u64) -> WorkerSpec {
    WorkerSpec::new("img").with_idle_timeout(secs(idle))
}

#[test]
fn an_idle_worker_that_keeps_heartbeating_is_still_cleaned_up_after_its_idle_timeout() {
    let f = Fixture::new(config());
    let w = f.ready_with(idle_spec(120));
    f.drain();
    // Heartbeats and ticks every 10 s: heartbeats do not reset the idle clock.
    for _ in 0..12 {
        f.advance(secs(10));
        f.manager.process_heartbeat(&w).unwrap();
        let r = f.manager.tick(0);
        assert!(r.terminated.is_empty(), "at {}: {r:?}", f.now() - T0);
    }
    assert_eq!(f.now(), T0 + 120_000);
    assert_eq!(
        f.state(&w),
        Some(WorkerState::Ready),
        "exactly at the deadline"
    );
    f.advance(ms(1));
    f.manager.process_heartbeat(&w).unwrap();
    let r = f.manager.tick(0);
    assert_eq!(r.terminated.len(), 1);
    assert_eq!(r.terminated[0].worker_id, w);
    assert_eq!(r.terminated[0].reason, TerminationReason::Idle);
    assert_eq!(f.state(&w), None);
    assert_eq!(
        f.drain(),
        vec![
            // One conditional move: only if still Ready and idle since the same instant.
            EventKind::StateChanged {
                worker_id: w,
                from: WorkerState::Ready,
                to: WorkerState::Terminating
            },
            EventKind::Unregistered {
                worker_id: w,
                reason: TerminationReason::Idle
            },
        ]
    );
    f.assert_no_leak();
}

#[test]
fn a_release_restarts_the_idle_clock() {
    let f = Fixture::new(config());
    let w = f.ready_with(idle_spec(120));
    f.advance(secs(100));
    f.registry.assign_to_job(&w, job("a")).unwrap();
    f.advance(secs(50));
    f.registry.release_from_job(&w, Some(&job("a"))).unwrap();
    f.advance(secs(120));
    assert!(f.manager.cleanup_workers().unwrap().terminated.is_empty());
    f.advance(ms(1));
    assert_eq!(f.manager.cleanup_workers().unwrap().terminated.len(), 1);
}

#[test]
fn lifetime_drains_a_busy_worker_and_retires_it_after_its_job() {
    let f = Fixture::new(config());
    let spec = WorkerSpec::new("img").with_max_lifetime(secs(100));
    let busy = f.ready_with(spec.clone());
    let idle = f.ready_with(spec);
    f.registry.assign_to_job(&busy, job("long")).unwrap();
    f.drain();
    f.advance(ms(100_001));
    let c = f.manager.cleanup_workers().unwrap();
    assert_eq!(c.drained, vec![busy]);
    assert!(c.lost_jobs.is_empty());
    assert_eq!(c.terminated.len(), 1);
    assert_eq!(c.terminated[0].worker_id, idle);
    assert_eq!(c.terminated[0].reason, TerminationReason::Lifetime);
    let busy_now = f.registry.get(&busy).unwrap().unwrap();
    assert_eq!(busy_now.state, WorkerState::Draining);
    assert_eq!(
        busy_now.current_job,
        Some(job("long")),
        "the job finishes first"
    );
    assert!(!Fixture::names(&f.drain(), Some(busy)).contains(&"job_lost"));

    // Still running: nothing more to do.
    f.advance(secs(30));
    let c = f.manager.cleanup_workers().unwrap();
    assert!(c.terminated.is_empty() && c.drained.is_empty(), "{c:?}");
    // The job ends; the drained worker goes.
    f.registry
        .release_from_job(&busy, Some(&job("long")))
        .unwrap();
    let c = f.manager.cleanup_workers().unwrap();
    assert_eq!(c.terminated.len(), 1);
    assert_eq!(c.terminated[0].worker_id, busy);
    assert_eq!(c.terminated[0].reason, TerminationReason::Drained);
    f.assert_no_leak();
}

#[test]
fn a_one_shot_worker_is_retired_after_its_job_with_reason_max_jobs() {
    let f = Fixture::new(config());
    let w = f.ready_with(WorkerSpec::new("img").with_max_jobs(1));
    f.registry.assign_to_job(&w, job("once")).unwrap();
    f.registry.release_from_job(&w, None).unwrap();
    assert_eq!(f.state(&w), Some(WorkerState::Draining));
    let c = f.manager.cleanup_workers().unwrap();
    assert_eq!(c.terminated.len(), 1);
    assert_eq!(c.terminated[0].reason, TerminationReason::MaxJobs);
    assert_eq!(f.state(&w), None);
}

#[test]
fn drain_worker_then_cleanup_retires_it_as_drained() {
    let f = Fixture::new(config());
    let w = f.ready();
    assert_eq!(
        f.manager.drain_worker(&w).unwrap().state,
        WorkerState::Draining
    );
    assert!(f
        .registry
        .claim(&WorkerFilter::new(), job("x"))
        .unwrap()
        .is_none());
    let c = f.manager.cleanup_workers().unwrap();
    assert_eq!(c.terminated[0].reason, TerminationReason::Drained);
    let unknown = WorkerId::new();
    assert_eq!(
        f.manager.drain_worker(&unknown).unwrap_err(),
        Error::NotFound(unknown)
    );
}

#[test]
fn a_destroy_failing_three_times_is_retried_with_growing_delays_and_nothing_leaks() {
    let f = Fixture::new(WorkerLifecycleConfig {
        destroy_retry_initial: secs(1),
        destroy_retry_max: secs(60),
        ..config()
    });
    let w = f.ready_with(idle_spec(10));
    let resource = f
        .registry
        .get(&w)
        .unwrap()
        .unwrap()
        .handle
        .resource_id
        .clone();
    f.provider.script_destroys([
        DestroyStep::Fail("api 503"),
        DestroyStep::Fail("api 503"),
        DestroyStep::Panic,
    ]);
    f.manager.tick(0);
    f.drain();

    f.advance(ms(10_001));
    let start = f.now();
    let r = f.manager.tick(0);
    assert!(r.terminated.is_empty());
    assert_eq!(
        r.failed,
        vec![DestroyFailure {
            worker_id: w,
            provider_id: pid("test"),
            resource_id: resource.clone(),
            error: "api 503 (failed)".to_owned(),
            attempts: 1,
            next_retry_at: start + 1_000,
        }]
    );
    assert_eq!(f.state(&w), Some(WorkerState::Terminating));

    // Ticks every 250 ms: a retry happens only when due, with doubling delays.
    let mut failures = vec![r.failed[0].clone()];
    let mut terminated = Vec::new();
    while f.now() < start + 20_000 && terminated.is_empty() {
        f.advance(ms(250));
        let r = f.manager.tick(0);
        failures.extend(r.failed);
        terminated.extend(r.terminated);
        if terminated.is_empty() {
            assert_eq!(f.state(&w), Some(WorkerState::Terminating), "record stays");
        }
    }
    let attempts: Vec<u32> = failures.iter().map(|x| x.attempts).collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    assert!(
        failures[2].error.contains("panicked"),
        "{}",
        failures[2].error
    );
    let times: Vec<Timestamp> = f
        .provider
        .destroy_times
        .lock()
        .iter()
        .map(|(_, t)| t - start)
        .collect();
    assert_eq!(times, vec![0, 1_000, 3_000, 7_000], "delays 1 s, 2 s, 4 s");
    assert_eq!(terminated.len(), 1);
    assert_eq!(terminated[0].reason, TerminationReason::Idle);
    assert_eq!(f.state(&w), None);
    let events = f.drain();
    let failed: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::DestroyFailed { attempts, .. } => Some(*attempts),
            _ => None,
        })
        .collect();
    assert_eq!(failed, vec![1, 2, 3]);
    assert_eq!(
        events.last(),
        Some(&EventKind::Unregistered {
            worker_id: w,
            reason: TerminationReason::Idle
        })
    );
    assert!(f.provider.instance_ids().is_empty(), "nothing leaked");
    f.assert_no_leak();
    let stats = f.manager.stats().unwrap();
    assert_eq!(stats.destroy_failures_total, 3);
    assert_eq!(stats.pending_destroys, 0);
}

/// A destroy the host cut short (`ProviderErrorKind::Interrupted`, e.g. Ctrl-C in a Python
/// provider) is not the provider's failure, as for a create: it is reported, but counts no
/// attempt and starts no back-off — the next tick, at the same instant, tries again. Before, it
/// counted as a failed attempt and the retry waited `destroy_retry_initial` (and a second one
/// twice that).
#[test]
fn an_interrupted_destroy_counts_no_attempt_and_is_retried_by_the_next_tick() {
    let f = Fixture::new(WorkerLifecycleConfig {
        destroy_retry_initial: secs(5),
        destroy_retry_max: secs(60),
        ..config()
    });
    let w = f.ready();
    f.provider
        .script_destroys([DestroyStep::Fail("api 503"), DestroyStep::Interrupted]);
    let r = f
        .manager
        .terminate_worker(&w, TerminationReason::Requested)
        .unwrap();
    assert_eq!(r.failed[0].attempts, 1);
    f.clock.set(r.failed[0].next_retry_at);
    let r = f.manager.tick(0);
    assert_eq!(r.failed.len(), 1, "{:?}", r.decisions);
    assert_eq!(r.failed[0].error, "Ctrl-C (interrupted)");
    assert_eq!(
        (r.failed[0].attempts, r.failed[0].next_retry_at),
        (1, f.now()),
        "an interrupt is no failed attempt, and due again at once"
    );
    let r = f.manager.tick(0);
    assert_eq!(r.terminated.len(), 1, "{:?}", r.decisions);
    assert_eq!(f.state(&w), None);
    f.assert_no_leak();
}

#[test]
fn retry_delays_are_capped_at_destroy_retry_max() {
    let f = Fixture::new(WorkerLifecycleConfig {
        destroy_retry_initial: secs(1),
        destroy_retry_max: secs(3),
        ..config()
    });
    let w = f.ready();
    f.provider
        .script_destroys(std::iter::repeat_n(DestroyStep::Fail("no"), 4));
    let r = f
        .manager
        .terminate_worker(&w, TerminationReason::Requested)
        .unwrap();
    assert_eq!(r.failed[0].next_retry_at, f.now() + 1_000);
    let mut next = Vec::new();
    for _ in 0..3 {
        let due = f.manager.pending_destroys()[0].2;
        f.clock.set(due);
        let c = f.manager.cleanup_workers().unwrap();
        next.push(c.failed[0].next_retry_at - due);
    }
    assert_eq!(next, vec![2_000, 3_000, 3_000]);
    f.clock.set(f.manager.pending_destroys()[0].2);
    assert_eq!(f.manager.cleanup_workers().unwrap().terminated.len(), 1);
    f.assert_no_leak();
}

#[test]
fn a_destroy_answering_not_found_counts_as_destroyed() {
    let f = Fixture::new(config());
    let w = f.ready();
    f.provider.script_destroys([DestroyStep::NotFound]);
    let r = f
        .manager
        .terminate_worker(&w, TerminationReason::Requested)
        .unwrap();
    assert_eq!(r.terminated.len(), 1);
    assert!(r.failed.is_empty());
    assert_eq!(f.state(&w), None);
}

#[test]
fn terminate_worker_on_a_busy_worker_reports_its_job() {
    let f = Fixture::new(config());
    let w = f.ready();
    f.registry.assign_to_job(&w, job("j")).unwrap();
    f.drain();
    let r = f
        .manager
        .terminate_worker(&w, TerminationReason::Requested)
        .unwrap();
    assert_eq!(
        r.lost_jobs,
        vec![LostJob {
            worker_id: w,
            job_id: job("j")
        }]
    );
    assert_eq!(r.terminated[0].reason, TerminationReason::Requested);
    assert_eq!(
        Fixture::names(&f.drain(), Some(w)),
        vec!["state_changed", "job_lost", "unregistered"]
    );
    let unknown = WorkerId::new();
    assert_eq!(
        f.manager
            .terminate_worker(&unknown, TerminationReason::Requested)
            .unwrap_err(),
        Error::NotFound(unknown)
    );
}

#[test]
fn destroys_wait_for_an_unregistered_provider_and_resume_when_it_returns() {
    let f = Fixture::new(config());
    let w = f.ready();
    f.manager.unregister_provider(&pid("test")).unwrap();
    assert_eq!(
        f.manager.unregister_provider(&pid("test")).unwrap_err(),
        Error::ProviderNotFound(pid("test"))
    );
    let r = f
        .manager
        .terminate_worker(&w, TerminationReason::Requested)
        .unwrap();
    assert!(r.failed[0]
        .error
        .contains("provider test is not registered"));
    assert_eq!(f.state(&w), Some(WorkerState::Terminating));
    f.manager.register_provider(f.provider.clone()).unwrap();
    f.advance(secs(1));
    let c = f.manager.cleanup_workers().unwrap();
    assert_eq!(c.terminated.len(), 1);
    f.assert_no_leak();
}

#[test]
fn an_explicit_unregister_by_the_host_ends_the_retries() {
    let f = Fixture::new(config());
    let w = f.ready();
    f.provider.script_destroys([DestroyStep::Fail("stuck")]);
    f.manager
        .terminate_worker(&w, TerminationReason::Requested)
        .unwrap();
    assert_eq!(f.manager.pending_destroys().len(), 1);
    f.registry
        .unregister(&w, TerminationReason::Requested)
        .unwrap();
    f.advance(secs(5));
    let calls_before = f.provider.calls().len();
    let c = f.manager.cleanup_workers().unwrap();
    assert!(c.terminated.is_empty() && c.failed.is_empty());
    assert!(f.manager.pending_destroys().is_empty());
    // No destroy call (the host took the instance over); only the re-entrant calls' trace.
    assert!(!f.provider.calls()[calls_before..]
        .iter()
        .any(|c| c.starts_with("destroy")));
}

#[test]
fn the_action_cap_spreads_a_backlog_over_several_ticks() {
    let f = Fixture::new(WorkerLifecycleConfig {
        max_actions_per_tick: 4,
        ..config()
    });
    let fleet: Vec<WorkerId> = (0..6).map(|_| f.ready_with(idle_spec(10))).collect();
    f.manager.tick(0);
    f.advance(secs(11));
    let mut per_tick = Vec::new();
    for _ in 0..4 {
        let r = f.manager.tick(0);
        assert!(r.actions <= 4);
        per_tick.push((r.terminated.len(), r.capped));
        f.advance(ms(100));
    }
    // Each retirement is two actions (state change, destroy).
    assert_eq!(per_tick, vec![(2, true), (2, true), (2, false), (0, false)]);
    assert!(fleet.iter().all(|w| f.state(w).is_none()));
    f.assert_no_leak();
}

#[test]
fn a_destroy_in_progress_is_not_started_twice_and_holds_no_lock() {
    let f = Fixture::new(config());
    let w = f.ready();
    let other = f.ready_with(idle_spec(10));
    f.provider.script_destroys([DestroyStep::Stall]);
    let manager = f.manager.clone();
    let stalled = std::thread::spawn(move || {
        manager
            .terminate_worker(&w, TerminationReason::Requested)
            .unwrap()
    });
    while f
        .provider
        .destroying_now
        .load(std::sync::atomic::Ordering::SeqCst)
        == 0
    {
        std::thread::yield_now();
    }
    // Meanwhile the manager keeps working: another worker is retired, the stalled one is left
    // to its destroy in progress.
    f.advance(secs(11));
    let c = f.manager.cleanup_workers().unwrap();
    assert_eq!(c.terminated.len(), 1);
    assert_eq!(c.terminated[0].worker_id, other);
    let r = f
        .manager
        .terminate_worker(&w, TerminationReason::Requested)
        .unwrap();
    assert!(r.terminated.is_empty() && r.failed.is_empty(), "{r:?}");
    let destroys = f
        .provider
        .calls()
        .iter()
        .filter(|c| c.starts_with("destroy"))
        .count();
    assert_eq!(destroys, 2, "one for each worker, none repeated");
    assert_eq!(f.state(&w), Some(WorkerState::Terminating));
    f.provider.release_stalled(1);
    let r = stalled.join().unwrap();
    assert_eq!(r.terminated.len(), 1);
    assert_eq!(f.state(&w), None);
    f.assert_no_leak();
}
