//! Dropping a subscription (and so its reader's connection, which runs on a runtime of its own)
//! on a thread that drives an async runtime: a host's async code holds subscriptions too. Tokio
//! panics when a runtime is dropped there; the library caught that panic, so nothing crashed,
//! but every such drop printed a panic message (the default hook) and left the reader's runtime
//! half dropped. A binary of its own: the panic hook it installs is process-wide. (The
//! registry's probe of whether it may block there, `may_block`, still panics and catches by
//! design: that message is not what this test counts.)

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use hodei_workers::*;

#[test]
fn dropping_a_subscription_inside_an_async_runtime_panics_nowhere() {
    let panics = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&panics);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.to_string().contains("Cannot drop a runtime") {
            counted.fetch_add(1, Ordering::SeqCst);
        }
        default_hook(info);
    }));
    let (_clock, registry, _schema) = registry("async_drop");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for _ in 0..3 {
        let subscription = registry.subscribe(SubscribeOptions::default()).unwrap();
        runtime.block_on(async { drop(subscription) });
    }
    // And the registry, with a subscription alive, dropped there too.
    let subscription = registry.subscribe(SubscribeOptions::default()).unwrap();
    runtime.block_on(async { drop(registry) });
    drop(subscription);
    let _ = std::panic::take_hook();
    assert_eq!(
        panics.load(Ordering::SeqCst),
        0,
        "runtimes dropped in async code (their panic messages above)"
    );
}
