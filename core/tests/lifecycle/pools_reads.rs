//! What a pool-mode tick reads from the registry (INTERFACES.md A, issue 15): each pool's
//! counts come from `stats().by_pool`, never from a `find` by pool label, so a tick costs the
//! same whatever the fleet's size; workers are read only when the plan retires some, from the
//! ready index (`longest_idle`), and then the pool's own longest-idle ones are chosen even when
//! other pools' workers have been idle longer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::common::*;
use crate::test_registry::{Call, Hooks, TestRegistry};
use hodei_workers::*;

/// Counts the reads a manager could scan the fleet with.
#[derive(Debug, Default)]
struct Counting {
    /// `find` calls whose filter names a pool label.
    finds_by_pool: AtomicUsize,
    longest_idle: AtomicUsize,
}

impl Hooks for Counting {
    fn before(&self, call: Call<'_>, _inner: &dyn WorkerRegistry) -> Result<()> {
        match call {
            Call::Find(Some(filter)) if filter.labels.contains_key(POOL_LABEL) => {
                self.finds_by_pool.fetch_add(1, Ordering::SeqCst);
            }
            Call::LongestIdle => {
                self.longest_idle.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
        Ok(())
    }
}

fn kind(k: &str) -> Requirement {
    Requirement::new(0).label("kind", k)
}

fn demand(a: usize, b: usize) -> Demand {
    let mut d = Demand::new();
    for (k, n) in [("a", a), ("b", b)] {
        if n > 0 {
            let mut r = kind(k);
            r.count = n;
            d = d.with(r);
        }
    }
    d
}

#[test]
fn a_pool_tick_reads_counts_not_workers_and_retires_the_pools_own_longest_idle() {
    let clock = Arc::new(ManualClock::new(T0));
    let inner = crate::backend::new_registry(clock.clone());
    let counting = Arc::new(Counting::default());
    let manager = Arc::new(
        WorkerLifecycleManager::new(
            TestRegistry::with_hooks(inner.clone(), counting.clone()).shared(),
            WorkerLifecycleConfig {
                max_provision_per_tick: 100,
                max_workers: 100,
                ..config()
            },
        )
        .unwrap(),
    );
    for name in ["a", "b"] {
        manager.register_provider(TestProvider::new(name)).unwrap();
        manager
            .add_pool(
                Pool::new(
                    name,
                    pid(name),
                    WorkerSpec::new("i").with_label("kind", name),
                )
                .unwrap()
                .with_scale_down_cooldown(secs(60)),
            )
            .unwrap();
    }
    let report = manager.tick(demand(3, 20));
    assert_eq!(report.provisioned.len(), 23, "{:#?}", report.decisions);
    let of = |pool: &str| -> Vec<WorkerId> {
        let mut ids: Vec<WorkerId> = report
            .provisioned
            .iter()
            .map(|p| p.worker_id)
            .filter(|id| inner.get(id).unwrap().unwrap().spec.labels[POOL_LABEL] == pool)
            .collect();
        ids.sort();
        ids
    };
    let (a, b) = (of("a"), of("b"));
    assert_eq!((a.len(), b.len()), (3, 20));
    // b's workers come up first (idle longest), then a's one after another.
    for id in &b {
        inner.update_state(id, WorkerState::Ready).unwrap();
    }
    for id in &a {
        clock.advance(secs(1));
        inner.update_state(id, WorkerState::Ready).unwrap();
    }
    let beat = || {
        for id in a.iter().chain(&b) {
            let _ = inner.heartbeat(id);
        }
    };
    // Steady state: the counts say every pool has what its demand needs; nothing is read.
    for _ in 0..5 {
        clock.advance(secs(5));
        beat();
        let report = manager.tick(demand(3, 20));
        assert!(report.provisioned.is_empty() && report.terminated.is_empty());
    }
    assert_eq!(counting.longest_idle.load(Ordering::SeqCst), 0);

    // a's demand falls to 1: after its cooldown, a's two longest-idle workers go, not b's
    // (idle longer still, and first on the ready index).
    let mut by_idle: Vec<Worker> = a.iter().map(|id| inner.get(id).unwrap().unwrap()).collect();
    by_idle.sort_by_key(|w| w.idle_since);
    let mut expected: Vec<WorkerId> = by_idle.iter().take(2).map(|w| w.id).collect();
    expected.sort();
    clock.advance(secs(60));
    beat();
    let report = manager.tick(demand(1, 20));
    let mut retired: Vec<WorkerId> = report.terminated.iter().map(|t| t.worker_id).collect();
    retired.sort();
    assert_eq!(retired, expected, "{:#?}", report.decisions);
    assert!(counting.longest_idle.load(Ordering::SeqCst) >= 1);
    assert_eq!(
        counting.finds_by_pool.load(Ordering::SeqCst),
        0,
        "no tick found a pool's workers by label"
    );
}
