//! Item 7: concurrent health checks each see every due worker.

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use super::{register, secs, setup};
use hodei_workers::*;

#[test]
fn concurrent_find_unhealthy_callers_each_see_every_due_worker() {
    let (clock, registry) = setup();
    let ids: Vec<WorkerId> = (0..crate::common::scaled(12_000, 400))
        .map(|_| {
            let id = register(&*registry);
            registry.update_state(&id, WorkerState::Connecting).unwrap();
            id
        })
        .collect();
    clock.advance(secs(100));
    // A few go silent (few enough per shard that the per-entry path does the work, not the
    // one-pass rebuild); the others keep beating.
    let silent: BTreeSet<WorkerId> = ids.iter().step_by(10).copied().collect();
    for id in &ids {
        if !silent.contains(id) {
            registry.heartbeat(id).unwrap();
        }
    }
    fn found(r: &dyn WorkerRegistry) -> BTreeSet<WorkerId> {
        r.find_unhealthy(Duration::from_secs(50))
            .unwrap()
            .into_iter()
            .map(|w| w.id)
            .collect()
    }
    // The first look files everyone under their live heartbeats.
    assert_eq!(found(&*registry), silent);
    let callers = 3;
    let barrier = Arc::new(Barrier::new(callers));
    let threads: Vec<_> = (0..callers)
        .map(|_| {
            let (registry, barrier, silent) = (registry.clone(), barrier.clone(), silent.clone());
            thread::spawn(move || {
                // Asserted after the join: a panic here would leave the others at the barrier.
                let mut misses = Vec::new();
                for round in 0..crate::common::scaled(300, 20) {
                    barrier.wait();
                    let got = found(&*registry);
                    if got != silent {
                        misses.push((round, silent.difference(&got).count()));
                    }
                }
                misses
            })
        })
        .collect();
    for t in threads {
        let misses = t.join().unwrap();
        assert!(misses.is_empty(), "(round, due workers missed): {misses:?}");
    }
}
