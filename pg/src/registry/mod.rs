//! [`PostgresWorkerRegistry`]: the [`WorkerRegistry`](hodei_workers::WorkerRegistry) trait on PostgreSQL.
//!
//! The registry's modules, each a part of it: this one the type, its connection and its
//! retry loop; [`change`] the transaction of a change to one locked record (lock, check, write
//! the record, its counters and its events in one statement); [`records`] `register`,
//! `unregister` and the state moves; [`jobs`] `assign_to_job` and `release_from_job` (`claim`
//! is `crate::claim`); [`worker_registry`] the `WorkerRegistry` trait, one method each,
//! calling these and the crate's other modules; [`fence`] the store-fenced view a leading
//! manager writes through.

mod change;
mod fence;
mod jobs;
mod records;
mod worker_registry;

pub(crate) use change::holder_of;
pub(crate) use fence::fence_key;
pub(crate) use jobs::{applied_on_gone, settle_assigned};

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use hodei_workers::{Clock, Error, Result, SystemClock, Timestamp};

use crate::error::{ends_session, guard, is_retryable, DbError};
use crate::heartbeat::Coalescer;
use crate::pool::{Conn, Pool};
use crate::schema;
use crate::sql::{db_ts, ts, Specs};

/// How a step of an operation failed: the database, or the operation's own verdict.
#[derive(Debug)]
pub(crate) enum Fail {
    /// The client or the server failed.
    Db(postgres::Error),
    /// The operation refused (NotFound, InvalidTransition, …).
    Domain(Error),
    /// Nothing was applied and the operation should run again (a race it lost cleanly).
    Retry,
    /// The connection's session had ended before the operation sent anything but `BEGIN`
    /// (which failed so: [`begin`]): nothing was applied, and the operation may run again on a
    /// new connection.
    Unsent(postgres::Error),
}

/// Starts a write transaction: `BEGIN`, the operation's first request. A failure that ends
/// the session here is [`Fail::Unsent`]: nothing of the operation's change was sent, so
/// [`PostgresWorkerRegistry::write`] runs it again on a new connection (once) rather than
/// answer `Backend`. This is what a connection closed between two calls looks like (a
/// restart, an administrator, a network device): the pool hands out a connection in steady use
/// without a round trip to check it.
pub(crate) fn begin(client: &mut postgres::Client) -> Step<postgres::Transaction<'_>> {
    client.transaction().map_err(|e| {
        if ends_session(&e) {
            Fail::Unsent(e)
        } else {
            Fail::Db(e)
        }
    })
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Self {
        Fail::Db(e)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Domain(e)
    }
}

pub(crate) type Step<T> = std::result::Result<T, Fail>;

/// The name of the unique constraint a statement violated, if that is how it failed.
pub(crate) fn unique_violation(fail: &Fail) -> Option<&str> {
    match fail {
        Fail::Db(e) => e.as_db_error().and_then(|db| {
            (db.code() == &postgres::error::SqlState::UNIQUE_VIOLATION)
                .then(|| db.constraint().unwrap_or(""))
        }),
        Fail::Domain(_) | Fail::Retry | Fail::Unsent(_) => None,
    }
}

/// Connections per registry: enough for the coalesced heartbeats plus a few callers; every
/// caller beyond waits for a free one (a pool is not a queue of the database's making).
const POOL_SIZE: usize = 8;

/// The [`WorkerRegistry`](hodei_workers::WorkerRegistry) on PostgreSQL (≥ 13): several processes (scheduler replicas) share
/// one fleet, and the fleet outlives them.
///
/// # Promises
/// - Every invariant of the trait holds **across processes**, enforced by the database: a job
///   is held by at most one worker (a unique index on `workers.current_job`); `claim` is one
///   statement (`FOR UPDATE SKIP LOCKED` in a CTE, most recently idle first; when it finds
///   nothing, a second that waits on the candidates others have locked); every other
///   change reads its worker `FOR UPDATE`, checks the state table in Rust and writes the record,
///   the counters and the events in the same transaction; a release names the job it expects.
/// - `stats()` reads 32 counter rows (plus one per provider and slot), never the fleet.
/// - Events: every change writes its events to an outbox table in its own transaction; every
///   subscriber, in any process, reads them in `seq` order (see [`crate::events`]).
/// - Time: with [`connect`](Self::connect), every deadline is judged on the database's clock
///   (replicas with skewed clocks agree); with [`connect_with_clock`](Self::connect_with_clock)
///   the registry passes its clock's `now` (a [`ManualClock`](hodei_workers::ManualClock) in
///   tests).
/// - Never a panic: a failed connection or statement is `Error::Backend` with the cause, and a
///   failed transaction applies nothing. A write whose connection is lost once the server has
///   its `COMMIT` may be applied all the same (its reply lost): it answers `Backend` only once
///   the server is done with that connection, so a read made after the answer tells which
///   (docs/DESIGN.md, "Lost replies"); a claim or an assignment makes that read itself, and
///   answers the worker holding its job (or the one it gave the job to, which lost it since:
///   its `AssignedToJob` event tells), or runs once more. A call from inside an async
///   runtime (where the synchronous client cannot block) is `Error::Backend` saying to use a
///   blocking thread.
///
/// # Costs
/// One to four round trips per call (a transaction: lock, write, commit); `heartbeat` callers on
/// several threads share one statement; `find` and `snapshot` read the fleet.
pub struct PostgresWorkerRegistry {
    pub(crate) inner: Arc<Inner>,
    /// Set on the view of a leading manager ([`fence`]): every write transaction checks it.
    pub(crate) fence: Option<Arc<fence::Fence>>,
}

/// The shared state of a registry (shared with its subscriptions' sources).
pub(crate) struct Inner {
    pub pool: Pool,
    /// The connection string's config for the asynchronous clients: the leadership lease's
    /// (`crate::leadership`) and the subscription readers' (`crate::events`).
    pub lease_config: tokio_postgres::Config,
    /// The connections of the heartbeat statements (`crate::heartbeat`): their sessions
    /// commit asynchronously (`synchronous_commit = off`; why, and what it risks, in
    /// `crate::heartbeat`). Nothing else runs on them.
    pub heartbeat_pool: Pool,
    /// `None`: the database's clock.
    pub clock: Option<Arc<dyn Clock>>,
    /// For `now()` on the database clock when the database cannot be asked.
    local: SystemClock,
    /// Database clock minus `local`, as last measured.
    offset: AtomicI64,
    /// The last `now()` answered (it never goes backwards).
    last_now: AtomicU64,
    pub specs: Specs,
    /// Subscribers of this registry that want `HeartbeatReceived`: while there are some,
    /// heartbeats also write their event to the outbox.
    pub heartbeat_subscribers: Arc<AtomicUsize>,
    pub heartbeats: Coalescer,
    /// When this process last pruned the outbox and the retired ids (`crate::retention`).
    pub last_prune: parking_lot::Mutex<Option<std::time::Instant>>,
    /// How many retired ids to remember (`PostgresWorkerRegistry::with_retired_id_limit`).
    pub retired_id_limit: AtomicU64,
    /// The readers of this registry's subscriptions: read to the end when it is dropped.
    pub readers:
        parking_lot::Mutex<Vec<std::sync::Weak<parking_lot::Mutex<crate::events::Reader>>>>,
    /// This registry's live subscriptions (`subscriber_drops`), and the id of the next one.
    pub subscriptions: parking_lot::Mutex<Vec<hodei_workers::SubscriptionMonitor>>,
    pub next_subscription: AtomicU64,
}

impl Drop for Inner {
    /// Events committed before the registry is dropped still reach its subscribers, then their
    /// streams end (as for a dropped in-memory registry).
    fn drop(&mut self) {
        for reader in self.readers.get_mut().drain(..) {
            if let Some(reader) = reader.upgrade() {
                reader.lock().close();
            }
        }
    }
}

impl fmt::Debug for PostgresWorkerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresWorkerRegistry")
            .field("schema", &self.inner.pool.schema())
            .field("pool", &self.inner.pool)
            .field("clock", &self.inner.clock)
            .field("fence", &self.fence)
            .finish_non_exhaustive()
    }
}

/// Why the client refused a connection string: its error says only "invalid connection
/// string", the reason (the option, never its value: a password stays out of the message) is
/// its source. An unknown option's name is the caller's text, quoted as every message quotes
/// one ([`quote_input`](hodei_workers::quote_input)).
fn why(error: &tokio_postgres::Error) -> String {
    let Some(cause) = std::error::Error::source(error).map(ToString::to_string) else {
        return error.to_string();
    };
    match cause
        .strip_prefix("unknown option `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        Some(key) => format!("unknown option {}", hodei_workers::quote_input(key)),
        None => cause,
    }
}

/// Parses a libpq connection string, with [`transport_defaults`](crate::pool::transport_defaults)
/// for what it does not set, as the asynchronous client's config (the lease's) and the
/// synchronous one's. A NUL, in the text or percent-encoded in a URL
/// (`postgresql://%2Ftmp%00/db`), is refused here as malformed: libpq's strings cannot hold
/// one, and the connection would otherwise fail later as unreachable (`Backend`).
fn parse_config(url: &str) -> Result<(tokio_postgres::Config, postgres::Config)> {
    let nul = || Error::invalid("invalid PostgreSQL connection string: it contains a NUL");
    if url.contains('\0') {
        return Err(nul());
    }
    let mut config = url.parse::<tokio_postgres::Config>().map_err(|e| {
        Error::invalid(format!("invalid PostgreSQL connection string: {}", why(&e)))
    })?;
    let texts = [
        config.get_user(),
        config.get_dbname(),
        config.get_options(),
        config.get_application_name(),
    ];
    let hosts = config.get_hosts().iter().any(|host| match host {
        tokio_postgres::config::Host::Tcp(name) => name.contains('\0'),
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(path) => {
            path.as_os_str().as_encoded_bytes().contains(&0)
        }
    });
    if hosts
        || texts.into_iter().flatten().any(|t| t.contains('\0'))
        || config.get_password().is_some_and(|p| p.contains(&0))
    {
        return Err(nul());
    }
    crate::pool::transport_defaults(&mut config);
    Ok((config.clone(), postgres::Config::from(config)))
}

impl PostgresWorkerRegistry {
    /// Connects (a pool of up to 8 connections and one of up to 8 for heartbeats, opened on
    /// demand), applies the migrations the schema lacks (safe when replicas start at once) and
    /// uses the schema named `name` for this registry. Deadlines are judged on the database's
    /// clock. A schema that is current is only read (no DDL): a runtime role with USAGE on the
    /// schema, SELECT/INSERT/UPDATE/DELETE on its tables and USAGE/UPDATE on its sequences
    /// opens it (README, "PostgreSQL").
    ///
    /// `url` is any libpq connection string, URL (`postgresql://user@host/db`) or `key=value`
    /// (`host=/tmp user=postgres dbname=postgres`).
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed `url` or `name` ([`schema::validate_name`]);
    /// `Backend` when the server cannot be reached or the migrations fail (a role lacking a
    /// right the step needs: the message names it), or when the schema is newer than this
    /// build's migrations (a newer build migrated it: refused, nothing changed).
    pub fn connect(url: &str, name: &str) -> Result<Self> {
        Self::open(url, name, None)
    }

    /// As [`connect`](Self::connect), but every deadline and timestamp is taken from `clock`
    /// (passed to the database as a parameter), so a [`ManualClock`](hodei_workers::ManualClock)
    /// drives the registry deterministically.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub fn connect_with_clock(url: &str, name: &str, clock: Arc<dyn Clock>) -> Result<Self> {
        Self::open(url, name, Some(clock))
    }

    /// Drops the schema of registry `name` and everything in it (tests clean up with it).
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed `url` or `name`; `Backend`.
    pub fn drop_schema(url: &str, name: &str) -> Result<()> {
        schema::validate_name(name)?;
        let (_, config) = parse_config(url)?;
        guard(|| {
            let mut conn = Conn::open(&config, name).map_err(|cause| {
                Error::Backend(format!("cannot connect to PostgreSQL: {cause}"))
            })?;
            schema::drop_schema(&mut conn, name)
        })
    }

    fn open(url: &str, name: &str, clock: Option<Arc<dyn Clock>>) -> Result<Self> {
        schema::validate_name(name)?;
        let (lease_config, config) = parse_config(url)?;
        let inner = Inner {
            lease_config,
            heartbeat_pool: Pool::with_session(
                config.clone(),
                name.to_owned(),
                crate::heartbeat::POOL_SIZE,
                crate::heartbeat::SESSION,
            ),
            pool: Pool::new(config, name.to_owned(), POOL_SIZE),
            clock,
            local: SystemClock::new(),
            offset: AtomicI64::new(0),
            last_now: AtomicU64::new(0),
            specs: Specs::default(),
            heartbeat_subscribers: Arc::new(AtomicUsize::new(0)),
            heartbeats: Coalescer::default(),
            readers: parking_lot::Mutex::new(Vec::new()),
            subscriptions: parking_lot::Mutex::new(Vec::new()),
            next_subscription: AtomicU64::new(0),
            last_prune: parking_lot::Mutex::new(None),
            retired_id_limit: AtomicU64::new(crate::retention::DEFAULT_RETIRED_ID_LIMIT as u64),
        };
        guard(|| {
            let mut conn = inner.pool.get()?;
            schema::migrate(&mut conn, name)
        })?;
        let registry = PostgresWorkerRegistry {
            inner: Arc::new(inner),
            fence: None,
        };
        if registry.inner.clock.is_none() {
            // Measures the offset of the database clock now, so that `now()` has a fallback.
            registry.db_now()?;
        }
        Ok(registry)
    }

    /// The schema (= registry name) this registry lives in.
    pub fn schema(&self) -> &str {
        self.inner.pool.schema()
    }

    /// Reads the database clock (and refreshes the local estimate of its offset).
    fn db_now(&self) -> Result<Timestamp> {
        let now: i64 = self.run("reading the database clock", |c| {
            let stmt = c.prepare("SELECT now_ms(NULL)")?;
            Ok(c.client.query_one(&stmt, &[])?.get(0))
        })?;
        let now = ts(now);
        let local = self.inner.local.now();
        self.inner
            .offset
            .store(now as i64 - local as i64, Ordering::Relaxed);
        Ok(now)
    }

    /// The `now` parameter of every statement: the clock's time, or NULL for the database's.
    pub(crate) fn given(&self) -> Option<i64> {
        self.inner.clock.as_ref().map(|c| db_ts(c.now()))
    }

    /// Runs `op` on a pooled connection: a panic of the client becomes `Backend`, a deadlock or
    /// serialization failure (the server rolled everything back) is retried up to 3 times, any
    /// other database error is `Backend` saying what we were `doing`.
    pub(crate) fn run<T>(
        &self,
        doing: &str,
        mut op: impl FnMut(&mut Conn) -> Step<T>,
    ) -> Result<T> {
        self.inner.run(doing, &mut op)
    }

    /// As [`run`](Self::run), for a change of the registry's state (a record, a job, the
    /// events, the grace floor): when its connection is lost under it, the `Backend` answer
    /// comes once the server is done with that connection ([`Pool::settle`]), so that the
    /// change is applied or not for good when the caller hears of it, and a read tells which.
    pub(crate) fn write<T>(
        &self,
        doing: &str,
        mut op: impl FnMut(&mut Conn) -> Step<T>,
    ) -> Result<T> {
        self.inner
            .run_on(&self.inner.pool, doing, &mut op, Lost::Settle, None)
    }

    /// As [`write`](Self::write), for a write that can tell from the registry whether it
    /// applied (a claim: the job it gives is held by at most one worker). When its connection
    /// is lost after it sent its change, the lost session is settled ([`Pool::settle`]), then
    /// `applied` reads, on a new connection, whether it applied: [`Settled::Applied`] carries
    /// the answer the write would have given; [`Settled::NotApplied`] runs the write once
    /// more; [`Settled::Unknown`] answers `Backend` as [`write`](Self::write) does. Lost
    /// again, or lost under `applied`, the write answers `Backend` too.
    ///
    /// Why: a claim answered `Backend` whose change committed leaves a worker `Busy` with a
    /// job its scheduler believes was never placed, a worker lost to the fleet until someone
    /// looks (DESIGN.md §10 clarifications, "Lost replies").
    pub(crate) fn write_settled<T>(
        &self,
        doing: &str,
        mut op: impl FnMut(&mut Conn) -> Step<T>,
        mut applied: impl FnMut(&mut Conn) -> Step<Settled<T>>,
    ) -> Result<T> {
        self.inner.run_on(
            &self.inner.pool,
            doing,
            &mut op,
            Lost::Settle,
            Some(&mut applied),
        )
    }

    /// As [`write`](Self::write), for a heartbeat without events, on a connection of the
    /// heartbeat pool (asynchronous commit). A heartbeat made twice leaves what it leaves once
    /// (`greatest` of the stored and the given time), so one whose session ended under it runs
    /// once more on a new connection, whatever it had sent, instead of answering `Backend`.
    pub(crate) fn run_heartbeat<T>(
        &self,
        doing: &str,
        mut op: impl FnMut(&mut Conn) -> Step<T>,
    ) -> Result<T> {
        self.inner.run_on(
            &self.inner.heartbeat_pool,
            doing,
            &mut op,
            Lost::RerunThenSettle,
            None,
        )
    }
}

impl Inner {
    pub(crate) fn run<T>(
        &self,
        doing: &str,
        op: &mut dyn FnMut(&mut Conn) -> Step<T>,
    ) -> Result<T> {
        self.run_on(&self.pool, doing, op, Lost::Rerun, None)
    }

    /// Runs `op` on a connection of `pool`; what it does when the session ends under it is
    /// `lost`'s, and for a write (`Lost::Settle`) that sent its change, `applied` (when given)
    /// tells, once the lost session is settled, whether it applied
    /// ([`PostgresWorkerRegistry::write_settled`]).
    fn run_on<T>(
        &self,
        pool: &Pool,
        doing: &str,
        op: &mut dyn FnMut(&mut Conn) -> Step<T>,
        lost: Lost,
        mut applied: Option<Applied<'_, T>>,
    ) -> Result<T> {
        guard(|| {
            let mut conn = pool.get()?;
            let mut attempt = 0;
            // Whether the call moved to a new connection once already (after its session
            // ended where running it again is safe).
            let mut moved = false;
            loop {
                // `unsent`: nothing was sent but `BEGIN` (`Fail::Unsent`).
                let (e, unsent) = match op(&mut conn) {
                    Ok(v) => return Ok(v),
                    Err(Fail::Domain(e)) => return Err(e),
                    Err(Fail::Retry) => continue,
                    Err(Fail::Db(e)) if is_retryable(&e) && attempt < 3 => {
                        attempt += 1;
                        continue;
                    }
                    Err(Fail::Db(e)) => (e, false),
                    Err(Fail::Unsent(e)) => (e, true),
                };
                if !unsent && !ends_session(&e) && !conn.client.is_closed() {
                    return Err(DbError::from(e).backend(doing));
                }
                // The session ended: its connection never goes back to the pool (its next call
                // would fail at once). Once, a call that is safe to run again moves to a new
                // connection: nothing was sent but `BEGIN`, or running it twice is running it
                // once (a read, an idempotent sweep or write).
                if !moved && (unsent || lost != Lost::Settle) {
                    conn.lose();
                    conn = pool.get()?;
                    moved = true;
                    continue;
                }
                // A write that can tell whether it applied asks, once its lost session is
                // settled (so that the answer is final), on a new connection: applied, that is
                // its answer; not applied, it runs once more (lost again: `Backend`).
                if lost == Lost::Settle && !unsent {
                    if let Some(applied) = applied.take() {
                        conn.settle();
                        // No connection to ask on (the server is away): the write's own
                        // failure, as a write that cannot ask answers.
                        conn = match pool.get() {
                            Ok(conn) => conn,
                            Err(_) => return Err(DbError::from(e).backend(doing)),
                        };
                        moved = true;
                        match applied(&mut conn) {
                            Ok(Settled::Applied(v)) => return Ok(v),
                            Ok(Settled::NotApplied) | Err(Fail::Retry) => continue,
                            Ok(Settled::Unknown) => return Err(DbError::from(e).backend(doing)),
                            Err(Fail::Domain(e)) => return Err(e),
                            Err(Fail::Db(e) | Fail::Unsent(e)) => {
                                if ends_session(&e) || conn.client.is_closed() {
                                    conn.lose();
                                }
                                return Err(DbError::from(e).backend(doing));
                            }
                        }
                    }
                }
                // A write that sent its change waits for the lost session to be settled.
                if lost != Lost::Rerun && !unsent {
                    conn.settle();
                } else {
                    conn.lose();
                }
                return Err(DbError::from(e).backend(doing));
            }
        })
    }
}

/// How a write whose reply was lost reads whether it applied
/// ([`PostgresWorkerRegistry::write_settled`]).
type Applied<'a, T> = &'a mut dyn FnMut(&mut Conn) -> Step<Settled<T>>;

/// Whether a write whose reply was lost applied, as the registry tells once the lost session
/// is settled ([`PostgresWorkerRegistry::write_settled`]).
#[derive(Debug)]
pub(crate) enum Settled<T> {
    /// It applied: its answer.
    Applied(T),
    /// It did not: it runs once more.
    NotApplied,
    /// The registry cannot tell: `Backend`, as for any write.
    Unknown,
}

/// What a call whose session ended under it does (the session's connection is never used
/// again either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lost {
    /// A read, or an idempotent sweep: it runs once more on a new connection; lost again, it
    /// answers `Backend` at once.
    Rerun,
    /// A write ([`PostgresWorkerRegistry::write`]): it runs once more only when nothing of it
    /// was sent but `BEGIN`; otherwise its `Backend` answer comes once the server is done with
    /// the lost session ([`Pool::settle`]), so that a read then tells whether it applied.
    Settle,
    /// An idempotent write ([`PostgresWorkerRegistry::run_heartbeat`]): it runs once more on a
    /// new connection whatever it sent; lost again, it is settled as a write.
    RerunThenSettle,
}

#[allow(dead_code)]
fn assert_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<PostgresWorkerRegistry>();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_connection_string_says_why() {
        for (url, why) in [
            (
                "host=/tmp sslmode=bogus",
                "invalid value for option `sslmode`",
            ),
            ("postgresql://h:port/db", "invalid value for option `port`"),
            ("host=/tmp bogus=1", "unknown option \"bogus\""),
            (
                "host='/tmp",
                "unterminated quoted connection parameter value",
            ),
        ] {
            let message = parse_config(url).unwrap_err().to_string();
            assert!(message.contains(why), "{url}: {message}");
        }
    }

    #[test]
    fn a_connection_string_refused_for_a_huge_key_gives_a_short_message() {
        let url = format!("host=/tmp {}=1", "k".repeat(1 << 20));
        let message = parse_config(&url).unwrap_err().to_string();
        assert!(message.len() < 400, "{} bytes", message.len());
        assert!(message.contains("unknown option \"kkk"), "{message}");
        assert!(message.contains("(1048576 bytes)"), "{message}");
    }
}
