//! The leader lease: one holder at a time, renewal only within one's term, step-down, expiry
//! on the database's clock (simulated by moving the row's expiry, never by sleeping).

mod common;

use std::time::Duration;

use common::*;
use hodei_workers::Error;
use hodei_workers_postgres::LeaderLease;
use postgres::{Client, NoTls};

fn lease(registry: &str, holder: &str) -> LeaderLease {
    LeaderLease::connect(&url(), registry, "manager", holder, Duration::from_secs(30)).unwrap()
}

fn expire(registry: &str) {
    let mut client = Client::connect(&url(), NoTls).unwrap();
    client
        .execute(
            &format!(
                "UPDATE \"{registry}\".leases SET expires_at = clock_timestamp() - interval '1 s'"
            ),
            &[],
        )
        .unwrap();
}

#[test]
fn one_holder_at_a_time_and_a_new_holder_gets_a_new_term() {
    let name = name("lease");
    let _schema = Schema(name.clone());
    let a = lease(&name, "replica-a");
    let b = lease(&name, "replica-b");

    assert_eq!(a.try_acquire().unwrap(), Some(1));
    assert_eq!(a.term(), Some(1), "trusted within its window");
    assert_eq!(b.try_acquire().unwrap(), None, "held by a");
    assert_eq!(b.term(), None);
    assert!(a.renew().unwrap());
    assert_eq!(
        a.try_acquire().unwrap(),
        Some(1),
        "re-acquiring one's own lease keeps the term"
    );
    assert!(!b.renew().unwrap(), "b holds no term to renew");

    // a's lease expires without a renewal; b takes it with a new term.
    expire(&name);
    assert_eq!(b.try_acquire().unwrap(), Some(2));
    assert!(b.fenced(2).unwrap());
    assert!(
        !b.fenced(1).unwrap(),
        "a write fenced by the old term is refused"
    );
    // a comes back: its renewal of term 1 fails, and it trusts nothing any more.
    assert!(!a.renew().unwrap());
    assert_eq!(a.term(), None);
    assert_eq!(a.try_acquire().unwrap(), None);

    // Stepping down frees the lease at once.
    b.step_down().unwrap();
    assert_eq!(b.term(), None);
    assert_eq!(a.try_acquire().unwrap(), Some(3));
}

#[test]
fn bad_arguments_are_refused() {
    let name = name("leasebad");
    let _schema = Schema(name.clone());
    for (holder, ttl) in [("", 30_000), ("x\0y", 30_000), ("ok", 1)] {
        assert!(matches!(
            LeaderLease::connect(&url(), &name, "m", holder, Duration::from_millis(ttl)),
            Err(Error::InvalidArgument(_))
        ));
    }
}
