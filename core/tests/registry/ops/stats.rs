//! `stats` and `count` through every change.

use crate::common::*;
use hodei_workers::*;

#[test]
fn stats_follow_every_change() {
    let (_, registry) = registry();
    assert_eq!(registry.stats().unwrap(), WorkerRegistryStats::default());
    let a = register(&registry, spec());
    let b = ready(&registry, spec());
    let c = registry
        .register(
            WorkerHandle::new(provider("lambda"), ProviderType::Lambda, "fn"),
            spec(),
        )
        .unwrap()
        .id;
    registry.assign_to_job(&b, job("j")).unwrap();
    let s = registry.stats().unwrap();
    assert_eq!(s.total, 3);
    assert_eq!(
        (s.by_state.creating, s.by_state.busy, s.by_state.ready),
        (2, 1, 0)
    );
    assert_eq!(s.by_state.get(WorkerState::Busy), 1);
    assert_eq!(s.by_state.starting(), 2);
    assert_eq!(s.by_state.live(), 3);
    assert_eq!(s.by_provider[&provider("docker-local")], 2);
    assert_eq!(s.by_provider_type[&ProviderType::Lambda], 1);
    assert_eq!(registry.count().unwrap(), 3);
    registry.update_state(&a, WorkerState::Terminating).unwrap();
    registry
        .unregister(&c, TerminationReason::Requested)
        .unwrap();
    let s = registry.stats().unwrap();
    assert_eq!(
        (s.total, s.by_state.terminating, s.by_state.live()),
        (2, 1, 1)
    );
    assert!(
        !s.by_provider.contains_key(&provider("lambda")),
        "empty entries go"
    );
    assert!(!s.by_provider_type.contains_key(&ProviderType::Lambda));
    assert_invariants(&registry);
}
