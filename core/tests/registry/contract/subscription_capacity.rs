//! Item 22: a subscription of capacity 0 is refused.

use super::{register, setup};
use hodei_workers::*;

#[test]
fn a_subscription_of_capacity_zero_is_refused() {
    let (_clock, registry) = setup();
    assert!(matches!(
        registry.subscribe(SubscribeOptions::default().capacity(0)),
        Err(Error::InvalidArgument(_))
    ));
    let one = registry
        .subscribe(SubscribeOptions::default().capacity(1))
        .unwrap();
    register(&*registry);
    register(&*registry);
    assert_eq!((one.len(), one.dropped()), (1, 1));
}
