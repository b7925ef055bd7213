//! A small connection pool: idle connections behind a mutex, a condvar for callers waiting for
//! one, and a cache of prepared statements per connection.
//!
//! Not r2d2: r2d2 starts a thread pool per pool (this library starts no thread the host did not
//! ask for), tests a connection with a round trip at every checkout, and keeps no prepared
//! statements. Here a checkout costs a mutex; a connection is thrown away when the client says
//! it is closed (the server went away) and a new one is opened on demand.
//!
//! **After an outage.** The client learns that its server went away only when it next uses the
//! socket, so a connection that sat idle through a crash and restart still looks open. A
//! connection idle for more than [`PROBE_AFTER`] is therefore checked with an empty query (one
//! round trip, within [`PROBE_TIMEOUT`]) when it is checked out, before anything of the caller
//! is sent on it: one found broken is thrown away with every other idle connection (they
//! predate the same outage) and the checkout goes on with a new one, so the caller's statement
//! runs once, on a live connection. A connection in steady use (idle for less) is not checked:
//! the hot paths pay nothing. When a call's connection breaks under it, the idle ones are
//! thrown away too. A read, or a write that had sent nothing but its `BEGIN`, then runs once
//! more on a new connection (`Inner::run_on`: a connection closed between two calls shows so).
//! Any other write is `Backend` and is not retried (its statement may have run), and answers so
//! only once the server is done with the lost session ([`Pool::settle`]): what it did is
//! decided by then, and a read tells which. A claim, an assignment or a release naming its
//! job makes that read itself (`PostgresWorkerRegistry::write_settled`): not applied, it runs
//! once more.
//!
//! **Transport timeouts.** A call waits for the server as long as the connection lives; on TCP
//! the kernel gives up on a silent server after the timeouts [`transport_defaults`] sets
//! (keepalives and `tcp_user_timeout`, ~30 s) unless the connection string sets its own.

use std::collections::HashMap;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use hodei_workers::{Error, Result};
use parking_lot::{Condvar, Mutex};
use postgres::{Client, NoTls, Statement};

use crate::error::describe;

/// A connection idle for longer than this is checked with a round trip before it is handed out
/// (see the module docs). Short enough that a server cannot crash and come back within it;
/// long enough that a connection in steady use is never checked.
pub(crate) const PROBE_AFTER: Duration = Duration::from_millis(100);

/// How long the check of an idle connection waits for the server's answer; no answer in time
/// and the connection is thrown away as broken.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What every connection string gets unless it sets its own (libpq's keys of the same names):
/// - `connect_timeout` 10 s (the pool's checkout timeout);
/// - TCP keepalives after 15 s of silence, every 5 s, 3 probes: a server whose host froze or
///   whose network went dark is given up after ~30 s rather than the kernel's 2 h default;
/// - `tcp_user_timeout` 30 s: the same bound on data sent and never acknowledged.
///
/// A `tcp_user_timeout` the string sets is read in milliseconds, as libpq reads it: the client
/// underneath (tokio-postgres) reads seconds, so a string written for libpq
/// (`tcp_user_timeout=30000`, 30 s) would otherwise mean 8 hours.
///
/// These do nothing on a Unix socket (its peer is on this machine and cannot vanish; a stopped
/// server process cannot be told from a slow one) and cannot bound a backend that acknowledges
/// and does not answer; the lease has a deadline of its own on the client's clock
/// (`crate::leadership`).
pub(crate) fn transport_defaults(config: &mut tokio_postgres::Config) {
    /// tokio-postgres' default idle time (there is no "unset" for it).
    const CLIENT_DEFAULT_IDLE: Duration = Duration::from_secs(2 * 60 * 60);
    if let Some(set) = config.get_tcp_user_timeout().map(Duration::as_secs) {
        config.tcp_user_timeout(Duration::from_millis(set));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_keepalives() {
        if config.get_keepalives_idle() == CLIENT_DEFAULT_IDLE {
            config.keepalives_idle(Duration::from_secs(15));
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(Duration::from_secs(5));
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(3);
        }
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(Duration::from_secs(30));
    }
}

/// One connection and its prepared statements (keyed by SQL text).
pub(crate) struct Conn {
    pub client: Client,
    statements: HashMap<String, Statement>,
    /// When it was last given back to its pool (or opened).
    last_used: Instant,
    /// The server process serving it, as the server names it: its pid and its
    /// `backend_start` (µs since the epoch; with the pid, unique across pid reuse). See
    /// [`Pool::settle`]. A pid of 0: unknown.
    backend: (i32, i64),
    /// The OS process that opened it: only that process may use or close it ([`discard`]).
    process: u32,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("statements", &self.statements.len())
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// Opens a connection whose `search_path` is `schema` (the SQL of this crate names its
    /// tables unqualified). JIT compilation is off: every statement here is short, and the
    /// planner's guess for `find_unhealthy` at a large fleet crosses `jit_above_cost`, which
    /// made it spend ~300 ms compiling a query that runs in tens of ms.
    pub fn open(config: &postgres::Config, schema: &str) -> std::result::Result<Conn, String> {
        Conn::open_with(config, schema, "")
    }

    /// As [`open`](Self::open), then runs `session` (more `SET`s for this connection's
    /// session) in the same round trip.
    pub fn open_with(
        config: &postgres::Config,
        schema: &str,
        session: &str,
    ) -> std::result::Result<Conn, String> {
        let mut client = config.connect(NoTls).map_err(|e| describe(&e))?;
        let answers = client
            .simple_query(&format!(
                "SET search_path TO {}; SET application_name = 'hodei-workers'; SET jit = off; \
                 {}; {session}; {BACKEND}",
                quote_ident(schema),
                bound_stalls()
            ))
            .map_err(|e| describe(&e))?;
        // The last row is `BACKEND`'s (the bound's statement may answer one before it).
        let backend = answers
            .iter()
            .rev()
            .find_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => Some((
                    row.get(0).and_then(|pid| pid.parse().ok()).unwrap_or(0),
                    row.get(1).and_then(|t| t.parse().ok()).unwrap_or(0),
                )),
                _ => None,
            })
            .unwrap_or_default();
        Ok(Conn {
            client,
            statements: HashMap::new(),
            last_used: Instant::now(),
            backend,
            process: std::process::id(),
        })
    }

    /// The prepared statement for `sql`, prepared once per connection.
    pub fn prepare(&mut self, sql: &str) -> std::result::Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// The client and the statement cache, borrowed side by side.
    pub fn parts(&mut self) -> (&mut Client, &mut HashMap<String, Statement>) {
        (&mut self.client, &mut self.statements)
    }

    /// Whether another OS process opened it: this one is a fork of that one (see [`discard`]).
    pub fn is_inherited(&self) -> bool {
        self.process != std::process::id()
    }

    /// Forgets the prepared statements (after the schema was changed under them).
    pub fn forget_statements(&mut self) {
        self.statements.clear();
    }
}

/// How long the server lets a session of the registry sit idle inside a transaction before it
/// ends the session (`idle_in_transaction_session_timeout`), rolling the transaction back.
///
/// Why: a transaction of this crate never waits for anything but the server between its
/// statements, so a session idle inside one belongs to a client that stopped in the middle of
/// a write (a frozen process, a paused VM, a network gone dark), and the server cannot tell
/// it from a live one: the socket stays open (over TCP, until the server's keepalives give up,
/// two hours by default; on a Unix socket, for ever). Meanwhile the transaction holds the
/// worker's row lock, which every other replica's change of that worker waits for, its counter
/// slot's row (a 32nd of the fleet's state changes wait), the outbox's lock, whose seq every
/// subscriber waits out, and for a fenced write the lease row, which a takeover must update.
/// This bounds that wait. The stopped call, if its client comes back, answers `Backend` with
/// nothing applied (`pg/tests/stalled_write.rs`, `pg/tests/frozen_replica.rs`).
pub(crate) const STALLED_TRANSACTION: Duration = Duration::from_secs(10);

/// Sets the session's `idle_in_transaction_session_timeout` to [`STALLED_TRANSACTION`] unless
/// it is set already (by the server's configuration, the database, the role, or the
/// connection string's `options`): a bound chosen there is kept.
pub(crate) fn bound_stalls() -> String {
    format!(
        "SELECT set_config('idle_in_transaction_session_timeout', '{}ms', false) \
         WHERE current_setting('idle_in_transaction_session_timeout') = '0'",
        STALLED_TRANSACTION.as_millis()
    )
}

/// The server process of the session: its pid and `backend_start` (see [`Conn::backend`]).
const BACKEND: &str = "SELECT pg_backend_pid(), (SELECT \
    (extract(epoch FROM backend_start) * 1000000)::bigint \
    FROM pg_stat_activity WHERE pid = pg_backend_pid())";

/// The server process `$1` if it still serves the session started at `$2` (a pid may be
/// reused by a later session): a row while it is there.
const STILL_THERE: &str = "SELECT pid FROM pg_stat_activity \
    WHERE pid = $1 AND (extract(epoch FROM backend_start) * 1000000)::bigint = $2";

/// As [`STILL_THERE`], ending it (`pg_terminate_backend`) if it is there.
const END_BACKEND: &str = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
    WHERE pid = $1 AND (extract(epoch FROM backend_start) * 1000000)::bigint = $2";

/// How long [`Pool::settle`] waits for the server to be done with a lost connection.
pub(crate) const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Quotes an SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[derive(Debug)]
struct PoolState {
    idle: Vec<Conn>,
    /// Connections open, idle or checked out.
    open: usize,
    /// The OS process these are of; another one (a fork of it) starts afresh
    /// ([`Pool::checkout_state`]).
    process: u32,
}

/// The pool. `max` connections at most; a caller waits up to `checkout_timeout` for one.
pub(crate) struct Pool {
    config: postgres::Config,
    schema: String,
    /// Session settings of every connection of this pool (see [`Conn::open_with`]).
    session: &'static str,
    max: usize,
    checkout_timeout: Duration,
    state: Mutex<PoolState>,
    returned: Condvar,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("Pool")
            .field("schema", &self.schema)
            .field("open", &state.open)
            .field("idle", &state.idle.len())
            .field("max", &self.max)
            .finish()
    }
}

impl Pool {
    pub fn new(config: postgres::Config, schema: String, max: usize) -> Pool {
        Pool::with_session(config, schema, max, "")
    }

    /// A pool whose connections run `session` (`SET`s) when opened.
    pub fn with_session(
        config: postgres::Config,
        schema: String,
        max: usize,
        session: &'static str,
    ) -> Pool {
        Pool {
            config,
            schema,
            session,
            max: max.max(1),
            checkout_timeout: Duration::from_secs(10),
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
                process: std::process::id(),
            }),
            returned: Condvar::new(),
        }
    }

    /// The pool's state, locked, for a checkout: the one place a process forked from the one
    /// that opened the pool's connections (`fork()` without `exec`: Python's `multiprocessing`,
    /// a pre-forking server) first reaches them. They are that process's: the idle ones are
    /// left to it (forgotten here, never used nor closed: [`discard`]) and this process opens
    /// its own. Those checked out at the fork are on threads this process does not have, and
    /// are not counted. So every connection checked out here is this process's own, and
    /// giving one back needs no check. Costs a `getpid`.
    fn checkout_state(&self) -> parking_lot::MutexGuard<'_, PoolState> {
        let mut state = self.state.lock();
        let process = std::process::id();
        if state.process != process {
            state.process = process;
            state.open = 0;
            for conn in state.idle.drain(..) {
                std::mem::forget(conn);
            }
        }
        state
    }

    pub fn config(&self) -> &postgres::Config {
        &self.config
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// A connection: an idle one, a new one while fewer than `max` are open, or the first one
    /// returned within the checkout timeout.
    ///
    /// # Errors
    /// `Backend` when no connection can be opened (with the reason) or none came back in time.
    pub fn get(&self) -> Result<Pooled<'_>> {
        let deadline = Instant::now() + self.checkout_timeout;
        let mut state = self.checkout_state();
        loop {
            if let Some(mut conn) = state.idle.pop() {
                if conn.client.is_closed() {
                    state.open -= 1;
                    drop(state);
                    discard(conn);
                    state = self.state.lock();
                    continue;
                }
                if conn.last_used.elapsed() < PROBE_AFTER {
                    return Ok(Pooled {
                        pool: self,
                        conn: Some(conn),
                    });
                }
                drop(state);
                // Guarded: the client panics inside an async runtime (before touching the
                // connection, which goes back as it was).
                let probed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    conn.client.is_valid(PROBE_TIMEOUT).is_ok()
                }));
                match probed {
                    Ok(true) => {
                        return Ok(Pooled {
                            pool: self,
                            conn: Some(conn),
                        })
                    }
                    Ok(false) => {
                        self.state.lock().open -= 1;
                        discard(conn);
                        self.discard_idle();
                        self.returned.notify_one();
                        state = self.state.lock();
                        continue;
                    }
                    Err(_) => {
                        self.put_back(conn);
                        return Err(Error::Backend(crate::error::ASYNC_CONTEXT.to_owned()));
                    }
                }
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                // Guarded: the client panics inside an async runtime, and the slot counted
                // above must be given back whatever happens.
                let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    Conn::open_with(&self.config, &self.schema, self.session)
                }))
                .unwrap_or_else(|_| Err(crate::error::ASYNC_CONTEXT.to_owned()));
                return match opened {
                    Ok(conn) => Ok(Pooled {
                        pool: self,
                        conn: Some(conn),
                    }),
                    Err(cause) => {
                        self.state.lock().open -= 1;
                        self.returned.notify_one();
                        Err(Error::Backend(format!(
                            "cannot connect to PostgreSQL: {cause}"
                        )))
                    }
                };
            }
            if self.returned.wait_until(&mut state, deadline).timed_out() {
                return Err(Error::Backend(format!(
                    "no PostgreSQL connection free within {:?} ({} open)",
                    self.checkout_timeout, state.open
                )));
            }
        }
    }

    /// Takes a connection back: idle again, or thrown away (with every idle one, which predate
    /// the same outage) when it broke.
    fn put_back(&self, mut conn: Conn) {
        let mut state = self.state.lock();
        if conn.client.is_closed() {
            state.open -= 1;
            drop(state);
            discard(conn);
            self.discard_idle();
        } else {
            conn.last_used = Instant::now();
            state.idle.push(conn);
        }
        self.returned.notify_one();
    }

    /// Called when `lost`, a connection of this pool, broke under a write: returns once the
    /// server is done with the session it served, so that the write is applied or not for
    /// good and a read made after this (on any connection) tells which.
    ///
    /// Why: the client learns that a connection is lost (the server's side closed, a reset, a
    /// timeout) when the server may not have received, or not yet run, what was sent last on
    /// it. A `COMMIT` sent just before, or still in the network, can be run by the server
    /// after the call answered `Backend` (PostgreSQL runs what it has read before it notices
    /// the client is gone): a read made right after the answer (`provision_worker` asks `get`
    /// after an ambiguous `register`) would say "not applied", and the change land a moment
    /// later. So, on a new connection, the lost session's server process is ended
    /// (`pg_terminate_backend`: a transaction still open rolls back; one committing completes
    /// first) and awaited: once it is gone, its transaction is decided and visible.
    ///
    /// Best effort: the connection is had as any checkout has one (within the connect and
    /// checkout timeouts), then the process is waited for within [`SETTLE_TIMEOUT`]. When the
    /// server cannot be reached, the outcome stays open (the write may still land if the server
    /// receives its commit later). Nothing here on the hot paths: only a write whose connection
    /// broke pays it.
    pub(crate) fn settle(&self, lost: Conn) {
        let (pid, started) = lost.backend;
        self.lost(lost);
        if pid == 0 {
            return;
        }
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let Ok(mut conn) = self.get() else {
            return;
        };
        // Ends it, then waits until it is gone. A role not allowed to end it (another role's
        // session behind a pooler) only waits.
        let mut sql = END_BACKEND;
        loop {
            let rows = conn
                .prepare(sql)
                .and_then(|stmt| conn.client.query(&stmt, &[&pid, &started]));
            match rows {
                Ok(rows) if rows.is_empty() => return,
                Ok(_) => sql = STILL_THERE,
                Err(e) if sql == END_BACKEND && e.as_db_error().is_some() => {
                    sql = STILL_THERE;
                    continue;
                }
                Err(_) => return,
            }
            if Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Takes back a connection that broke under a call (closed, with every idle one).
    fn lost(&self, conn: Conn) {
        self.state.lock().open -= 1;
        discard(conn);
        self.discard_idle();
        self.returned.notify_one();
    }

    /// Closes every idle connection (after one of them, or one in use, was found broken).
    fn discard_idle(&self) {
        let idle = {
            let mut state = self.state.lock();
            let idle = std::mem::take(&mut state.idle);
            state.open -= idle.len();
            idle
        };
        if !idle.is_empty() {
            self.returned.notify_all();
        }
        for conn in idle {
            discard(conn);
        }
    }
}

/// Drops a connection. Dropping a client drops its private runtime, which tokio refuses (with
/// a panic) on a thread that drives an async runtime: caught here, the client is leaked
/// instead.
///
/// A connection another OS process opened (this one is a fork of it) is forgotten instead,
/// never closed: closing sends the server a `Terminate` on the socket both processes share,
/// which would end that process's session under it.
pub(crate) fn discard(conn: Conn) {
    if conn.is_inherited() {
        std::mem::forget(conn);
        return;
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(conn)));
}

impl Drop for Pool {
    fn drop(&mut self) {
        for conn in self.state.get_mut().idle.drain(..) {
            discard(conn);
        }
    }
}

/// A checked-out connection; back to the pool on drop (or closed, if the client is broken).
#[derive(Debug)]
pub(crate) struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
}

impl Deref for Pooled<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("present until drop")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("present until drop")
    }
}

impl Pooled<'_> {
    /// Settles the connection, which broke under a write ([`Pool::settle`]).
    pub fn settle(mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.settle(conn);
        }
    }

    /// Closes the connection, whose session ended, with the pool's idle ones (no settling:
    /// for a read, or a write that sent nothing but `BEGIN`).
    pub fn lose(mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.lost(conn);
        }
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.put_back(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's promise: what the connection string leaves unset gets bounded transport
    /// timeouts; what it sets is kept.
    #[test]
    fn transport_defaults_fill_what_the_connection_string_leaves_unset() {
        let mut config: tokio_postgres::Config = "host=db user=u".parse().unwrap();
        transport_defaults(&mut config);
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(10)));
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(15));
        assert_eq!(
            config.get_keepalives_interval(),
            Some(Duration::from_secs(5))
        );
        assert_eq!(config.get_keepalives_retries(), Some(3));
        assert_eq!(
            config.get_tcp_user_timeout(),
            Some(&Duration::from_secs(30))
        );

        let mut config: tokio_postgres::Config = "host=db user=u connect_timeout=2 \
            keepalives_idle=60 tcp_user_timeout=7000"
            .parse()
            .unwrap();
        transport_defaults(&mut config);
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(2)));
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(60));
        assert_eq!(config.get_tcp_user_timeout(), Some(&Duration::from_secs(7)));
    }

    /// libpq reads `tcp_user_timeout` in milliseconds (tokio-postgres in seconds): a string
    /// written for libpq means here what it means there, in both of its forms.
    #[test]
    fn a_tcp_user_timeout_the_string_sets_is_in_milliseconds_as_in_libpq() {
        for text in [
            "host=db user=u tcp_user_timeout=30000",
            "postgresql://u@db/d?tcp_user_timeout=30000",
        ] {
            let mut config: tokio_postgres::Config = text.parse().unwrap();
            transport_defaults(&mut config);
            assert_eq!(
                config.get_tcp_user_timeout(),
                Some(&Duration::from_secs(30)),
                "{text}"
            );
        }
        let mut config: tokio_postgres::Config = "host=db tcp_user_timeout=250".parse().unwrap();
        transport_defaults(&mut config);
        assert_eq!(
            config.get_tcp_user_timeout(),
            Some(&Duration::from_millis(250))
        );
    }

    /// Every session bounds a transaction left idle ([`STALLED_TRANSACTION`]) unless something
    /// before it set a bound: here the connection string's `options`; the server, the database
    /// and the role set it the same way, as the session's value before ours.
    #[test]
    fn a_session_bounds_stalled_transactions_unless_a_bound_is_set_already() {
        let url = crate::test_support::url();
        let bound = |options: Option<&str>| -> String {
            let mut config: postgres::Config = url.parse().unwrap();
            if let Some(options) = options {
                config.options(options);
            }
            let mut conn = Conn::open(&config, "public").unwrap();
            let row = conn
                .client
                .query_one("SHOW idle_in_transaction_session_timeout", &[])
                .unwrap();
            assert!(conn.backend.0 > 0, "the session's process is still read");
            row.get(0)
        };
        assert_eq!(bound(None), "10s");
        assert_eq!(
            bound(Some("-c idle_in_transaction_session_timeout=1500ms")),
            "1500ms"
        );
    }
}
