//! The mass-expiry brake's bound (`max_mass_expiry_hold`): a fleet that really died is expired
//! once the brake has held for longer than the bound; a partition that heals within it costs
//! nobody. Manual clock, ticks every `health_check_interval` (30 s), heartbeat timeout 60 s.

use std::sync::Arc;

use crate::common::*;
use hodei_workers::*;

/// Workers that stay for the whole test: no idle retirement (default 300 s) or lifetime end
/// gets in the way of the hour-long timelines below.
fn fleet(f: &Fixture, n: usize) -> Vec<WorkerId> {
    (0..n)
        .map(|_| {
            f.ready_with(
                WorkerSpec::new("img")
                    .with_idle_timeout(secs(86_400))
                    .with_max_lifetime(secs(86_400)),
            )
        })
        .collect()
}

fn heartbeat_all(f: &Fixture, ids: &[WorkerId]) {
    for id in ids {
        f.manager.process_heartbeat(id).unwrap();
    }
}

/// Ticks every 30 s with `talkers` heartbeating before each tick, until `until` (ms after T0).
/// Returns the reports of the ticks, each with its time.
fn tick_every_30s(f: &Fixture, talkers: &[WorkerId], until: u64) -> Vec<(u64, TickReport)> {
    let mut reports = Vec::new();
    while f.now() - T0 < until {
        f.advance(secs(30));
        heartbeat_all(f, talkers);
        let report = f.manager.tick(0);
        assert!(report.health_checked, "at {}", f.now() - T0);
        reports.push((f.now() - T0, report));
    }
    reports
}

#[test]
fn a_fleet_where_eighty_percent_dies_for_good_is_held_until_the_bound_then_expired() {
    let f = Fixture::new(config());
    assert_eq!(f.manager.config().max_mass_expiry_hold, secs(300));
    let fleet = fleet(&f, 10);
    let (talkers, dead) = fleet.split_at(2);
    f.registry.assign_to_job(&dead[0], job("j-1")).unwrap();
    f.registry.assign_to_job(&dead[1], job("j-2")).unwrap();
    f.manager.tick(0);
    f.drain();

    // The 8 cross their deadline at 60 s; the check at 90 s is the first to hold. It holds
    // continuously through 390 s (300 s, not longer than the bound).
    let reports = tick_every_30s(&f, talkers, 390_000);
    for (at, report) in &reports {
        assert!(report.unhealthy.is_empty(), "at {at}: {report:?}");
        assert!(report.brake_gave_up.is_none(), "at {at}");
        assert_eq!(report.mass_expiry_held.is_some(), *at >= 90_000, "at {at}");
    }
    assert_eq!(f.manager.stats().unwrap().mass_expiry_holds_total, 11);
    assert_eq!(f.registry.stats().unwrap().by_state.live(), 10);
    assert_eq!(
        f.registry.get(&dead[0]).unwrap().unwrap().current_job,
        Some(job("j-1"))
    );
    f.drain();

    // 420 s: held for 330 s > 300 s. The brake lets go without a grace period.
    let (at, report) = tick_every_30s(&f, talkers, 420_000).pop().unwrap();
    assert_eq!(at, 420_000);
    assert_eq!(report.mass_expiry_held, None);
    assert!(!report.brake_released, "no grace period: {report:?}");
    assert_eq!(
        report.brake_gave_up,
        Some(MassExpiryGiveUp {
            held_for: 330_000,
            hold: MassExpiryHold {
                would_expire: 8,
                suspect: 8,
                live: 10,
                allowed: 5,
            },
        })
    );
    assert!(
        report.decisions.iter().any(|d| d.contains(
            "mass-expiry brake released after holding 330 s: 8 of 10 watched workers still silent"
        )),
        "{:?}",
        report.decisions
    );
    let mut declared: Vec<WorkerId> = report.unhealthy.iter().map(|u| u.worker_id).collect();
    declared.sort();
    let mut expected = dead.to_vec();
    expected.sort();
    assert_eq!(declared, expected);
    assert!(report
        .unhealthy
        .iter()
        .all(|u| u.reason == TerminationReason::Unhealthy && u.last_heartbeat == T0));
    let mut lost: Vec<(WorkerId, JobId)> = report
        .lost_jobs
        .iter()
        .map(|l| (l.worker_id, l.job_id.clone()))
        .collect();
    lost.sort();
    let mut expected_lost = vec![(dead[0], job("j-1")), (dead[1], job("j-2"))];
    expected_lost.sort();
    assert_eq!(lost, expected_lost);
    assert_eq!(report.terminated.len(), 8);
    for id in dead {
        assert_eq!(f.state(id), None, "destroyed and unregistered");
    }
    for id in talkers {
        assert_eq!(f.state(id), Some(WorkerState::Ready));
    }
    // The normal path, event by event, for the worker that held j-1: one conditional move to
    // Terminating (its job lost by it), then the announcement, then the end.
    assert_eq!(
        Fixture::names(&f.drain(), Some(dead[0])),
        vec![
            "state_changed",
            "job_lost",
            "unhealthy_detected",
            "unregistered"
        ]
    );
    let stats = f.manager.stats().unwrap();
    assert_eq!((stats.unhealthy_total, stats.lost_jobs_total), (8, 2));
    assert_eq!(stats.mass_expiry_holds_total, 11);
    // The jobs are free again for another worker.
    assert!(f
        .registry
        .claim(&WorkerFilter::new(), job("j-1"))
        .unwrap()
        .is_some());

    // The fleet has recovered (2 of 2 heartbeating): a new mass silence is held afresh.
    let reports = tick_every_30s(&f, &[], 510_000);
    let (at, report) = reports.last().unwrap();
    assert_eq!(*at, 510_000);
    assert_eq!(
        report.mass_expiry_held.map(|h| (h.would_expire, h.live)),
        Some((2, 2))
    );
    assert!(report.unhealthy.is_empty());
}

#[test]
fn a_partition_healing_before_the_bound_expires_nobody() {
    let f = Fixture::new(config());
    let fleet = fleet(&f, 10);
    let (talkers, cut_off) = fleet.split_at(2);
    f.registry.assign_to_job(&cut_off[0], job("j-1")).unwrap();
    f.manager.tick(0);

    // Held from 90 s through 390 s: exactly the bound, not longer.
    let reports = tick_every_30s(&f, talkers, 390_000);
    assert!(reports.last().unwrap().1.mass_expiry_held.is_some());
    // It heals just in time: everybody heartbeats; released with a grace period, no expiry.
    f.advance(secs(30));
    heartbeat_all(&f, &fleet);
    let report = f.manager.tick(0);
    assert!(report.health_checked);
    assert!(report.brake_released);
    assert!(report.brake_gave_up.is_none());
    assert!(report.unhealthy.is_empty() && report.lost_jobs.is_empty());
    // Everybody keeps heartbeating: nobody is ever expired.
    let reports = tick_every_30s(&f, &fleet, 900_000);
    for (at, report) in &reports {
        assert!(report.unhealthy.is_empty(), "at {at}");
        assert!(report.mass_expiry_held.is_none(), "at {at}");
    }
    assert_eq!(f.registry.stats().unwrap().by_state.live(), 10);
    assert_eq!(
        f.registry.get(&cut_off[0]).unwrap().unwrap().current_job,
        Some(job("j-1"))
    );
    assert_eq!(f.manager.stats().unwrap().unhealthy_total, 0);
}

#[test]
fn a_second_partition_after_a_heal_gets_a_full_hold_of_its_own() {
    let f = Fixture::new(config());
    let fleet = fleet(&f, 10);
    let (talkers, cut_off) = fleet.split_at(2);
    f.manager.tick(0);
    // First partition: held 90 s .. 270 s, heals at 300 s.
    tick_every_30s(&f, talkers, 270_000);
    f.advance(secs(30));
    heartbeat_all(&f, &fleet);
    assert!(f.manager.tick(0).brake_released);
    // The second partition starts at 300 s and is held from 390 s: the bound counts from
    // there, not from the first hold (it would otherwise give up at 390 s).
    let reports = tick_every_30s(&f, talkers, 690_000);
    for (at, report) in &reports {
        assert!(report.unhealthy.is_empty(), "at {at}");
        assert!(report.brake_gave_up.is_none(), "at {at}");
        assert_eq!(report.mass_expiry_held.is_some(), *at >= 390_000, "at {at}");
    }
    let (_, report) = tick_every_30s(&f, talkers, 720_000).pop().unwrap();
    assert_eq!(report.brake_gave_up.map(|g| g.held_for), Some(330_000));
    assert_eq!(report.unhealthy.len(), cut_off.len());
}

#[test]
fn once_the_brake_gave_up_a_capped_expiry_continues_without_a_new_hold() {
    // Two actions per tick: one worker expired (and destroyed) per tick. The other silent
    // workers are still a majority after the first is gone; they must not start a new hold.
    let f = Fixture::new(WorkerLifecycleConfig {
        max_actions_per_tick: 2,
        max_mass_expiry_hold: secs(60),
        ..config()
    });
    let fleet = fleet(&f, 10);
    let (talkers, dead) = fleet.split_at(2);
    f.manager.tick(0);
    // Held at 90 s and 120 s (30 s, 60 s: not longer than the bound), gives up at 180 s.
    let reports = tick_every_30s(&f, talkers, 150_000);
    assert!(reports.last().unwrap().1.mass_expiry_held.is_some());
    let (_, report) = tick_every_30s(&f, talkers, 180_000).pop().unwrap();
    assert_eq!(report.brake_gave_up.map(|g| g.held_for), Some(90_000));
    assert_eq!(report.unhealthy.len(), 1);
    assert!(report.capped);
    let mut declared = vec![report.unhealthy[0].worker_id];
    for round in 0..7 {
        f.advance(ms(100));
        heartbeat_all(&f, talkers);
        let r = f.manager.tick(0);
        assert!(r.health_checked, "round {round}");
        assert_eq!(r.mass_expiry_held, None, "round {round}: no new hold");
        assert_eq!(r.unhealthy.len(), 1, "round {round}");
        declared.push(r.unhealthy[0].worker_id);
    }
    declared.sort();
    let mut expected = dead.to_vec();
    expected.sort();
    assert_eq!(declared, expected);
    assert_eq!(f.registry.stats().unwrap().by_state.live(), 2);
}

#[test]
fn a_zero_bound_is_refused() {
    let config = WorkerLifecycleConfig {
        max_mass_expiry_hold: secs(0),
        ..config()
    };
    match config.validate() {
        Err(Error::InvalidArgument(msg)) => assert!(msg.contains("max_mass_expiry_hold"), "{msg}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    let json: WorkerLifecycleConfig =
        serde_json::from_str(r#"{"max_mass_expiry_hold": 2.5}"#).unwrap();
    assert_eq!(json.max_mass_expiry_hold, ms(2500));
    let defaulted: WorkerLifecycleConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(defaulted.max_mass_expiry_hold, secs(300));
}

// ----- two health checks at once ---------------------------------------------------------------

/// Stops the first `grant_grace` after it is armed until the test opens it: a brake release
/// caught between its decision and its grace period.
#[derive(Debug)]
struct GraceGate {
    armed: std::sync::atomic::AtomicBool,
    entered: (
        crossbeam_channel::Sender<()>,
        crossbeam_channel::Receiver<()>,
    ),
    open: (
        crossbeam_channel::Sender<()>,
        crossbeam_channel::Receiver<()>,
    ),
}

impl crate::test_registry::Hooks for GraceGate {
    fn before(&self, call: crate::test_registry::Call<'_>, _: &dyn WorkerRegistry) -> Result<()> {
        if call == crate::test_registry::Call::GrantGrace
            && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            self.entered.0.send(()).unwrap();
            self.open.1.recv().unwrap();
        }
        Ok(())
    }
}

/// A health check that finds the fleet back under the limit after a hold releases the brake
/// and grants every worker a grace period. A second check running at the same moment (a tick
/// on the host's thread, `run_health_check` on another) found the brake already let go and the
/// grace period not yet granted: it expired the stragglers the release was protecting, in one
/// batch, as if the brake had never held.
#[test]
fn a_health_check_racing_a_brake_release_does_not_expire_the_stragglers() {
    let clock = Arc::new(ManualClock::new(T0));
    let gate = Arc::new(GraceGate {
        armed: Default::default(),
        entered: crossbeam_channel::unbounded(),
        open: crossbeam_channel::unbounded(),
    });
    let registry = crate::test_registry::TestRegistry::with_hooks(
        crate::backend::new_registry(clock.clone()),
        gate.clone(),
    );
    let manager = WorkerLifecycleManager::new(registry.shared(), config()).unwrap();
    manager
        .register_provider(TestProvider::new("test"))
        .unwrap();
    let ids: Vec<WorkerId> = (0..10)
        .map(|_| {
            let id = manager.provision_worker(&pid("test"), spec()).unwrap().id;
            registry.update_state(&id, WorkerState::Ready).unwrap();
            id
        })
        .collect();
    // 6 of 10 silent: more than floor(0.55 * 10), the brake holds.
    clock.advance(secs(61));
    for id in &ids[..4] {
        manager.process_heartbeat(id).unwrap();
    }
    assert!(manager.run_health_check().unwrap().held.is_some());
    // Two come back: 4 silent, under the limit. The next check releases the brake; another
    // check runs while the release's grace period is being granted.
    for id in &ids[4..6] {
        manager.process_heartbeat(id).unwrap();
    }
    gate.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let (releasing, racing) = std::thread::scope(|s| {
        let releasing = s.spawn(|| manager.run_health_check().unwrap());
        gate.entered.1.recv().unwrap();
        let racing = manager.run_health_check().unwrap();
        gate.open.0.send(()).unwrap();
        (releasing.join().unwrap(), racing)
    });
    assert!(releasing.brake_released, "{releasing:?}");
    assert!(releasing.unhealthy.is_empty(), "{releasing:?}");
    assert!(
        racing.unhealthy.is_empty(),
        "the racing check expired the stragglers: {racing:?}"
    );
    assert_eq!(registry.count().unwrap(), 10);
    for id in &ids[6..] {
        assert_eq!(registry.get(id).unwrap().unwrap().state, WorkerState::Ready);
    }
    assert_eq!(manager.stats().unwrap().unhealthy_total, 0);
    // The grace period holds for them: nobody is expired before heartbeat_timeout from now.
    clock.advance(secs(59));
    let later = manager.run_health_check().unwrap();
    assert!(
        later.unhealthy.is_empty() && later.held.is_none(),
        "{later:?}"
    );
}
