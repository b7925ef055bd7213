//! The multi-pool policy, case by case (a table per rule); by property in `proptests.rs`.

use std::time::Duration;

use super::super::demand::Requirement;
use super::super::pool::POOL_LABEL;
use super::*;
use crate::ids::ProviderId;
use crate::worker::{Architecture, ResourceRequirements, WorkerSpec};

pub(super) const NOW: Timestamp = 1_700_000_000_000;

fn pool(name: &str, priority: i32, spec: WorkerSpec) -> Pool {
    Pool::new(name, ProviderId::new(format!("prov-{name}")).unwrap(), spec)
        .unwrap()
        .with_priority(priority)
}

fn cpu_spec() -> WorkerSpec {
    WorkerSpec {
        resources: ResourceRequirements {
            cpu_cores: 4.0,
            memory_bytes: 8 << 30,
            ..Default::default()
        },
        ..WorkerSpec::new("cpu")
    }
}

fn gpu_spec() -> WorkerSpec {
    WorkerSpec {
        resources: ResourceRequirements {
            cpu_cores: 16.0,
            memory_bytes: 64 << 30,
            gpu_count: 1,
            gpu_type: Some("a100".into()),
            ..Default::default()
        },
        ..WorkerSpec::new("gpu").with_label("gpu", "a100")
    }
}

fn gpu_job(n: usize) -> Requirement {
    Requirement::new(n).label("gpu", "a100")
}

fn idle(ready: usize) -> PoolFleet {
    PoolFleet {
        ready,
        registered: ready,
        ..PoolFleet::default()
    }
}

fn backed_off(secs: u64) -> PoolFleet {
    PoolFleet {
        blocked: Some(PoolBlock::BackedOff {
            failures: 3,
            until: NOW + secs * 1000,
        }),
        ..PoolFleet::default()
    }
}

/// `f` whose last scale action (so its scale-down cooldown, 60 s by default) was `secs` ago.
fn resting(f: PoolFleet, secs: u64) -> PoolFleet {
    PoolFleet {
        last_scale_action: Some(NOW - secs * 1000),
        ..f
    }
}

/// `f` whose last scale-up (so its scale-up cooldown, 10 s by default) was `secs` ago.
fn grown(f: PoolFleet, secs: u64) -> PoolFleet {
    PoolFleet {
        last_scale_up: Some(NOW - secs * 1000),
        last_scale_action: Some(NOW - secs * 1000),
        ..f
    }
}

struct Case {
    pools: Vec<Pool>,
    fleet: Vec<PoolFleet>,
    demand: Demand,
    max_workers: usize,
    max_per_tick: usize,
}

impl Case {
    fn new(pools: Vec<Pool>, fleet: Vec<PoolFleet>, demand: impl Into<Demand>) -> Self {
        Case {
            pools,
            fleet,
            demand: demand.into(),
            max_workers: 100,
            max_per_tick: 50,
        }
    }

    fn run(&self) -> PoolPlan {
        let total = self.fleet.iter().map(|f| f.registered + f.in_flight).sum();
        plan(&PlanInputs {
            now: NOW,
            pools: &self.pools,
            fleet: &self.fleet,
            demand: &self.demand,
            max_workers: self.max_workers,
            total,
            max_per_tick: self.max_per_tick,
        })
    }
}

/// `(pool, provision, retire)` of every pool, in plan order.
fn moves(plan: &PoolPlan) -> Vec<(&str, usize, usize)> {
    plan.pools
        .iter()
        .map(|d| (d.pool.as_str(), d.provision, d.retire))
        .collect()
}

#[test]
fn priorities_decide_which_satisfying_pool_grows() {
    type Moves = Vec<(&'static str, usize, usize)>;
    let cases: Vec<(&str, Case, Moves)> = vec![
        (
            "higher priority first",
            Case::new(
                vec![pool("low", 0, cpu_spec()), pool("high", 5, cpu_spec())],
                vec![idle(0), idle(0)],
                3,
            ),
            vec![("high", 3, 0), ("low", 0, 0)],
        ),
        (
            "ties by name",
            Case::new(
                vec![pool("b", 1, cpu_spec()), pool("a", 1, cpu_spec())],
                vec![idle(0), idle(0)],
                2,
            ),
            vec![("a", 2, 0), ("b", 0, 0)],
        ),
        (
            "a gpu job grows the gpu pool only, a plain job the higher pool",
            Case::new(
                vec![pool("cpu", 0, cpu_spec()), pool("gpu", 1, gpu_spec())],
                vec![idle(0), idle(0)],
                Demand::new()
                    .with(gpu_job(2))
                    .with(Requirement::new(1).architecture(Architecture::Amd64)),
            ),
            vec![("gpu", 3, 0), ("cpu", 0, 0)],
        ),
        (
            "the most constrained job gets the idle gpu worker; the plain job a cpu one",
            Case::new(
                vec![pool("cpu", 10, cpu_spec()), pool("gpu", 0, gpu_spec())],
                vec![idle(0), idle(1)],
                Demand::new().with(Requirement::new(1)).with(gpu_job(1)),
            ),
            vec![("cpu", 1, 0), ("gpu", 0, 0)],
        ),
        (
            "idle capacity in a lower pool serves before anything new (while it may not scale \
             in: else the higher pool takes the demand back, see takeback_*)",
            Case::new(
                vec![pool("spot", 5, cpu_spec()), pool("ondemand", 0, cpu_spec())],
                vec![idle(0), resting(idle(3), 10)],
                3,
            ),
            vec![("spot", 0, 0), ("ondemand", 0, 0)],
        ),
    ];
    for (name, case, expected) in cases {
        let plan = case.run();
        assert_eq!(moves(&plan), expected, "{name}: {:#?}", plan.explanation);
    }
}

#[test]
fn caps_per_pool_global_and_per_tick() {
    // Pool max: "a" has room for 1, the rest spills to "b" with the reason.
    let mut case = Case::new(
        vec![
            pool("a", 1, cpu_spec()).with_max_workers(2),
            pool("b", 0, cpu_spec()),
        ],
        vec![
            PoolFleet {
                busy: 1,
                registered: 1,
                ..PoolFleet::default()
            },
            idle(0),
        ],
        5,
    );
    let plan = case.run();
    assert_eq!(moves(&plan), vec![("a", 1, 0), ("b", 4, 0)]);
    let b = plan.pool("b").unwrap();
    assert!(
        b.explanation
            .contains("4 spilled from a (at max_workers 2) to b"),
        "{}",
        b.explanation
    );
    assert!(plan.pool("a").unwrap().explanation.starts_with(
        "a +1: demand 1 (1 any), ready 0, busy 1, starting 0, in flight 0, total 1/2"
    ));

    // Global max: 1 registered + 1 in flight of 4 leaves 2, given by priority.
    case.max_workers = 4;
    case.fleet[1] = PoolFleet {
        in_flight: 1,
        ..PoolFleet::default()
    };
    let plan = case.run();
    // The in-flight worker of "b" serves one job; "a" takes 1, "b" 3 — capped to 1 left.
    assert_eq!(moves(&plan), vec![("a", 1, 0), ("b", 1, 0)]);
    assert!(plan.pool("b").unwrap().limits[0] == "global max_workers 4");

    // Per tick: 3 in all.
    let mut case = Case::new(
        vec![pool("a", 1, cpu_spec()), pool("g", 0, gpu_spec())],
        vec![idle(0), idle(0)],
        Demand::new().with(Requirement::new(2)).with(gpu_job(2)),
    );
    case.max_per_tick = 3;
    let plan = case.run();
    assert_eq!(moves(&plan), vec![("a", 2, 0), ("g", 1, 0)]);
    assert_eq!(
        plan.pool("g").unwrap().limits,
        vec!["max_provision_per_tick 3"]
    );
    assert_eq!(plan.pool("g").unwrap().serves[0].provisioned, 1);
}

#[test]
fn cooldowns_pace_a_pool_without_spilling() {
    let recently = |ago: u64| PoolFleet {
        last_scale_up: Some(NOW - ago * 1000),
        last_scale_action: Some(NOW - ago * 1000),
        ..PoolFleet::default()
    };
    let pools = vec![
        pool("a", 1, cpu_spec()).with_scale_up_cooldown(Duration::from_secs(10)),
        pool("b", 0, cpu_spec()),
    ];
    let plan = Case::new(pools.clone(), vec![recently(4), idle(0)], 2).run();
    assert_eq!(moves(&plan), vec![("a", 0, 0), ("b", 0, 0)]);
    let a = plan.pool("a").unwrap();
    assert_eq!(a.wanted, 2);
    assert_eq!(a.limits, vec!["scale-up cooldown for 6 s more"]);
    let plan = Case::new(pools.clone(), vec![recently(10), idle(0)], 2).run();
    assert_eq!(moves(&plan), vec![("a", 2, 0), ("b", 0, 0)]);

    // Scale-down waits for the pool's own scale-down cooldown after any action.
    let pools = vec![pool("a", 0, cpu_spec()).with_scale_down_cooldown(Duration::from_secs(30))];
    let mut fleet = recently(20);
    fleet.ready = 3;
    fleet.registered = 3;
    let plan = Case::new(pools.clone(), vec![fleet.clone()], 1).run();
    assert_eq!(moves(&plan), vec![("a", 0, 0)]);
    assert_eq!(
        plan.pools[0].limits,
        vec!["scale-down cooldown for 10 s more"]
    );
    fleet.last_scale_action = Some(NOW - 30_000);
    let plan = Case::new(pools, vec![fleet], 1).run();
    assert_eq!(moves(&plan), vec![("a", 0, 2)]);
    assert!(plan.pools[0].explanation.starts_with("a -2: demand 1"));
}

#[test]
fn fallback_spills_and_recovery_takes_it_back() {
    let pools = vec![
        pool("gpu-spot", 10, gpu_spec()).with_max_workers(8),
        pool("gpu-ondemand", 0, gpu_spec()).with_max_workers(4),
    ];
    // Spot backs off: its demand goes to on-demand, and both lines say so.
    let plan = Case::new(pools.clone(), vec![backed_off(40), idle(0)], gpu_job(3)).run();
    assert_eq!(
        moves(&plan),
        vec![("gpu-spot", 0, 0), ("gpu-ondemand", 3, 0)]
    );
    let ondemand = plan.pool("gpu-ondemand").unwrap();
    assert!(
        ondemand.explanation.starts_with(
            "gpu-ondemand +3: demand 3 (3 gpu=a100), ready 0, busy 0, starting 0, in flight 0, \
             total 0/4, min ready 0, wanted 3; 3 spilled from gpu-spot (backed off 40 s) to \
             gpu-ondemand"
        ),
        "{}",
        ondemand.explanation
    );
    assert!(plan
        .pool("gpu-spot")
        .unwrap()
        .explanation
        .ends_with("; backed off 40 s; 3 spilled to gpu-ondemand (backed off 40 s)"));
    assert_eq!(ondemand.spilled_in[0].count, 3);

    // No capacity and a missing provider spill the same way.
    let no_capacity = PoolFleet {
        blocked: Some(PoolBlock::NoCapacity { until: NOW + 5_500 }),
        ..PoolFleet::default()
    };
    let plan = Case::new(pools.clone(), vec![no_capacity, idle(0)], gpu_job(1)).run();
    assert_eq!(
        plan.pool("gpu-ondemand").unwrap().spilled_in[0].reason,
        "no capacity, retry in 5.5 s"
    );
    let missing = PoolFleet {
        blocked: Some(PoolBlock::NoProvider),
        ..PoolFleet::default()
    };
    let plan = Case::new(pools.clone(), vec![missing, idle(0)], gpu_job(1)).run();
    assert_eq!(plan.pool("gpu-ondemand").unwrap().provision, 1);

    // Recovered: on-demand's 3 are busy, new demand goes back to spot.
    let busy3 = PoolFleet {
        busy: 3,
        registered: 3,
        last_scale_up: Some(NOW - 60_000),
        last_scale_action: Some(NOW - 60_000),
        ..PoolFleet::default()
    };
    let plan = Case::new(pools.clone(), vec![idle(0), busy3], gpu_job(2)).run();
    assert_eq!(
        moves(&plan),
        vec![("gpu-spot", 2, 0), ("gpu-ondemand", 0, 0)]
    );

    // Demand falling: spot's idle worker serves, on-demand's idle ones are retired.
    let ondemand_idle = PoolFleet {
        ready: 3,
        registered: 3,
        last_scale_action: Some(NOW - 600_000),
        ..PoolFleet::default()
    };
    let plan = Case::new(pools.clone(), vec![idle(1), ondemand_idle], gpu_job(1)).run();
    assert_eq!(
        moves(&plan),
        vec![("gpu-spot", 0, 0), ("gpu-ondemand", 0, 3)]
    );

    // Everything blocked or full: the demand waits, with every reason.
    let full = PoolFleet {
        busy: 4,
        registered: 4,
        ..PoolFleet::default()
    };
    let plan = Case::new(pools, vec![backed_off(40), full], gpu_job(2)).run();
    assert_eq!(plan.provision(), 0);
    assert_eq!(
        plan.unmet,
        vec![UnmetDemand {
            requirement: 0,
            count: 2,
            reason: "gpu-spot backed off 40 s; gpu-ondemand at max_workers 4".to_owned(),
        }]
    );
    assert!(plan
        .explanation
        .last()
        .unwrap()
        .starts_with("waiting: 2 job(s) needing gpu=a100: gpu-spot backed off 40 s"));
}

#[test]
fn takeback_returns_a_fallbacks_demand_to_the_recovered_pool() {
    type Moves = Vec<(&'static str, usize, usize)>;
    let spot = || pool("gpu-spot", 10, gpu_spec()).with_max_workers(8);
    let ondemand = || pool("gpu-ondemand", 0, gpu_spec()).with_max_workers(4);
    let both = || vec![spot(), ondemand()];
    // On-demand took spot's demand while spot backed off; its 3 workers are idle again
    // (their jobs done) and 3 new gpu jobs wait. Spot can provide again. Make before break
    // (since 2026-12-07): spot provisions for the demand, on-demand retires nothing in that
    // plan — its idle workers serve until spot's are up, and then retire as surplus. (Before,
    // on-demand retired as many idle workers in the same plan: `("gpu-ondemand", 0, 3)`.)
    let fallback = || resting(idle(3), 600);
    let booting = |starting: usize, in_flight: usize| PoolFleet {
        starting,
        in_flight,
        registered: starting,
        ..PoolFleet::default()
    };
    let busy = |n: usize| PoolFleet {
        busy: n,
        registered: n,
        ..PoolFleet::default()
    };
    let cases: Vec<(&str, Case, Moves)> = vec![
        (
            "recovered spot takes back all of it; on-demand's idle workers keep serving",
            Case::new(both(), vec![idle(0), fallback()], gpu_job(3)),
            vec![("gpu-spot", 3, 0), ("gpu-ondemand", 0, 0)],
        ),
        (
            "spot's new workers still boot: no new takeback, on-demand keeps serving",
            Case::new(both(), vec![booting(3, 0), fallback()], gpu_job(3)),
            vec![("gpu-spot", 0, 0), ("gpu-ondemand", 0, 0)],
        ),
        (
            "the same with spot's creates still in flight",
            Case::new(both(), vec![booting(0, 3), fallback()], gpu_job(3)),
            vec![("gpu-spot", 0, 0), ("gpu-ondemand", 0, 0)],
        ),
        (
            "no takeback while spot has a worker on its way, however few",
            Case::new(both(), vec![booting(1, 0), fallback()], gpu_job(3)),
            vec![("gpu-spot", 0, 0), ("gpu-ondemand", 0, 0)],
        ),
        (
            "nor does another pool above on-demand while spot's new workers boot (seed 175 \
             of pools_seeds: else both took the same jobs back)",
            Case::new(
                vec![spot(), pool("gpu-reserved", 5, gpu_spec()), ondemand()],
                vec![booting(3, 0), idle(0), fallback()],
                gpu_job(3),
            ),
            vec![
                ("gpu-spot", 0, 0),
                ("gpu-reserved", 0, 0),
                ("gpu-ondemand", 0, 0),
            ],
        ),
        (
            "spot's workers up: they serve, on-demand's idle ones are surplus and retire",
            Case::new(both(), vec![idle(3), fallback()], gpu_job(3)),
            vec![("gpu-spot", 0, 0), ("gpu-ondemand", 0, 3)],
        ),
        (
            "spot's workers up, on-demand in its scale-down cooldown: it keeps them for now",
            Case::new(both(), vec![idle(3), resting(idle(3), 30)], gpu_job(3)),
            vec![("gpu-spot", 0, 0), ("gpu-ondemand", 0, 0)],
        ),
        (
            "spot still backed off: on-demand keeps serving",
            Case::new(both(), vec![backed_off(40), fallback()], gpu_job(3)),
            vec![("gpu-spot", 0, 0), ("gpu-ondemand", 0, 0)],
        ),
        (
            "spot in its scale-up cooldown: not yet",
            Case::new(both(), vec![grown(idle(0), 5), fallback()], gpu_job(3)),
            vec![("gpu-spot", 0, 0), ("gpu-ondemand", 0, 0)],
        ),
        (
            "on-demand in its scale-down cooldown: not yet",
            Case::new(both(), vec![idle(0), resting(idle(3), 30)], gpu_job(3)),
            vec![("gpu-spot", 0, 0), ("gpu-ondemand", 0, 0)],
        ),
        (
            "never a busy worker: busy on-demand workers stay, new demand goes to spot",
            Case::new(both(), vec![idle(0), resting(busy(3), 600)], gpu_job(2)),
            vec![("gpu-spot", 2, 0), ("gpu-ondemand", 0, 0)],
        ),
        (
            "spot's own idle worker serves first; the rest is taken back, and on-demand's \
             idle worker that no job needs now is surplus",
            Case::new(both(), vec![idle(1), fallback()], gpu_job(3)),
            vec![("gpu-spot", 2, 0), ("gpu-ondemand", 0, 1)],
        ),
        (
            "as much as spot's max_workers leaves room for",
            Case::new(
                vec![spot().with_max_workers(2), ondemand()],
                vec![idle(0), fallback()],
                gpu_job(3),
            ),
            vec![("gpu-spot", 2, 0), ("gpu-ondemand", 0, 0)],
        ),
        (
            "on-demand keeps its min_ready warm",
            Case::new(
                vec![spot(), ondemand().with_min_ready(1)],
                vec![idle(0), fallback()],
                gpu_job(2),
            ),
            vec![("gpu-spot", 2, 0), ("gpu-ondemand", 0, 0)],
        ),
        (
            "pools of equal priority do not take from each other",
            Case::new(
                vec![spot().with_priority(0), ondemand()],
                vec![idle(0), fallback()],
                gpu_job(3),
            ),
            vec![("gpu-ondemand", 0, 0), ("gpu-spot", 0, 0)],
        ),
        (
            "demand spot does not satisfy stays",
            Case::new(
                vec![
                    spot(),
                    pool("gpu-zone-b", 0, gpu_spec().with_label("zone", "b")),
                ],
                vec![idle(0), fallback()],
                gpu_job(3).label("zone", "b"),
            ),
            vec![("gpu-spot", 0, 0), ("gpu-zone-b", 0, 0)],
        ),
    ];
    for (name, case, expected) in cases {
        let plan = case.run();
        assert_eq!(moves(&plan), expected, "{name}: {:#?}", plan.explanation);
    }

    // The caps: at the global max nothing is taken back (a retirement frees room only once it
    // is done); per tick, the taker's provisions count (the giver retires nothing).
    let mut at_max = Case::new(both(), vec![idle(0), fallback()], gpu_job(3));
    at_max.max_workers = 3;
    assert_eq!(
        moves(&at_max.run()),
        vec![("gpu-spot", 0, 0), ("gpu-ondemand", 0, 0)]
    );
    let mut per_tick = Case::new(both(), vec![idle(0), fallback()], gpu_job(3));
    per_tick.max_per_tick = 1;
    let plan = per_tick.run();
    assert_eq!(
        moves(&plan),
        vec![("gpu-spot", 1, 0), ("gpu-ondemand", 0, 0)]
    );
    // The per-tick cap, which the next tick lifts, says so on the taker's line (since
    // 2026-12-07; before, a takeback cut short by it read as complete).
    assert_eq!(
        plan.pool("gpu-spot").unwrap().limits,
        vec!["max_provision_per_tick 1"]
    );

    // Both lines say it.
    let plan = Case::new(both(), vec![idle(0), fallback()], gpu_job(3)).run();
    let (s, o) = (
        plan.pool("gpu-spot").unwrap(),
        plan.pool("gpu-ondemand").unwrap(),
    );
    assert_eq!(
        o.explanation,
        "gpu-ondemand 0: demand 0, ready 3, busy 0, starting 0, in flight 0, total 3/4, min \
         ready 0, wanted 0; gives back 3 job(s) of gpu=a100 to recovered gpu-spot once its \
         new workers are up"
    );
    assert_eq!(
        s.explanation,
        "gpu-spot +3: demand 3 (3 gpu=a100), ready 0, busy 0, starting 0, in flight 0, total \
         0/8, min ready 0, wanted 3; takes back 3 job(s) of gpu=a100 from gpu-ondemand"
    );
    assert_eq!((s.taken_back.len(), o.given_back.len()), (1, 1));
    assert_eq!(s.taken_back[0], o.given_back[0]);
    assert_eq!(
        (s.taken_back[0].source.as_str(), s.taken_back[0].count),
        ("gpu-ondemand", 3)
    );
    assert_eq!(s.serves[0].provisioned, 3);
    assert!(o.serves.is_empty(), "{:?}", o.serves);
    assert_eq!((o.retire, o.given_back[0].count), (0, 3));
}

#[test]
fn unschedulable_requirements_name_the_constraint_no_pool_meets() {
    let arm = WorkerSpec {
        architecture: Architecture::Arm64,
        ..cpu_spec()
    };
    let pools = vec![
        pool("cpu", 0, cpu_spec()),
        pool("gpu", 1, gpu_spec()),
        pool("arm", 0, arm),
        pool("off", 0, cpu_spec().with_capability("fpga")).with_max_workers(0),
    ];
    let fleet = vec![idle(0); 4];
    let cases: Vec<(Requirement, &str)> = vec![
        (
            Requirement::new(2).label("gpu", "h100"),
            "no pool offers label gpu=h100",
        ),
        (
            Requirement::new(1)
                .capability("docker")
                .label("gpu", "a100"),
            "no pool offers capability docker",
        ),
        (
            gpu_job(1).architecture(Architecture::Arm64),
            "no single pool offers all of it (label gpu=a100: gpu; architecture arm64: arm)",
        ),
        (
            Requirement::new(1).resources(ResourceRequirements {
                cpu_cores: 64.0,
                gpu_count: 2,
                ..Default::default()
            }),
            "no pool offers cpu>=64 (largest 16), gpu>=2 (largest 1)",
        ),
        (
            Requirement::new(1).architecture(Architecture::Arm),
            "no pool offers architecture arm",
        ),
        (
            Requirement::new(1).label(POOL_LABEL, "nope"),
            "no pool offers pool nope",
        ),
        (
            Requirement::new(1).capability("fpga"),
            "only pools with max_workers 0 satisfy it (off)",
        ),
    ];
    for (r, reason) in cases {
        let demand = Demand::new().with(Requirement::new(1)).with(r.clone());
        let plan = Case::new(pools.clone(), fleet.clone(), demand).run();
        assert_eq!(plan.unschedulable.len(), 1, "{r}");
        let u = &plan.unschedulable[0];
        assert_eq!((u.requirement, u.count), (1, r.count));
        assert_eq!(u.reason, reason, "{r}");
        assert_eq!(u.description, r.to_string());
        // The schedulable requirement is still served.
        assert_eq!(plan.provision(), 1, "{r}");
        assert!(plan
            .explanation
            .iter()
            .any(|l| l.starts_with("unschedulable: ")));
    }
    let plan = Case::new(vec![], vec![], 3).run();
    assert_eq!(plan.unschedulable[0].reason, "no pools");
    // A requirement with count 0 is nothing, not unschedulable.
    let plan = Case::new(pools, fleet, Requirement::new(0).label("x", "y")).run();
    assert!(plan.unschedulable.is_empty());
}

#[test]
fn warm_pools_and_scale_in_of_idle_workers_only() {
    let pools = vec![
        pool("warm", 1, cpu_spec()).with_min_ready(2),
        pool("cold", 0, gpu_spec()).with_min_ready(1),
    ];
    // Nothing pending: each pool fills its warm pool (the blocked one cannot).
    let plan = Case::new(pools.clone(), vec![idle(0), backed_off(10)], 0).run();
    assert_eq!(moves(&plan), vec![("warm", 2, 0), ("cold", 0, 0)]);
    assert_eq!(plan.pools[0].warm, 2);
    assert_eq!(plan.pools[1].limits, vec!["min_ready: backed off 10 s"]);
    // A starting worker counts toward the warm pool.
    let starting = PoolFleet {
        starting: 1,
        registered: 1,
        ..PoolFleet::default()
    };
    let plan = Case::new(pools.clone(), vec![starting, idle(1)], 0).run();
    assert_eq!(moves(&plan), vec![("warm", 1, 0), ("cold", 0, 0)]);
    // Busy workers are never retired; idle ones above demand + min_ready are.
    let busy = PoolFleet {
        ready: 3,
        busy: 5,
        registered: 8,
        ..PoolFleet::default()
    };
    let plan = Case::new(pools, vec![busy, idle(0)], 0).run();
    assert_eq!(plan.pools[0].retire, 1);
    assert_eq!(plan.pools[1].provision, 1);
}

#[test]
fn idle_workers_serve_before_workers_still_starting_whatever_their_pools_priority() {
    type Moves = Vec<(&'static str, usize, usize)>;
    // A warm pool (min_ready 1) whose warm worker still boots, and a lower pool with an idle
    // worker; gpu jobs wait. The idle worker can run a job now: it serves first, and the
    // booting worker stays warm. (Before 2026-12-07 the booting worker served the job, the
    // idle one was retired as surplus and the warm pool wanted its warm worker again.)
    let warm = || pool("warm", 10, gpu_spec()).with_min_ready(1);
    let low = || pool("low", 0, gpu_spec());
    let both = || vec![warm(), low()];
    let booting = |starting: usize, in_flight: usize| PoolFleet {
        starting,
        in_flight,
        registered: starting,
        ..PoolFleet::default()
    };
    let fallback = || resting(idle(1), 600);
    let cases: Vec<(&str, Case, Moves, (usize, usize))> = vec![
        (
            "the idle worker serves the job, the booting one is the warm pool's",
            Case::new(
                both(),
                vec![grown(booting(1, 0), 5), fallback()],
                gpu_job(1),
            ),
            vec![("warm", 0, 0), ("low", 0, 0)],
            (0, 1),
        ),
        (
            "the same with the warm worker's create still in flight",
            Case::new(
                both(),
                vec![grown(booting(0, 1), 5), fallback()],
                gpu_job(1),
            ),
            vec![("warm", 0, 0), ("low", 0, 0)],
            (0, 1),
        ),
        (
            "the same while the warm pool's provider backs off",
            Case::new(
                both(),
                vec![
                    PoolFleet {
                        blocked: backed_off(40).blocked,
                        ..booting(1, 0)
                    },
                    fallback(),
                ],
                gpu_job(1),
            ),
            vec![("warm", 0, 0), ("low", 0, 0)],
            (0, 1),
        ),
        (
            "two jobs: one on the idle worker, one on the booting one; the warm pool wants \
             its warm worker again (its cooldown holds it)",
            Case::new(
                both(),
                vec![grown(booting(1, 0), 5), fallback()],
                gpu_job(2),
            ),
            vec![("warm", 0, 0), ("low", 0, 0)],
            (1, 1),
        ),
        (
            "the idle worker a pool keeps warm serves after the others' idle workers: the \
             lower pool's serves the job, nothing moves (the warm pool in its cooldown)",
            Case::new(both(), vec![grown(idle(1), 5), fallback()], gpu_job(1)),
            vec![("warm", 0, 0), ("low", 0, 0)],
            (0, 1),
        ),
        (
            "a pool's workers on their way keep it warm: its idle worker is free to serve, \
             first by priority, and the lower pool's is surplus",
            Case::new(
                both(),
                vec![
                    grown(
                        PoolFleet {
                            ready: 1,
                            registered: 2,
                            ..booting(1, 0)
                        },
                        5,
                    ),
                    fallback(),
                ],
                gpu_job(1),
            ),
            vec![("warm", 0, 0), ("low", 0, 1)],
            (1, 0),
        ),
        (
            "after a takeback: the taker's booting worker serves, the giver's last idle \
             worker is the one it keeps warm (not taken, so not provisioned again)",
            Case::new(
                vec![
                    pool("high", 10, gpu_spec()),
                    pool("low", 0, gpu_spec()).with_min_ready(1),
                ],
                vec![grown(booting(1, 0), 0), resting(idle(1), 0)],
                gpu_job(1),
            ),
            vec![("high", 0, 0), ("low", 0, 0)],
            (1, 0),
        ),
        (
            "no takeback while the warm pool has a worker on its way (since 2026-12-07; \
             before, past its scale-up cooldown, it provisioned for the job and the lower \
             pool's idle worker retired in the same plan: (\"warm\", 1, 0), (\"low\", 0, 1))",
            Case::new(
                both(),
                vec![grown(booting(1, 0), 30), fallback()],
                gpu_job(1),
            ),
            vec![("warm", 0, 0), ("low", 0, 0)],
            (0, 1),
        ),
        (
            "its warm worker up, past its scale-up cooldown, the warm pool takes the job back: \
             it provisions, the lower pool's idle worker keeps serving until that one is up",
            Case::new(both(), vec![grown(idle(1), 30), fallback()], gpu_job(1)),
            vec![("warm", 1, 0), ("low", 0, 0)],
            (0, 0),
        ),
    ];
    for (what, case, want, (warm_serves, low_serves)) in cases {
        let plan = case.run();
        assert_eq!(moves(&plan), want, "{what}: {:#?}", plan.explanation);
        let existing = |pool: &str| -> usize {
            plan.pool(pool)
                .unwrap()
                .serves
                .iter()
                .map(|s| s.existing)
                .sum()
        };
        let first = &plan.pools[0].pool;
        assert_eq!(
            (existing(first), existing("low")),
            (warm_serves, low_serves),
            "{what}: {:#?}",
            plan.explanation
        );
    }
}
