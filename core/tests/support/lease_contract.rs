//! The lease conformance suite: the contract of [`Leadership`] that every store keeps, written
//! once against a [`LeaseUnderTest`], and run on [`InMemoryLease`]
//! (core/tests/lifecycle/leadership.rs) and on `PostgresLeadership` (pg/tests/leadership.rs).
#![allow(dead_code)] // each test crate uses a different part of it

use std::sync::Arc;
use std::time::Duration;

use hodei_workers::*;

/// Makes a replica's view of one lease as the given holder.
pub type Replica = Box<dyn Fn(&str) -> Arc<dyn Leadership>>;

/// One fresh, free lease of the store under test, on a manual clock (the store's).
pub struct LeaseUnderTest {
    /// The store's clock: expiry is judged on it.
    pub clock: Arc<ManualClock>,
    /// The ttl of every replica's view.
    pub ttl: Duration,
    /// A replica's view of the lease as the given holder.
    pub replica: Replica,
}

/// Acquires `lease` (naming `held`), which must take term `*last + 1`; `*last` becomes it.
fn next(last: &mut Term, lease: &dyn Leadership, held: Option<Term>, why: &str) {
    let term = term_of(lease, held);
    assert_eq!(term, *last + 1, "{why}");
    *last = term;
}

fn term_of(lease: &dyn Leadership, held: Option<Term>) -> Term {
    match lease.acquire_or_renew(held).unwrap() {
        LeaseStatus::Held(info) => {
            assert_eq!(info.holder, lease.holder());
            info.term
        }
        other => panic!("{} expected the lease, got {other:?}", lease.holder()),
    }
}

/// Terms are consecutive: the first acquisition takes term 1, every later one the previous
/// term + 1 — whoever acquires, however the previous term ended (expired, given up), the same
/// holder again included (a restarted process naming no term, or naming a term another
/// replica took since) — and a renewal keeps the term, also that of an expired lease nobody
/// took. (The manager tells "nobody led in between" from "somebody did" by it.)
pub fn terms_are_consecutive(lease: LeaseUnderTest) {
    let a = (lease.replica)("a");
    let b = (lease.replica)("b");
    let past = lease.ttl + Duration::from_millis(1);
    let mut last = term_of(&*a, None);
    assert_eq!(last, 1, "the first term");

    assert_eq!(term_of(&*a, Some(1)), 1, "a renewal keeps the term");
    lease.clock.advance(past);
    next(&mut last, &*b, None, "another holder, after an expiry");
    b.step_down(last).unwrap();
    next(
        &mut last,
        &*a,
        Some(1),
        "a holder naming a term it lost, after a step-down",
    );
    lease.clock.advance(past);
    next(
        &mut last,
        &*a,
        None,
        "the same holder naming no term, after its own expiry",
    );
    let held = last;
    lease.clock.advance(past);
    assert_eq!(
        term_of(&*a, Some(held)),
        held,
        "an expired lease nobody took is renewed under its term"
    );
    a.step_down(held).unwrap();
    next(&mut last, &*b, None, "another holder, after a step-down");
    for i in 0..4 {
        lease.clock.advance(past);
        let (who, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        next(&mut last, &**who, None, "holders taking turns");
        let seen = match other.acquire_or_renew(None).unwrap() {
            LeaseStatus::Follower(Some(leader)) => leader.term,
            held => panic!("a live lease is not taken: {held:?}"),
        };
        assert_eq!(seen, last, "the follower sees the term taken");
    }
    assert_eq!(a.current().unwrap().map(|l| l.term), Some(last));
}
