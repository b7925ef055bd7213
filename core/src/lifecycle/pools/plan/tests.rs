//! The multi-pool policy, case by case (a table per rule) and by property.

use std::time::Duration;

use proptest::prelude::*;

use super::super::demand::Requirement;
use super::super::pool::POOL_LABEL;
use super::*;
use crate::ids::ProviderId;
use crate::worker::{Architecture, ResourceRequirements, WorkerSpec};

const NOW: Timestamp = 1_700_000_000_000;

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
            "idle capacity in a lower pool serves before anything new",
            Case::new(
                vec![pool("spot", 5, cpu_spec()), pool("ondemand", 0, cpu_spec())],
                vec![idle(0), idle(3)],
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

// ----- property ----------------------------------------------------------------------------

fn arb_spec() -> impl Strategy<Value = WorkerSpec> {
    (
        prop::option::of(prop::sample::select(vec!["a100", "h100"])),
        prop::bool::ANY,
        prop::sample::select(vec![Architecture::Amd64, Architecture::Arm64]),
        prop::sample::select(vec![2.0, 8.0]),
        0u32..3,
    )
        .prop_map(|(gpu, docker, arch, cpu, gpus)| {
            let mut spec = WorkerSpec::new("img");
            if let Some(g) = gpu {
                spec.labels.insert("gpu".into(), g.into());
            }
            if docker {
                spec.capabilities.insert("docker".into());
            }
            spec.architecture = arch;
            spec.resources.cpu_cores = cpu;
            spec.resources.gpu_count = gpus;
            spec
        })
}

fn arb_requirement() -> impl Strategy<Value = Requirement> {
    (
        prop::option::of(prop::sample::select(vec!["a100", "h100", "v100"])),
        prop::bool::weighted(0.3),
        prop::option::of(prop::sample::select(vec![
            Architecture::Amd64,
            Architecture::Arm64,
        ])),
        prop::sample::select(vec![0.0, 2.0, 4.0]),
        0u32..3,
        0usize..12,
    )
        .prop_map(|(gpu, docker, arch, cpu, gpus, count)| {
            let mut r = Requirement::new(count);
            if let Some(g) = gpu {
                r.labels.insert("gpu".into(), g.into());
            }
            if docker {
                r.capabilities.insert("docker".into());
            }
            r.architecture = arch;
            r.resources.cpu_cores = cpu;
            r.resources.gpu_count = gpus;
            r
        })
}

fn arb_pool_and_fleet() -> impl Strategy<Value = (Pool, PoolFleet)> {
    (
        arb_spec(),
        0usize..3,
        0usize..8,
        -2i32..3,
        (0usize..4, 0usize..4, 0usize..3, 0usize..3, 0usize..3),
        0u8..4,
        prop::option::of(0u64..30),
        prop::option::of(0u64..90),
    )
        .prop_map(
            |(spec, min_ready, max, priority, counts, block, up, action)| {
                let (ready, busy, starting, in_flight, draining) = counts;
                let pool = Pool::new("p", ProviderId::new("p").unwrap(), spec)
                    .unwrap()
                    .with_max_workers(max.max(min_ready))
                    .with_min_ready(min_ready)
                    .with_priority(priority);
                let blocked = match block {
                    0 => Some(PoolBlock::BackedOff {
                        failures: 1,
                        until: NOW + 5_000,
                    }),
                    1 => Some(PoolBlock::NoCapacity { until: NOW + 1 }),
                    _ => None,
                };
                let fleet = PoolFleet {
                    ready,
                    busy,
                    starting,
                    in_flight,
                    registered: ready + busy + starting + draining,
                    blocked,
                    last_scale_up: up.map(|s| NOW - s * 1000),
                    last_scale_action: action.map(|s| NOW - s * 1000),
                };
                (pool, fleet)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Never above a pool's or the global max; never into a pool whose template does not
    /// satisfy what it serves (nor a blocked one); never a busy worker scaled in.
    #[test]
    fn plans_keep_the_three_promises(
        pools_and_fleet in prop::collection::vec(arb_pool_and_fleet(), 0..5),
        requirements in prop::collection::vec(arb_requirement(), 0..5),
        max_workers in 1usize..30,
        outside in 0usize..5,
        max_per_tick in 1usize..8,
    ) {
        let (mut pools, fleet): (Vec<Pool>, Vec<PoolFleet>) = pools_and_fleet.into_iter().unzip();
        for (k, p) in pools.iter_mut().enumerate() {
            p.name = format!("pool-{k}");
        }
        let demand = Demand { requirements };
        let total: usize =
            fleet.iter().map(|f| f.registered + f.in_flight).sum::<usize>() + outside;
        let plan = plan(&PlanInputs {
            now: NOW,
            pools: &pools,
            fleet: &fleet,
            demand: &demand,
            max_workers,
            total,
            max_per_tick,
        });
        prop_assert_eq!(plan.pools.len(), pools.len());
        prop_assert!(plan.provision() <= max_workers.saturating_sub(total));
        prop_assert!(plan.provision() <= max_per_tick);
        prop_assert!(plan.pools.iter().map(|d| d.retire).sum::<usize>() <= max_per_tick);
        for d in &plan.pools {
            let k = pools.iter().position(|p| p.name == d.pool).unwrap();
            let (pool, f) = (&pools[k], &fleet[k]);
            if d.provision > 0 {
                prop_assert!(f.registered + f.in_flight + d.provision <= pool.max_workers,
                    "{}", d.explanation);
                prop_assert!(f.blocked.is_none(), "{}", d.explanation);
                prop_assert_eq!(d.retire, 0);
            }
            prop_assert_eq!(
                d.serves.iter().map(|s| s.provisioned).sum::<usize>() + d.warm,
                d.provision
            );
            for s in &d.serves {
                prop_assert!(pool.satisfies(&demand.requirements[s.requirement]),
                    "{} serves {}", d.pool, demand.requirements[s.requirement]);
            }
            prop_assert!(d.retire <= f.ready, "{}", d.explanation);
        }
        for u in &plan.unschedulable {
            let r = &demand.requirements[u.requirement];
            prop_assert!(pools.iter().all(|p| p.max_workers == 0 || !p.satisfies(r)));
        }
        // Demand is accounted for: served (existing or wanted), waiting, or unschedulable.
        for (ri, r) in demand.requirements.iter().enumerate() {
            let served: usize = plan.pools.iter().flat_map(|d| &d.serves)
                .filter(|s| s.requirement == ri).map(|s| s.existing + s.wanted).sum();
            let waiting: usize = plan.unmet.iter().filter(|u| u.requirement == ri)
                .map(|u| u.count).sum();
            let never: usize = plan.unschedulable.iter().filter(|u| u.requirement == ri)
                .map(|u| u.count).sum();
            prop_assert_eq!(served + waiting + never, r.count, "requirement {}", ri);
        }
    }
}
