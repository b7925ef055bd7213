//! Item 21: no event about a worker is published after its `Unregistered`.

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};
use std::thread;

use super::{kinds, ready, setup, T0};
use hodei_workers::*;

#[test]
fn no_event_about_a_worker_is_published_after_its_unregistered() {
    let (_clock, registry) = setup();
    let id = ready(&*registry);
    let provider = ProviderId::new("docker-local").unwrap();
    let destroy_failed = |worker_id| EventKind::DestroyFailed {
        worker_id,
        provider_id: provider.clone(),
        error: "boom".into(),
        attempts: 1,
    };
    // About a live worker: published.
    registry.publish(destroy_failed(id)).unwrap();
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    registry
        .unregister(&id, TerminationReason::Requested)
        .unwrap();
    // After its Unregistered: refused, and nobody sees it.
    assert_eq!(
        registry.publish(destroy_failed(id)),
        Err(Error::NotFound(id))
    );
    assert_eq!(
        registry.publish(EventKind::UnhealthyDetected {
            worker_id: id,
            last_heartbeat: T0
        }),
        Err(Error::NotFound(id))
    );
    let never = WorkerId::new();
    assert_eq!(
        registry.publish(destroy_failed(never)),
        Err(Error::NotFound(never))
    );
    // Events about no worker are always published.
    registry
        .publish(EventKind::ProvisionRequested {
            provider_id: provider.clone(),
        })
        .unwrap();
    assert_eq!(
        kinds(&events.drain()),
        ["unregistered", "provision_requested"]
    );
}

#[test]
fn publishing_racing_unregister_never_follows_the_unregistered_event() {
    for _ in 0..crate::common::scaled(50, 5) {
        let (_clock, registry) = setup();
        let ids: Vec<WorkerId> = (0..100).map(|_| ready(&*registry)).collect();
        let events = registry
            .subscribe(SubscribeOptions::default().capacity(100_000))
            .unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let publisher = {
            let (registry, barrier, ids) = (registry.clone(), barrier.clone(), ids.clone());
            thread::spawn(move || {
                barrier.wait();
                for id in ids.iter().rev() {
                    let _ = registry.publish(EventKind::UnhealthyDetected {
                        worker_id: *id,
                        last_heartbeat: T0,
                    });
                }
            })
        };
        barrier.wait();
        for id in &ids {
            registry
                .unregister(id, TerminationReason::Requested)
                .unwrap();
        }
        publisher.join().unwrap();
        let mut gone = BTreeSet::new();
        for e in events.drain() {
            let who = e.kind.worker_id().unwrap();
            assert!(!gone.contains(&who), "{:?} after its unregistered", e.kind);
            if e.kind.name() == "unregistered" {
                gone.insert(who);
            }
        }
    }
}
