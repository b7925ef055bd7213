//! Pools by random operation sequences (seeded): pools set, reshaped, removed and added again
//! between ticks; workers reporting in, claimed and released; interruption notices; create
//! failures. After every call, the promises of DESIGN.md §12 that a host can see.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::common::*;
use crate::rng::Rng;
use hodei_workers::*;

const PROVIDERS: [&str; 2] = ["pa", "pb"];

fn template(k: usize) -> WorkerSpec {
    let gpu = |t: &str, n: u32| ResourceRequirements {
        cpu_cores: 8.0,
        gpu_count: n,
        gpu_type: Some(t.into()),
        ..Default::default()
    };
    match k {
        0 => WorkerSpec::new("cpu"),
        1 => WorkerSpec {
            resources: gpu("a100", 1),
            ..WorkerSpec::new("gpu").with_label("gpu", "a100")
        },
        2 => WorkerSpec {
            resources: gpu("a100", 2),
            ..WorkerSpec::new("gpu2").with_label("gpu", "a100")
        },
        _ => WorkerSpec::new("cpu").with_capability("docker"),
    }
}

fn requirement(rng: &mut Rng) -> Requirement {
    let n = rng.below(4) as usize;
    match rng.below(5) {
        0 => Requirement::new(n),
        1 => Requirement::new(n).label("gpu", "a100"),
        2 => Requirement::new(n)
            .label("gpu", "a100")
            .resources(ResourceRequirements {
                gpu_count: 2,
                ..Default::default()
            }),
        3 => Requirement::new(n).capability("docker"),
        _ => Requirement::new(n).label(POOL_LABEL, format!("p{}", rng.below(4))),
    }
}

fn random_pool(rng: &mut Rng, name: &str) -> Pool {
    let max = rng.below(5) as usize;
    Pool::new(
        name,
        pid(PROVIDERS[rng.index(2)]),
        template(rng.below(4) as usize),
    )
    .unwrap()
    .with_max_workers(max)
    .with_min_ready((rng.below(2) as usize).min(max))
    .with_priority(rng.below(3) as i32)
    .with_scale_up_cooldown(secs(rng.below(2) * rng.below(30)))
    .with_scale_down_cooldown(secs(rng.below(2) * rng.below(60)))
}

/// Every worker in service that carries a pool label belongs to one of the manager's pools
/// and fits its template (a removed pool's, or one its new template does not take, drained).
fn check_pools_own_their_workers(f: &Fixture, seed: u64, step: usize, what: &str) {
    let misplaced = misplaced_pooled_workers(&*f.registry, &f.manager.pools());
    assert!(
        misplaced.is_empty(),
        "seed {seed} step {step} after {what}: in service: {misplaced:#?}"
    );
}

/// The registered workers in a fixed order (ids are random, resource ids are not).
fn workers(f: &Fixture) -> Vec<Worker> {
    let mut all = f.registry.find(&WorkerFilter::new()).unwrap();
    all.sort_by(|a, b| a.handle.resource_id.cmp(&b.handle.resource_id));
    all
}

/// One seeded sequence of 60 steps. After each call: the pools own their workers; after each
/// tick, also: jobs are lost only at interruption deadlines (every worker heartbeats); a tick
/// that provisioned left no pool above its max (interrupted workers aside) nor the fleet above
/// the global one, and provisioned no pool within its scale-up cooldown; the plan replaces
/// exactly the jobs that interrupted workers still run; and the same demand again at the same
/// instant asks for nothing more (unless the first tick was capped, failed, lost a job, or
/// provisioned a warm worker, which once starting serves demand before a lower pool's idle
/// one, or took back demand for a pool with warm idle workers, which then serve it).
fn run(seed: u64) {
    let mut rng = Rng(seed);
    let cfg = WorkerLifecycleConfig {
        max_workers: 10,
        max_provision_per_tick: 4,
        min_ready_workers: 0,
        ..config()
    };
    let f = Fixture::new(cfg);
    let providers: Vec<Arc<TestProvider>> = PROVIDERS
        .iter()
        .map(|n| {
            let p = TestProvider::new(n);
            f.manager.register_provider(p.clone()).unwrap();
            p
        })
        .collect();
    let mut jobs = 0u64;
    // Per pool name: when this manager last provisioned for it (since it was last added).
    let mut last_up: BTreeMap<String, Timestamp> = BTreeMap::new();
    for step in 0..60 {
        match rng.below(10) {
            0 | 1 => {
                // set_pools: some names kept (maybe reshaped), some new.
                let mut names: Vec<String> = (0..4)
                    .filter(|_| rng.below(2) == 0)
                    .map(|k| format!("p{k}"))
                    .collect();
                names.dedup();
                let pools: Vec<Pool> = names.iter().map(|n| random_pool(&mut rng, n)).collect();
                let before: BTreeSet<String> =
                    f.manager.pools().into_iter().map(|p| p.name).collect();
                f.manager.set_pools(pools).unwrap();
                for gone in before.iter().filter(|n| !names.contains(n)) {
                    last_up.remove(gone);
                }
                check_pools_own_their_workers(&f, seed, step, "set_pools");
            }
            2 => {
                let names: Vec<String> = f.manager.pools().into_iter().map(|p| p.name).collect();
                if !names.is_empty() {
                    let name = rng.one_of(&names);
                    f.manager.remove_pool(&name).unwrap();
                    last_up.remove(&name);
                    check_pools_own_their_workers(&f, seed, step, "remove_pool");
                    if rng.below(2) == 0 {
                        f.manager.add_pool(random_pool(&mut rng, &name)).unwrap();
                    }
                }
            }
            3 => {
                // A notice for a random worker, its deadline maybe already past.
                let ids: Vec<WorkerId> = workers(&f).iter().map(|w| w.id).collect();
                if !ids.is_empty() {
                    let id = rng.one_of(&ids);
                    let deadline = f.now() + rng.below(120_000) - 10_000;
                    let _ = f.manager.notify_interruption(&id, deadline);
                }
            }
            4 => {
                let p = &providers[rng.index(2)];
                p.script_creates([if rng.below(2) == 0 {
                    CreateStep::NoCapacity
                } else {
                    CreateStep::Fail("boom")
                }]);
            }
            _ => {}
        }
        // Agents report in, jobs start and end.
        for w in workers(&f) {
            let _ = f.registry.heartbeat(&w.id);
            match w.state {
                WorkerState::Creating if rng.below(2) == 0 => {
                    let _ = f.registry.update_state(&w.id, WorkerState::Ready);
                }
                WorkerState::Busy | WorkerState::Draining
                    if w.current_job.is_some() && rng.below(3) == 0 =>
                {
                    let _ = f.registry.release_from_job(&w.id, None);
                }
                _ => {}
            }
        }
        let demand = Demand {
            requirements: (0..rng.below(4)).map(|_| requirement(&mut rng)).collect(),
        };
        for r in &demand.requirements {
            for _ in 0..rng.below(r.count as u64 + 1) {
                jobs += 1;
                let _ = f.registry.claim(&r.filter(), job(&format!("j{jobs}")));
            }
        }
        f.advance(ms(rng.below(20_000)));
        let now = f.now();
        let interrupted: BTreeSet<WorkerId> = f
            .manager
            .interruptions()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        // Notices on workers still running a job: each is one job of replacement.
        let running = workers(&f)
            .iter()
            .filter(|w| interrupted.contains(&w.id) && w.current_job.is_some())
            .count();
        let report = f.manager.tick(&demand);
        let what = format!("tick {:#?}", report.decisions);
        let replaced: usize = report
            .pools
            .as_ref()
            .map_or(0, |p| p.replacements.iter().map(|r| r.count).sum());
        if report.pools.is_some() {
            assert_eq!(
                replaced, running,
                "seed {seed} step {step}: replacements for {running} interrupted job(s): {what}"
            );
        }
        check_pools_own_their_workers(&f, seed, step, &what);
        // Lost jobs only from interruption deadlines (every worker heartbeats).
        for lost in &report.lost_jobs {
            assert!(
                interrupted.contains(&lost.worker_id),
                "seed {seed} step {step}: job lost on {} with no notice: {what}",
                lost.worker_id
            );
        }
        if !report.provisioned.is_empty() {
            let all = f.registry.find(&WorkerFilter::new()).unwrap();
            assert!(
                all.len() <= 10,
                "seed {seed} step {step}: {} workers over max 10: {what}",
                all.len()
            );
            let pools = f.manager.pools();
            let notices: BTreeSet<WorkerId> = f
                .manager
                .interruptions()
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            for p in &pools {
                let mine: Vec<&Worker> = all
                    .iter()
                    .filter(|w| w.spec.labels.get(POOL_LABEL) == Some(&p.name))
                    .collect();
                let made = report
                    .provisioned
                    .iter()
                    .filter(|n| mine.iter().any(|w| w.id == n.worker_id))
                    .count();
                if made == 0 {
                    continue;
                }
                let counted = mine.iter().filter(|w| !notices.contains(&w.id)).count();
                assert!(
                    counted <= p.max_workers,
                    "seed {seed} step {step}: pool {} has {counted} > max {}: {what}",
                    p.name,
                    p.max_workers
                );
                if let Some(&t) = last_up.get(&p.name) {
                    assert!(
                        now >= t + p.scale_up_cooldown.as_millis() as u64,
                        "seed {seed} step {step}: pool {} scaled up at {now}, last at {t}, \
                         cooldown {:?}: {what}",
                        p.name,
                        p.scale_up_cooldown
                    );
                }
                last_up.insert(p.name.clone(), now);
            }
        }
        // A fixed point: the same demand at the same instant, nothing changed meanwhile, asks
        // for nothing more — unless the first tick was cut short by a cap or a failure, or
        // lost a job (its replacement counted once, the host's requeue not yet in the demand).
        let cut = report.capped
            || !report.provision_failures.is_empty()
            || !report.lost_jobs.is_empty()
            || !report.failed.is_empty()
            // A warm worker, once provisioned, is existing capacity: demand left waiting
            // (a higher pool's cooldown holds its provisions back, without spilling) is
            // placed on it, and its pool provisions its warm worker again. (Before
            // 2026-12-07 it also served demand in priority order before a lower pool's
            // idle worker, which became surplus; idle workers free to serve now come first.)
            || report.pools.as_ref().is_some_and(|p| p.pools.iter().any(|d| d.warm > 0))
            // The same for a takeback's new worker in a pool that keeps workers warm (since
            // 2026-12-07, make before break): once on its way it is the taker's warm reserve,
            // so the taker's warm idle worker serves the job now and the giver's idle worker,
            // kept by the takeback, is surplus at once (seed 495).
            || report.pools.as_ref().is_some_and(|p| {
                p.pools
                    .iter()
                    .any(|d| !d.taken_back.is_empty() && d.min_ready > 0 && d.ready > 0)
            })
            || report.decisions.iter().any(|d| {
                d.contains("max_provision_per_tick")
                    || d.contains("global max_workers")
                    || d.contains("not made")
                    || d.contains("stopped")
            });
        if !cut {
            let again = f.manager.tick(&demand);
            let retired = again
                .terminated
                .iter()
                .filter(|t| t.reason == TerminationReason::ScaledDown)
                .count();
            assert!(
                again.provisioned.is_empty() && retired == 0 && again.drained.is_empty(),
                "seed {seed} step {step}: a second tick at once acted: {:#?}\nfirst: {what}",
                again.decisions
            );
        }
    }
}

/// Seeds 1..=30, or `POOL_SEEDS=a..b` (a failure names its seed; the run is the same on
/// every backend and machine).
#[test]
fn pools_keep_their_promises_over_random_operations() {
    let (first, last) = std::env::var("POOL_SEEDS")
        .ok()
        .and_then(|s| {
            let (a, b) = s.split_once("..")?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .unwrap_or((1u64, 30u64));
    for seed in first..=last {
        run(seed);
    }
}

/// `set_pools` / `remove_pool` / `add_pool` on one thread, ticks on another, the host's own
/// provisions of pool specs and interruption notices on a third, against providers whose
/// creates take a while. Once they stop, two ticks leave every worker in service owned by a
/// pool whose template it fits, and nothing leaked.
#[test]
fn pool_changes_racing_ticks_leave_every_worker_owned_once_quiet() {
    use std::sync::atomic::{AtomicBool, Ordering};
    for seed in 1..=3u64 {
        let f = Arc::new(Fixture::new(WorkerLifecycleConfig {
            max_workers: 12,
            max_provision_per_tick: 4,
            scale_up_cooldown: secs(0),
            scale_down_cooldown: secs(0),
            ..config()
        }));
        let providers: Vec<Arc<TestProvider>> = PROVIDERS
            .iter()
            .map(|n| {
                let p = TestProvider::new(n);
                *p.create_delay.lock() = Some(ms(2));
                f.manager.register_provider(p.clone()).unwrap();
                p
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        {
            let (f, stop) = (f.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut rng = Rng(seed * 31);
                while !stop.load(Ordering::Relaxed) {
                    match rng.below(3) {
                        0 => {
                            let keep: Vec<u64> = (0..4).filter(|_| rng.below(2) == 0).collect();
                            let pools = keep
                                .into_iter()
                                .map(|k| random_pool(&mut rng, &format!("p{k}")))
                                .collect();
                            let _ = f.manager.set_pools(pools);
                        }
                        1 => {
                            let _ = f.manager.remove_pool(&format!("p{}", rng.below(4)));
                        }
                        _ => {
                            let name = format!("p{}", rng.below(4));
                            let _ = f.manager.add_pool(random_pool(&mut rng, &name));
                        }
                    }
                    std::thread::sleep(ms(1));
                }
            }));
        }
        {
            let (f, stop) = (f.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut rng = Rng(seed * 77);
                let mut jobs = 0;
                while !stop.load(Ordering::Relaxed) {
                    let all = workers(&f);
                    for w in &all {
                        let _ = f.registry.heartbeat(&w.id);
                        if w.state == WorkerState::Creating && rng.below(2) == 0 {
                            let _ = f.registry.update_state(&w.id, WorkerState::Ready);
                        }
                        if w.current_job.is_some() && rng.below(4) == 0 {
                            let _ = f.registry.release_from_job(&w.id, None);
                        }
                    }
                    let r = requirement(&mut rng);
                    jobs += 1;
                    let _ = f.registry.claim(&r.filter(), job(&format!("j{jobs}")));
                    if !all.is_empty() && rng.below(4) == 0 {
                        let w = &all[rng.index(all.len())];
                        let _ = f.manager.notify_interruption(&w.id, f.now() + 5_000);
                    }
                    if rng.below(6) == 0 {
                        // The host's own provision of a pool's spec (it carries the label).
                        if let Some(pool) = f.manager.pools().first() {
                            let spec = pool.worker_spec();
                            let _ = f.manager.provision_worker(&pool.provider_id, spec);
                        }
                    }
                    std::thread::sleep(ms(1));
                }
            }));
        }
        {
            let (f, stop) = (f.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut rng = Rng(seed * 13);
                while !stop.load(Ordering::Relaxed) {
                    f.advance(ms(rng.below(3_000)));
                    let demand = Demand {
                        requirements: (0..3).map(|_| requirement(&mut rng)).collect(),
                    };
                    f.manager.tick(&demand);
                }
            }));
        }
        std::thread::sleep(ms(1500));
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        for w in workers(&f) {
            let _ = f.registry.heartbeat(&w.id);
        }
        let quiet = f.manager.tick(Demand::new());
        f.manager.tick(Demand::new());
        check_pools_own_their_workers(&f, seed, 0, &format!("quiet {:#?}", quiet.decisions));
        f.assert_no_leak_of(&providers.iter().collect::<Vec<_>>());
    }
}
