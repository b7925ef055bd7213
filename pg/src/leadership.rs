//! [`PostgresLeadership`]: the leadership lease of a registry's replicated managers, as a row
//! of the `manager_leases` table in the registry's schema: the core's
//! [`Leadership`] trait on PostgreSQL.
//!
//! One row per lease name (the registry's name): `holder`, `term`, `since`, `expires_at`
//! (milliseconds on the registry's clock: the database's, or the given manual clock). Every
//! change is **one statement**, so it is atomic without an explicit transaction, and:
//! - acquiring takes a free or expired lease under `term + 1` (fencing token), never a live one;
//! - renewing needs the holder *and* the term it holds: a replica that lost its term (even to
//!   itself after a restart) cannot extend it;
//! - stepping down only expires the caller's own term.
//!
//! Renewal runs on a **dedicated connection** (never the registry's pool: a pool busy with
//! heartbeats and claims must not starve the lease). Advisory locks are not used: they live and
//! die with a session (a lost connection frees them on the server's side only once it notices,
//! and transaction poolers break them), while a lease row expires by itself.
//!
//! **Every call returns within half the ttl**, on the client's clock, whatever the server and the
//! transport do, so that a renewal never outlives the trust window it is meant to extend (`ttl −
//! margin`, the margin a quarter of the ttl by default) and a tick, the ticker's stop or a
//! `confirm()` before a provider call never waits on a silent server. The server's
//! `statement_timeout` (a third of the ttl, at most the server's 2^31 − 1 ms) cannot promise that:
//! a server that stopped answering (a frozen VM, a network black hole, a stopped backend) does not
//! enforce it, and TCP options (`tcp_user_timeout`, keepalives) do nothing on a Unix socket and
//! nothing against a backend whose kernel still acknowledges. So the connection is the asynchronous
//! client on a current-thread runtime of the lease's own, and each call (opening the connection
//! when needed, checking an idle one, the statements) runs under `tokio::time::timeout`. When the
//! time runs out the connection and its runtime are dropped (the socket is closed) and the call is
//! `Backend`; the next call opens a new connection. A statement that reached the server may still
//! run when the server wakes up: a renewal or an acquisition only extends or takes the lease for
//! this holder (the trust window counts from a renewal that *answered*), and a step-down only
//! expires its own term, so a late one costs at most a delay until the lease expires, never a
//! second leader. The server's statement timeout stays: it ends a renewal that waits for the row
//! lock (a fenced write in flight, see `crate::registry::fence`) with a clean error, before the
//! client's deadline, keeping the connection.
//!
//! **Reconnection.** A connection idle for more than [`crate::pool::PROBE_AFTER`] is checked
//! with an empty query before its statement is sent; one found broken (the server restarted
//! meanwhile) is replaced and the call goes on, with nothing sent on the broken one. A statement
//! that fails on a connection that broke under it is `Backend`, never retried: it may have run.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hodei_workers::{Clock, Error, LeaderInfo, Leadership, LeaseStatus, Result, Term};
use parking_lot::Mutex;
use tokio_postgres::{Client, NoTls, Row};

use crate::error::{describe, ends_session, guard};
use crate::pool::quote_ident;
use crate::registry::PostgresWorkerRegistry;
use crate::sql::{db_ts, millis, ts};

/// Acquire or renew, in one statement. `$1` name, `$2` holder, `$3` the given now (NULL: the
/// database clock), `$4` the ttl in ms (as text: a `u64`), `$5` the term the caller holds
/// (NULL: none). The expiry is `now + ttl` saturating at the end of the clock, as
/// `InMemoryLease`'s (summed as `numeric`: a `bigint` sum overflowed on a clock near its end,
/// "bigint out of range", and cannot hold a ttl of 2^63 ms or more).
///
/// Invariant enforced: the row changes hands only when it is expired (`expires_at <= now`), and
/// then under `term + 1`; it is extended under the same term only for the holder of exactly
/// `$5`. Concurrent callers serialise on the row lock of `ON CONFLICT DO UPDATE`, each seeing
/// the winner's row, so two replicas never both get a live lease. No row comes back when the
/// lease is someone else's and alive.
const ACQUIRE: &str = "WITH now AS (SELECT now_ms($3::bigint) AS ms)
INSERT INTO manager_leases AS l (name, holder, term, since, expires_at)
SELECT $1, $2, 1, now.ms,
    least(now.ms::numeric + ($4::text)::numeric, 9223372036854775807)::bigint FROM now
ON CONFLICT (name) DO UPDATE SET
    holder = EXCLUDED.holder,
    term = CASE WHEN l.holder = EXCLUDED.holder AND l.term = $5::bigint
                THEN l.term ELSE l.term + 1 END,
    since = CASE WHEN l.holder = EXCLUDED.holder AND l.term = $5::bigint
                 THEN l.since ELSE EXCLUDED.since END,
    expires_at = EXCLUDED.expires_at
WHERE (l.holder = EXCLUDED.holder AND l.term = $5::bigint) OR l.expires_at <= EXCLUDED.since
RETURNING holder, term, since, expires_at";

/// The row as it is (who leads, possibly expired).
const CURRENT: &str = "SELECT holder, term, since, expires_at FROM manager_leases WHERE name = $1";

/// Expires the caller's own term now (and nothing else): `$1` name, `$2` holder, `$3` term,
/// `$4` given now. One statement.
const STEP_DOWN: &str =
    "UPDATE manager_leases SET expires_at = least(expires_at, now_ms($4::bigint))
WHERE name = $1 AND holder = $2 AND term = $3";

/// The longest holder name (bytes): the core's rule for every backend.
pub const MAX_HOLDER_LEN: usize = hodei_workers::MAX_LEASE_HOLDER_LEN;

/// The leadership lease of one registry on PostgreSQL (see the module docs). Made by
/// [`PostgresWorkerRegistry::leadership`]; give it to
/// [`WorkerLifecycleManager::with_leadership`](hodei_workers::WorkerLifecycleManager::with_leadership).
pub struct PostgresLeadership {
    config: tokio_postgres::Config,
    schema: String,
    holder: String,
    ttl: Duration,
    clock: Option<Arc<dyn Clock>>,
    /// The dedicated connection (`None` until opened, or after it broke or timed out).
    conn: Mutex<Option<LeaseConn>>,
    /// Where the lease row lives (`Leadership::fence_key`).
    fence_key: String,
}

impl fmt::Debug for PostgresLeadership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresLeadership")
            .field("schema", &self.schema)
            .field("holder", &self.holder)
            .field("ttl", &self.ttl)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl PostgresWorkerRegistry {
    /// The leadership lease of this registry for the replica named `holder` (unique per
    /// process, e.g. `"scheduler-1"` or `host-pid`), lasting `ttl` after each renewal. It uses
    /// the registry's clock (the database's, or the manual clock given at `connect_with_clock`)
    /// and a connection of its own, opened now.
    ///
    /// # Errors
    /// `InvalidArgument` for an empty holder, one longer than [`MAX_HOLDER_LEN`] or holding a
    /// NUL, or a ttl under 3 ms or above `MAX_CONFIG_DURATION` (100 years: `validate_lease`);
    /// `Backend` when the connection or the table cannot be made.
    pub fn leadership(&self, holder: &str, ttl: Duration) -> Result<PostgresLeadership> {
        hodei_workers::validate_lease(holder, ttl)?;
        let mut config = self.inner.lease_config.clone();
        // Each call has its own deadline (`call_timeout`), connecting included; this only keeps
        // one unreachable host of a multi-host string from taking all of it.
        config.connect_timeout(ttl / 3);
        let lease = PostgresLeadership {
            fence_key: crate::registry::fence_key(self.inner.pool.config(), self.schema()),
            config,
            schema: self.schema().to_owned(),
            holder: holder.to_owned(),
            ttl,
            clock: self.inner.clock.clone(),
            conn: Mutex::new(None),
        };
        Ok(lease)
    }
}

/// The lease's connection: the client, the time it was last used, and the runtime that drives
/// its connection task (dropped after the client, which closes the socket).
struct LeaseConn {
    client: Client,
    last_used: Instant,
    runtime: tokio::runtime::Runtime,
    /// The OS process that opened it: in a fork of that process it is left alone, as the
    /// registry's pools leave theirs (`pool::discard`).
    process: u32,
}

/// Drops a lease connection. Dropping a runtime panics on a thread that drives an async runtime
/// (the call already failed there with the `guard`'s message): caught, the connection is leaked.
/// One another OS process opened (this one is its fork) is forgotten, never closed.
fn discard(conn: LeaseConn) {
    if conn.process != std::process::id() {
        std::mem::forget(conn);
        return;
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(conn)));
}

impl Drop for PostgresLeadership {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.get_mut().take() {
            discard(conn);
        }
    }
}

/// The server's statement timeout of the lease's session, in ms: a third of the ttl, within
/// what the server accepts (1 ms to 2^31 − 1 ms, ~24.8 days). A ttl may last up to 100 years
/// (`validate_lease`), and a larger value made the server refuse the session's `SET`: every
/// lease call then failed ("cannot connect") and the manager never led. Past the cap the
/// client's deadline (half the ttl) still bounds every call.
fn statement_timeout_ms(ttl: Duration) -> u128 {
    (ttl / 3).as_millis().clamp(1, i32::MAX as u128)
}

/// The instant `timeout` from now, or a distant one (30 years, as tokio's own far future)
/// when that cannot be represented: `Instant + Duration` panics on overflow, which a ttl of
/// `Duration::MAX` (accepted before `validate_lease` bounded the ttl to 100 years) made the
/// "client panicked" `Backend` of every call.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(30 * 365 * 86_400)))
        .unwrap_or(now)
}

/// A lease statement's future, borrowing the client.
type Op<'c, T> = Pin<Box<dyn Future<Output = std::result::Result<T, tokio_postgres::Error>> + 'c>>;

impl PostgresLeadership {
    fn given(&self) -> Option<i64> {
        self.clock.as_ref().map(|c| db_ts(c.now()))
    }

    /// How long a call may take, all included: half the ttl (see the module docs).
    fn call_timeout(&self) -> Duration {
        self.ttl / 2
    }

    /// The error of a call that ran out of time (its connection is dropped).
    fn no_answer(&self, doing: &str) -> Error {
        Error::Backend(format!(
            "lease: {doing}: no answer within {:?} (half the ttl): the connection is dropped",
            self.call_timeout()
        ))
    }

    /// Opens the dedicated connection, within what is left of the call's time; its
    /// `application_name` is `hw-lease-<registry name>` (what an operator sees in
    /// `pg_stat_activity`).
    fn open(&self, deadline: Instant) -> Result<LeaseConn> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Backend(format!("lease: cannot start its runtime: {e}")))?;
        let session = format!(
            "SET search_path TO {}; SET application_name = 'hw-lease-{}'; \
             SET statement_timeout = {}",
            quote_ident(&self.schema),
            self.schema,
            statement_timeout_ms(self.ttl)
        );
        let opened = runtime.block_on(async {
            tokio::time::timeout_at(deadline.into(), async {
                let (client, connection) = self.config.connect(NoTls).await?;
                // Driven by this runtime whenever a call blocks on it.
                tokio::spawn(connection);
                client.batch_execute(&session).await?;
                Ok::<_, tokio_postgres::Error>(client)
            })
            .await
        });
        match opened {
            Ok(Ok(client)) => Ok(LeaseConn {
                client,
                last_used: Instant::now(),
                runtime,
                process: std::process::id(),
            }),
            Ok(Err(e)) => Err(Error::Backend(format!(
                "lease: cannot connect: {}",
                describe(&e)
            ))),
            Err(_) => Err(Error::Backend(format!(
                "lease: cannot connect: no answer within {:?}",
                self.call_timeout()
            ))),
        }
    }

    /// Runs `op` on the dedicated connection within [`call_timeout`](Self::call_timeout):
    /// (re)opening the connection when there is none, or when the one there is found closed
    /// before anything of `op` was sent (an idle one is checked with an empty query first, as
    /// in the registry's pool). A failure that leaves the connection closed, and a timeout,
    /// drop it, so the next call starts afresh.
    fn with_conn<T>(
        &self,
        doing: &str,
        op: impl for<'c> FnOnce(&'c Client) -> Op<'c, T>,
    ) -> Result<T> {
        guard(|| {
            if !crate::error::may_block() {
                // Its runtime cannot block on a thread that drives one (and dropping one there
                // may panic). A thread of `spawn_blocking`, in a runtime's context too, can:
                // refusing every call made in a context, as before, refused the very remedy
                // the error advises.
                return Err(Error::Backend(crate::error::ASYNC_CONTEXT.to_owned()));
            }
            let deadline = deadline_after(self.call_timeout());
            let mut slot = self.conn.lock();
            if let Some(conn) = slot.as_mut() {
                let checked = if conn.client.is_closed() || conn.process != std::process::id() {
                    Ok(false)
                } else if conn.last_used.elapsed() < crate::pool::PROBE_AFTER {
                    Ok(true)
                } else {
                    let client = &conn.client;
                    conn.runtime
                        .block_on(async {
                            tokio::time::timeout_at(deadline.into(), client.simple_query("")).await
                        })
                        .map(|answer| answer.is_ok())
                };
                match checked {
                    Ok(true) => {}
                    Ok(false) => discard(slot.take().expect("checked above")),
                    Err(_) => {
                        discard(slot.take().expect("checked above"));
                        return Err(self.no_answer(doing));
                    }
                }
            }
            if slot.is_none() {
                *slot = Some(self.open(deadline)?);
            }
            let conn = slot.as_mut().expect("opened above");
            let client = &conn.client;
            let outcome = conn
                .runtime
                .block_on(async { tokio::time::timeout_at(deadline.into(), op(client)).await });
            conn.last_used = Instant::now();
            let e = match outcome {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => e,
                Err(_) => {
                    discard(slot.take().expect("used above"));
                    return Err(self.no_answer(doing));
                }
            };
            // A session the server ended is not used again (it may not look closed yet).
            if ends_session(&e) || conn.client.is_closed() {
                discard(slot.take().expect("used above"));
            }
            Err(Error::Backend(format!("lease: {doing}: {}", describe(&e))))
        })
    }
}

fn info(row: &Row) -> LeaderInfo {
    LeaderInfo {
        holder: row.get(0),
        term: u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
        since: ts(row.get(2)),
        expires_at: ts(row.get(3)),
    }
}

impl Leadership for PostgresLeadership {
    fn holder(&self) -> &str {
        &self.holder
    }

    fn ttl(&self) -> Duration {
        self.ttl
    }

    fn acquire_or_renew(&self, held: Option<Term>) -> Result<LeaseStatus> {
        let name = self.schema.clone();
        let given = self.given();
        let ttl = millis(self.ttl).to_string();
        let held = held.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
        let holder = self.holder.clone();
        self.with_conn("acquiring or renewing", move |c| {
            Box::pin(async move {
                if let Some(row) = c
                    .query_opt(ACQUIRE, &[&name, &holder, &given, &ttl, &held])
                    .await?
                {
                    return Ok(LeaseStatus::Held(info(&row)));
                }
                Ok(LeaseStatus::Follower(
                    c.query_opt(CURRENT, &[&name]).await?.as_ref().map(info),
                ))
            })
        })
    }

    fn step_down(&self, term: Term) -> Result<()> {
        let name = self.schema.clone();
        let holder = self.holder.clone();
        let term = i64::try_from(term).unwrap_or(i64::MAX);
        let given = self.given();
        self.with_conn("stepping down", move |c| {
            Box::pin(async move {
                c.execute(STEP_DOWN, &[&name, &holder, &term, &given])
                    .await
                    .map(|_| ())
            })
        })
    }

    /// The registry's store: its [`fenced`](hodei_workers::WorkerRegistry::fenced) view checks
    /// this lease's term in every write transaction.
    fn fence_key(&self) -> Option<&str> {
        Some(&self.fence_key)
    }

    fn current(&self) -> Result<Option<LeaderInfo>> {
        let name = self.schema.clone();
        self.with_conn("reading the lease", move |c| {
            Box::pin(async move { Ok(c.query_opt(CURRENT, &[&name]).await?.as_ref().map(info)) })
        })
    }
}
