//! What the PostgreSQL tests share: the server to use (`HODEI_PG_URL`, set by `make test`), a
//! unique registry name (schema) per registry, registries whose schema is dropped when the
//! last handle is gone, and a bound on how long a call under test may take.
#![allow(dead_code)] // each test binary uses a different part of it

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hodei_workers::Clock;
use hodei_workers_postgres::PostgresWorkerRegistry;

/// The server the tests run against. A test that needs it and finds no `HODEI_PG_URL` fails
/// (never skips): `make test` starts a throwaway server and sets it.
pub fn url() -> String {
    match std::env::var("HODEI_PG_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "HODEI_PG_URL is not set: the PostgreSQL tests need a server. Run them through \
             `make test` or `make test-pg` (which start a throwaway server), or \
             `scripts/pg-tmp.sh run cargo test -p hodei-workers-postgres`, or set HODEI_PG_URL \
             to a libpq connection string (e.g. 'host=/tmp user=postgres dbname=postgres' or \
             'postgresql://user@localhost/db') of a server where the user may create schemas"
        ),
    }
}

/// A registry name no other test (of any process, of any run) uses: `<prefix>_<pid>_<n>_<rand>`.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let rand = &hodei_workers::WorkerId::new().to_string()[..8];
    format!("{prefix}_{}_{n}_{rand}", std::process::id())
}

/// A new registry named `name` on `clock` (a manual clock for deterministic tests).
pub fn connect(name: &str, clock: Arc<dyn Clock>) -> PostgresWorkerRegistry {
    PostgresWorkerRegistry::connect_with_clock(&url(), name, clock)
        .unwrap_or_else(|e| panic!("connect to HODEI_PG_URL as registry {name:?}: {e}"))
}

/// Drops a registry's schema; a failure is reported, not raised (this runs in destructors).
pub fn drop_schema(url: &str, name: &str) {
    if let Err(e) = PostgresWorkerRegistry::drop_schema(url, name) {
        eprintln!("warning: could not drop the schema of test registry {name:?}: {e}");
    }
}

/// Drops the schema of `name` when dropped.
#[derive(Debug)]
pub struct SchemaGuard {
    pub url: String,
    pub name: String,
}

impl SchemaGuard {
    /// A fresh registry name whose schema goes away with the guard.
    pub fn new(prefix: &str) -> Self {
        SchemaGuard {
            url: url(),
            name: unique_name(prefix),
        }
    }
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        drop_schema(&self.url, &self.name)
    }
}

/// Runs `f` on a thread of its own and waits at most `patience` for it: a hang fails the test,
/// naming `what`, instead of leaving the run stuck; a panic of `f` is resumed here.
pub fn bounded<T: Send + 'static>(
    what: &str,
    patience: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(patience) {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("{what}: no answer within {patience:?}"),
    }
}

/// Sends `sig` (`-STOP`, `-CONT`, …) to process `pid` with `kill`; fails the test if it cannot.
pub fn signal(pid: impl std::fmt::Display, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// The server process of the lease connection of registry `schema` (its `application_name`
/// is `hw-lease-<schema>`): there must be exactly one, so ask before a second replica's lease
/// connects.
pub fn lease_backend(schema: &str) -> i32 {
    let mut admin = postgres::Client::connect(&url(), postgres::NoTls).expect("connect");
    admin
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
            &[&format!("hw-lease-{schema}")],
        )
        .expect("one lease connection of the registry")
        .get(0)
}

/// The counter slot of worker `id` in registry `schema`, as the registry stored it
/// (`workers.slot`). A change of state updates its slot's row of the counters in its
/// transaction, so changes of two workers of one slot wait for each other (of the 32 slots);
/// a test that needs two workers whose changes never wait for each other picks them in two.
pub fn counter_slot(schema: &str, id: &hodei_workers::WorkerId) -> i16 {
    let mut client = postgres::Client::connect(&url(), postgres::NoTls).expect("connect");
    let sql = format!(
        "SELECT slot FROM \"{}\".workers WHERE id = $1",
        schema.replace('"', "\"\"")
    );
    client
        .query_one(&sql, &[id.as_uuid()])
        .expect("the worker's record")
        .get(0)
}

/// Ends the session of the one subscription reader listening in `admin`'s schema (a session
/// the server closed, as a restart or an idle timeout would), asserting there was exactly one.
pub fn end_the_only_reader_session(admin: &mut postgres::Client) {
    let ended = admin
        .query(
            "SELECT pg_terminate_backend(pid, 10000) FROM listeners \
             WHERE pid IN (SELECT pid FROM pg_stat_activity)",
            &[],
        )
        .unwrap();
    assert_eq!(ended.len(), 1, "one reader");
    assert!(ended[0].get::<_, bool>(0), "its session ended");
}
