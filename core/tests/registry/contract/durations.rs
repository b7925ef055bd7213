//! Item 16: durations that cannot round-trip are refused.

use std::sync::Arc;
use std::time::Duration;

use super::{handle, setup};
use hodei_workers::*;

#[test]
fn durations_that_cannot_be_read_back_are_refused() {
    let (_clock, registry) = setup();
    for bad in [
        Duration::MAX,
        Duration::from_millis(u64::MAX),
        Duration::from_secs(u64::MAX),
        MAX_SPEC_DURATION + Duration::from_nanos(1),
    ] {
        for spec in [
            WorkerSpec::new("img").with_idle_timeout(bad),
            WorkerSpec::new("img").with_max_lifetime(bad),
        ] {
            assert!(
                matches!(spec.validate(), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
            assert!(matches!(
                registry.register(handle(), Arc::new(spec)),
                Err(Error::InvalidArgument(_))
            ));
        }
    }
    // The largest accepted durations round-trip through a snapshot exactly.
    let spec = WorkerSpec::new("img")
        .with_idle_timeout(MAX_SPEC_DURATION)
        .with_max_lifetime(MAX_SPEC_DURATION - Duration::from_millis(1));
    let id = registry
        .register(handle(), Arc::new(spec.clone()))
        .unwrap()
        .id;
    let text = registry.snapshot().unwrap().to_json().unwrap();
    let back = Snapshot::from_json(&text).unwrap();
    assert_eq!(*back.workers[0].spec, spec);
    assert_eq!(back.workers[0].id, id);
}
