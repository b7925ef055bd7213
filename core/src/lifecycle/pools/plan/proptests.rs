//! The multi-pool policy by property: for random pools, fleets and demands, the plan keeps its
//! promises (see [`plan`]).

use proptest::prelude::*;

use super::super::demand::Requirement;
use super::tests::NOW;
use super::*;
use crate::ids::ProviderId;
use crate::worker::{Architecture, WorkerSpec};
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

/// `small`, or now and then a limit or a count at the top of `usize` (a host may pass
/// `SIZE_MAX`: `max_workers` documented as "no limit of its own", a huge backlog).
fn extreme(small: std::ops::Range<usize>) -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => small,
        1 => Just(usize::MAX),
        1 => Just(usize::MAX - 1),
    ]
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
        extreme(0usize..12),
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

fn on_its_way() -> impl Strategy<Value = usize> {
    prop_oneof![Just(0usize), 0usize..3]
}

fn arb_pool_and_fleet() -> impl Strategy<Value = (Pool, PoolFleet)> {
    (
        arb_spec(),
        extreme(0usize..3),
        extreme(0usize..8),
        -2i32..3,
        // Nothing on its way half the time: only such a pool takes back (see `plan`).
        (0usize..4, 0usize..4, on_its_way(), on_its_way(), 0usize..3),
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
    /// satisfy what it serves (nor a blocked one); never a busy worker scaled in, nor one of a
    /// pool in its scale-down cooldown or below its warm pool, nor an idle worker as surplus
    /// while a job it could run is placed on a worker still starting; takebacks only upward
    /// in priority, to a pool that can provide, has nothing on its way and satisfies the
    /// demand, and never a retirement of a worker that serves demand given back (make before
    /// break).
    #[test]
    fn plans_keep_the_three_promises(
        pools_and_fleet in prop::collection::vec(arb_pool_and_fleet(), 0..5),
        requirements in prop::collection::vec(arb_requirement(), 0..5),
        max_workers in extreme(1usize..30),
        outside in 0usize..5,
        max_per_tick in extreme(1usize..8),
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
        // Sums in u128: with limits at usize::MAX the test must not overflow either.
        let provisioned: u128 = plan.pools.iter().map(|d| d.provision as u128).sum();
        prop_assert_eq!(provisioned, plan.provision() as u128);
        prop_assert!(provisioned <= max_workers.saturating_sub(total) as u128);
        prop_assert!(provisioned <= max_per_tick as u128);
        prop_assert!(plan.pools.iter().map(|d| d.retire as u128).sum::<u128>() <= max_per_tick as u128);
        for d in &plan.pools {
            let k = pools.iter().position(|p| p.name == d.pool).unwrap();
            let (pool, f) = (&pools[k], &fleet[k]);
            if d.provision > 0 {
                prop_assert!(
                    (f.registered + f.in_flight) as u128 + d.provision as u128
                        <= pool.max_workers as u128,
                    "{}", d.explanation);
                prop_assert!(f.blocked.is_none(), "{}", d.explanation);
                prop_assert_eq!(d.retire, 0);
            }
            prop_assert_eq!(
                d.serves.iter().map(|s| s.provisioned as u128).sum::<u128>() + d.warm as u128,
                d.provision as u128
            );
            // Totals saturate at usize::MAX rather than wrap (release builds) or panic (debug).
            let served: u128 = d.serves.iter().map(|s| s.existing as u128 + s.wanted as u128).sum();
            prop_assert_eq!(d.demand as u128, served.min(usize::MAX as u128));
            let wanted: u128 = d.serves.iter().map(|s| s.wanted as u128).sum();
            prop_assert!(d.wanted as u128 >= wanted.min(usize::MAX as u128), "{}", d.explanation);
            for s in &d.serves {
                prop_assert!(pool.satisfies(&demand.requirements[s.requirement]),
                    "{} serves {}", d.pool, demand.requirements[s.requirement]);
            }
            // What the manager provisions, one by one: every provision, each for a
            // requirement the pool satisfies (or its warm pool).
            let provisions = d.provisions();
            prop_assert_eq!(
                provisions.iter().map(|(_, n)| *n as u128).sum::<u128>(),
                d.provision as u128,
                "{}", d.explanation
            );
            for (purpose, _) in &provisions {
                if let Some(ri) = purpose.requirement(d) {
                    prop_assert!(pool.satisfies(&demand.requirements[ri]), "{}", d.explanation);
                }
            }
            prop_assert!(d.retire <= f.ready, "{}", d.explanation);
            if d.retire > 0 {
                // Out of its scale-down cooldown, its warm pool kept (takebacks included).
                if let Some(last) = f.last_scale_action {
                    prop_assert!(NOW >= last + millis(pool.scale_down_cooldown),
                        "{}", d.explanation);
                }
                prop_assert!(f.ready - d.retire >= pool.min_ready.min(f.ready),
                    "{}", d.explanation);
            }
            // Takebacks: only by a pool of higher priority that can provide and has nothing
            // on its way, within what each side does. Make before break: the giver's idle
            // workers that serve what it gives back are none of those it retires (its warm
            // pool kept too).
            let given: usize = d.given_back.iter().map(|t| t.count).sum();
            prop_assert!(given as u128 + d.retire as u128 <= f.ready as u128, "{}", d.explanation);
            if given > 0 {
                prop_assert!(given + d.retire + pool.min_ready.min(f.ready) <= f.ready,
                    "{}", d.explanation);
            }
            prop_assert!(d.taken_back.iter().map(|t| t.count).sum::<usize>() <= d.provision);
            if !d.taken_back.is_empty() {
                prop_assert_eq!((f.starting, f.in_flight), (0, 0), "{}", d.explanation);
            }
            for t in &d.given_back {
                let taker = pools.iter().position(|p| p.name == t.target).unwrap();
                prop_assert!(pools[taker].priority > pool.priority, "{}", d.explanation);
                prop_assert!(fleet[taker].blocked.is_none());
                prop_assert_eq!(fleet[taker].starting + fleet[taker].in_flight, 0);
                // Nor any pool placed before the giver that could run the jobs.
                let r = &demand.requirements[t.requirement];
                for (b, e) in plan.pools.iter().enumerate() {
                    if e.pool == d.pool {
                        break;
                    }
                    let kb = pools.iter().position(|p| p.name == e.pool).unwrap();
                    prop_assert!(
                        pools[kb].max_workers == 0
                            || !pools[kb].satisfies(r)
                            || fleet[kb].starting + fleet[kb].in_flight == 0,
                        "{} (pool {b}) has capacity on its way: {:#?}", e.pool, plan.explanation
                    );
                }
                prop_assert!(pools[taker].satisfies(&demand.requirements[t.requirement]));
            }
        }
        for u in &plan.unschedulable {
            let r = &demand.requirements[u.requirement];
            prop_assert!(pools.iter().all(|p| p.max_workers == 0 || !p.satisfies(r)));
        }
        // No idle worker that could run a waiting job now is retired as surplus while the job
        // is placed on a worker still starting (or in flight): a pool `q` serving more jobs
        // from its existing capacity than it has idle workers places some on its later
        // capacity, so a pool that satisfies every requirement `q` serves that way keeps its
        // idle workers (takebacks included since 2026-12-07: they retire nothing).
        for d in &plan.pools {
            let k = pools.iter().position(|p| p.name == d.pool).unwrap();
            let surplus = d.retire;
            if surplus == 0 || pools[k].max_workers == 0 {
                continue;
            }
            for q in &plan.pools {
                let fq = &fleet[pools.iter().position(|p| p.name == q.pool).unwrap()];
                let existing: u128 = q.serves.iter().map(|s| s.existing as u128).sum();
                let waits_on_later = existing > fq.ready as u128
                    && q.serves.iter().filter(|s| s.existing > 0).all(|s| {
                        pools[k].satisfies(&demand.requirements[s.requirement])
                    });
                prop_assert!(
                    !waits_on_later,
                    "{} retires {} idle worker(s) that could run what {} serves from workers \
                     still starting: {:#?}",
                    d.pool, surplus, q.pool, plan.explanation
                );
            }
        }
        // Demand is accounted for: served (existing or wanted), waiting, or unschedulable.
        for (ri, r) in demand.requirements.iter().enumerate() {
            let served: u128 = plan.pools.iter().flat_map(|d| &d.serves)
                .filter(|s| s.requirement == ri).map(|s| s.existing as u128 + s.wanted as u128).sum();
            let waiting: u128 = plan.unmet.iter().filter(|u| u.requirement == ri)
                .map(|u| u.count as u128).sum();
            let never: u128 = plan.unschedulable.iter().filter(|u| u.requirement == ri)
                .map(|u| u.count as u128).sum();
            prop_assert_eq!(served + waiting + never, r.count as u128, "requirement {}", ri);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// The order the host lists its pools in changes nothing (priority, then name, decides);
    /// a pool wants new workers for a requirement only when every higher-priority pool that
    /// satisfies it is blocked or full; more demand never retires more (a takeback retires
    /// nothing).
    #[test]
    fn plans_ignore_the_pools_order_spill_only_past_full_pools_and_retire_less_for_more(
        pools_and_fleet in prop::collection::vec(arb_pool_and_fleet(), 0..5),
        requirements in prop::collection::vec(arb_requirement(), 0..5),
        extra in arb_requirement(),
        max_workers in extreme(1usize..30),
        outside in 0usize..5,
        max_per_tick in extreme(1usize..8),
        rotate in 0usize..5,
    ) {
        let (mut pools, fleet): (Vec<Pool>, Vec<PoolFleet>) = pools_and_fleet.into_iter().unzip();
        for (k, p) in pools.iter_mut().enumerate() {
            p.name = format!("pool-{k}");
        }
        let demand = Demand { requirements };
        let total: usize =
            fleet.iter().map(|f| f.registered + f.in_flight).sum::<usize>() + outside;
        let inputs = PlanInputs {
            now: NOW,
            pools: &pools,
            fleet: &fleet,
            demand: &demand,
            max_workers,
            total,
            max_per_tick,
        };
        let a = plan(&inputs);

        let (mut other_pools, mut other_fleet) = (pools.clone(), fleet.clone());
        if !pools.is_empty() {
            other_pools.rotate_left(rotate % pools.len());
            other_fleet.rotate_left(rotate % pools.len());
            other_pools.reverse();
            other_fleet.reverse();
        }
        let b = plan(&PlanInputs { pools: &other_pools, fleet: &other_fleet, ..inputs });
        prop_assert_eq!(&a, &b);

        let at = |d: &PoolDecision| pools.iter().position(|p| p.name == d.pool).unwrap();
        for (pos, d) in a.pools.iter().enumerate() {
            for s in &d.serves {
                let taken: usize = d
                    .taken_back
                    .iter()
                    .filter(|t| t.requirement == s.requirement)
                    .map(|t| t.count)
                    .sum();
                if s.wanted <= taken {
                    continue;
                }
                let r = &demand.requirements[s.requirement];
                for higher in &a.pools[..pos] {
                    let (q, f) = (&pools[at(higher)], &fleet[at(higher)]);
                    if !q.satisfies(r) || q.max_workers == 0 || f.blocked.is_some() {
                        continue;
                    }
                    let wanted: usize = higher.serves.iter().map(|s| s.wanted).sum();
                    let left = q
                        .max_workers
                        .saturating_sub(f.registered + f.in_flight)
                        .saturating_sub(wanted);
                    prop_assert!(
                        left == 0,
                        "{} wants {} for {} while {} has room for {}: {:#?}",
                        d.pool, s.wanted, r, higher.pool, left, a.explanation
                    );
                }
            }
        }

        let mut more = demand.clone();
        more.requirements.push(extra);
        let c = plan(&PlanInputs { demand: &more, ..inputs });
        let surplus = |p: &PoolPlan| -> usize {
            p.pools
                .iter()
                .map(|d| d.retire)
                .sum()
        };
        prop_assert!(
            surplus(&c) <= surplus(&a),
            "{} surplus retired with more demand, {} before:\n{:#?}\n{:#?}",
            surplus(&c), surplus(&a), a.explanation, c.explanation
        );
    }
}

/// A pool of the one gpu template for [`takebacks_make_before_they_break`]: distinct
/// priorities, seldom blocked or cooling, so that takebacks happen.
fn arb_gpu_pool(k: usize) -> impl Strategy<Value = (Pool, PoolFleet)> {
    (
        0usize..2,
        1usize..6,
        0usize..4,
        0usize..3,
        on_its_way(),
        on_its_way(),
        prop::option::of(0u64..90),
    )
        .prop_map(
            move |(min_ready, max, ready, busy, starting, in_flight, action)| {
                let mut spec = WorkerSpec::new("img");
                spec.labels.insert("gpu".into(), "a100".into());
                let pool = Pool::new(format!("pool-{k}"), ProviderId::new("p").unwrap(), spec)
                    .unwrap()
                    .with_max_workers(max.max(min_ready).max(ready + busy + starting + in_flight))
                    .with_min_ready(min_ready)
                    .with_priority(10 - k as i32);
                let fleet = PoolFleet {
                    ready,
                    busy,
                    starting,
                    in_flight,
                    registered: ready + busy + starting,
                    last_scale_action: action.map(|s| NOW - s * 1000),
                    ..PoolFleet::default()
                };
                (pool, fleet)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Make before break, where takebacks happen (pools of one template, one requirement):
    /// a giver retires none of the idle workers that serve what it gives back, and the plan
    /// applied (the taker's provisions on their way, the retirements gone) takes nothing back
    /// again, at the same instant or later while those workers boot, by any pool.
    #[test]
    fn takebacks_make_before_they_break(
        pools_and_fleet in (2usize..5).prop_flat_map(|n| {
            (0..n).map(arb_gpu_pool).collect::<Vec<_>>()
        }),
        jobs in 0usize..8,
        max_per_tick in 1usize..8,
    ) {
        let (pools, fleet): (Vec<Pool>, Vec<PoolFleet>) = pools_and_fleet.into_iter().unzip();
        let mut r = Requirement::new(jobs);
        r.labels.insert("gpu".into(), "a100".into());
        let demand = Demand { requirements: vec![r] };
        let total = |fleet: &[PoolFleet]| fleet.iter().map(|f| f.registered + f.in_flight).sum();
        let inputs = PlanInputs {
            now: NOW,
            pools: &pools,
            fleet: &fleet,
            demand: &demand,
            max_workers: 100,
            total: total(&fleet),
            max_per_tick,
        };
        let first = plan(&inputs);
        let mut after = fleet.clone();
        for (k, f) in after.iter_mut().enumerate() {
            let d = first.pool(&pools[k].name).unwrap();
            let given: usize = d.given_back.iter().map(|t| t.count).sum();
            prop_assert!(given + d.retire + pools[k].min_ready.min(f.ready) <= f.ready
                || given == 0, "{:#?}", first.explanation);
            f.in_flight += d.provision;
            f.ready -= d.retire;
            f.registered -= d.retire;
            if d.provision > 0 {
                f.last_scale_up = Some(NOW);
                f.last_scale_action = Some(NOW);
            } else if d.retire > 0 {
                f.last_scale_action = Some(NOW);
            }
        }
        for now in [NOW, NOW + 3_600_000] {
            let again = plan(&PlanInputs { now, fleet: &after, total: total(&after), ..inputs });
            if first.pools.iter().any(|d| !d.taken_back.is_empty()) {
                prop_assert!(
                    again.pools.iter().all(|d| d.taken_back.is_empty()),
                    "took back again:\n{:#?}\nafter:\n{:#?}", first.explanation, again.explanation
                );
            }
        }
    }
}
