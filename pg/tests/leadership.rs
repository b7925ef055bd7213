//! The leadership lease on PostgreSQL: terms, renewal only of the held term, step-down, one
//! winner among replicas racing for a free lease, the database clock, a killed connection, a
//! server that stops answering.

mod common;
#[path = "../../core/tests/support/lease_contract.rs"]
mod lease_contract;

use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use common::support::signal;
use common::*;
use hodei_workers::*;
use hodei_workers_postgres::{PostgresLeadership, PostgresWorkerRegistry};

const TTL: Duration = Duration::from_secs(10);

fn held(status: LeaseStatus) -> LeaderInfo {
    match status {
        LeaseStatus::Held(info) => info,
        other => panic!("expected the lease, got {other:?}"),
    }
}

fn follower(status: LeaseStatus) -> Option<LeaderInfo> {
    match status {
        LeaseStatus::Follower(leader) => leader,
        other => panic!("expected to follow, got {other:?}"),
    }
}

#[test]
fn terms_grow_and_only_the_held_term_is_renewed() {
    let (clock, registry, _schema) = registry("lease_terms");
    let a = registry.leadership("a", TTL).unwrap();
    let b = registry.leadership("b", TTL).unwrap();
    assert_eq!(a.current().unwrap(), None);

    let t1 = held(a.acquire_or_renew(None).unwrap());
    assert_eq!((t1.holder.as_str(), t1.term, t1.since), ("a", 1, T0));
    assert_eq!(t1.expires_at, T0 + 10_000);
    // A live lease is not taken, and not renewed without naming the held term.
    assert_eq!(
        follower(b.acquire_or_renew(None).unwrap()),
        Some(t1.clone())
    );
    assert_eq!(
        follower(a.acquire_or_renew(None).unwrap()),
        Some(t1.clone())
    );
    assert_eq!(
        follower(b.acquire_or_renew(Some(1)).unwrap()),
        Some(t1.clone())
    );

    clock.advance(Duration::from_secs(6));
    let r = held(a.acquire_or_renew(Some(1)).unwrap());
    assert_eq!((r.term, r.since, r.expires_at), (1, T0, T0 + 16_000));

    // a stops renewing; once expired, b takes it under a new term.
    clock.advance(Duration::from_secs(10));
    let t2 = held(b.acquire_or_renew(None).unwrap());
    assert_eq!(
        (t2.holder.as_str(), t2.term, t2.since),
        ("b", 2, T0 + 16_000)
    );
    // a's renewal of term 1 is refused: the row says b, term 2.
    assert_eq!(
        follower(a.acquire_or_renew(Some(1)).unwrap()),
        Some(t2.clone())
    );
    assert_eq!(a.current().unwrap(), Some(t2));
}

/// The lease conformance suite (core/tests/support/lease_contract.rs) on PostgreSQL.
#[test]
fn the_postgres_lease_keeps_the_lease_contract() {
    let (clock, registry, _schema) = registry("lease_contract");
    lease_contract::terms_are_consecutive(lease_contract::LeaseUnderTest {
        clock,
        ttl: TTL,
        replica: Box::new(move |holder| Arc::new(registry.leadership(holder, TTL).unwrap())),
    });
}

#[test]
fn stepping_down_frees_the_lease_at_once_and_only_for_the_own_term() {
    let (_clock, registry, _schema) = registry("lease_step_down");
    let a = registry.leadership("a", TTL).unwrap();
    let b = registry.leadership("b", TTL).unwrap();
    held(a.acquire_or_renew(None).unwrap());
    b.step_down(1).unwrap(); // not b's term: nothing happens
    follower(b.acquire_or_renew(None).unwrap());
    a.step_down(1).unwrap();
    let t2 = held(b.acquire_or_renew(None).unwrap());
    assert_eq!(t2.term, 2);
    a.step_down(1).unwrap(); // an old term: nothing happens
    assert_eq!(held(b.acquire_or_renew(Some(2)).unwrap()).term, 2);
}

#[test]
fn of_replicas_racing_for_a_free_lease_exactly_one_wins() {
    let (_clock, registry, _schema) = registry("lease_race");
    let n = 6;
    let leases: Vec<PostgresLeadership> = (0..n)
        .map(|i| registry.leadership(&format!("r{i}"), TTL).unwrap())
        .collect();
    let barrier = Arc::new(Barrier::new(n));
    let winners: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = leases
            .iter()
            .map(|lease| {
                let barrier = Arc::clone(&barrier);
                s.spawn(move || {
                    barrier.wait();
                    match lease.acquire_or_renew(None).unwrap() {
                        LeaseStatus::Held(info) => Some(info.holder),
                        LeaseStatus::Follower(_) => None,
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(winners.len(), 1, "{winners:?}");
    let current = leases[0].current().unwrap().unwrap();
    assert_eq!((current.holder, current.term), (winners[0].clone(), 1));
}

#[test]
fn on_the_database_clock_the_lease_lasts_ttl() {
    let _schema = SchemaGuard::new("lease_db_clock");
    let name = _schema.name.clone();
    let registry = PostgresWorkerRegistry::connect(&url(), &name).unwrap();
    let lease = registry.leadership("a", TTL).unwrap();
    let info = held(lease.acquire_or_renew(None).unwrap());
    assert_eq!(info.expires_at - info.since, 10_000);
    let renewed = held(lease.acquire_or_renew(Some(info.term)).unwrap());
    assert_eq!(renewed.since, info.since);
    assert!(renewed.expires_at >= info.expires_at);
}

/// The pid of the lease's backend (the only one with this application_name).
fn lease_backend(schema: &SchemaGuard) -> i32 {
    let mut admin = postgres::Client::connect(&url(), postgres::NoTls).unwrap();
    admin
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
            &[&format!("hw-lease-{}", schema.name)],
        )
        .unwrap()
        .get(0)
}

#[test]
fn a_killed_connection_is_replaced_before_the_next_call_sends_anything() {
    let (_clock, registry, schema) = registry("lease_killed");
    let lease = registry.leadership("a", TTL).unwrap();
    held(lease.acquire_or_renew(None).unwrap());
    let mut admin = postgres::Client::connect(&url(), postgres::NoTls).unwrap();
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&format!("hw-lease-{}", schema.name)],
        )
        .unwrap();
    assert_eq!(killed.len(), 1);
    // The connection has been idle long enough to be checked before its next use: found
    // closed, it is replaced, and the renewal runs (once) on the new one, still term 1.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(held(lease.acquire_or_renew(Some(1)).unwrap()).term, 1);
}

/// A lease call whose session the server ends under it (an administrator's
/// `pg_terminate_backend` while the renewal waits for a row lock) gets an error of severity
/// `FATAL` before the client reads the close: the connection must not be used again, though
/// it was used a moment ago (the next call made at once would otherwise fail too).
#[test]
fn a_session_ended_under_a_call_is_not_used_by_the_next() {
    let (_clock, registry, schema) = registry("lease_fatal");
    let lease = Arc::new(registry.leadership("a", TTL).unwrap());
    let term = held(lease.acquire_or_renew(None).unwrap()).term;
    let backend = lease_backend(&schema);
    let mut holder = postgres::Client::connect(&url(), postgres::NoTls).unwrap();
    let mut hold = holder.transaction().unwrap();
    hold.execute(
        &format!(
            "SELECT 1 FROM \"{}\".manager_leases FOR UPDATE",
            schema.name.replace('"', "\"\"")
        ),
        &[],
    )
    .unwrap();
    let renewing = Arc::clone(&lease);
    let calls = std::thread::spawn(move || {
        let first = renewing.acquire_or_renew(Some(term));
        (first, renewing.acquire_or_renew(Some(term)))
    });
    let mut admin = postgres::Client::connect(&url(), postgres::NoTls).unwrap();
    let waiting = Instant::now();
    while admin
        .query(
            "SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'",
            &[&backend],
        )
        .unwrap()
        .is_empty()
    {
        assert!(
            waiting.elapsed() < TTL / 3,
            "the renewal never waited for the lock"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&backend])
        .unwrap();
    hold.rollback().unwrap();
    let (first, second) = calls.join().unwrap();
    assert!(
        matches!(&first, Err(Error::Backend(_))),
        "the renewal whose session ended: {first:?}"
    );
    assert_eq!(
        held(second.expect("the next call, on a new connection")).term,
        term
    );
}

/// Resumes a stopped backend when dropped (also when the test fails).
struct Resume(i32);

impl Drop for Resume {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

/// The server's statement timeout cannot end a renewal when the server stops answering (a
/// frozen VM, a network black hole; here the lease's backend is stopped with SIGSTOP): the
/// client's own deadline (half the ttl) does, whatever the transport (this test runs on a Unix
/// socket, where TCP timeouts do not apply). Without it the renewal waits as long as the
/// server is stopped (here up to 20 s, resumed as soon as the renewal answered); the bound
/// asserted (10 x ttl) is far above the deadline (ttl/2). Then the next call reconnects.
#[test]
fn a_renewal_against_a_silent_server_returns_within_half_the_ttl() {
    let (_clock, registry, schema) = registry("lease_silent");
    let ttl = Duration::from_millis(600);
    let lease = Arc::new(registry.leadership("a", ttl).unwrap());
    let term = held(lease.acquire_or_renew(None).unwrap()).term;
    let backend = lease_backend(&schema);
    signal(backend, "-STOP");
    let resume = Resume(backend);
    let (tx, rx) = mpsc::channel();
    let renewing = Arc::clone(&lease);
    let started = Instant::now();
    std::thread::spawn(move || {
        let result = renewing.acquire_or_renew(Some(term));
        let _ = tx.send((started.elapsed(), result));
    });
    let answered = rx.recv_timeout(Duration::from_secs(20));
    drop(resume);
    let (took, result) = answered.expect("the renewal still waited after 20 s of silence");
    assert!(
        took < ttl * 10,
        "the renewal took {took:?} (deadline ttl/2 = {:?})",
        ttl / 2
    );
    let err = result.unwrap_err();
    assert!(
        matches!(&err, Error::Backend(m) if m.contains("no answer")),
        "{err}"
    );
    // The stalled connection was dropped: the next call opens another and renews the term.
    assert_eq!(held(lease.acquire_or_renew(Some(term)).unwrap()).term, term);
}

#[test]
fn bad_holders_and_ttls_are_refused() {
    let (_clock, registry, _schema) = registry("lease_bad");
    for holder in ["", "a\0b", &"x".repeat(129)] {
        let err = registry.leadership(holder, TTL).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
    let over = MAX_CONFIG_DURATION + Duration::from_millis(1);
    for ttl in [Duration::ZERO, over, Duration::MAX] {
        let err = registry.leadership("a", ttl).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{ttl:?}: {err}");
    }
}

/// Any ttl the lease accepts (3 ms to 100 years: `validate_lease`) gives a lease that works.
/// Before, a ttl over ~74.5 days made every call fail with `Backend` ("lease: cannot connect: …
/// invalid value for parameter "statement_timeout"": the server's statement timeout, ttl/3, is
/// at most 2^31 − 1 ms), so a replicated manager never led; and `Duration::MAX` (refused since)
/// answered "the PostgreSQL client panicked: overflow when adding duration to instant" (the
/// call's deadline, now + ttl/2).
#[test]
fn a_lease_with_a_long_ttl_is_acquired_renewed_and_given_up() {
    let (_clock, registry, _schema) = registry("lease_long_ttl");
    let day = Duration::from_secs(86_400);
    for (holder, ttl) in [
        ("a", day * 75),
        ("b", MAX_CONFIG_DURATION), // 36 500 days
    ] {
        let lease = registry.leadership(holder, ttl).unwrap();
        let info = held(
            lease
                .acquire_or_renew(None)
                .unwrap_or_else(|e| panic!("ttl {ttl:?}: {e}")),
        );
        assert_eq!(info.holder, holder, "ttl {ttl:?}");
        // Lasting the ttl, saturating at the end of the clock, as `InMemoryLease`.
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        assert_eq!(
            info.expires_at,
            info.since.saturating_add(ms),
            "ttl {ttl:?}"
        );
        assert_eq!(
            held(lease.acquire_or_renew(Some(info.term)).unwrap()).term,
            info.term,
            "ttl {ttl:?}"
        );
        lease.step_down(info.term).unwrap();
    }
}

/// On a clock near its end (a manual clock; the registry keeps working there, see the
/// registry's `extreme_values_in_a_snapshot_do_not_break_the_registry`), the lease's expiry
/// saturates at the end of the clock, as `InMemoryLease`'s does. Before, `now + ttl` overflowed
/// `bigint` and every acquisition failed with `Backend` ("bigint out of range").
#[test]
fn a_lease_taken_at_the_end_of_the_clock_expires_there() {
    let (clock, registry, _schema) = registry("lease_clock_end");
    clock.set(u64::MAX - 1_000);
    let lease = registry.leadership("a", TTL).unwrap();
    let info = held(lease.acquire_or_renew(None).unwrap());
    assert_eq!(
        (info.term, info.since, info.expires_at),
        (1, u64::MAX - 1_000, u64::MAX)
    );
    assert_eq!(
        held(lease.acquire_or_renew(Some(1)).unwrap()).expires_at,
        u64::MAX
    );
    lease.step_down(1).unwrap();
    let b = registry.leadership("b", TTL).unwrap();
    assert_eq!(held(b.acquire_or_renew(None).unwrap()).term, 2);
}
