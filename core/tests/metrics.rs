//! The manager's metrics: the OpenMetrics text has every family, parses line by line, and
//! its values are the numbers `stats()`, the registry and a simulated run report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "sim")]
use hodei_workers::sim::{Scenario, Simulation};
use hodei_workers::*;
use rng::Rng;

#[path = "support/rng.rs"]
mod rng;

/// `name{labels}` -> value, from the text (comments skipped); checks the line shape.
fn samples(text: &str) -> BTreeMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "no EOF marker");
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').expect("sample line: name value");
        assert!(
            key.starts_with("hodei_workers_"),
            "unprefixed sample {line:?}"
        );
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        assert!(out.insert(key.to_owned(), v).is_none(), "duplicate {key}");
    }
    out
}

fn get(s: &BTreeMap<String, f64>, key: &str) -> f64 {
    *s.get(key)
        .unwrap_or_else(|| panic!("{key} missing; have {:?}", s.keys().collect::<Vec<_>>()))
}

/// Every family the issue asks for, by its OpenMetrics name.
pub const FAMILIES: [&str; 32] = [
    "hodei_workers_workers",
    "hodei_workers_workers_by_provider",
    "hodei_workers_workers_by_provider_type",
    "hodei_workers_providers",
    "hodei_workers_pool_workers",
    "hodei_workers_pool_demand",
    "hodei_workers_jobs_assigned",
    "hodei_workers_jobs_released",
    "hodei_workers_lost_jobs",
    "hodei_workers_provisions_requested",
    "hodei_workers_provisions_succeeded",
    "hodei_workers_provisions_failed",
    "hodei_workers_provisions_in_flight",
    "hodei_workers_destroys",
    "hodei_workers_destroy_failures",
    "hodei_workers_destroys_pending",
    "hodei_workers_unhealthy_detections",
    "hodei_workers_mass_expiry_holds",
    "hodei_workers_reconcile_holds",
    "hodei_workers_provider_backoff_seconds",
    "hodei_workers_provider_consecutive_failures",
    "hodei_workers_ticks",
    "hodei_workers_tick_panics",
    "hodei_workers_health_checks",
    "hodei_workers_tick_duration_seconds",
    "hodei_workers_health_check_duration_seconds",
    "hodei_workers_heartbeat_age_seconds",
    "hodei_workers_heartbeat_monitored_workers",
    "hodei_workers_event_drops",
    "hodei_workers_event_queue_length",
    "hodei_workers_leader",
    "hodei_workers_leader_term",
];

/// Needs the `sim` feature (`make test` turns it on: mk/sim.mk).
#[cfg(feature = "sim")]
#[test]
fn a_simulated_run_reads_back_exactly() {
    let mut scenario = Scenario::builtin("flaky", 4).unwrap();
    scenario.duration_secs = 1500.0;
    let mut sim = Simulation::new(&scenario, None).unwrap();
    while sim.step() {}
    let report = sim.report();
    let manager = sim.manager();
    let text = manager.metrics_text();
    for family in FAMILIES {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "family {family} missing:\n{text}"
        );
    }
    let s = samples(&text);
    // A simulation's manager leads alone (the single-process lease: term 1).
    assert_eq!(get(&s, "hodei_workers_leader"), 1.0);
    assert_eq!(get(&s, "hodei_workers_leader_term"), 1.0);
    let stats = manager.stats().unwrap();
    let r = &stats.registry;
    for state in WorkerState::ALL {
        let key = format!("hodei_workers_workers{{state=\"{}\"}}", state.as_str());
        assert_eq!(get(&s, &key), r.by_state.get(state) as f64, "{key}");
    }
    assert_eq!(
        get(
            &s,
            "hodei_workers_workers_by_provider{provider=\"sim-cloud\"}"
        ),
        r.total as f64
    );
    for (key, value) in [
        (
            "hodei_workers_provisions_succeeded_total",
            stats.provisioned_total,
        ),
        (
            "hodei_workers_provisions_failed_total",
            stats.provision_failures_total,
        ),
        ("hodei_workers_destroys_total", stats.terminated_total),
        (
            "hodei_workers_destroy_failures_total",
            stats.destroy_failures_total,
        ),
        (
            "hodei_workers_unhealthy_detections_total",
            stats.unhealthy_total,
        ),
        ("hodei_workers_lost_jobs_total", stats.lost_jobs_total),
        (
            "hodei_workers_mass_expiry_holds_total",
            stats.mass_expiry_holds_total,
        ),
        ("hodei_workers_provisions_in_flight", stats.in_flight as u64),
        (
            "hodei_workers_destroys_pending",
            stats.pending_destroys as u64,
        ),
        ("hodei_workers_providers", stats.providers as u64),
    ] {
        assert_eq!(get(&s, key), value as f64, "{key}");
    }
    // The manager's totals are the run's (the simulation counts them from the reports).
    assert_eq!(stats.provisioned_total, report.provisioned);
    assert_eq!(stats.unhealthy_total, report.unhealthy_detections);
    assert!(report.provisioned > 0 && report.provision_failures > 0 && report.destroy_failures > 0);
    // Every create started ended as a success, a failure, or a registration refused.
    let requested = get(
        &s,
        "hodei_workers_provisions_requested_total{provider=\"sim-cloud\"}",
    );
    assert!(requested >= (stats.provisioned_total + stats.provision_failures_total) as f64);
    // Jobs: what was handed out and not taken back nor lost is held now.
    let assigned = get(&s, "hodei_workers_jobs_assigned_total");
    let released = get(&s, "hodei_workers_jobs_released_total");
    assert!(assigned > 0.0 && released > 0.0);
    assert_eq!(
        assigned - released - stats.lost_jobs_total as f64,
        report.jobs_running as f64,
        "assigned {assigned} released {released} lost {}",
        stats.lost_jobs_total
    );
    // Heartbeat ages: the monitored workers, the quantiles in order.
    let monitored =
        r.by_state.connecting + r.by_state.ready + r.by_state.busy + r.by_state.draining;
    assert_eq!(
        get(&s, "hodei_workers_heartbeat_monitored_workers"),
        monitored as f64
    );
    if monitored > 0 {
        let q = |x: &str| {
            get(
                &s,
                &format!("hodei_workers_heartbeat_age_seconds{{quantile=\"{x}\"}}"),
            )
        };
        assert!(q("0.5") <= q("0.9") && q("0.9") <= q("0.99") && q("0.99") <= q("1"));
        // Healthy workers: at most about heartbeat_timeout + health_check_interval (+ 1 s bucket).
        let cfg = manager.config();
        let bound = (cfg.heartbeat_timeout + cfg.health_check_interval).as_secs_f64() + 1.0;
        assert!(q("0.5") <= bound, "median age {} > {bound}", q("0.5"));
    }
    // The lazy subscriber's drops, under its own id.
    let drops: f64 = s
        .iter()
        .filter(|(k, _)| k.starts_with("hodei_workers_event_drops_total{"))
        .map(|(_, v)| *v)
        .sum();
    assert_eq!(drops, report.lazy_subscriber_dropped as f64);
    assert!(drops > 0.0);
    // One tick duration observed per tick that ran.
    let ticks = get(&s, "hodei_workers_tick_duration_seconds_count");
    assert!(ticks > 0.0);
    assert!(get(&s, "hodei_workers_health_check_duration_seconds_count") > 0.0);
    assert!(get(&s, "hodei_workers_health_check_duration_seconds_count") <= ticks);
}

#[derive(Debug)]
struct Failing;
impl WorkerProvider for Failing {
    fn provider_id(&self) -> ProviderId {
        ProviderId::new("down").unwrap()
    }
    fn provider_type(&self) -> ProviderType {
        ProviderType::Docker
    }
    fn create_worker(&self, _: WorkerId, _: &WorkerSpec) -> ProviderResult<WorkerHandle> {
        Err(ProviderError::new("api down"))
    }
    fn destroy_worker(&self, _: &WorkerHandle) -> ProviderResult<()> {
        Ok(())
    }
}

#[test]
fn back_off_timing_switch_and_a_merged_host_registry() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let registry: Arc<dyn WorkerRegistry> =
        Arc::new(InMemoryWorkerRegistry::with_clock(clock.clone()));
    let manager =
        WorkerLifecycleManager::new(Arc::clone(&registry), WorkerLifecycleConfig::default())
            .unwrap();
    manager.register_provider(Arc::new(Failing)).unwrap();
    let down = ProviderId::new("down").unwrap();
    manager
        .set_scaling_target(&down, Arc::new(WorkerSpec::new("img")))
        .unwrap();
    let before = samples(&manager.metrics_text());
    assert_eq!(
        get(
            &before,
            "hodei_workers_provider_backoff_seconds{provider=\"down\"}"
        ),
        0.0
    );
    assert_eq!(
        get(&before, "hodei_workers_tick_duration_seconds_count"),
        0.0
    );
    // No monitored worker: the count is 0 and no quantile is made up.
    assert_eq!(
        get(&before, "hodei_workers_heartbeat_monitored_workers"),
        0.0
    );
    assert!(!before.keys().any(|k| k.contains("heartbeat_age_seconds")));

    let report = manager.tick(3);
    let backoff = manager.provider_backoff();
    assert_eq!(backoff.len(), 1, "{report:?}");
    let s = samples(&manager.metrics_text());
    let left = (backoff[0].until - clock.now()) as f64 / 1000.0;
    assert!(left > 0.0);
    assert_eq!(
        get(
            &s,
            "hodei_workers_provider_backoff_seconds{provider=\"down\"}"
        ),
        left
    );
    assert_eq!(
        get(
            &s,
            "hodei_workers_provider_consecutive_failures{provider=\"down\"}"
        ),
        f64::from(backoff[0].consecutive_failures)
    );
    assert_eq!(
        get(&s, "hodei_workers_provisions_failed_total"),
        report.provision_failures.len() as f64
    );
    assert_eq!(
        get(
            &s,
            "hodei_workers_provisions_requested_total{provider=\"down\"}"
        ),
        report.provision_failures.len() as f64
    );
    assert_eq!(get(&s, "hodei_workers_tick_duration_seconds_count"), 1.0);

    // Timing off: ticks are no longer measured, everything else still reads.
    manager.metrics().set_timing(false);
    clock.advance(Duration::from_secs(3600));
    let s = samples(&manager.metrics_text());
    assert_eq!(
        get(
            &s,
            "hodei_workers_provider_backoff_seconds{provider=\"down\"}"
        ),
        0.0,
        "expired"
    );
    manager.tick(0);
    let s = samples(&manager.metrics_text());
    assert_eq!(get(&s, "hodei_workers_tick_duration_seconds_count"), 1.0);

    // Merged into the host's registry, under the host's own metrics.
    let mut host = prometheus_client::registry::Registry::default();
    let mine: prometheus_client::metrics::counter::Counter = Default::default();
    host.register("host_requests", "The host's own.", mine.clone());
    host.register_collector(Box::new(manager.metrics()));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &host).unwrap();
    assert!(text.contains("host_requests_total 0"));
    assert!(text.contains("hodei_workers_workers{state=\"ready\"} 0"));

    // The collector outlives the manager: it still answers, from the last numbers.
    let collector = manager.metrics();
    drop(manager);
    assert!(collector
        .encode_text()
        .contains("hodei_workers_provisions_failed_total"));
}

/// `hodei_workers_ticks_total` and `hodei_workers_health_checks_total` count every tick and
/// every health check (a tick's and `run_health_check`'s) whether the durations are timed or
/// not: `set_timing(false)` stands the histograms still, and an alert on the rate of their
/// `_count` ("ticks stopped") fired on a healthy ticker. Timed, the histograms' `_count` is
/// the same number.
#[test]
fn ticks_and_health_checks_are_counted_whether_timed_or_not() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let registry: Arc<dyn WorkerRegistry> =
        Arc::new(InMemoryWorkerRegistry::with_clock(clock.clone()));
    let config = WorkerLifecycleConfig {
        health_check_interval: Duration::from_secs(10),
        ..WorkerLifecycleConfig::default()
    };
    let manager = WorkerLifecycleManager::new(registry, config).unwrap();
    let counts = |manager: &WorkerLifecycleManager| {
        let s = samples(&manager.metrics_text());
        [
            "hodei_workers_ticks_total",
            "hodei_workers_health_checks_total",
            "hodei_workers_tick_duration_seconds_count",
            "hodei_workers_health_check_duration_seconds_count",
        ]
        .map(|key| get(&s, key))
    };
    let two_ticks_and_a_check = || {
        for _ in 0..2 {
            let r = manager.tick(0);
            assert!(r.health_checked, "{:?}", r.decisions);
            clock.advance(Duration::from_secs(11));
        }
        manager.run_health_check().unwrap();
    };
    assert_eq!(counts(&manager), [0.0; 4]);
    two_ticks_and_a_check();
    assert_eq!(counts(&manager), [2.0, 3.0, 2.0, 3.0], "timed");
    manager.metrics().set_timing(false);
    two_ticks_and_a_check();
    assert_eq!(
        counts(&manager),
        [4.0, 6.0, 2.0, 3.0],
        "untimed: counted, and the histograms stand still"
    );
    manager.metrics().set_timing(true);
    two_ticks_and_a_check();
    assert_eq!(counts(&manager), [6.0, 9.0, 4.0, 6.0], "timed again");
}

#[test]
fn heartbeat_ages_come_from_the_deadline_index() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let registry = InMemoryWorkerRegistry::with_clock(clock.clone());
    let provider = ProviderId::new("p").unwrap();
    let spec = Arc::new(WorkerSpec::new("img"));
    let ids: Vec<WorkerId> = (0..3)
        .map(|i| {
            let h = WorkerHandle::new(provider.clone(), ProviderType::Docker, format!("r{i}"));
            let w = registry.register(h, Arc::clone(&spec)).unwrap();
            registry.update_state(&w.id, WorkerState::Ready).unwrap();
            w.id
        })
        .collect();
    // One more, still Creating: not under heartbeat watch.
    registry
        .register(
            WorkerHandle::new(provider.clone(), ProviderType::Docker, "r9"),
            Arc::clone(&spec),
        )
        .unwrap();
    let ages = registry.heartbeat_age_histogram().unwrap().unwrap();
    assert_eq!(ages.total(), 3);
    assert_eq!(ages.quantile_ms(1.0), Some(0));

    clock.advance(Duration::from_secs(90));
    registry.heartbeat(&ids[0]).unwrap();
    // The ages are read from the heartbeat column itself: a heartbeat shows at once, before
    // any health check, and a health check changes nothing.
    let ages = registry.heartbeat_age_histogram().unwrap().unwrap();
    assert_eq!(ages.buckets, vec![(0, 1), (90_000, 2)]);
    let silent = registry.find_unhealthy(Duration::from_secs(60)).unwrap();
    assert_eq!(silent.len(), 2);
    let ages = registry.heartbeat_age_histogram().unwrap().unwrap();
    assert_eq!(ages.buckets, vec![(0, 1), (90_000, 2)]);
    assert_eq!(ages.quantile_ms(0.3), Some(0));
    assert_eq!(ages.quantile_ms(0.5), Some(90_000));

    // Leaving the watched states (or the registry) takes a worker out of the ages.
    registry
        .update_state(&ids[1], WorkerState::Terminating)
        .unwrap();
    registry
        .unregister(&ids[2], TerminationReason::Unhealthy)
        .unwrap();
    let ages = registry.heartbeat_age_histogram().unwrap().unwrap();
    assert_eq!(ages.buckets, vec![(0, 1)]);
    // Assignments and releases are counted once each.
    let job = JobId::new("j").unwrap();
    registry
        .claim(&WorkerFilter::new(), job.clone())
        .unwrap()
        .unwrap();
    registry.release_from_job(&ids[0], Some(&job)).unwrap();
    assert!(registry.release_from_job(&ids[0], Some(&job)).is_err());
    assert_eq!(
        registry.job_totals().unwrap(),
        Some(JobTotals {
            assigned: 1,
            released: 1
        })
    );
}

/// A provider whose creates succeed, with ids of its own name.
#[derive(Debug)]
struct Cloud(&'static str);
impl WorkerProvider for Cloud {
    fn provider_id(&self) -> ProviderId {
        ProviderId::new(self.0).unwrap()
    }
    fn provider_type(&self) -> ProviderType {
        ProviderType::Ec2
    }
    fn create_worker(&self, id: WorkerId, _: &WorkerSpec) -> ProviderResult<WorkerHandle> {
        let handle = WorkerHandle::new(self.provider_id(), self.provider_type(), format!("i-{id}"));
        Ok(WorkerHandle {
            worker_id: id,
            ..handle
        })
    }
    fn destroy_worker(&self, _: &WorkerHandle) -> ProviderResult<()> {
        Ok(())
    }
}

/// `hodei_workers_pool_workers{pool,state}` for every state of `pool`, in `WorkerState::ALL`
/// order.
fn pool_states(s: &BTreeMap<String, f64>, pool: &str) -> Vec<f64> {
    WorkerState::ALL
        .iter()
        .map(|st| {
            get(
                s,
                &format!(
                    "hodei_workers_pool_workers{{pool=\"{pool}\",state=\"{}\"}}",
                    st.as_str()
                ),
            )
        })
        .collect()
}

#[test]
fn pool_workers_by_state_are_the_last_pools_tick_counts() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let registry: Arc<dyn WorkerRegistry> =
        Arc::new(InMemoryWorkerRegistry::with_clock(clock.clone()));
    let config = WorkerLifecycleConfig {
        max_workers: 20,
        max_provision_per_tick: 10,
        ..Default::default()
    };
    let manager = WorkerLifecycleManager::new(Arc::clone(&registry), config).unwrap();
    for p in ["k8s", "ec2"] {
        manager.register_provider(Arc::new(Cloud(p))).unwrap();
    }
    let gpu = WorkerSpec::new("trainer").with_label("gpu", "a100");
    manager
        .set_pools(vec![
            Pool::new(
                "cpu",
                ProviderId::new("k8s").unwrap(),
                WorkerSpec::new("runner"),
            )
            .unwrap()
            .with_priority(20)
            .with_max_workers(10),
            Pool::new("gpu", ProviderId::new("ec2").unwrap(), gpu)
                .unwrap()
                .with_max_workers(4),
        ])
        .unwrap();
    // Before any tick the family exists and is empty.
    let text = manager.metrics_text();
    assert!(
        text.contains("# TYPE hodei_workers_pool_workers gauge"),
        "{text}"
    );
    assert!(!text.contains("hodei_workers_pool_workers{"), "{text}");

    let demand = Demand::new()
        .with(Requirement::new(3))
        .with(Requirement::new(2).label("gpu", "a100"));
    let first = manager.tick(&demand);
    assert_eq!(first.provisioned.len(), 5, "{first:?}");
    // The first tick planned from empty pools: its counts are zeros, whatever it provisioned
    // afterwards; the demand is what its plan gave each pool.
    let s = samples(&manager.metrics_text());
    assert_eq!(pool_states(&s, "cpu"), vec![0.0; 7]);
    assert_eq!(pool_states(&s, "gpu"), vec![0.0; 7]);
    assert_eq!(get(&s, "hodei_workers_pool_demand{pool=\"cpu\"}"), 3.0);
    assert_eq!(get(&s, "hodei_workers_pool_demand{pool=\"gpu\"}"), 2.0);

    // cpu: two come up, one of them takes a job, one still starts; gpu: both up, one drains
    // while it finishes its job (an idle one would be retired by the tick's cleanup).
    let of = |pool: &str| -> Vec<WorkerId> {
        let mut ids: Vec<WorkerId> = first
            .provisioned
            .iter()
            .map(|p| p.worker_id)
            .filter(|id| {
                registry
                    .get(id)
                    .unwrap()
                    .unwrap()
                    .spec
                    .labels
                    .get("hodei.pool")
                    == Some(&pool.to_owned())
            })
            .collect();
        ids.sort();
        ids
    };
    let (cpu, gpus) = (of("cpu"), of("gpu"));
    assert_eq!((cpu.len(), gpus.len()), (3, 2));
    let starting = registry.get(&cpu[2]).unwrap().unwrap().state;
    for id in [cpu[0], cpu[1], gpus[0], gpus[1]] {
        registry.update_state(&id, WorkerState::Ready).unwrap();
        registry.heartbeat(&id).unwrap();
    }
    registry
        .assign_to_job(&cpu[0], JobId::new("j1").unwrap())
        .unwrap();
    registry
        .assign_to_job(&gpus[1], JobId::new("j2").unwrap())
        .unwrap();
    manager.drain_worker(&gpus[1]).unwrap();
    // Within the scale-up cooldown: the ticks below provision nothing more.
    clock.advance(Duration::from_secs(1));
    let second = manager.tick(&demand);
    assert!(second.provisioned.is_empty(), "{second:?}");

    let s = samples(&manager.metrics_text());
    let mut cpu_want = vec![0.0; 7];
    let mut gpu_want = vec![0.0; 7];
    let at = |st: WorkerState| WorkerState::ALL.iter().position(|s| *s == st).unwrap();
    cpu_want[at(WorkerState::Busy)] = 1.0;
    cpu_want[at(WorkerState::Ready)] = 1.0;
    cpu_want[at(starting)] = 1.0;
    gpu_want[at(WorkerState::Ready)] = 1.0;
    gpu_want[at(WorkerState::Draining)] = 1.0;
    assert_eq!(pool_states(&s, "cpu"), cpu_want);
    assert_eq!(pool_states(&s, "gpu"), gpu_want);

    // Counted by the tick, not at scrape time: a change since shows after the next tick.
    registry.update_state(&cpu[2], WorkerState::Ready).unwrap();
    assert_eq!(
        pool_states(&samples(&manager.metrics_text()), "cpu"),
        cpu_want
    );
    clock.advance(Duration::from_secs(1));
    manager.tick(&demand);
    cpu_want[at(starting)] = 0.0;
    cpu_want[at(WorkerState::Ready)] = 2.0;
    assert_eq!(
        pool_states(&samples(&manager.metrics_text()), "cpu"),
        cpu_want
    );

    // A removed pool is gone from both families at once; the other stays.
    manager.remove_pool("gpu").unwrap();
    let text = manager.metrics_text();
    assert!(!text.contains("pool=\"gpu\""), "{text}");
    let s = samples(&text);
    assert_eq!(pool_states(&s, "cpu"), cpu_want);
    assert_eq!(get(&s, "hodei_workers_pool_demand{pool=\"cpu\"}"), 3.0);
}

/// A fleet of `n` `Ready` workers whose heartbeat ages (whole seconds at the returned clock)
/// follow a skewed, pseudo-random law: 90 % within 10 s, 9 % within a minute, 1 % up to ten
/// minutes, and a few never heard since registration (700 s). Returns the registry and the
/// exact ages in seconds.
fn fleet_with_ages(n: usize) -> (InMemoryWorkerRegistry, Vec<u64>) {
    let start = 1_700_000_000_000;
    let clock = Arc::new(ManualClock::new(start));
    let registry = InMemoryWorkerRegistry::with_clock(clock.clone());
    let provider = ProviderId::new("p").unwrap();
    let spec = Arc::new(WorkerSpec::new("img"));
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut by_beat: BTreeMap<u64, Vec<WorkerId>> = BTreeMap::new();
    let mut ages = Vec::with_capacity(n);
    for i in 0..n {
        let h = WorkerHandle::new(provider.clone(), ProviderType::Docker, format!("r{i}"));
        let w = registry.register(h, Arc::clone(&spec)).unwrap();
        registry.update_state(&w.id, WorkerState::Ready).unwrap();
        let r = rng.below(10_000);
        let age = match r {
            0..=8_999 => r % 10,
            9_000..=9_899 => 10 + r % 50,
            9_900..=9_989 => 60 + rng.below(540),
            _ => 700,
        };
        ages.push(age);
        if age < 700 {
            by_beat.entry(700 - age).or_default().push(w.id);
        }
    }
    // Heartbeats in time order, then the clock at 700 s after the registrations.
    for (at, ids) in by_beat {
        clock.set(start + at * 1_000);
        for id in ids {
            registry.heartbeat(&id).unwrap();
        }
    }
    clock.set(start + 700_000);
    (registry, ages)
}

/// The exact `(age_ms, workers)` buckets of whole-second ages.
fn exact_buckets(ages: &[u64]) -> Vec<(u64, u64)> {
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    for age in ages {
        *counts.entry(age * 1_000).or_default() += 1;
    }
    counts.into_iter().collect()
}

#[test]
fn heartbeat_ages_are_exact_for_a_small_fleet() {
    let (registry, ages) = fleet_with_ages(500);
    let got = registry.heartbeat_age_histogram().unwrap().unwrap();
    assert_eq!(got.buckets, exact_buckets(&ages));
    assert_eq!((got.total(), got.sampled), (500, 500));
}

/// A large fleet is sampled (at most 32,768 heartbeat slots read), the total stays exact, and
/// each reported quantile lies within 1 % of the fleet (in rank) of the exact one: the age
/// reported for `q` is one the exact distribution puts between its `q - 0.01` and `q + 0.01`
/// quantiles (inclusive of the bucket's own share). The documented error is about 0.3 % at
/// the median (one standard deviation, ~29,000 workers sampled here), so 1 % is > 3 sigma.
#[test]
fn heartbeat_ages_of_a_large_fleet_are_a_bounded_sample_with_an_exact_total() {
    let n = 200_000;
    let (registry, ages) = fleet_with_ages(n);
    let got = registry.heartbeat_age_histogram().unwrap().unwrap();
    assert_eq!(got.total(), n as u64);
    assert!(
        got.sampled <= 32_768 && got.sampled >= 20_000,
        "sampled {}",
        got.sampled
    );
    let mut sorted = ages.clone();
    sorted.sort_unstable();
    let below = |ms: u64| sorted.partition_point(|a| a * 1_000 < ms) as f64 / n as f64;
    let at_most = |ms: u64| sorted.partition_point(|a| a * 1_000 <= ms) as f64 / n as f64;
    for q in [0.5, 0.9, 0.99] {
        let est = got.quantile_ms(q).unwrap();
        assert!(
            below(est) <= q + 0.01 && at_most(est) >= q - 0.01,
            "q {q}: estimated {est} ms, exact fraction below {} and at most {}",
            below(est),
            at_most(est)
        );
    }
    // The sampled workers' ages are real ones (buckets of the exact distribution).
    let exact: Vec<u64> = exact_buckets(&ages).iter().map(|(a, _)| *a).collect();
    assert!(got.buckets.iter().all(|(a, _)| exact.contains(a)));
    // The metrics family reports the exact population.
    let manager =
        WorkerLifecycleManager::new(Arc::new(registry), WorkerLifecycleConfig::default()).unwrap();
    let s = samples(&manager.metrics_text());
    assert_eq!(
        get(&s, "hodei_workers_heartbeat_monitored_workers"),
        n as f64
    );
}

/// The id `n` (from 1) of a worker the in-memory registry keeps in its shard 0 (it picks the
/// shard from bytes 3 and 15 of the id: both 0 here).
fn shard_0_id(n: u32) -> WorkerId {
    let mut bytes = [0u8; 16];
    bytes[8..12].copy_from_slice(&n.to_be_bytes());
    WorkerId::from_bytes(bytes).unwrap()
}

/// A fleet that shrank: 600 workers in one shard (its heartbeat column 600 slots long), then
/// every other one gone — the 300 left, the last one among them, keep the column's length
/// and sit exactly between the slots a stride of 2 reads, so a sample of slots (before
/// 2026-12-07) met none of them. `hodei_workers_heartbeat_monitored_workers` is promised
/// exact "even when the ages are sampled" (it is the population of `hodei_workers_workers`'
/// watched states); the quantiles are never made up: a sample of workers (since 2026-12-07)
/// reads all 300 (a shard of at most 512 is read whole), whose age is 5 s.
#[test]
fn the_monitored_count_stays_exact_when_the_sample_meets_none_of_the_workers() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let registry = Arc::new(InMemoryWorkerRegistry::with_clock(clock.clone()));
    let provider = ProviderId::new("p").unwrap();
    let spec = Arc::new(WorkerSpec::new("img"));
    let ids: Vec<WorkerId> = (1..=600)
        .map(|n| {
            let handle = WorkerHandle {
                worker_id: shard_0_id(n),
                ..WorkerHandle::new(provider.clone(), ProviderType::Docker, format!("r{n}"))
            };
            let w = registry.register(handle, Arc::clone(&spec)).unwrap();
            registry.update_state(&w.id, WorkerState::Ready).unwrap();
            w.id
        })
        .collect();
    for id in ids.iter().step_by(2) {
        registry
            .unregister(id, TerminationReason::Requested)
            .unwrap();
    }
    clock.advance(Duration::from_secs(5));
    let manager = WorkerLifecycleManager::new(
        Arc::clone(&registry) as Arc<dyn WorkerRegistry>,
        WorkerLifecycleConfig::default(),
    )
    .unwrap();
    let text = manager.metrics_text();
    let s = samples(&text);
    assert_eq!(get(&s, "hodei_workers_workers{state=\"ready\"}"), 300.0);
    assert_eq!(
        get(&s, "hodei_workers_heartbeat_monitored_workers"),
        300.0,
        "{text}"
    );
    let quantiles: Vec<(&String, &f64)> = s
        .iter()
        .filter(|(k, _)| k.starts_with("hodei_workers_heartbeat_age_seconds{"))
        .collect();
    assert!(
        !quantiles.is_empty() && quantiles.iter().all(|(_, v)| **v == 5.0),
        "ages none of the workers has: {quantiles:?}"
    );
}

/// A provider named with the characters a label value must escape (`"` and `\`), of a custom
/// type named so too.
#[derive(Debug)]
struct Odd;
impl WorkerProvider for Odd {
    fn provider_id(&self) -> ProviderId {
        ProviderId::new(r#"k8s "east"\1"#).unwrap()
    }
    fn provider_type(&self) -> ProviderType {
        ProviderType::custom(r#"my "cloud"\x"#).unwrap()
    }
    fn create_worker(&self, id: WorkerId, _: &WorkerSpec) -> ProviderResult<WorkerHandle> {
        let handle = WorkerHandle::new(self.provider_id(), self.provider_type(), format!("r-{id}"));
        Ok(WorkerHandle {
            worker_id: id,
            ..handle
        })
    }
    fn destroy_worker(&self, _: &WorkerHandle) -> ProviderResult<()> {
        Ok(())
    }
}

/// The text is OpenMetrics family by family: each family has one `# HELP`, one `# TYPE` (and
/// a `# UNIT` when its name ends in one) before its samples, every sample belongs to the
/// family above it with the suffixes of its type, no series twice; label values are escaped
/// (`\"`, `\\`); histograms have the documented buckets (10 µs × 4ⁿ up to ~42 s, then +Inf),
/// cumulative, the +Inf one equal to `_count`, and one observation per tick and per health
/// check run.
#[test]
fn the_text_is_openmetrics_family_by_family_with_escaped_labels_and_the_documented_buckets() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let registry: Arc<dyn WorkerRegistry> =
        Arc::new(InMemoryWorkerRegistry::with_clock(clock.clone()));
    let config = WorkerLifecycleConfig {
        health_check_interval: Duration::from_secs(10),
        ..WorkerLifecycleConfig::default()
    };
    let manager = WorkerLifecycleManager::new(Arc::clone(&registry), config).unwrap();
    manager.register_provider(Arc::new(Odd)).unwrap();
    manager.register_provider(Arc::new(Failing)).unwrap();
    manager
        .set_pools(vec![Pool::new(
            "gpu.spot-1",
            ProviderId::new(r#"k8s "east"\1"#).unwrap(),
            WorkerSpec::new("img"),
        )
        .unwrap()])
        .unwrap();
    let _sub = registry.subscribe(SubscribeOptions::default()).unwrap();
    let mut health_checks = 0;
    for _ in 0..5 {
        let r = manager.tick(Demand::new().with(Requirement::new(2)));
        health_checks += usize::from(r.health_checked);
        clock.advance(Duration::from_secs(11));
    }
    assert!(health_checks >= 3, "{health_checks}");
    let text = manager.metrics_text();
    assert!(text.ends_with("# EOF\n"));

    let mut families: BTreeMap<String, (String, usize, usize)> = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    let mut series = std::collections::BTreeSet::new();
    for line in text.lines().filter(|l| *l != "# EOF") {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, value) = (
                parts.next().unwrap(),
                parts.next().unwrap().to_owned(),
                parts.next().unwrap_or(""),
            );
            let entry = families.entry(name.clone()).or_default();
            match kind {
                "HELP" => {
                    entry.1 += 1;
                    assert!(!value.is_empty() && !value.contains('\n'), "{line}");
                }
                "TYPE" => {
                    entry.2 += 1;
                    entry.0 = value.to_owned();
                    current = Some((name, value.to_owned()));
                }
                "UNIT" => assert!(name.ends_with(&format!("_{value}")), "{line}"),
                _ => panic!("unknown comment {line:?}"),
            }
            continue;
        }
        let (family, kind) = current.clone().expect("a sample before any TYPE");
        let (key, value) = line.rsplit_once(' ').unwrap();
        let _: f64 = value.parse().unwrap_or_else(|_| panic!("{line:?}"));
        let name = key.split('{').next().unwrap();
        let suffix = name
            .strip_prefix(family.as_str())
            .unwrap_or_else(|| panic!("{line:?} outside its family {family}"));
        let allowed: &[&str] = match kind.as_str() {
            "counter" => &["_total", "_created"],
            "gauge" => &[""],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            k => panic!("type {k} of {family}"),
        };
        assert!(allowed.contains(&suffix), "{line:?} in {kind} {family}");
        assert!(series.insert(key.to_owned()), "series twice: {key}");
    }
    for (name, (kind, helps, types)) in &families {
        assert_eq!((*helps, *types), (1, 1), "{name} ({kind})");
    }
    // Escaped label values, in every family that carries the provider or its type.
    let id = r#"k8s \"east\"\\1"#;
    for key in [
        format!("hodei_workers_provisions_requested_total{{provider=\"{id}\"}}"),
        format!("hodei_workers_provider_backoff_seconds{{provider=\"{id}\"}}"),
        format!("hodei_workers_workers_by_provider{{provider=\"{id}\"}}"),
        r#"hodei_workers_workers_by_provider_type{provider_type="custom:my \"cloud\"\\x"}"#
            .to_owned(),
        "hodei_workers_pool_demand{pool=\"gpu.spot-1\"}".to_owned(),
    ] {
        assert!(series.contains(&key), "{key} not in {series:#?}");
    }
    // Histograms.
    let s = samples(&text);
    for (family, observed) in [
        ("hodei_workers_tick_duration_seconds", 5.0),
        (
            "hodei_workers_health_check_duration_seconds",
            health_checks as f64,
        ),
    ] {
        let buckets: Vec<(String, f64)> = text
            .lines()
            .filter(|l| l.starts_with(&format!("{family}_bucket{{")))
            .map(|l| {
                let le = l.split("le=\"").nth(1).unwrap().split('"').next().unwrap();
                (
                    le.to_owned(),
                    l.rsplit_once(' ').unwrap().1.parse().unwrap(),
                )
            })
            .collect();
        let les: Vec<&str> = buckets.iter().map(|(le, _)| le.as_str()).collect();
        let mut want: Vec<String> = (0..12).map(|i| (1e-5 * 4f64.powi(i)).to_string()).collect();
        want.push("+Inf".to_owned());
        let got: Vec<f64> = les[..12].iter().map(|l| l.parse().unwrap()).collect();
        for (g, w) in got.iter().zip(&want) {
            let w: f64 = w.parse().unwrap();
            assert!((g - w).abs() <= w * 1e-9, "{family}: buckets {les:?}");
        }
        assert_eq!(les.len(), 13, "{les:?}");
        assert_eq!(les[12], "+Inf");
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
        assert_eq!(buckets[12].1, observed, "{family}");
        assert_eq!(get(&s, &format!("{family}_count")), observed, "{family}");
        assert!(get(&s, &format!("{family}_sum")) >= 0.0);
    }
}

/// A provider whose listing shows three instances no record knows (another tenant's): the
/// ticks' reconcile holds them (`kind="orphans"`); its creates fail (a back-off).
#[derive(Debug)]
struct Strangers;
impl WorkerProvider for Strangers {
    fn provider_id(&self) -> ProviderId {
        ProviderId::new("strangers").unwrap()
    }
    fn provider_type(&self) -> ProviderType {
        ProviderType::Docker
    }
    fn create_worker(&self, _: WorkerId, _: &WorkerSpec) -> ProviderResult<WorkerHandle> {
        Err(ProviderError::new("quota"))
    }
    fn destroy_worker(&self, _: &WorkerHandle) -> ProviderResult<()> {
        Ok(())
    }
    fn list_workers(&self) -> ProviderResult<Vec<WorkerHandle>> {
        Ok((0..3)
            .map(|i| {
                WorkerHandle::new(
                    self.provider_id(),
                    self.provider_type(),
                    format!("theirs-{i}"),
                )
            })
            .collect())
    }
}

/// A family as a table of the docs lists it: its sample name (counters with `_total`), its
/// type and its label names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    kind: String,
    labels: std::collections::BTreeSet<String>,
}

/// The code spans (between backticks) of a table cell.
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// The families of a Markdown table whose rows start with `` | `hodei_workers_ ``:
/// `| names | type(s) | labels ...`. A name written as a `_suffix` shorthand continues the
/// row's first name from the segment the shorthand starts with (`_by_provider_type` after
/// `hodei_workers_workers_by_provider`), or from `hodei_workers`; `counter, gauge` gives each
/// name its type; the labels are the code spans of the third cell before any `(` or `—` (the
/// prose after them explains), and apply to every name of the row.
fn listed_families<'a>(rows: impl Iterator<Item = &'a str>) -> BTreeMap<String, Listed> {
    let mut out = BTreeMap::new();
    for row in rows {
        let cells: Vec<&str> = row.split('|').skip(1).collect();
        let names = code_spans(cells[0]);
        let first = names[0];
        let kinds: Vec<&str> = cells[1].trim().split(", ").collect();
        let labels_cell = cells[2].split(['(', '—']).next().unwrap();
        let labels: std::collections::BTreeSet<String> = code_spans(labels_cell)
            .into_iter()
            .map(str::to_owned)
            .collect();
        for (i, name) in names.iter().enumerate() {
            let name = if let Some(short) = name.strip_prefix('_') {
                let segment = short.split('_').next().unwrap();
                let stem = first
                    .find(&format!("_{segment}"))
                    .filter(|at| *at >= "hodei_workers".len())
                    .map_or("hodei_workers", |at| &first[..at]);
                format!("{stem}{name}")
            } else {
                (*name).to_owned()
            };
            let kind = if kinds.len() == names.len() {
                kinds[i]
            } else {
                kinds[0]
            };
            let listed = Listed {
                kind: kind.to_owned(),
                labels: labels.clone(),
            };
            assert!(
                out.insert(name.clone(), listed).is_none(),
                "{name} listed twice"
            );
        }
    }
    out
}

/// The families of an OpenMetrics text by sample name (counters with `_total`), each with its
/// type and the label names of its series (`le` of histogram buckets left out), and whether
/// it has any series. Label values are read with their escapes (`\"`, `\\`, `\n`).
fn exposed_families(text: &str) -> BTreeMap<String, (Listed, bool)> {
    let mut out: BTreeMap<String, (Listed, bool)> = BTreeMap::new();
    let mut family = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            family = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            let listed = Listed {
                kind: kind.to_owned(),
                labels: Default::default(),
            };
            assert!(
                out.insert(family.clone(), (listed, false)).is_none(),
                "{line}"
            );
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let entry = out.get_mut(&family).expect("a sample before its TYPE");
        entry.1 = true;
        let Some((_, mut rest)) = line.split_once('{') else {
            continue;
        };
        // name="value" pairs up to the closing brace, values escaped.
        while let Some((name, value)) = rest.split_once("=\"") {
            let name = name.trim_start_matches(',');
            let mut chars = value.char_indices();
            let end = loop {
                match chars.next().expect("an unterminated label value") {
                    (_, '\\') => {
                        let (_, c) = chars.next().unwrap();
                        assert!(matches!(c, '\\' | '"' | 'n'), "bad escape in {line:?}");
                    }
                    (i, '"') => break i,
                    (_, c) => assert!(c != '\n', "raw newline in {line:?}"),
                }
            };
            if name != "le" {
                entry.0.labels.insert(name.to_owned());
            }
            rest = &value[end + 1..];
            if rest.starts_with('}') {
                break;
            }
        }
    }
    out
}

/// The two tables of the metrics — docs/OBSERVABILITY.md's and the `metrics` module's
/// rustdoc — list exactly the families the text has, each with its type and its labels: none
/// documented that is not exposed, none exposed that is not documented, no label missing or
/// extra. Every labelled family has a series here (a provider backed off and held by the
/// reconcile brake, a pool ticked, a subscriber, monitored workers), so its labels are seen.
#[test]
fn both_metrics_tables_list_every_family_with_its_type_and_labels() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let registry: Arc<dyn WorkerRegistry> =
        Arc::new(InMemoryWorkerRegistry::with_clock(clock.clone()));
    let config = WorkerLifecycleConfig {
        min_ready_workers: 0,
        ..WorkerLifecycleConfig::default()
    };
    let reconcile_interval = config.reconcile_interval;
    let manager = WorkerLifecycleManager::new(Arc::clone(&registry), config).unwrap();
    manager.register_provider(Arc::new(Strangers)).unwrap();
    let strangers = ProviderId::new("strangers").unwrap();
    manager
        .set_pools(vec![
            Pool::new("cpu", strangers, WorkerSpec::new("img")).unwrap()
        ])
        .unwrap();
    let _sub = registry.subscribe(SubscribeOptions::default()).unwrap();
    let handle = WorkerHandle::new(
        ProviderId::new("k8s").unwrap(),
        ProviderType::Kubernetes,
        "p",
    );
    let w = registry
        .register(handle, Arc::new(WorkerSpec::new("img")))
        .unwrap();
    registry.update_state(&w.id, WorkerState::Ready).unwrap();
    // Busy, so that it is not retired for idleness; heard from after the pause.
    registry
        .assign_to_job(&w.id, JobId::new("j").unwrap())
        .unwrap();
    clock.advance(reconcile_interval + Duration::from_secs(1));
    registry.heartbeat(&w.id).unwrap();
    let report = manager.tick(Demand::new().with(Requirement::new(1)));
    assert!(!report.reconcile_held.is_empty(), "{:?}", report.decisions);
    assert!(
        !report.provision_failures.is_empty(),
        "{:?}",
        report.decisions
    );

    let exposed = exposed_families(&manager.metrics_text());
    let unseen: Vec<&String> = exposed
        .iter()
        .filter(|(_, (_, seen))| !seen)
        .map(|(n, _)| n)
        .collect();
    assert!(unseen.is_empty(), "families without a series: {unseen:?}");
    let exposed: BTreeMap<String, Listed> = exposed.into_iter().map(|(n, (l, _))| (n, l)).collect();
    let observability = include_str!("../../docs/OBSERVABILITY.md");
    let rustdoc = include_str!("../src/metrics/mod.rs");
    for (doc, rows) in [
        (
            "docs/OBSERVABILITY.md",
            listed_families(
                observability
                    .lines()
                    .filter(|l| l.starts_with("| `hodei_workers_")),
            ),
        ),
        (
            "core/src/metrics/mod.rs",
            listed_families(
                rustdoc
                    .lines()
                    .filter_map(|l| l.strip_prefix("//! "))
                    .filter(|l| l.starts_with("| `hodei_workers_")),
            ),
        ),
    ] {
        let mut wrong = Vec::new();
        for (name, got) in &exposed {
            match rows.get(name) {
                None => wrong.push(format!("{name}: exposed, not listed")),
                Some(listed) if listed != got => {
                    wrong.push(format!("{name}: exposed as {got:?}, listed as {listed:?}"))
                }
                Some(_) => {}
            }
        }
        for name in rows.keys().filter(|n| !exposed.contains_key(*n)) {
            wrong.push(format!("{name}: listed, not exposed"));
        }
        assert!(wrong.is_empty(), "{doc}:\n{}", wrong.join("\n"));
    }
}
