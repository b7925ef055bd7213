//! Autoscaling: the seed's predicates, `plan_scaling`, and `tick` scaling toward a target with
//! caps, cooldowns, provider back-off, scale-in of idle workers, and explanations.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use hodei_workers::*;

#[test]
fn should_scale_up_with_no_ready_worker_and_pending_jobs() {
    let f = Fixture::new(config());
    assert!(f.manager.should_scale_up(1));
    assert!(!f.manager.should_scale_up(0));
    let w = f.ready();
    assert!(!f.manager.should_scale_up(1), "a ready worker takes it");
    assert!(!f.manager.should_scale_up(5), "at the threshold");
    assert!(f.manager.should_scale_up(6), "above scale_up_threshold 5");
    f.registry.assign_to_job(&w, job("a")).unwrap();
    assert!(f.manager.should_scale_up(1), "no ready worker again");
    for _ in 0..9 {
        f.provision();
    }
    // At max_workers the threshold rule is off; the no-ready-worker rule is the seed's.
    assert!(!f.manager.should_scale_up(0));
    f.registry.release_from_job(&w, Some(&job("a"))).unwrap();
    assert!(!f.manager.should_scale_up(6), "full: no room");
}

#[test]
fn should_scale_down_with_more_idle_workers_than_the_threshold() {
    let f = Fixture::new(config());
    for _ in 0..3 {
        f.ready();
    }
    assert!(!f.manager.should_scale_down(), "3 ready = threshold");
    f.ready();
    assert!(f.manager.should_scale_down());
}

/// The seed's predicates count what `plan_scaling` counts: the target's own `Ready` workers (of
/// no pool without a target, or with a target of no pool; of its spec's pool otherwise), never
/// the workers of other pools — while every registered worker still counts against
/// `max_workers`.
#[test]
fn the_seed_predicates_do_not_count_the_workers_of_pools_as_ready() {
    let f = Fixture::new(WorkerLifecycleConfig {
        max_workers: 6,
        ..config()
    });
    for _ in 0..4 {
        f.ready_with(pool_spec("gpu"));
    }
    // No target: the workers of no pool are the ones counted — none.
    assert!(
        !f.manager.should_scale_down(),
        "4 ready workers of pool gpu are not idle capacity of no pool"
    );
    assert!(
        f.manager.should_scale_up(1),
        "no ready worker of no pool and a job pending"
    );
    assert_eq!(f.manager.plan_scaling(1).unwrap().ready, 0);

    // A target of no pool: the same.
    f.manager.set_scaling_target(&pid("test"), spec()).unwrap();
    assert!(!f.manager.should_scale_down());
    assert!(f.manager.should_scale_up(1));
    // A target of another pool: the same.
    let cpu = Arc::new(pool_spec("cpu"));
    f.manager.set_scaling_target(&pid("test"), cpu).unwrap();
    assert!(!f.manager.should_scale_down());
    assert!(f.manager.should_scale_up(1));

    // A target of pool gpu: those four are its own.
    let gpu = Arc::new(pool_spec("gpu"));
    f.manager.set_scaling_target(&pid("test"), gpu).unwrap();
    assert!(f.manager.should_scale_down(), "4 ready > threshold 3");
    assert!(!f.manager.should_scale_up(1), "a ready worker takes it");
    assert_eq!(f.manager.plan_scaling(1).unwrap().ready, 4);

    // The room under max_workers counts every registered worker, the pools' included: 4 + 2
    // of no pool fill max_workers 6.
    f.manager.clear_scaling_target();
    f.ready();
    assert!(
        !f.manager.should_scale_up(1),
        "a ready worker of no pool takes it"
    );
    assert!(f.manager.should_scale_up(6), "5 of 6: room for one");
    f.provision();
    assert!(!f.manager.should_scale_up(6), "full: no room");
}

#[test]
fn tick_provisions_toward_pending_jobs_with_per_tick_cap_cooldown_and_capacity_on_its_way() {
    let f = Fixture::new(config());
    let r = f.manager.tick(7);
    assert!(r.scaling.is_none(), "no target: no scaling");
    assert!(r.provisioned.is_empty());

    f.manager.set_scaling_target(&pid("test"), spec()).unwrap();
    let r = f.manager.tick(7);
    let plan = r.scaling.clone().unwrap();
    assert_eq!((plan.wanted, plan.provision), (8, 5));
    assert_eq!(r.provisioned.len(), 5);
    assert_eq!(
        r.decisions[0],
        "+5: pending 7, ready 0, busy 0, starting 0, in flight 0, total 0/10, min ready 1, \
         wanted 8, capped by max_provision_per_tick 5"
    );
    assert_eq!(f.registry.stats().unwrap().by_state.creating, 5);

    // One second later: the five starting workers count; the cooldown holds the other three.
    f.advance(secs(1));
    let r = f.manager.tick(7);
    let plan = r.scaling.unwrap();
    assert_eq!((plan.starting, plan.wanted, plan.provision), (5, 3, 0));
    assert_eq!(
        plan.limits,
        vec![format!("scale-up cooldown until {}", T0 + 10_000)]
    );
    assert!(r.provisioned.is_empty());

    f.advance(secs(9));
    let r = f.manager.tick(7);
    assert_eq!(r.provisioned.len(), 3);
    assert!(r.decisions[0].starts_with("+3: pending 7, ready 0, busy 0, starting 5"));

    // Nobody has reported in yet: a slow provider is not asked twice.
    f.advance(secs(20));
    let r = f.manager.tick(7);
    assert!(r.provisioned.is_empty());
    assert!(
        r.decisions[0].starts_with("0: pending 7"),
        "{}",
        r.decisions[0]
    );
    assert_eq!(f.registry.count().unwrap(), 8);
}

#[test]
fn the_plan_never_goes_above_max_workers_and_explains_it() {
    let f = Fixture::new(config());
    f.manager.set_scaling_target(&pid("test"), spec()).unwrap();
    // 1 ready, 6 busy, 2 provisions in flight (stalled at the provider).
    let ready = f.ready();
    for i in 0..6 {
        let w = f.ready();
        f.registry.assign_to_job(&w, job(&format!("j{i}"))).unwrap();
    }
    f.provider
        .script_creates([CreateStep::Stall, CreateStep::Stall]);
    let stalled: Vec<_> = (0..2)
        .map(|_| {
            let m = f.manager.clone();
            std::thread::spawn(move || m.provision_worker(&pid("test"), spec()))
        })
        .collect();
    // Both threads must have taken their scripted stall before the tick calls the provider,
    // or the tick would take one and block.
    while f.manager.stats().unwrap().in_flight < 2 || !f.provider.creates.lock().is_empty() {
        std::thread::yield_now();
    }
    let r = f.manager.tick(7);
    let plan = r.scaling.unwrap();
    assert_eq!(
        (plan.ready, plan.busy, plan.in_flight, plan.total),
        (1, 6, 2, 9)
    );
    assert_eq!((plan.wanted, plan.provision), (5, 1));
    assert_eq!(
        plan.explanation,
        "+1: pending 7, ready 1, busy 6, starting 0, in flight 2, total 9/10, min ready 1, \
         wanted 5, capped by max_workers 10"
    );
    assert_eq!(r.provisioned.len(), 1);
    f.provider.release_stalled(2);
    for h in stalled {
        h.join().unwrap().unwrap();
    }
    assert_eq!(f.registry.count().unwrap(), 10);
    f.advance(secs(60));
    let r = f.manager.tick(20);
    assert_eq!(r.scaling.unwrap().provision, 0);
    assert!(r.provisioned.is_empty());
    assert!(f.registry.get(&ready).unwrap().is_some());
}

#[test]
fn idle_surplus_is_scaled_in_longest_idle_first_never_busy_down_to_min_ready() {
    let f = Fixture::new(WorkerLifecycleConfig {
        min_ready_workers: 1,
        ..config()
    });
    f.manager.set_scaling_target(&pid("test"), spec()).unwrap();
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(f.ready());
        f.advance(secs(1));
    }
    let busy = f.ready();
    f.registry.assign_to_job(&busy, job("b")).unwrap();
    f.drain();

    let r = f.manager.tick(0);
    let plan = r.scaling.clone().unwrap();
    assert_eq!(plan.scale_down, idle[..3].to_vec(), "longest idle first");
    assert!(plan
        .explanation
        .starts_with("-3: pending 0, ready 4, busy 1"));
    let mut gone: Vec<WorkerId> = r.terminated.iter().map(|t| t.worker_id).collect();
    gone.sort();
    let mut expected = idle[..3].to_vec();
    expected.sort();
    assert_eq!(gone, expected);
    assert!(r
        .terminated
        .iter()
        .all(|t| t.reason == TerminationReason::ScaledDown));
    assert_eq!(f.state(&idle[3]), Some(WorkerState::Ready));
    assert_eq!(f.state(&busy), Some(WorkerState::Busy));
    assert!(!Fixture::names(&f.drain(), None).contains(&"job_lost"));

    // The busy worker finishes: two ready now, but the scale-down cooldown holds.
    f.registry.release_from_job(&busy, None).unwrap();
    f.advance(secs(1));
    let r = f.manager.tick(0);
    let plan = r.scaling.unwrap();
    assert!(plan.scale_down.is_empty());
    assert!(
        plan.limits[0].starts_with("scale-down cooldown"),
        "{:?}",
        plan.limits
    );
    f.advance(secs(60));
    let r = f.manager.tick(0);
    assert_eq!(
        r.scaling.unwrap().scale_down,
        vec![idle[3]],
        "longest idle of the two"
    );
    assert_eq!(f.registry.stats().unwrap().by_state.ready, 1);
    f.assert_no_leak();
}

#[test]
fn pending_jobs_keep_ready_workers_from_being_scaled_in() {
    let f = Fixture::new(config());
    f.manager.set_scaling_target(&pid("test"), spec()).unwrap();
    for _ in 0..3 {
        f.ready();
    }
    let plan = f.manager.plan_scaling(2).unwrap();
    assert_eq!((plan.provision, plan.scale_down.len()), (0, 0));
    let plan = f.manager.plan_scaling(1).unwrap();
    assert_eq!(plan.scale_down.len(), 1);
}

#[test]
fn an_interrupted_create_is_reported_but_does_not_back_the_provider_off() {
    let f = Fixture::new(WorkerLifecycleConfig {
        provider_backoff_initial: secs(5),
        provider_backoff_max: secs(60),
        scale_up_cooldown: Duration::ZERO,
        ..config()
    });
    f.manager.set_scaling_target(&pid("test"), spec()).unwrap();
    f.provider.script_creates([CreateStep::Interrupted]);

    let r = f.manager.tick(1);
    assert_eq!(
        r.provision_failures,
        vec![ProvisionFailure {
            provider_id: pid("test"),
            kind: ProviderErrorKind::Interrupted,
            error: "Ctrl-C (interrupted)".to_owned(),
            consecutive_failures: 0,
            backoff_until: T0,
        }]
    );
    assert!(r.provider_backoff.is_empty(), "{:?}", r.provider_backoff);
    assert!(
        r.decisions.iter().any(|d| d.contains("interrupted")),
        "{:?}",
        r.decisions
    );
    // The next tick, at the same instant, asks the provider again.
    let r = f.manager.tick(1);
    assert!(
        !r.provisioned.is_empty() && r.provision_failures.is_empty(),
        "{:?}",
        r.decisions
    );

    // Nor does an interrupt lengthen a back-off under way.
    f.provider
        .script_creates([CreateStep::Fail("quota"), CreateStep::Interrupted]);
    let sp = spec();
    f.manager
        .provision_worker(&pid("test"), std::sync::Arc::clone(&sp))
        .unwrap_err();
    let before = f.manager.provider_backoff();
    assert_eq!(before[0].consecutive_failures, 1);
    f.manager.provision_worker(&pid("test"), sp).unwrap_err();
    assert_eq!(f.manager.provider_backoff(), before);
}

#[test]
fn consecutive_create_failures_back_the_provider_off_exponentially() {
    let f = Fixture::new(WorkerLifecycleConfig {
        provider_backoff_initial: secs(5),
        provider_backoff_max: secs(60),
        scale_up_cooldown: Duration::ZERO,
        ..config()
    });
    f.manager.set_scaling_target(&pid("test"), spec()).unwrap();
    f.provider.script_creates([
        CreateStep::Fail("quota"),
        CreateStep::Panic,
        CreateStep::Fail("quota"),
    ]);
    let creates = |f: &Fixture| f.provider.calls().iter().filter(|c| *c == "create").count();

    let r = f.manager.tick(2);
    assert!(r.provisioned.is_empty());
    assert_eq!(
        r.provision_failures.len(),
        1,
        "one failure stops the tick's provisioning"
    );
    assert_eq!(
        r.provision_failures[0],
        ProvisionFailure {
            provider_id: pid("test"),
            kind: ProviderErrorKind::Failed,
            error: "quota (failed)".to_owned(),
            consecutive_failures: 1,
            backoff_until: T0 + 5_000,
        }
    );
    assert_eq!(
        r.provider_backoff,
        vec![ProviderBackoff {
            provider_id: pid("test"),
            consecutive_failures: 1,
            until: T0 + 5_000
        }]
    );
    assert!(r.decisions.iter().any(|d| d.contains("backing off until")));
    assert_eq!(creates(&f), 1);

    f.advance(secs(4));
    let r = f.manager.tick(2);
    assert_eq!(creates(&f), 1, "backing off: not asked");
    assert!(r.scaling.unwrap().explanation.contains(&format!(
        "provider test backing off after 1 failures until {}",
        T0 + 5_000
    )));

    f.advance(secs(1));
    let r = f.manager.tick(2);
    assert_eq!(creates(&f), 2);
    assert_eq!(r.provision_failures[0].kind, ProviderErrorKind::Panicked);
    assert_eq!(r.provision_failures[0].consecutive_failures, 2);
    assert_eq!(r.provision_failures[0].backoff_until, f.now() + 10_000);

    f.advance(secs(10));
    let r = f.manager.tick(2);
    assert_eq!(r.provision_failures[0].consecutive_failures, 3);
    assert_eq!(r.provision_failures[0].backoff_until, f.now() + 20_000);

    f.advance(secs(20));
    let r = f.manager.tick(2);
    assert_eq!(r.provisioned.len(), 3);
    assert!(
        r.provider_backoff.is_empty(),
        "a success resets the back-off"
    );
    assert_eq!(f.manager.stats().unwrap().provision_failures_total, 3);
}

#[test]
fn without_a_target_nothing_is_scaled_and_clear_stops_scaling() {
    let f = Fixture::new(config());
    for _ in 0..5 {
        f.ready();
    }
    let r = f.manager.tick(0);
    assert!(r.scaling.is_none() && r.terminated.is_empty());
    let plan = f.manager.plan_scaling(0).unwrap();
    assert_eq!(plan.scale_down.len(), 0);
    assert!(plan.limits.contains(&"no scaling target".to_owned()));
    f.manager.set_scaling_target(&pid("test"), spec()).unwrap();
    assert_eq!(
        f.manager.scaling_target().map(|(p, _)| p),
        Some(pid("test"))
    );
    f.manager.clear_scaling_target();
    assert!(f.manager.tick(0).scaling.is_none());
    // Unregistering the target's provider clears the target too.
    f.manager.set_scaling_target(&pid("test"), spec()).unwrap();
    f.manager.unregister_provider(&pid("test")).unwrap();
    assert!(f.manager.scaling_target().is_none());
}

#[test]
fn tick_report_serializes_to_json_for_the_bindings() {
    let f = Fixture::new(config());
    f.manager.set_scaling_target(&pid("test"), spec()).unwrap();
    let r = f.manager.tick(1);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["pending_jobs"], 1);
    assert_eq!(json["provisioned"].as_array().unwrap().len(), 2);
    assert_eq!(json["scaling"]["provision"], 2);
    assert!(json["decisions"][0].as_str().unwrap().starts_with("+2: "));
}

/// A spec of pool `name`, as the manager of a replica whose pools are set provisions it.
fn pool_spec(name: &str) -> WorkerSpec {
    WorkerSpec::new("img").with_label(POOL_LABEL, name)
}

#[test]
fn the_target_leaves_the_workers_of_pools_alone_but_counts_them_against_max_workers() {
    // A replica whose host has not set its pools yet (a rolling deploy) leads a fleet whose
    // pool workers another replica made: they are not the target's capacity, and it does not
    // retire them once its cooldown ends.
    let f = Fixture::new(WorkerLifecycleConfig {
        min_ready_workers: 1,
        max_workers: 5,
        ..quick_cooldown()
    });
    f.manager.set_scaling_target(&pid("test"), spec()).unwrap();
    let mut pooled = Vec::new();
    for _ in 0..3 {
        pooled.push(f.ready_with(pool_spec("gpu")));
        f.advance(secs(1));
    }
    let mine = f.ready();
    f.advance(secs(6));

    let r = f.manager.tick(0);
    let plan = r.scaling.clone().unwrap();
    assert!(r.terminated.is_empty(), "{:?}", r.decisions);
    assert_eq!((plan.ready, plan.provision), (1, 0), "{}", plan.explanation);
    assert!(plan.scale_down.is_empty(), "{}", plan.explanation);
    assert!(
        plan.explanation
            .ends_with("wanted 0, 3 worker(s) of pools not counted"),
        "{}",
        plan.explanation
    );
    for id in pooled.iter().chain([&mine]) {
        assert_eq!(f.state(id), Some(WorkerState::Ready));
    }
    // Still not after another cooldown, also when the plan reads them directly.
    f.advance(secs(6));
    assert!(f.manager.plan_scaling(0).unwrap().scale_down.is_empty());
    assert!(f.manager.tick(0).terminated.is_empty());

    // They count against the global max_workers: 4 of 5 registered, so 1 more at most.
    let plan = f.manager.tick(3).scaling.unwrap();
    assert_eq!(
        (plan.wanted, plan.provision),
        (3, 1),
        "{}",
        plan.explanation
    );
    assert_eq!(plan.limits, vec!["max_workers 5".to_owned()]);

    // The target's own surplus is still retired, and only it.
    let extra = f.manager.tick(0);
    assert!(extra.terminated.is_empty());
    let new = extra_ready(&f, &[&pooled[..], &[mine]].concat());
    f.advance(secs(6));
    let r = f.manager.tick(0);
    let gone: Vec<WorkerId> = r.terminated.iter().map(|t| t.worker_id).collect();
    assert_eq!(gone, vec![mine], "{:?}", r.decisions);
    assert_eq!(f.state(&new), Some(WorkerState::Ready));
    for id in &pooled {
        assert_eq!(f.state(id), Some(WorkerState::Ready));
    }
    f.assert_no_leak();
}

/// [`config`] with a scale-down cooldown of 5 s.
fn quick_cooldown() -> WorkerLifecycleConfig {
    WorkerLifecycleConfig {
        scale_down_cooldown: secs(5),
        ..config()
    }
}

/// Has the one worker not in `known` report in, and returns it.
fn extra_ready(f: &Fixture, known: &[WorkerId]) -> WorkerId {
    let new: Vec<WorkerId> = f
        .ids()
        .into_iter()
        .filter(|id| !known.contains(id))
        .collect();
    assert_eq!(new.len(), 1, "one worker provisioned");
    f.registry
        .update_state(&new[0], WorkerState::Ready)
        .unwrap();
    new[0]
}

#[test]
fn without_a_worker_of_its_own_the_target_keeps_its_warm_pool_beside_the_pools() {
    let f = Fixture::new(quick_cooldown());
    f.manager.set_scaling_target(&pid("test"), spec()).unwrap();
    let a = f.ready_with(pool_spec("gpu"));
    let b = f.ready_with(pool_spec("cpu"));
    f.advance(secs(6));
    let r = f.manager.tick(0);
    let plan = r.scaling.unwrap();
    assert_eq!((plan.ready, plan.provision), (0, 1), "{}", plan.explanation);
    assert_eq!(r.provisioned.len(), 1);
    assert_eq!(r.provisioned[0].provider_id, pid("test"));
    let made = f
        .registry
        .get(&r.provisioned[0].worker_id)
        .unwrap()
        .unwrap();
    assert!(!made.spec.labels.contains_key(POOL_LABEL));
    assert_eq!(f.state(&a), Some(WorkerState::Ready));
    assert_eq!(f.state(&b), Some(WorkerState::Ready));
}

#[test]
fn a_target_whose_spec_carries_a_pool_label_counts_the_workers_of_that_pool() {
    let f = Fixture::new(quick_cooldown());
    let labelled = Arc::new(pool_spec("mine"));
    f.manager
        .set_scaling_target(&pid("test"), labelled.clone())
        .unwrap();
    f.ready_with(pool_spec("gpu"));
    f.ready_with(pool_spec("mine"));
    f.ready_with(pool_spec("mine"));
    f.advance(secs(6));
    let r = f.manager.tick(0);
    let plan = r.scaling.unwrap();
    // Its two workers: one warm, one surplus; the other pool's worker is not its own.
    assert_eq!((plan.ready, plan.provision), (2, 0), "{}", plan.explanation);
    assert_eq!(plan.scale_down.len(), 1);
    let gone = f.registry.get(&plan.scale_down[0]);
    assert!(gone
        .unwrap()
        .is_none_or(|w| w.spec.labels[POOL_LABEL] == "mine"));
    assert_eq!(r.terminated.len(), 1);
    assert_eq!(
        f.registry.stats().unwrap().by_pool["gpu"].ready,
        1,
        "the other pool's worker stays"
    );
}

#[test]
fn a_job_that_asks_for_a_pool_is_not_the_targets_even_one_named_like_its_placeholder() {
    // The target is matched against jobs as a pool named "scaling-target" would be: a job
    // asking for that pool by name is not one its workers (which carry no pool label) can
    // take.
    let f = Fixture::new(quick_cooldown());
    f.manager.set_scaling_target(&pid("test"), spec()).unwrap();
    let demand = Demand::new().with(Requirement::new(2).label(POOL_LABEL, "scaling-target"));
    let r = f.manager.tick(&demand);
    assert_eq!(r.unschedulable.len(), 1, "{:?}", r.decisions);
    assert_eq!(r.unschedulable[0].count, 2);
    assert_eq!(
        r.unschedulable[0].reason,
        "the scaling target's spec does not offer pool scaling-target"
    );
    // Only the warm worker: no worker for jobs it cannot take.
    assert_eq!(r.provisioned.len(), 1, "{:?}", r.decisions);
}

#[test]
fn a_provision_of_a_pools_spec_in_flight_is_no_capacity_of_the_target_but_counts_against_max() {
    // The host provisions a worker of pool "gpu" by hand while the target (of no pool) plans:
    // that create is not the target's capacity on its way (its worker, once registered, is
    // not counted as the target's either), but it takes room under `max_workers`.
    let f = Fixture::new(WorkerLifecycleConfig {
        min_ready_workers: 0,
        max_workers: 2,
        ..config()
    });
    f.manager.set_scaling_target(&pid("test"), spec()).unwrap();
    f.provider.script_creates([CreateStep::Stall]);
    let manager = f.manager.clone();
    let host = std::thread::spawn(move || {
        manager.provision_worker(&pid("test"), Arc::new(pool_spec("gpu")))
    });
    TestProvider::wait_for(&f.provider.creating_now, 1);

    let plan = f.manager.plan_scaling(2).unwrap();
    assert_eq!(
        (plan.in_flight, plan.wanted, plan.provision, plan.total),
        (0, 2, 1, 1),
        "{}",
        plan.explanation
    );
    assert_eq!(plan.limits, vec!["max_workers 2".to_owned()]);
    assert!(
        plan.explanation
            .ends_with("1 other provision(s) in flight not counted, capped by max_workers 2"),
        "{}",
        plan.explanation
    );
    // The seed's predicates count as the plan does: no ready worker of its own, and the
    // provision in flight fills the room (1 of 2 taken).
    assert!(f.manager.should_scale_up(1));

    // A target whose spec names that pool counts it as its own capacity on its way.
    f.manager
        .set_scaling_target(&pid("test"), Arc::new(pool_spec("gpu")))
        .unwrap();
    let plan = f.manager.plan_scaling(2).unwrap();
    assert_eq!(
        (plan.in_flight, plan.wanted, plan.provision, plan.total),
        (1, 1, 1, 1),
        "{}",
        plan.explanation
    );

    f.provider.release_stalled(1);
    host.join().unwrap().unwrap();
    assert_eq!(f.manager.stats().unwrap().in_flight, 0);
}

#[test]
fn a_target_of_a_pool_says_it_leaves_out_the_workers_of_no_pool_too() {
    // The target's spec names pool "gpu": the workers of no pool are not its own either, and
    // its plan says how many it left out, as it does for the workers of other pools.
    let f = Fixture::new(WorkerLifecycleConfig {
        min_ready_workers: 0,
        ..config()
    });
    f.ready();
    f.ready();
    f.ready_with(pool_spec("cpu"));
    f.ready_with(pool_spec("gpu"));
    f.manager
        .set_scaling_target(&pid("test"), Arc::new(pool_spec("gpu")))
        .unwrap();
    let plan = f.manager.plan_scaling(1).unwrap();
    assert_eq!((plan.ready, plan.total, plan.wanted), (1, 4, 0));
    assert!(
        plan.explanation.ends_with(
            "wanted 0, 1 worker(s) of pools not counted, 2 worker(s) of no pool not counted"
        ),
        "{}",
        plan.explanation
    );
}
