//! The synchronous `postgres` client panics when it blocks on a thread that drives an async
//! runtime; the registry must answer `Backend` (saying what to do) instead, and stay usable.

mod common;

use common::*;
use hodei_workers::*;

#[test]
fn a_call_from_inside_an_async_runtime_is_a_backend_error_not_a_panic() {
    let (_clock, registry, _schema) = registry("async");
    let id = registry.register(handle(), spec()).unwrap().id;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (got, beat, stats) =
        runtime.block_on(async { (registry.get(&id), registry.heartbeat(&id), registry.stats()) });
    for result in [got.map(|_| ()), beat, stats.map(|_| ())] {
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
    // Nor does dropping the registry (its pooled clients own runtimes) inside one panic.
    runtime.block_on(async move { drop(registry) });
}
