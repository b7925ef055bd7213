//! `longest_idle`: ready workers longest idle first, ties broken by id.

use super::{job, ready, register, secs, setup};
use hodei_workers::*;

#[test]
fn longest_idle_lists_ready_workers_longest_idle_first() {
    let (clock, registry) = setup();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(ready(&*registry));
        clock.advance(secs(1));
    }
    // Not ready: left out.
    register(&*registry);
    let busy = ready(&*registry);
    registry.assign_to_job(&busy, job("j")).unwrap();
    // ids[0] is claimed and released: now the most recently idle.
    registry.assign_to_job(&ids[0], job("k")).unwrap();
    clock.advance(secs(1));
    registry.release_from_job(&ids[0], None).unwrap();

    let order = |n| -> Vec<WorkerId> {
        registry
            .longest_idle(n)
            .unwrap()
            .into_iter()
            .map(|w| w.id)
            .collect()
    };
    assert_eq!(order(3), [ids[1], ids[2], ids[3]]);
    assert_eq!(order(100), [ids[1], ids[2], ids[3], ids[4], ids[0]]);
    assert_eq!(order(0), Vec::<WorkerId>::new());
    let all = registry.longest_idle(usize::MAX).unwrap();
    assert!(all.iter().all(|w| w.state == WorkerState::Ready));
    assert!(all.windows(2).all(|p| p[0].idle_since <= p[1].idle_since));
}

#[test]
fn a_fleet_made_ready_at_one_instant_is_claimed_by_id_and_listed_by_id() {
    // The clock stands still: every worker is idle since the same millisecond, in the random
    // order of their ids, so ties decide everything (in memory, most of them land far inside
    // the ready set's deque, in the B-tree beside it). claim takes the greater id first,
    // longest_idle lists ascending ids; drained workers taken back keep their place.
    let (_clock, registry) = setup();
    let mut ids: Vec<WorkerId> = (0..300).map(|_| ready(&*registry)).collect();
    ids.sort();
    let listed: Vec<WorkerId> = registry
        .longest_idle(usize::MAX)
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(listed, ids);
    // Drain every third worker, take them back to Ready in reverse id order.
    for id in ids.iter().step_by(3) {
        registry.update_state(id, WorkerState::Draining).unwrap();
    }
    for id in ids.iter().step_by(3).rev() {
        registry.update_state(id, WorkerState::Ready).unwrap();
    }
    for (n, expected) in ids.iter().rev().enumerate() {
        let claimed = registry
            .claim(&WorkerFilter::new(), job(&format!("job-{n}")))
            .unwrap()
            .expect("a ready worker");
        assert_eq!(claimed.id, *expected, "claim {n}");
    }
    assert_eq!(
        registry
            .claim(&WorkerFilter::new(), job("one-more"))
            .unwrap(),
        None
    );
}

#[test]
fn longest_idle_on_an_empty_registry_is_empty() {
    let (_clock, registry) = setup();
    assert!(registry.longest_idle(10).unwrap().is_empty());
}
