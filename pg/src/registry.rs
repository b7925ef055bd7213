//! [`PostgresWorkerRegistry`]: the [`WorkerRegistry`] trait on PostgreSQL.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use hodei_workers::{
    Clock, Error, EventKind, JobId, Result, Snapshot, SubscribeOptions, Subscription, SystemClock,
    TerminationReason, Timestamp, TransitionGuard, Transitioned, Worker, WorkerFilter,
    WorkerHandle, WorkerId, WorkerRegistry, WorkerRegistryStats, WorkerSpec, WorkerState,
    POOL_LABEL,
};
use postgres::GenericClient;

use crate::error::{guard, is_retryable, DbError};
use crate::heartbeat::Coalescer;
use crate::pool::{Conn, Pool};
use crate::schema;
use crate::sql::{
    conditions, db_ts, dur_ms, param, refs, slot, slot_of, st, ts, Params, Specs, FROM_WORKERS,
    W_COLS, W_LEN,
};

/// How a step of an operation failed: the database, or the operation's own verdict.
#[derive(Debug)]
pub(crate) enum Fail {
    /// The client or the server failed.
    Db(postgres::Error),
    /// The operation refused (NotFound, InvalidTransition, …).
    Domain(Error),
    /// Nothing was applied and the operation should run again (a race it lost cleanly).
    Retry,
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
        Fail::Domain(_) | Fail::Retry => None,
    }
}

/// Connections per registry: enough for the coalesced heartbeats plus a few callers; every
/// caller beyond waits for a free one (a pool is not a queue of the database's making).
const POOL_SIZE: usize = 8;

/// The [`WorkerRegistry`] on PostgreSQL (≥ 13): several processes (scheduler replicas) share
/// one fleet, and the fleet outlives them.
///
/// # Promises
/// - Every invariant of the trait holds **across processes**, enforced by the database: a job
///   is held by at most one worker (a unique index on `workers.current_job`); `claim` is one
///   statement (`FOR UPDATE SKIP LOCKED` in a CTE, most recently idle first); every other
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
///   failed transaction applies nothing. A call from inside an async runtime (where the
///   synchronous client cannot block) is `Error::Backend` saying to use a blocking thread.
///
/// # Costs
/// One to four round trips per call (a transaction: lock, write, commit); `heartbeat` callers on
/// several threads share one statement; `find` and `snapshot` read the fleet.
pub struct PostgresWorkerRegistry {
    pub(crate) inner: Arc<Inner>,
}

/// The shared state of a registry (shared with its subscriptions' sources).
pub(crate) struct Inner {
    pub pool: Pool,
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
    /// When this process last pruned the outbox (see `PostgresWorkerRegistry::prune_events`).
    pub last_prune: parking_lot::Mutex<Option<std::time::Instant>>,
    /// The readers of this registry's subscriptions: read to the end when it is dropped.
    pub readers:
        parking_lot::Mutex<Vec<std::sync::Weak<parking_lot::Mutex<crate::events::Reader>>>>,
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
            .finish_non_exhaustive()
    }
}

fn parse_config(url: &str) -> Result<postgres::Config> {
    url.parse::<postgres::Config>()
        .map_err(|e| Error::invalid(format!("invalid PostgreSQL connection string: {e}")))
}

impl PostgresWorkerRegistry {
    /// Connects (a pool of up to 8 connections, opened on demand), applies the migrations
    /// (safe when replicas start at once) and uses the schema named `name` for this registry.
    /// Deadlines are judged on the database's clock.
    ///
    /// `url` is any libpq connection string, URL (`postgresql://user@host/db`) or `key=value`
    /// (`host=/tmp user=postgres dbname=postgres`).
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed `url` or `name` ([`schema::validate_name`]);
    /// `Backend` when the server cannot be reached or the migrations fail.
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
        let config = parse_config(url)?;
        guard(|| {
            let mut conn = Conn::open(&config, name).map_err(|cause| {
                Error::Backend(format!("cannot connect to PostgreSQL: {cause}"))
            })?;
            schema::drop_schema(&mut conn, name)
        })
    }

    fn open(url: &str, name: &str, clock: Option<Arc<dyn Clock>>) -> Result<Self> {
        schema::validate_name(name)?;
        let config = parse_config(url)?;
        let inner = Inner {
            pool: Pool::new(config, name.to_owned(), POOL_SIZE),
            clock,
            local: SystemClock::new(),
            offset: AtomicI64::new(0),
            last_now: AtomicU64::new(0),
            specs: Specs::default(),
            heartbeat_subscribers: Arc::new(AtomicUsize::new(0)),
            heartbeats: Coalescer::default(),
            readers: parking_lot::Mutex::new(Vec::new()),
            last_prune: parking_lot::Mutex::new(None),
        };
        guard(|| {
            let mut conn = inner.pool.get()?;
            schema::migrate(&mut conn, name)
        })?;
        let registry = PostgresWorkerRegistry {
            inner: Arc::new(inner),
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
}

impl Inner {
    pub(crate) fn run<T>(
        &self,
        doing: &str,
        op: &mut dyn FnMut(&mut Conn) -> Step<T>,
    ) -> Result<T> {
        guard(|| {
            let mut conn = self.pool.get()?;
            let mut attempt = 0;
            loop {
                match op(&mut conn) {
                    Ok(v) => return Ok(v),
                    Err(Fail::Domain(e)) => return Err(e),
                    Err(Fail::Retry) => {}
                    Err(Fail::Db(e)) if is_retryable(&e) && attempt < 3 => attempt += 1,
                    Err(Fail::Db(e)) => return Err(DbError::from(e).backend(doing)),
                }
            }
        })
    }
}

/// Locks a worker's record (and reads its snapshot and the time, after the lock).
static LOCK_WORKER: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {W_COLS}, now_ms($2) FROM workers w WHERE w.id = $1 FOR UPDATE OF w")
});

/// Locks a worker's record and its heartbeat row: `unregister`, so that a heartbeat event
/// (which takes its seq under the heartbeat row's lock) can never follow `Unregistered`.
static LOCK_WORKER_AND_HEARTBEAT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {W_COLS}, now_ms($2) FROM workers w JOIN heartbeats h ON h.id = w.id \
         WHERE w.id = $1 FOR UPDATE OF w, h"
    )
});

static GET: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {W_COLS} FROM workers w WHERE w.id = $1"));

/// The events of one change, as the outbox stores them (JSON of [`EventKind`]).
pub(crate) fn event_texts(events: &[EventKind]) -> Vec<String> {
    events
        .iter()
        .map(|e| serde_json::to_string(e).expect("events serialize"))
        .collect()
}

/// Appends the events of a change to the outbox, in order, each with the next `seq`. Run in the
/// change's transaction, after its row locks (so that the seq order of one worker's events is
/// the order of its changes) and after its first write (so that the transaction has its xid:
/// see [`crate::events`]).
pub(crate) const INSERT_EVENTS: &str = "INSERT INTO outbox (xid, seq, at, worker_id, kind) \
    SELECT pg_current_xact_id(), nextval('event_seq'), $1, $2, e.k \
    FROM unnest($3::text[]) WITH ORDINALITY AS e(k, o) ORDER BY e.o";

/// One change to a locked record: what to write. The statement writes the record, the
/// heartbeat (when the change counts as one), the counters of the state move and the events,
/// in one statement of the change's transaction.
struct Write<'a> {
    before: &'a Worker,
    after: &'a Worker,
    slot: i16,
    heartbeat: bool,
    events: Vec<EventKind>,
    now: i64,
}

fn write_change(
    tx: &mut postgres::Transaction<'_>,
    conn_cache: &mut WriteCache<'_>,
    w: &Write<'_>,
) -> Step<()> {
    let moved =
        (w.before.state != w.after.state).then_some((st(w.before.state), st(w.after.state)));
    let mut sql = String::from(
        "WITH w AS (UPDATE workers SET state = $4, current_job = $5, jobs_executed = $6, \
         updated_at = $7, state_changed_at = $8, idle_since = $9 WHERE id = $2 RETURNING id)",
    );
    if w.heartbeat {
        sql.push_str(
            ", h AS (UPDATE heartbeats SET last_heartbeat = greatest(last_heartbeat, $1) \
             WHERE id = $2)",
        );
    }
    if let Some((f, t)) = moved {
        sql.push_str(&format!(
            ", c AS (UPDATE state_counts SET s{f} = s{f} - 1, s{t} = s{t} + 1 WHERE slot = $10)"
        ));
    } else {
        sql.push_str(", c AS (SELECT $10::smallint)");
    }
    // The events read from `w`: the record's update (and its unique index on the job) runs
    // before any seq is taken, so a refused change leaves no gap in the seqs. The counters
    // and the heartbeat (CTEs nobody reads, run after) can only wait, not fail: each touches
    // one row, and no transaction waits for a worker row while holding one of theirs.
    sql.push_str(
        " INSERT INTO outbox (xid, seq, at, worker_id, kind) \
         SELECT pg_current_xact_id(), nextval('event_seq'), $1, w.id, e.k \
         FROM w CROSS JOIN unnest($3::text[]) WITH ORDINALITY AS e(k, o) ORDER BY e.o",
    );
    let stmt = conn_cache.prepare(tx, &sql)?;
    let id = *w.after.id.as_uuid();
    let job = w.after.current_job.as_ref().map(|j| j.as_str().to_owned());
    let jobs = crate::sql::db_count(w.after.jobs_executed);
    let updated = db_ts(w.after.updated_at);
    let changed = db_ts(w.after.state_changed_at);
    let idle = w.after.idle_since.map(db_ts);
    let events = event_texts(&w.events);
    tx.execute(
        &stmt,
        &[
            &w.now,
            &id,
            &events,
            &st(w.after.state),
            &job,
            &jobs,
            &updated,
            &changed,
            &idle,
            &w.slot,
        ],
    )?;
    Ok(())
}

/// Prepared statements used inside transactions (`Conn::prepare` needs the client, which the
/// transaction borrows): prepared through the transaction and remembered by the connection.
pub(crate) struct WriteCache<'a> {
    statements: &'a mut std::collections::HashMap<String, postgres::Statement>,
}

impl WriteCache<'_> {
    pub(crate) fn prepare(
        &mut self,
        tx: &mut postgres::Transaction<'_>,
        sql: &str,
    ) -> std::result::Result<postgres::Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = tx.prepare(sql)?;
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

impl Conn {
    /// A transaction and the statement cache, borrowed side by side.
    pub(crate) fn begin(
        &mut self,
    ) -> std::result::Result<(postgres::Transaction<'_>, WriteCache<'_>), postgres::Error> {
        let (client, statements) = self.parts();
        Ok((client.transaction()?, WriteCache { statements }))
    }
}

/// The locked record, its counter slot and the time read after the lock.
fn lock_worker(
    specs: &Specs,
    tx: &mut postgres::Transaction<'_>,
    cache: &mut WriteCache<'_>,
    id: &WorkerId,
    given: Option<i64>,
    with_heartbeat: bool,
) -> Step<Option<(Worker, i16, i64)>> {
    let sql: &str = if with_heartbeat {
        &LOCK_WORKER_AND_HEARTBEAT
    } else {
        &LOCK_WORKER
    };
    let stmt = cache.prepare(tx, sql)?;
    let Some(row) = tx.query_opt(&stmt, &[id.as_uuid(), &given])? else {
        return Ok(None);
    };
    let worker = specs.worker(&row)?;
    Ok(Some((worker, slot(&row), row.get(W_LEN))))
}

fn not_found(id: &WorkerId) -> Fail {
    Fail::Domain(Error::NotFound(*id))
}

/// The worker holding `job`, if any.
fn holder_of(client: &mut impl GenericClient, job: &JobId) -> Step<Option<WorkerId>> {
    let row = client.query_opt(
        "SELECT id FROM workers WHERE current_job = $1",
        &[&job.as_str()],
    )?;
    Ok(row.map(|r| {
        let id: uuid::Uuid = r.get(0);
        WorkerId::from_bytes(*id.as_bytes()).unwrap_or_default()
    }))
}

/// `release_from_job` in one statement (one round trip, its own transaction): the record is
/// locked `FOR UPDATE`, the release applies only if it holds a job (the expected one, when
/// named: a stale release is fenced), `Busy -> Ready` (or `Draining` at `max_jobs`; a
/// `Draining` worker stays), `jobs_executed + 1` (saturating; stored as the bits of a `u64`),
/// the counters of the move and the events (`ReleasedFromJob`, then `StateChanged` when the
/// state changed) are written after the lock. Returns the job, or no row when refused.
const RELEASE: &str = "WITH t AS MATERIALIZED (SELECT now_ms($1) AS now), \
    old AS (SELECT id, state, current_job, jobs_executed, max_jobs FROM workers \
        WHERE id = $2 FOR UPDATE), \
    n AS (SELECT old.*, CASE WHEN old.jobs_executed = -1 THEN -1::bigint \
            WHEN old.jobs_executed = 9223372036854775807 THEN (-9223372036854775807 - 1) \
            ELSE old.jobs_executed + 1 END AS jobs \
        FROM old WHERE old.current_job IS NOT NULL \
            AND ($3::text IS NULL OR old.current_job = $3::text)), \
    n2 AS (SELECT n.*, (CASE WHEN n.state = 3 THEN \
            CASE WHEN n.max_jobs IS NOT NULL AND (n.jobs < 0 OR n.jobs >= n.max_jobs) \
                THEN 4 ELSE 2 END \
            ELSE n.state END)::smallint AS to_state FROM n), \
    u AS (UPDATE workers w SET current_job = NULL, jobs_executed = n2.jobs, \
            state = n2.to_state, updated_at = t.now, \
            state_changed_at = CASE WHEN n2.to_state <> n2.state THEN t.now \
                ELSE w.state_changed_at END, \
            idle_since = CASE WHEN n2.to_state = 2 THEN t.now ELSE w.idle_since END \
        FROM n2, t WHERE w.id = n2.id \
        RETURNING w.id, w.slot, n2.state AS from_state, n2.to_state, n2.current_job AS job, \
            t.now), \
    cnt AS (UPDATE state_counts k SET s2 = k.s2 + (u.to_state = 2)::int, \
            s3 = k.s3 - (u.from_state = 3)::int, \
            s4 = k.s4 + (u.to_state = 4)::int - (u.from_state = 4)::int \
        FROM u WHERE k.slot = u.slot AND u.from_state <> u.to_state), \
    ev AS (INSERT INTO outbox (xid, seq, at, worker_id, kind) \
        SELECT pg_current_xact_id(), nextval('event_seq'), u.now, u.id, e.k \
        FROM u CROSS JOIN LATERAL (VALUES \
            (1, json_build_object('type', 'released_from_job', 'worker_id', u.id, \
                'job_id', u.job)::text), \
            (2, CASE WHEN u.from_state <> u.to_state THEN json_build_object( \
                'type', 'state_changed', 'worker_id', u.id, \
                'from', (ARRAY['creating', 'connecting', 'ready', 'busy', 'draining', \
                    'terminating', 'terminated'])[u.from_state + 1], \
                'to', (ARRAY['creating', 'connecting', 'ready', 'busy', 'draining', \
                    'terminating', 'terminated'])[u.to_state + 1])::text END)) AS e(o, k) \
        WHERE e.k IS NOT NULL ORDER BY e.o) \
    SELECT job FROM u";

/// The `n` longest-idle ready workers: the ready index read backwards.
static LONGEST_IDLE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {W_COLS} FROM workers w WHERE w.state = 2 AND w.current_job IS NULL \
         ORDER BY w.idle_since ASC, w.id ASC LIMIT $1"
    )
});

impl PostgresWorkerRegistry {
    /// The one path of `update_state` and `transition_if`: the guard (if any) and the state
    /// table are checked against the record locked `FOR UPDATE`, and the move, its counters and
    /// its events are written in the same transaction.
    fn move_state(
        &self,
        id: &WorkerId,
        guard: Option<&TransitionGuard>,
        to: WorkerState,
    ) -> Result<Option<Transitioned>> {
        let given = self.given();
        let specs = &self.inner.specs;
        self.run("changing a worker's state", |conn| {
            let (mut tx, mut cache) = conn.begin()?;
            let (before, slot, now) = lock_worker(specs, &mut tx, &mut cache, id, given, false)?
                .ok_or_else(|| not_found(id))?;
            let from = before.state;
            if let Some(guard) = guard {
                if !guard.holds(from, before.idle_since, before.current_job.is_some()) {
                    return Ok(None);
                }
            }
            if from == to {
                return Ok(Some(Transitioned {
                    worker: before,
                    from,
                    lost_job: None,
                }));
            }
            let refuse = Fail::Domain(Error::InvalidTransition {
                worker_id: *id,
                from,
                to,
            });
            if !from.can_update_to(to) || (to == WorkerState::Ready && before.current_job.is_some())
            {
                return Err(refuse);
            }
            // A drained worker that ran its max_jobs stays out of service (issue 10).
            if from == WorkerState::Draining && to == WorkerState::Ready && jobs_exhausted(&before)
            {
                return Err(refuse);
            }
            let lost = if to.is_terminal() {
                before.current_job.clone()
            } else {
                None
            };
            // A starting worker that moves on has reported in: that counts as a heartbeat.
            let reported_in = from.is_starting() && !to.is_terminal();
            let mut after = moved(&before, ts(now), |w| {
                w.state = to;
                if to.is_terminal() {
                    w.current_job = None;
                }
            });
            if reported_in {
                after.last_heartbeat = after.last_heartbeat.max(ts(now));
            }
            let mut events = vec![EventKind::StateChanged {
                worker_id: *id,
                from,
                to,
            }];
            if let Some(job) = &lost {
                events.push(EventKind::JobLost {
                    worker_id: *id,
                    job_id: job.clone(),
                });
            }
            write_change(
                &mut tx,
                &mut cache,
                &Write {
                    before: &before,
                    after: &after,
                    slot,
                    heartbeat: reported_in,
                    events,
                    now,
                },
            )?;
            tx.commit()?;
            Ok(Some(Transitioned {
                worker: after,
                from,
                lost_job: lost,
            }))
        })
    }
}

/// The record after a move to `to` at `now` (timestamps, idle clock), as the in-memory
/// registry's `change` makes it.
fn moved(before: &Worker, now: Timestamp, edit: impl FnOnce(&mut Worker)) -> Worker {
    let mut after = before.clone();
    edit(&mut after);
    after.updated_at = now;
    if after.state != before.state {
        after.state_changed_at = now;
        if after.state == WorkerState::Ready {
            after.idle_since = Some(now);
        }
    }
    after
}

fn jobs_exhausted(w: &Worker) -> bool {
    w.spec
        .max_jobs
        .is_some_and(|max| w.jobs_executed >= u64::from(max))
}

impl WorkerRegistry for PostgresWorkerRegistry {
    fn lease(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Arc<dyn hodei_workers::Leadership>>> {
        Ok(Some(Arc::new(PostgresWorkerRegistry::leadership(
            self, holder, ttl,
        )?)))
    }

    /// The registry's clock: the given clock, or the database's (one query; when the database
    /// cannot be reached, the local clock corrected by the last measured offset). Never goes
    /// backwards.
    fn now(&self) -> Timestamp {
        let now = match &self.inner.clock {
            Some(clock) => return clock.now(),
            None => self.db_now().unwrap_or_else(|_| {
                let local = self.inner.local.now() as i64;
                (local + self.inner.offset.load(Ordering::Relaxed)).max(0) as u64
            }),
        };
        self.inner
            .last_now
            .fetch_max(now, Ordering::AcqRel)
            .max(now)
    }

    fn register(&self, handle: WorkerHandle, spec: Arc<WorkerSpec>) -> Result<Worker> {
        handle.validate()?;
        spec.validate()?;
        let id = handle.worker_id;
        let spec_json = serde_json::to_string(&*spec)
            .map_err(|e| Error::invalid(format!("spec cannot be stored: {e}")))?;
        let labels = serde_json::to_string(&spec.labels).expect("labels serialize");
        let caps: Vec<String> = spec.capabilities.iter().cloned().collect();
        let metadata = serde_json::to_string(&handle.metadata).expect("metadata serialize");
        let provider_id = handle.provider_id.as_str().to_owned();
        let provider_type = handle.provider_type.to_string();
        let slot = slot_of(&id);
        let given = self.given();
        let event = event_texts(&[EventKind::Registered {
            worker_id: id,
            provider_id: handle.provider_id.clone(),
            provider_type: handle.provider_type.clone(),
        }]);
        let max_jobs = spec.max_jobs.map(i64::from);
        // The pool the worker counts in (`pool_counts`, kept by triggers on `workers`).
        let pool = spec.labels.get(POOL_LABEL);
        let (key, now): (String, i64) = self.run("registering a worker", |conn| {
            let (mut tx, mut cache) = conn.begin()?;
            // Ids are never reused: the unique index of known_ids refuses a second
            // registration, also one racing from another replica.
            let known = cache.prepare(&mut tx, "INSERT INTO known_ids (id) VALUES ($1)")?;
            if let Err(e) = tx.execute(&known, &[id.as_uuid()]) {
                let fail = Fail::from(e);
                if unique_violation(&fail).is_some() {
                    return Err(Fail::Domain(Error::AlreadyExists(id)));
                }
                return Err(fail);
            }
            let insert = cache.prepare(
                &mut tx,
                "WITH t AS MATERIALIZED (SELECT now_ms($1) AS now, md5($2) AS key), \
                 sp AS (INSERT INTO specs (key, spec, labels, capabilities) \
                     SELECT t.key, $2, ($3::text)::jsonb, $4 FROM t ON CONFLICT (key) DO NOTHING), \
                 hb AS (INSERT INTO heartbeats (id, last_heartbeat) SELECT $5, t.now FROM t), \
                 c AS (UPDATE state_counts SET total = total + 1, s0 = s0 + 1 WHERE slot = $6), \
                 p AS (INSERT INTO provider_counts AS pc (provider_id, provider_type, slot, n) \
                     VALUES ($7, $8, $6, 1) ON CONFLICT (provider_id, provider_type, slot) \
                     DO UPDATE SET n = pc.n + 1) \
                 INSERT INTO workers (id, slot, provider_id, provider_type, resource_id, metadata, \
                     spec_key, idle_timeout_ms, max_lifetime_ms, max_jobs, state, current_job, \
                     jobs_executed, created_at, updated_at, state_changed_at, idle_since, pool) \
                 SELECT $5, $6, $7, $8, $9, $10, t.key, $11, $12, $13, 0, NULL, 0, t.now, t.now, \
                     t.now, NULL, $14 FROM t RETURNING spec_key, created_at",
            )?;
            let row = tx.query_one(
                &insert,
                &[
                    &given,
                    &spec_json,
                    &labels,
                    &caps,
                    id.as_uuid(),
                    &slot,
                    &provider_id,
                    &provider_type,
                    &handle.resource_id,
                    &metadata,
                    &dur_ms(spec.idle_timeout),
                    &dur_ms(spec.max_lifetime),
                    &max_jobs,
                    &pool,
                ],
            )?;
            let key: String = row.get(0);
            let now: i64 = row.get(1);
            let events = cache.prepare(&mut tx, INSERT_EVENTS)?;
            tx.execute(&events, &[&now, id.as_uuid(), &event])?;
            tx.commit()?;
            Ok((key, now))
        })?;
        self.inner.specs.remember(&key, &spec);
        let now = ts(now);
        Ok(Worker {
            id,
            handle: Arc::new(handle),
            spec,
            state: WorkerState::Creating,
            current_job: None,
            jobs_executed: 0,
            created_at: now,
            updated_at: now,
            state_changed_at: now,
            last_heartbeat: now,
            idle_since: None,
        })
    }

    fn unregister(&self, id: &WorkerId, reason: TerminationReason) -> Result<Worker> {
        let given = self.given();
        let specs = &self.inner.specs;
        self.run("unregistering a worker", |conn| {
            let (mut tx, mut cache) = conn.begin()?;
            let (worker, slot, now) = lock_worker(specs, &mut tx, &mut cache, id, given, true)?
                .ok_or_else(|| not_found(id))?;
            let mut events = Vec::new();
            if let Some(job) = &worker.current_job {
                events.push(EventKind::JobLost {
                    worker_id: *id,
                    job_id: job.clone(),
                });
            }
            events.push(EventKind::Unregistered {
                worker_id: *id,
                reason,
            });
            let s = st(worker.state);
            let sql = format!(
                "WITH d AS (DELETE FROM workers WHERE id = $2), \
                 dh AS (DELETE FROM heartbeats WHERE id = $2), \
                 r AS (UPDATE known_ids SET retired = nextval('retire_seq') WHERE id = $2), \
                 c AS (UPDATE state_counts SET total = total - 1, s{s} = s{s} - 1 WHERE slot = $4), \
                 p AS (UPDATE provider_counts SET n = n - 1 \
                     WHERE provider_id = $5 AND provider_type = $6 AND slot = $4) {INSERT_EVENTS}"
            );
            let stmt = cache.prepare(&mut tx, &sql)?;
            tx.execute(
                &stmt,
                &[
                    &now,
                    id.as_uuid(),
                    &event_texts(&events),
                    &slot,
                    &worker.handle.provider_id.as_str(),
                    &worker.handle.provider_type.to_string(),
                ],
            )?;
            tx.commit()?;
            Ok(worker)
        })
    }

    fn get(&self, id: &WorkerId) -> Result<Option<Worker>> {
        let specs = &self.inner.specs;
        self.run("reading a worker", |conn| {
            let stmt = conn.prepare(&GET)?;
            match conn.client.query_opt(&stmt, &[id.as_uuid()])? {
                Some(row) => Ok(Some(specs.worker(&row)?)),
                None => Ok(None),
            }
        })
    }

    fn find(&self, filter: &WorkerFilter) -> Result<Vec<Worker>> {
        if filter.limit == Some(0) {
            return Ok(Vec::new());
        }
        let mut params: Params = Vec::new();
        let now = param(&mut params, self.given());
        let conds = conditions(filter, "(SELECT now FROM t)", &mut params, false);
        let mut sql = format!(
            "WITH t AS MATERIALIZED (SELECT now_ms({now}::bigint) AS now) \
             SELECT {W_COLS} FROM {FROM_WORKERS}"
        );
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        if let Some(limit) = filter.limit {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let specs = &self.inner.specs;
        self.run("finding workers", |conn| {
            let stmt = conn.prepare(&sql)?;
            let rows = conn.client.query(&stmt, &refs(&params))?;
            rows.iter().map(|r| specs.worker(r)).collect()
        })
    }

    fn update_state(&self, id: &WorkerId, to: WorkerState) -> Result<Worker> {
        let moved = self.move_state(id, None, to)?;
        Ok(moved.expect("no guard: the move applies or fails").worker)
    }

    fn transition_if(
        &self,
        id: &WorkerId,
        guard: &TransitionGuard,
        to: WorkerState,
    ) -> Result<Option<Transitioned>> {
        self.move_state(id, Some(guard), to)
    }

    fn longest_idle(&self, n: usize) -> Result<Vec<Worker>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(n).unwrap_or(i64::MAX);
        let specs = &self.inner.specs;
        self.run("finding the longest idle workers", |conn| {
            let stmt = conn.prepare(&LONGEST_IDLE)?;
            let rows = conn.client.query(&stmt, &[&limit])?;
            rows.iter().map(|r| specs.worker(r)).collect()
        })
    }

    fn heartbeat_many(&self, ids: &[WorkerId]) -> Result<Vec<Result<()>>> {
        crate::heartbeat::heartbeat_many(self, ids)
    }

    fn heartbeat(&self, id: &WorkerId) -> Result<()> {
        self.inner.heartbeats.heartbeat(self, *id)
    }

    fn assign_to_job(&self, id: &WorkerId, job: JobId) -> Result<Worker> {
        let given = self.given();
        let specs = &self.inner.specs;
        self.run("assigning a job", |conn| {
            let (mut tx, mut cache) = conn.begin()?;
            let (before, slot, now) = lock_worker(specs, &mut tx, &mut cache, id, given, false)?
                .ok_or_else(|| not_found(id))?;
            if !before.state.accepts_jobs() || before.current_job.is_some() {
                return Err(Fail::Domain(Error::NotAvailable {
                    worker_id: *id,
                    state: before.state,
                }));
            }
            if let Some(holder) = holder_of(&mut tx, &job)? {
                return Err(Fail::Domain(Error::JobAlreadyAssigned {
                    job_id: job.clone(),
                    worker_id: holder,
                }));
            }
            let after = moved(&before, ts(now), |w| {
                w.current_job = Some(job.clone());
                w.state = WorkerState::Busy;
            });
            let write = Write {
                before: &before,
                after: &after,
                slot,
                heartbeat: false,
                events: vec![
                    EventKind::StateChanged {
                        worker_id: *id,
                        from: WorkerState::Ready,
                        to: WorkerState::Busy,
                    },
                    EventKind::AssignedToJob {
                        worker_id: *id,
                        job_id: job.clone(),
                    },
                ],
                now,
            };
            if let Err(fail) = write_change(&mut tx, &mut cache, &write) {
                if unique_violation(&fail).is_some() {
                    // Another replica gave the job to another worker since our check.
                    drop(tx);
                    let holder = holder_of(&mut conn.client, &job)?.unwrap_or_default();
                    return Err(Fail::Domain(Error::JobAlreadyAssigned {
                        job_id: job.clone(),
                        worker_id: holder,
                    }));
                }
                return Err(fail);
            }
            tx.commit()?;
            Ok(after)
        })
    }

    fn release_from_job(&self, id: &WorkerId, expected_job: Option<&JobId>) -> Result<JobId> {
        let given = self.given();
        let expected = expected_job.map(|j| j.as_str().to_owned());
        self.run("releasing a job", |conn| {
            let stmt = conn.prepare(RELEASE)?;
            if let Some(row) = conn
                .client
                .query_opt(&stmt, &[&given, id.as_uuid(), &expected])?
            {
                let job: String = row.get(0);
                return JobId::new(job).map_err(Fail::Domain);
            }
            // Refused: say why (the worker is gone, or holds no job / another job).
            let stmt = conn.prepare("SELECT 1 FROM workers WHERE id = $1")?;
            if conn.client.query_opt(&stmt, &[id.as_uuid()])?.is_none() {
                return Err(not_found(id));
            }
            Err(Fail::Domain(Error::NotBusy {
                worker_id: *id,
                expected: expected_job.cloned(),
            }))
        })
    }

    fn claim(&self, filter: &WorkerFilter, job: JobId) -> Result<Option<Worker>> {
        crate::claim::claim(self, filter, job)
    }

    fn find_unhealthy(&self, heartbeat_timeout: Duration) -> Result<Vec<Worker>> {
        crate::deadlines::find_unhealthy(self, heartbeat_timeout)
    }

    fn find_startup_expired(&self, startup_timeout: Duration) -> Result<Vec<Worker>> {
        crate::deadlines::find_startup_expired(self, startup_timeout)
    }

    fn find_for_termination(&self) -> Result<Vec<(Worker, TerminationReason)>> {
        crate::deadlines::find_for_termination(self)
    }

    fn grant_grace(&self, since: Timestamp) -> Result<()> {
        self.run("granting grace", |conn| {
            let stmt = conn.prepare("UPDATE meta SET grace_floor = greatest(grace_floor, $1)")?;
            conn.client.execute(&stmt, &[&db_ts(since)])?;
            Ok(())
        })
    }

    fn stats(&self) -> Result<WorkerRegistryStats> {
        crate::stats::stats(self)
    }

    fn count(&self) -> Result<usize> {
        self.run("counting workers", |conn| {
            let stmt = conn.prepare("SELECT coalesce(sum(total), 0)::bigint FROM state_counts")?;
            let n: i64 = conn.client.query_one(&stmt, &[])?.get(0);
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    fn subscribe(&self, options: SubscribeOptions) -> Result<Subscription> {
        crate::events::subscribe(self, options)
    }

    fn publish(&self, kind: EventKind) -> Result<()> {
        let given = self.given();
        let event = event_texts(std::slice::from_ref(&kind));
        let worker = kind.worker_id().map(|w| *w.as_uuid());
        self.run("publishing an event", |conn| {
            let (mut tx, mut cache) = conn.begin()?;
            // An event about a worker needs the worker: its row is locked (KEY SHARE, which
            // `unregister`'s FOR UPDATE waits for) before the seq is taken, so the event can
            // never follow its Unregistered. The xid comes first too: a reader must see this
            // transaction in flight from the moment it holds a seq (see crate::events).
            if let Some(id) = worker {
                let lock =
                    cache.prepare(&mut tx, "SELECT 1 FROM workers WHERE id = $1 FOR KEY SHARE")?;
                if tx.query_opt(&lock, &[&id])?.is_none() {
                    let id = WorkerId::from_bytes(*id.as_bytes()).unwrap_or_default();
                    return Err(not_found(&id));
                }
            }
            let now: i64 = tx
                .query_one("SELECT now_ms($1), pg_current_xact_id()::text", &[&given])?
                .get(0);
            let stmt = cache.prepare(&mut tx, INSERT_EVENTS)?;
            tx.execute(&stmt, &[&now, &worker, &event])?;
            tx.commit()?;
            Ok(())
        })
    }

    fn snapshot(&self) -> Result<Snapshot> {
        crate::snapshot::snapshot(self)
    }

    fn restore(&self, snapshot: Snapshot) -> Result<()> {
        crate::snapshot::restore(self, snapshot)
    }
}

#[allow(dead_code)]
fn assert_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<PostgresWorkerRegistry>();
}
