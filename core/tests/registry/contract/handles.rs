//! Every worker's handle comes back as it was registered, whatever its shape, from every call
//! that returns a worker: a backend that keeps handles in its own form (columns in PostgreSQL;
//! in memory, a class per spec and provider) must not mix up the providers of workers that
//! share a spec, nor cut or lose a resource id or metadata.

use super::*;

/// Handles with one-byte (the shortest: an empty one is refused), short, long and multi-byte resource ids, with and without metadata, of
/// two providers and a custom type that share one spec (so that a handle rebuilt from a wrong
/// class would show a neighbour's provider).
fn handles() -> Vec<WorkerHandle> {
    let docker = ProviderId::new("docker-local").unwrap();
    let k8s = ProviderId::new("k8s-east").unwrap();
    let custom = ProviderType::custom("nomad").unwrap();
    let with = |p: &ProviderId, t: ProviderType, r: &str| WorkerHandle::new(p.clone(), t, r);
    vec![
        with(&docker, ProviderType::Docker, "c-1"),
        with(&docker, ProviderType::Docker, "c-1"),
        with(&docker, ProviderType::Docker, "x"),
        with(&docker, ProviderType::Docker, &"x".repeat(22)),
        with(&docker, ProviderType::Docker, &"x".repeat(23)),
        with(&docker, ProviderType::Docker, &"ä".repeat(11)),
        with(
            &docker,
            ProviderType::Docker,
            &format!("{}x", "ä".repeat(11)),
        ),
        with(&docker, ProviderType::Docker, "c-2").with_metadata("node", "n1"),
        with(&k8s, ProviderType::Kubernetes, "pod-1"),
        with(&k8s, ProviderType::Kubernetes, &"p".repeat(64)).with_metadata("ns", "ci"),
        with(&k8s, custom.clone(), "alloc-1"),
        with(&docker, custom, "alloc-2"),
    ]
}

#[test]
fn every_call_hands_back_the_registered_handle() {
    let (clock, registry) = setup();
    let handles = handles();
    let spec = spec();
    for h in &handles {
        let w = registry.register(h.clone(), spec.clone()).unwrap();
        assert_eq!(*w.handle, *h, "register");
    }
    let check = |w: &Worker, what: &str| {
        let h = handles.iter().find(|h| h.worker_id == w.id).expect("known");
        assert_eq!(*w.handle, *h, "{what}");
    };
    for h in &handles {
        let w = registry
            .update_state(&h.worker_id, WorkerState::Ready)
            .unwrap();
        check(&w, "update_state");
        check(&get(&*registry, &h.worker_id), "get");
    }
    let found = registry.find(&WorkerFilter::new()).unwrap();
    assert_eq!(found.len(), handles.len());
    found.iter().for_each(|w| check(w, "find"));
    for (k, _) in handles.iter().enumerate() {
        let w = registry
            .claim(&WorkerFilter::new(), job(&format!("j{k}")))
            .unwrap()
            .expect("a ready worker");
        check(&w, "claim");
    }
    clock.advance(secs(3600));
    let silent = registry.find_unhealthy(secs(60)).unwrap();
    assert_eq!(silent.len(), handles.len());
    silent.iter().for_each(|w| check(w, "find_unhealthy"));

    let restored = new_registry(clock.clone());
    restored.restore(registry.snapshot().unwrap()).unwrap();
    for h in &handles {
        check(&get(&*restored, &h.worker_id), "get after restore");
        let w = restored
            .unregister(&h.worker_id, TerminationReason::Requested)
            .unwrap();
        check(&w, "unregister after restore");
        let w = registry
            .unregister(&h.worker_id, TerminationReason::Requested)
            .unwrap();
        check(&w, "unregister");
    }
}
