//! Health checks: heartbeat and startup deadlines, lost jobs, the stall grace and the
//! mass-expiry brake — each on a manual clock with exact times, states, events and reports.

use crate::common::*;
use hodei_workers::*;

fn heartbeat_all(f: &Fixture, ids: &[WorkerId]) {
    for id in ids {
        f.manager.process_heartbeat(id).unwrap();
    }
}

#[test]
fn a_worker_silent_past_heartbeat_timeout_is_detected_destroyed_and_unregistered() {
    let f = Fixture::new(config());
    let silent = f.ready();
    let others = [f.ready(), f.ready()];
    let silent_resource = f
        .registry
        .get(&silent)
        .unwrap()
        .unwrap()
        .handle
        .resource_id
        .clone();
    f.drain();

    // Exactly at the deadline: not yet (a worker expires when silent for *longer*).
    f.advance(secs(60));
    heartbeat_all(&f, &others);
    let check = f.manager.run_health_check().unwrap();
    assert!(check.unhealthy.is_empty(), "{check:?}");
    assert_eq!(f.state(&silent), Some(WorkerState::Ready));

    f.advance(ms(1));
    let check = f.manager.run_health_check().unwrap();
    assert_eq!(check.checked_at, T0 + 60_001);
    assert_eq!(
        check.unhealthy,
        vec![UnhealthyWorker {
            worker_id: silent,
            provider_id: pid("test"),
            state: WorkerState::Ready,
            reason: TerminationReason::Unhealthy,
            last_heartbeat: T0,
        }]
    );
    assert!(check.lost_jobs.is_empty());
    assert!(check.held.is_none());
    assert_eq!(
        check.terminated,
        vec![TerminatedWorker {
            worker_id: silent,
            provider_id: pid("test"),
            resource_id: silent_resource.clone(),
            reason: TerminationReason::Unhealthy,
        }]
    );
    assert_eq!(f.state(&silent), None);
    assert_eq!(f.state(&others[0]), Some(WorkerState::Ready));
    let events = f.drain();
    assert_eq!(
        events,
        vec![
            // One conditional move (`transition_if`): no claim can slip in before it, and the
            // job it takes, if any, is the one reported.
            EventKind::StateChanged {
                worker_id: silent,
                from: WorkerState::Ready,
                to: WorkerState::Terminating
            },
            // Announced once it is out of service (never for a worker left alone).
            EventKind::UnhealthyDetected {
                worker_id: silent,
                last_heartbeat: T0
            },
            EventKind::Unregistered {
                worker_id: silent,
                reason: TerminationReason::Unhealthy
            },
        ]
    );
    assert!(f
        .provider
        .calls()
        .contains(&format!("destroy {silent_resource}")));
    f.assert_no_leak();
    let stats = f.manager.stats().unwrap();
    assert_eq!((stats.unhealthy_total, stats.terminated_total), (1, 1));
}

#[test]
fn the_job_of_a_silent_busy_worker_is_reported_lost() {
    let f = Fixture::new(config());
    let busy = f.ready();
    let others = [f.ready(), f.ready()];
    f.registry.assign_to_job(&busy, job("build-7")).unwrap();
    f.drain();
    f.advance(secs(61));
    heartbeat_all(&f, &others);
    let check = f.manager.run_health_check().unwrap();
    assert_eq!(check.unhealthy.len(), 1);
    assert_eq!(check.unhealthy[0].state, WorkerState::Busy);
    assert_eq!(
        check.lost_jobs,
        vec![LostJob {
            worker_id: busy,
            job_id: job("build-7")
        }]
    );
    let events = f.drain();
    assert_eq!(
        Fixture::names(&events, Some(busy)),
        vec![
            "state_changed",
            "job_lost",
            "unhealthy_detected",
            "unregistered"
        ]
    );
    assert!(events.contains(&EventKind::JobLost {
        worker_id: busy,
        job_id: job("build-7")
    }));
    // The job is free again: the host can give it to another worker.
    assert!(f
        .registry
        .claim(&WorkerFilter::new(), job("build-7"))
        .unwrap()
        .is_some());
}

#[test]
fn a_slow_boot_within_startup_timeout_is_not_killed_but_a_worker_that_never_reports_in_is() {
    let f = Fixture::new(config());
    let slow = f.provision().id;
    let never = f.provision().id;
    // Ticks every 30 s through 270 s (4.5 x heartbeat_timeout) while both boot: nobody is
    // killed.
    let mut report = f.manager.tick(0);
    for _ in 0..9 {
        assert!(report.unhealthy.is_empty(), "{report:?}");
        f.advance(secs(30));
        report = f.manager.tick(0);
    }
    f.advance(secs(29));
    assert_eq!(f.now(), T0 + 299_000);
    f.registry
        .update_state(&slow, WorkerState::Connecting)
        .unwrap();
    f.registry.update_state(&slow, WorkerState::Ready).unwrap();
    f.manager.process_heartbeat(&slow).unwrap();
    assert!(f.manager.run_health_check().unwrap().unhealthy.is_empty());
    assert_eq!(f.state(&never), Some(WorkerState::Creating));

    f.advance(secs(1));
    assert!(
        f.manager.run_health_check().unwrap().unhealthy.is_empty(),
        "exactly at startup_timeout: not yet"
    );
    f.advance(ms(1));
    let check = f.manager.run_health_check().unwrap();
    assert_eq!(check.unhealthy.len(), 1);
    assert_eq!(check.unhealthy[0].worker_id, never);
    assert_eq!(check.unhealthy[0].state, WorkerState::Creating);
    assert_eq!(check.unhealthy[0].reason, TerminationReason::StartupTimeout);
    assert_eq!(
        check.terminated[0].reason,
        TerminationReason::StartupTimeout
    );
    assert_eq!(f.state(&never), None);
    assert_eq!(f.state(&slow), Some(WorkerState::Ready));
    f.assert_no_leak();
}

#[test]
fn tick_runs_the_health_check_once_per_interval() {
    let f = Fixture::new(config());
    let r = f.manager.tick(0);
    assert!(r.health_checked, "the first tick checks");
    f.advance(secs(10));
    assert!(!f.manager.tick(0).health_checked);
    f.advance(secs(19));
    assert!(!f.manager.tick(0).health_checked);
    f.advance(secs(1));
    assert!(
        f.manager.tick(0).health_checked,
        "30 s after the last check"
    );
}

#[test]
fn after_a_host_stall_of_ten_timeouts_nobody_that_heartbeats_afterwards_is_expired() {
    let f = Fixture::new(config());
    // Idle timeouts longer than the stall: this test is about heartbeats.
    let long_idle = || WorkerSpec::new("img").with_idle_timeout(secs(3600));
    let fleet: Vec<WorkerId> = (0..10).map(|_| f.ready_with(long_idle())).collect();
    let (quiet, talkers) = fleet.split_last().unwrap();
    assert!(f.manager.tick(0).health_checked);
    f.drain();

    // The host is suspended for 10 x heartbeat_timeout: no tick, no heartbeat processed.
    f.advance(secs(600));
    let report = f.manager.tick(0);
    assert_eq!(report.stall_grace, Some(600_000));
    assert!(report.health_checked);
    assert!(report.unhealthy.is_empty(), "{report:?}");
    assert!(report.mass_expiry_held.is_none(), "grace, not the brake");
    assert!(report.decisions.iter().any(|d| d.contains("host stall")));
    assert_eq!(f.registry.stats().unwrap().by_state.ready, 10);
    let stall_tick = f.now();

    // The agents reconnect and heartbeat again, ticks resume every 10 s.
    f.advance(secs(5));
    heartbeat_all(&f, talkers);
    for _ in 0..5 {
        f.advance(secs(10));
        let r = f.manager.tick(0);
        assert_eq!(r.stall_grace, None);
        assert!(r.unhealthy.is_empty(), "{r:?}");
    }
    assert_eq!(f.now(), stall_tick + 55_000);
    // The grace is a grace period, not immunity: the one that stays silent expires one
    // heartbeat_timeout after the stall tick.
    f.advance(secs(5));
    heartbeat_all(&f, talkers);
    assert!(f.manager.run_health_check().unwrap().unhealthy.is_empty());
    f.advance(ms(1));
    let check = f.manager.run_health_check().unwrap();
    assert_eq!(
        check
            .unhealthy
            .iter()
            .map(|u| u.worker_id)
            .collect::<Vec<_>>(),
        vec![*quiet]
    );
    assert_eq!(f.registry.count().unwrap(), 9);
    assert!(!Fixture::names(&f.drain(), None).contains(&"mass_expiry_held"));
}

#[test]
fn a_pause_shorter_than_heartbeat_timeout_is_not_a_stall() {
    let f = Fixture::new(config());
    f.manager.tick(0);
    f.advance(secs(60));
    assert_eq!(f.manager.tick(0).stall_grace, None);
    f.advance(ms(60_001));
    assert_eq!(f.manager.tick(0).stall_grace, Some(60_001));
}

#[test]
fn when_eighty_percent_of_the_fleet_goes_silent_at_once_the_brake_holds() {
    let f = Fixture::new(config());
    let fleet: Vec<WorkerId> = (0..10).map(|_| f.ready()).collect();
    let (talkers, silent) = fleet.split_at(2);
    f.registry.assign_to_job(&silent[0], job("j-1")).unwrap();
    f.manager.tick(0);
    f.drain();

    f.advance(secs(30));
    heartbeat_all(&f, talkers);
    assert!(f.manager.tick(0).unhealthy.is_empty());
    f.advance(secs(31));
    heartbeat_all(&f, talkers);
    let report = f.manager.tick(0);
    assert!(report.health_checked);
    let hold = MassExpiryHold {
        would_expire: 8,
        suspect: 8,
        live: 10,
        allowed: 5,
    };
    assert_eq!(report.mass_expiry_held, Some(hold));
    assert!(report.unhealthy.is_empty());
    assert!(report.lost_jobs.is_empty());
    assert!(report
        .decisions
        .iter()
        .any(|d| d.contains("mass-expiry brake held: 8 of 10")));
    let names = Fixture::names(&f.drain(), None);
    assert_eq!(names, vec!["mass_expiry_held"]);
    assert_eq!(f.registry.stats().unwrap().by_state.live(), 10);
    assert_eq!(
        f.registry.get(&silent[0]).unwrap().unwrap().current_job,
        Some(job("j-1"))
    );

    // The partition heals: everybody heartbeats, nobody was lost.
    f.advance(secs(30));
    heartbeat_all(&f, &fleet);
    let report = f.manager.tick(0);
    assert!(report.health_checked);
    assert_eq!(report.mass_expiry_held, None);
    assert!(report.unhealthy.is_empty());
    assert_eq!(f.manager.stats().unwrap().mass_expiry_holds_total, 1);
}

#[test]
fn the_brake_lets_through_up_to_the_allowed_fraction() {
    let f = Fixture::new(config());
    let fleet: Vec<WorkerId> = (0..10).map(|_| f.ready()).collect();
    let (talkers, silent) = fleet.split_at(5);
    f.advance(secs(61));
    heartbeat_all(&f, talkers);
    let check = f.manager.run_health_check().unwrap();
    assert_eq!(check.held, None);
    let mut declared: Vec<WorkerId> = check.unhealthy.iter().map(|u| u.worker_id).collect();
    declared.sort();
    let mut expected = silent.to_vec();
    expected.sort();
    assert_eq!(declared, expected, "5 of 10 <= floor(0.55 * 10)");
}

#[test]
fn small_fleets_can_still_lose_one_worker() {
    for (size, silent, held) in [(1, 1, false), (2, 1, false), (2, 2, true), (3, 1, false)] {
        let f = Fixture::new(config());
        let fleet: Vec<WorkerId> = (0..size).map(|_| f.ready()).collect();
        f.advance(secs(61));
        heartbeat_all(&f, &fleet[silent..]);
        let check = f.manager.run_health_check().unwrap();
        assert_eq!(check.held.is_some(), held, "fleet {size}, silent {silent}");
        assert_eq!(
            check.unhealthy.len(),
            if held { 0 } else { silent },
            "fleet {size}, silent {silent}"
        );
    }
}

#[test]
fn a_held_back_worker_is_found_again_after_the_brake_lets_go_and_its_grace_ends() {
    let f = Fixture::new(WorkerLifecycleConfig {
        max_unhealthy_fraction: 0.3,
        ..config()
    });
    let fleet: Vec<WorkerId> = (0..4).map(|_| f.ready()).collect();
    f.advance(secs(61));
    heartbeat_all(&f, &fleet[..2]);
    let check = f.manager.run_health_check().unwrap();
    assert_eq!(
        check.held.map(|h| (h.would_expire, h.suspect)),
        Some((2, 2))
    );
    let check = f.manager.run_health_check().unwrap();
    assert!(check.held.is_some(), "still held: found again");
    assert!(!check.brake_released);
    // One of the two comes back; the other alone is within the allowed count. The brake lets
    // go with a fresh grace period rather than expire the straggler at once.
    f.manager.process_heartbeat(&fleet[2]).unwrap();
    let released_at = f.now();
    let check = f.manager.run_health_check().unwrap();
    assert_eq!(check.held, None);
    assert!(check.brake_released);
    assert!(check.unhealthy.is_empty());
    // It stays silent: it is declared one heartbeat_timeout after the release.
    f.advance(secs(60));
    heartbeat_all(&f, &fleet[..3]);
    let check = f.manager.run_health_check().unwrap();
    assert!(check.unhealthy.is_empty() && !check.brake_released);
    f.advance(ms(1));
    let check = f.manager.run_health_check().unwrap();
    assert_eq!(f.now(), released_at + 60_001);
    assert_eq!(check.unhealthy.len(), 1);
    assert_eq!(check.unhealthy[0].worker_id, fleet[3]);
}

#[test]
fn a_failed_destroy_of_an_unhealthy_worker_keeps_it_terminating_and_tick_retries() {
    let f = Fixture::new(config());
    let silent = f.ready();
    f.provider.script_destroys([DestroyStep::Fail("api down")]);
    f.manager.tick(0);
    f.advance(secs(30));
    f.manager.tick(0);
    f.advance(secs(31));
    let report = f.manager.tick(0);
    assert_eq!(report.unhealthy.len(), 1);
    assert!(report.terminated.is_empty());
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].attempts, 1);
    assert_eq!(report.failed[0].next_retry_at, f.now() + 1_000);
    assert!(report.failed[0].error.contains("api down"));
    assert_eq!(f.state(&silent), Some(WorkerState::Terminating));
    f.advance(secs(1));
    let report = f.manager.tick(0);
    assert_eq!(report.terminated.len(), 1);
    assert_eq!(report.terminated[0].reason, TerminationReason::Unhealthy);
    assert_eq!(f.state(&silent), None);
    f.assert_no_leak();
}

#[test]
fn a_connecting_worker_is_held_to_the_heartbeat_deadline() {
    let f = Fixture::new(config());
    let w = f.provision().id;
    let other = f.ready();
    f.registry
        .update_state(&w, WorkerState::Connecting)
        .unwrap();
    f.advance(secs(61));
    f.manager.process_heartbeat(&other).unwrap();
    let check = f.manager.run_health_check().unwrap();
    assert_eq!(check.unhealthy.len(), 1);
    assert_eq!(check.unhealthy[0].worker_id, w);
    assert_eq!(check.unhealthy[0].state, WorkerState::Connecting);
    assert_eq!(check.unhealthy[0].reason, TerminationReason::Unhealthy);
}

#[test]
fn the_brake_does_not_hold_back_workers_that_never_reported_in() {
    // A broken provider: the workers it made stay `Creating`. The brake is about silenced
    // running workers; these are expired anyway, or the fleet would stay pinned at max_workers.
    let f = Fixture::new(config());
    let mut stuck: Vec<WorkerId> = (0..2).map(|_| f.provision().id).collect();
    let running: Vec<WorkerId> = (0..4).map(|_| f.ready()).collect();
    f.advance(secs(301));
    // The running ones are all silent too (a partition): held back.
    let check = f.manager.run_health_check().unwrap();
    assert_eq!(
        check.held,
        // Only the four running workers are under heartbeat watch.
        Some(MassExpiryHold {
            would_expire: 4,
            suspect: 4,
            live: 4,
            allowed: 2
        })
    );
    let mut expired: Vec<WorkerId> = check.unhealthy.iter().map(|u| u.worker_id).collect();
    expired.sort();
    stuck.sort();
    assert_eq!(expired, stuck);
    assert!(check
        .unhealthy
        .iter()
        .all(|u| u.reason == TerminationReason::StartupTimeout));
    assert_eq!(check.terminated.len(), 2);
    assert!(running
        .iter()
        .all(|w| f.state(w) == Some(WorkerState::Ready)));
}

/// Six `Connecting` workers of a broken provider (their agents heartbeat but never report
/// ready) beside five `Ready` ones, all heard from at 240 s; the six pass their startup
/// deadline (300 s) at 301 s.
fn stuck_beside_running() -> (Fixture, Vec<WorkerId>, Vec<WorkerId>) {
    let f = Fixture::new(WorkerLifecycleConfig {
        max_workers: 20,
        ..config()
    });
    let stuck: Vec<WorkerId> = (0..6).map(|_| f.provision().id).collect();
    for w in &stuck {
        f.registry.update_state(w, WorkerState::Connecting).unwrap();
    }
    let running: Vec<WorkerId> = (0..5).map(|_| f.ready()).collect();
    f.advance(secs(240));
    heartbeat_all(&f, &running);
    heartbeat_all(&f, &stuck);
    (f, stuck, running)
}

/// Workers past their startup deadline are expired by the check whatever the brake says, so
/// they are not among its suspects: before, six such `Connecting` workers silent for 36 s
/// (more than half the 60 s timeout) counted as suspects and made the brake hold the expiry of
/// the one dead running worker (`held: Some(MassExpiryHold { would_expire: 1, suspect: 7,
/// live: 11, allowed: 6 })`), its job not reported lost; the next check then released the
/// brake with a grace period for the whole fleet.
#[test]
fn workers_past_their_startup_deadline_do_not_make_the_brake_hold_the_others() {
    let (f, stuck, running) = stuck_beside_running();
    let dead = running[0];
    f.registry.assign_to_job(&dead, job("j-dead")).unwrap();
    f.advance(secs(25));
    heartbeat_all(&f, &running[1..]);
    heartbeat_all(&f, &stuck);
    // The stuck agents stop too, 36 s before the check.
    f.advance(secs(36));
    heartbeat_all(&f, &running[1..]);
    let check = f.manager.run_health_check().unwrap();
    assert_eq!(check.held, None);
    let mut expected: Vec<(WorkerId, &str)> = stuck
        .iter()
        .map(|w| (*w, "startup"))
        .chain([(dead, "heartbeat")])
        .collect();
    expected.sort();
    let mut got: Vec<(WorkerId, &str)> = check
        .unhealthy
        .iter()
        .map(|u| match u.reason {
            TerminationReason::StartupTimeout => (u.worker_id, "startup"),
            _ => (u.worker_id, "heartbeat"),
        })
        .collect();
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(
        check.lost_jobs,
        vec![LostJob {
            worker_id: dead,
            job_id: job("j-dead")
        }]
    );
    assert!(!f.drain().iter().any(|k| k.name() == "mass_expiry_held"));
}

/// Nor among the workers the brake's fraction is taken of: before, six such workers whose
/// agents heartbeat counted among the watched, and a partition silencing four of the five
/// running workers was let through (`held: None`: 4 suspects of 11 watched, 6 allowed): the
/// four were expired, as if the brake did not exist.
#[test]
fn workers_past_their_startup_deadline_do_not_dilute_the_brakes_count() {
    let (f, stuck, running) = stuck_beside_running();
    // The partition: of the running workers, only the last one is heard from after 240 s.
    for by in [25, 36] {
        f.advance(secs(by));
        heartbeat_all(&f, &running[4..]);
        heartbeat_all(&f, &stuck);
    }
    let check = f.manager.run_health_check().unwrap();
    assert_eq!(
        check.held,
        Some(MassExpiryHold {
            would_expire: 4,
            suspect: 4,
            live: 5,
            allowed: 2
        })
    );
    let mut expired: Vec<WorkerId> = check.unhealthy.iter().map(|u| u.worker_id).collect();
    expired.sort();
    let mut stuck = stuck;
    stuck.sort();
    assert_eq!(expired, stuck, "startup expiries are never held");
    assert!(running
        .iter()
        .all(|w| f.state(w) == Some(WorkerState::Ready)));
}

#[test]
fn a_health_check_cut_short_by_the_action_cap_continues_on_the_next_tick() {
    let f = Fixture::new(WorkerLifecycleConfig {
        max_actions_per_tick: 2,
        ..config()
    });
    let fleet: Vec<WorkerId> = (0..10).map(|_| f.ready()).collect();
    let (talkers, silent) = fleet.split_at(7);
    f.manager.tick(0);
    f.advance(secs(30));
    heartbeat_all(&f, talkers);
    f.manager.tick(0);
    f.advance(secs(31));
    heartbeat_all(&f, talkers);
    let mut declared = Vec::new();
    for round in 0..3 {
        let r = f.manager.tick(0);
        assert!(
            r.health_checked,
            "round {round}: runs again although not due by interval"
        );
        assert_eq!(r.unhealthy.len(), 1, "round {round}");
        assert_eq!(r.terminated.len(), 1, "round {round}");
        assert_eq!(r.capped, round < 2, "round {round}");
        declared.push(r.unhealthy[0].worker_id);
        f.advance(ms(100));
    }
    declared.sort();
    let mut expected = silent.to_vec();
    expected.sort();
    assert_eq!(declared, expected);
    assert!(
        !f.manager.tick(0).health_checked,
        "done: back to the interval"
    );
}

/// A partition silences every agent at once, but their deadlines are spread over one
/// heartbeat interval: they cross them over several health checks. The brake must see the
/// partition whole, not batch by batch (found by the fleet simulation).
#[test]
fn a_partition_whose_victims_cross_their_deadline_in_batches_is_held_whole() {
    let f = Fixture::new(WorkerLifecycleConfig {
        heartbeat_timeout: secs(45),
        health_check_interval: secs(10),
        min_ready_workers: 0,
        ..config()
    });
    let long_idle = || WorkerSpec::new("img").with_idle_timeout(secs(3600));
    let fleet: Vec<WorkerId> = (0..8).map(|_| f.ready_with(long_idle())).collect();
    // Agents heartbeat every 16 s, each with its own phase (2 s apart).
    let beat = |t: u64| {
        for (i, w) in fleet.iter().enumerate() {
            if (t + 2 * i as u64) % 16 == 0 {
                f.manager.process_heartbeat(w).unwrap();
            }
        }
    };
    for t in 1..=200 {
        f.advance(secs(1));
        beat(t);
        assert!(f.manager.tick(0).unhealthy.is_empty(), "healthy at {t} s");
    }
    // The host loses the network for 120 s: no heartbeat arrives, ticks go on.
    let mut holds = 0;
    for t in 201..=320 {
        f.advance(secs(1));
        let r = f.manager.tick(0);
        assert!(r.unhealthy.is_empty(), "at {t} s: {r:?}");
        holds += usize::from(r.mass_expiry_held.is_some());
    }
    assert!(
        holds >= 8,
        "the brake held at every check past the deadline ({holds})"
    );
    // The network is back: nobody was lost. (The brake lets go once the agents have all
    // been heard from again, within one heartbeat interval.)
    for t in 321..=400 {
        f.advance(secs(1));
        beat(t);
        let r = f.manager.tick(0);
        assert!(r.unhealthy.is_empty(), "at {t} s: {r:?}");
        if t > 340 {
            assert!(r.mass_expiry_held.is_none(), "at {t} s: {r:?}");
        }
    }
    assert_eq!(f.registry.stats().unwrap().by_state.ready, 8);

    // Whereas one agent that really dies is still found on its own.
    let dead = fleet[3];
    for t in 401..=470 {
        f.advance(secs(1));
        for (i, w) in fleet.iter().enumerate() {
            if *w != dead && (t + 2 * i as u64) % 16 == 0 {
                f.manager.process_heartbeat(w).unwrap();
            }
        }
        let r = f.manager.tick(0);
        assert!(r.mass_expiry_held.is_none(), "at {t} s");
        if !r.unhealthy.is_empty() {
            assert_eq!(r.unhealthy[0].worker_id, dead);
            return;
        }
    }
    panic!("the dead worker was never declared unhealthy");
}
