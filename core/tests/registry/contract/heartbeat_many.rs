//! `heartbeat_many`: one answer per id, in order.

use std::collections::BTreeSet;

use super::{get, ready, secs, setup, T0};
use hodei_workers::*;

#[test]
fn heartbeat_many_answers_each_id_in_order() {
    let (clock, registry) = setup();
    let a = ready(&*registry);
    let b = ready(&*registry);
    let unknown = WorkerId::new();
    clock.advance(secs(5));
    let answers = registry.heartbeat_many(&[a, unknown, b]).unwrap();
    assert_eq!(answers, [Ok(()), Err(Error::NotFound(unknown)), Ok(())]);
    assert_eq!(get(&*registry, &a).last_heartbeat, T0 + 5_000);
    assert_eq!(get(&*registry, &b).last_heartbeat, T0 + 5_000);
    assert_eq!(registry.heartbeat_many(&[]).unwrap(), []);
    // The heartbeats count for the health check.
    clock.advance(secs(30));
    let silent: BTreeSet<WorkerId> = registry
        .find_unhealthy(secs(31))
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert!(silent.is_empty());
}
