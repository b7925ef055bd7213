//! The invariants of DESIGN.md §3, checked over a whole registry: one checker for every test
//! of every backend (the conformance suite, the PostgreSQL crate's own tests). It needs nothing
//! but the library, so that any test crate can include it by path.

use std::collections::HashMap;

use hodei_workers::*;

/// Checks the invariants of DESIGN.md §3 on the whole registry, and that `stats()` and
/// `count()` equal a recount of `find(&WorkerFilter::new())`. Call it when no other thread is
/// changing the registry.
pub fn assert_invariants(registry: &dyn WorkerRegistry) -> Vec<Worker> {
    let all = registry.find(&WorkerFilter::new()).expect("find");
    let mut holders: HashMap<&JobId, WorkerId> = HashMap::new();
    for w in &all {
        match &w.current_job {
            Some(job) => {
                assert!(
                    matches!(w.state, WorkerState::Busy | WorkerState::Draining),
                    "invariant 1: {} holds {job} in {}",
                    w.id,
                    w.state
                );
                if let Some(other) = holders.insert(job, w.id) {
                    panic!("invariant 2: {job} held by {other} and {}", w.id);
                }
            }
            None => assert_ne!(
                w.state,
                WorkerState::Busy,
                "invariant 1: {} busy without a job",
                w.id
            ),
        }
        assert_eq!(w.handle.worker_id, w.id, "record under its own id");
        if w.state == WorkerState::Ready {
            assert!(w.idle_since.is_some(), "{} ready without idle_since", w.id);
        }
        assert_eq!(registry.get(&w.id).unwrap().as_ref(), Some(w));
    }
    let stats = registry.stats().expect("stats");
    assert_eq!(
        stats,
        WorkerRegistryStats::recount(&all),
        "invariant 4: stats equal a recount"
    );
    assert_eq!(registry.count().unwrap(), all.len());
    all
}
