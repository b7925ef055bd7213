//! The synchronous `postgres` client panics when it blocks on a thread that drives an async
//! runtime; the registry must answer `Backend` (saying what to do) instead, and stay usable.

mod common;

use common::*;
use hodei_workers::*;
use std::time::Duration;

#[test]
fn a_call_from_inside_an_async_runtime_is_a_backend_error_not_a_panic() {
    let (_clock, registry, _schema) = registry("async");
    let id = registry.register(handle(), spec()).unwrap().id;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let lease = registry
        .leadership("a", std::time::Duration::from_secs(10))
        .unwrap();
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    let dropped_inside = registry.subscribe(SubscribeOptions::default()).unwrap();
    let (got, beat, stats) =
        runtime.block_on(async { (registry.get(&id), registry.heartbeat(&id), registry.stats()) });
    // A subscription's reader runs its own runtime too: refused or idle here, never a panic
    // (nor an abort when its connection is dropped here).
    let (subscribed, polled) = runtime.block_on(async {
        let subscribed = registry.subscribe(SubscribeOptions::default()).map(|_| ());
        (subscribed, events.try_recv())
    });
    runtime.block_on(async { drop(dropped_inside) });
    assert_eq!(polled, None);
    // The lease's connection runs on a runtime of its own, which cannot block here either.
    let renewed = runtime.block_on(async { lease.acquire_or_renew(None) });
    for result in [
        got.map(|_| ()),
        beat,
        stats.map(|_| ()),
        renewed.map(|_| ()),
        subscribed,
    ] {
        match result {
            Err(Error::Backend(message)) => {
                assert!(message.contains("spawn_blocking"), "{message}")
            }
            other => panic!("expected a backend error, got {other:?}"),
        }
    }
    // Nothing was broken by it: the same registry works from a plain thread.
    assert_eq!(registry.get(&id).unwrap().unwrap().id, id);
    registry.heartbeat(&id).unwrap();
    assert!(matches!(
        lease.acquire_or_renew(None),
        Ok(LeaseStatus::Held(_))
    ));
    registry.update_state(&id, WorkerState::Ready).unwrap();
    let names: Vec<&str> = std::iter::from_fn(|| events.recv(Some(Duration::from_secs(2))))
        .map(|e| e.kind.name())
        .collect();
    assert_eq!(names, ["state_changed"], "the subscription goes on");
    // From a blocking thread of the runtime, as the message advises, it works (a caller that
    // cannot block is told so before it joins a batch of heartbeats: the check must not refuse
    // this one).
    let registry = std::sync::Arc::new(registry);
    let blocking = std::sync::Arc::clone(&registry);
    let beat = runtime.block_on(async move {
        tokio::task::spawn_blocking(move || blocking.heartbeat(&id))
            .await
            .unwrap()
    });
    assert_eq!(beat, Ok(()));
    // The lease too: its own runtime may block there (before, it refused every call made from
    // a runtime's context, `spawn_blocking`'s included, with the message that advises it).
    let lease = std::sync::Arc::new(lease);
    let blocking = std::sync::Arc::clone(&lease);
    let renewed = runtime.block_on(async move {
        tokio::task::spawn_blocking(move || blocking.acquire_or_renew(None))
            .await
            .unwrap()
    });
    assert!(renewed.is_ok(), "{renewed:?}");
    // Nor does dropping the registry (its pooled clients own runtimes) or the lease (its
    // connection too) inside one panic.
    runtime.block_on(async move {
        drop(lease);
        drop(registry)
    });
}
