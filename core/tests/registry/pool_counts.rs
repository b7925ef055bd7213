//! `WorkerRegistryStats::by_pool` (INTERFACES.md A, issue 15): the per-pool, per-state counts
//! of the workers labelled [`POOL_LABEL`], maintained on every change — register, each kind of
//! move (update, claim, release, drain), unregister, restore — and equal to a recount. The
//! model test (`model.rs`) checks the same after random operations; this one pins the exact
//! numbers of a known sequence.

use std::sync::Arc;

use hodei_workers::*;

use crate::common::*;

fn pooled(pool: &str) -> Arc<WorkerSpec> {
    Arc::new(WorkerSpec::new("img").with_label(POOL_LABEL, pool))
}

fn counts(registry: &dyn WorkerRegistry, pool: &str) -> StateCounts {
    let stats = registry.stats().unwrap();
    stats.by_pool.get(pool).copied().unwrap_or_default()
}

#[test]
fn by_pool_counts_each_pool_per_state_through_every_kind_of_change() {
    let (_clock, registry) = registry();
    let a1 = register(&registry, pooled("gpu-spot"));
    let a2 = ready(&registry, pooled("gpu-spot"));
    let b1 = ready(&registry, pooled("cpu"));
    // A worker in no pool, and one whose label merely looks like a pool name: not counted.
    let plain = ready(&registry, spec());
    let other = ready(
        &registry,
        Arc::new(WorkerSpec::new("img").with_label("pool", "cpu")),
    );
    let stats = registry.stats().unwrap();
    assert_eq!(
        stats.by_pool.keys().collect::<Vec<_>>(),
        ["cpu", "gpu-spot"],
        "one entry per pool with workers"
    );
    let gpu = counts(&registry, "gpu-spot");
    assert_eq!((gpu.creating, gpu.ready, gpu.total()), (1, 1, 2));
    assert_eq!(
        (
            counts(&registry, "cpu").ready,
            counts(&registry, "cpu").total()
        ),
        (1, 1)
    );
    assert_invariants(&registry);

    // update_state, claim, release, drain.
    registry.update_state(&a1, WorkerState::Connecting).unwrap();
    registry.update_state(&a1, WorkerState::Ready).unwrap();
    let claimed = registry
        .claim(
            &WorkerFilter::new().label(POOL_LABEL, "gpu-spot"),
            job("j1"),
        )
        .unwrap()
        .expect("a ready gpu-spot worker");
    let gpu = counts(&registry, "gpu-spot");
    assert_eq!((gpu.ready, gpu.busy, gpu.creating), (1, 1, 0));
    registry.assign_to_job(&b1, job("j2")).unwrap();
    registry.update_state(&b1, WorkerState::Draining).unwrap();
    let cpu = counts(&registry, "cpu");
    assert_eq!((cpu.ready, cpu.busy, cpu.draining), (0, 0, 1));
    registry.release_from_job(&claimed.id, None).unwrap();
    assert_eq!(counts(&registry, "gpu-spot").ready, 2);
    assert_invariants(&registry);

    // Moves of workers in no pool leave by_pool alone.
    let before = registry.stats().unwrap().by_pool;
    registry
        .update_state(&plain, WorkerState::Terminating)
        .unwrap();
    registry
        .update_state(&other, WorkerState::Terminating)
        .unwrap();
    assert_eq!(registry.stats().unwrap().by_pool, before);

    // Terminal states still count (by_state does too); unregister removes, and a pool whose
    // last worker goes has no entry.
    registry
        .update_state(&a2, WorkerState::Terminating)
        .unwrap();
    registry.update_state(&a2, WorkerState::Terminated).unwrap();
    let gpu = counts(&registry, "gpu-spot");
    assert_eq!((gpu.ready, gpu.terminated, gpu.total()), (1, 1, 2));
    registry
        .unregister(&a2, TerminationReason::Requested)
        .unwrap();
    registry
        .unregister(&b1, TerminationReason::Requested)
        .unwrap();
    let stats = registry.stats().unwrap();
    assert_eq!(stats.by_pool.keys().collect::<Vec<_>>(), ["gpu-spot"]);
    assert_eq!(stats.by_pool["gpu-spot"].total(), 1);
    assert_invariants(&registry);
}

#[test]
fn by_pool_survives_a_snapshot_restore() {
    let (clock, registry) = registry();
    for i in 0..5 {
        let id = ready(&registry, pooled(if i % 2 == 0 { "a" } else { "b" }));
        if i == 0 {
            registry.assign_to_job(&id, job("j")).unwrap();
        }
    }
    register(&registry, spec());
    let copy = registry_on(clock);
    copy.restore(registry.snapshot().unwrap()).unwrap();
    let stats = copy.stats().unwrap();
    assert_eq!(stats.by_pool, registry.stats().unwrap().by_pool);
    assert_eq!((stats.by_pool["a"].ready, stats.by_pool["a"].busy), (2, 1));
    assert_eq!(stats.by_pool["b"].ready, 2);
    assert_invariants(&copy);
    // And the restored counters keep being maintained.
    let more = ready(&copy, pooled("b"));
    copy.assign_to_job(&more, job("k")).unwrap();
    assert_eq!(copy.stats().unwrap().by_pool["b"].busy, 1);
    assert_invariants(&copy);
}
