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
//! heartbeats and claims must not starve the lease), with a statement timeout of a third of the
//! ttl so that a renewal never outlives the trust window it is meant to extend; a broken
//! connection is reopened on the next call. Advisory locks are not used: they live and die with
//! a session (a lost connection frees them on the server's side only once it notices, and
//! transaction poolers break them), while a lease row expires by itself.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use hodei_workers::{Clock, Error, LeaderInfo, Leadership, LeaseStatus, Result, Term};
use parking_lot::Mutex;
use postgres::{Client, NoTls, Row};

use crate::error::{describe, guard};
use crate::pool::quote_ident;
use crate::registry::PostgresWorkerRegistry;
use crate::sql::{db_ts, dur_ms, ts};

/// Acquire or renew, in one statement. `$1` name, `$2` holder, `$3` the given now (NULL: the
/// database clock), `$4` ttl in ms, `$5` the term the caller holds (NULL: none).
///
/// Invariant enforced: the row changes hands only when it is expired (`expires_at <= now`), and
/// then under `term + 1`; it is extended under the same term only for the holder of exactly
/// `$5`. Concurrent callers serialise on the row lock of `ON CONFLICT DO UPDATE`, each seeing
/// the winner's row, so two replicas never both get a live lease. No row comes back when the
/// lease is someone else's and alive.
const ACQUIRE: &str = "WITH now AS (SELECT now_ms($3::bigint) AS ms)
INSERT INTO manager_leases AS l (name, holder, term, since, expires_at)
SELECT $1, $2, 1, now.ms, now.ms + $4::bigint FROM now
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
    config: postgres::Config,
    schema: String,
    holder: String,
    ttl: Duration,
    clock: Option<Arc<dyn Clock>>,
    /// The dedicated connection (`None` until opened, or after it broke).
    conn: Mutex<Option<Client>>,
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
    /// NUL, or a ttl under 3 ms; `Backend` when the connection or the table cannot be made.
    pub fn leadership(&self, holder: &str, ttl: Duration) -> Result<PostgresLeadership> {
        hodei_workers::validate_lease(holder, ttl)?;
        let mut config = self.inner.pool.config().clone();
        // A renewal must fail rather than hang past the window it extends.
        config.connect_timeout(ttl / 3);
        let lease = PostgresLeadership {
            fence_key: crate::registry::fence_key(&config, self.schema()),
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

impl PostgresLeadership {
    fn given(&self) -> Option<i64> {
        self.clock.as_ref().map(|c| db_ts(c.now()))
    }

    /// Opens the dedicated connection; its `application_name` is `hw-lease-<registry name>`
    /// (what an operator sees in `pg_stat_activity`).
    fn open(&self) -> Result<Client> {
        let mut client = self
            .config
            .connect(NoTls)
            .map_err(|e| Error::Backend(format!("lease: cannot connect: {}", describe(&e))))?;
        client
            .batch_execute(&format!(
                "SET search_path TO {}; SET application_name = 'hw-lease-{}'; \
                 SET statement_timeout = {}",
                quote_ident(&self.schema),
                self.schema,
                (self.ttl / 3).as_millis().max(1)
            ))
            .map_err(|e| Error::Backend(format!("lease: {}", describe(&e))))?;
        Ok(client)
    }

    /// Runs `op` on the dedicated connection, (re)opening it when needed. A failure of the
    /// statement drops the connection if it broke, so the next call starts afresh.
    fn with_conn<T>(
        &self,
        doing: &str,
        op: impl FnOnce(&mut Client) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        guard(|| {
            let mut slot = self.conn.lock();
            if slot.as_ref().is_none_or(Client::is_closed) {
                *slot = Some(self.open()?);
            }
            let client = slot.as_mut().expect("opened above");
            let result = op(client);
            if client.is_closed() {
                *slot = None;
            }
            result.map_err(|e| Error::Backend(format!("lease: {doing}: {}", describe(&e))))
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
        let name = self.schema.as_str();
        let given = self.given();
        let ttl = dur_ms(self.ttl);
        let held = held.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
        let holder = self.holder.as_str();
        self.with_conn("acquiring or renewing", |c| {
            if let Some(row) = c.query_opt(ACQUIRE, &[&name, &holder, &given, &ttl, &held])? {
                return Ok(LeaseStatus::Held(info(&row)));
            }
            Ok(LeaseStatus::Follower(
                c.query_opt(CURRENT, &[&name])?.as_ref().map(info),
            ))
        })
    }

    fn step_down(&self, term: Term) -> Result<()> {
        let name = self.schema.as_str();
        let holder = self.holder.as_str();
        let term = i64::try_from(term).unwrap_or(i64::MAX);
        let given = self.given();
        self.with_conn("stepping down", |c| {
            c.execute(STEP_DOWN, &[&name, &holder, &term, &given])
                .map(|_| ())
        })
    }

    /// The registry's store: its [`fenced`](hodei_workers::WorkerRegistry::fenced) view checks
    /// this lease's term in every write transaction.
    fn fence_key(&self) -> Option<&str> {
        Some(&self.fence_key)
    }

    fn current(&self) -> Result<Option<LeaderInfo>> {
        let name = self.schema.as_str();
        self.with_conn("reading the lease", |c| {
            Ok(c.query_opt(CURRENT, &[&name])?.as_ref().map(info))
        })
    }
}
