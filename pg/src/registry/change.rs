//! The transaction of a change to one worker: its record locked `FOR UPDATE` (and read, with
//! the time, after the lock), the verdict taken in Rust, then the record, the counters of the
//! state move and the events written by one statement of the same transaction.

use std::sync::LazyLock;

use hodei_workers::{Error, EventKind, JobId, Timestamp, Worker, WorkerId, WorkerState};
use postgres::GenericClient;

use super::{fence, Fail, PostgresWorkerRegistry, Step};
use crate::pool::Conn;
use crate::sql::{db_ts, slot, st, W_COLS, W_LEN};

/// The statements that lock a worker's record (and read its snapshot and the time, after the
/// lock), by [`lock_statement`]'s arguments.
static LOCK_WORKER: LazyLock<[String; 4]> = LazyLock::new(|| {
    [(false, false), (true, false), (false, true), (true, true)]
        .map(|(with_heartbeat, fenced)| lock_statement(with_heartbeat, fenced))
});

/// Locks worker `$1`'s record, reading the time (`$2` on a manual clock) after the lock, never
/// before the record's `updated_at`: a time read before a row-lock wait (PostgreSQL evaluates it
/// before the wait when the holder did not change the row; a given time is read before the
/// statement) would otherwise move the worker's times back behind a change that committed
/// meanwhile (docs/DESIGN.md, "Event times").
/// `with_heartbeat` locks its heartbeat row too (`unregister`: a heartbeat event, which takes
/// its seq under that row's lock, can never follow `Unregistered`). `fenced` adds the lease
/// check as a join ([`fence::held`]), its verdict the last column.
fn lock_statement(with_heartbeat: bool, fenced: bool) -> String {
    let (heartbeats, of) = if with_heartbeat {
        (" JOIN heartbeats h ON h.id = w.id", "w, h")
    } else {
        ("", "w")
    };
    let (verdict, fence_join) = if fenced {
        (
            ", f.ok",
            format!(" LEFT JOIN ({}) f ON true", fence::held(3)),
        )
    } else {
        ("", String::new())
    };
    format!(
        "SELECT {W_COLS}, greatest(now_ms($2), w.updated_at){verdict} \
         FROM workers w{heartbeats}{fence_join} \
         WHERE w.id = $1 FOR UPDATE OF {of}"
    )
}

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

/// [`INSERT_EVENTS`] for `HeartbeatReceived` events, flagged `heartbeat` so that readers hand
/// them only to the subscribers that opted in (a host's `publish` of one).
pub(crate) const INSERT_HEARTBEAT_EVENTS: &str =
    "INSERT INTO outbox (xid, seq, at, worker_id, heartbeat, kind) \
    SELECT pg_current_xact_id(), nextval('event_seq'), $1, $2, true, e.k \
    FROM unnest($3::text[]) WITH ORDINALITY AS e(k, o) ORDER BY e.o";

/// One change to a locked record: what to write. The statement writes the record, the
/// heartbeat (when the change counts as one), the counters of the state move and the events,
/// in one statement of the change's transaction.
pub(super) struct Write<'a> {
    pub before: &'a Worker,
    pub after: &'a Worker,
    pub slot: i16,
    pub heartbeat: bool,
    pub events: Vec<EventKind>,
    pub now: i64,
}

pub(super) fn write_change(
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

impl PostgresWorkerRegistry {
    /// A write transaction on `conn` and the statement cache, borrowed side by side. On a
    /// fenced view ([`super::fence`]) the lease check runs first: refused, nothing is written.
    pub(crate) fn begin<'c>(
        &self,
        conn: &'c mut Conn,
    ) -> Step<(postgres::Transaction<'c>, WriteCache<'c>)> {
        let (mut tx, mut cache) = self.begin_unchecked(conn)?;
        if let Some(fence) = &self.fence {
            fence::check(&mut tx, &mut cache, self.schema(), fence)?;
        }
        Ok((tx, cache))
    }

    /// The transaction without the lease check: only for the beginnings that carry the check
    /// in their own first statement ([`begin_locked`](Self::begin_locked) and `register`'s).
    /// Every other write begins with [`begin`](Self::begin).
    pub(super) fn begin_unchecked<'c>(
        &self,
        conn: &'c mut Conn,
    ) -> Step<(postgres::Transaction<'c>, WriteCache<'c>)> {
        let (client, statements) = conn.parts();
        let tx = super::begin(client)?;
        Ok((tx, WriteCache { statements }))
    }

    /// A write transaction whose first statement locks worker `id`'s record (and its
    /// heartbeat row too `with_heartbeat`), as [`begin`](Self::begin) then a lock would,
    /// with one round trip less on a fenced view: the lease check rides in the lock
    /// statement. Refused, nothing is written (`NotLeader`, even for an unknown `id`: the
    /// check then runs alone); otherwise `NotFound` when `id` has no record.
    pub(super) fn begin_locked<'c>(
        &self,
        conn: &'c mut Conn,
        id: &WorkerId,
        with_heartbeat: bool,
    ) -> Step<Locked<'c>> {
        let (mut tx, mut cache) = self.begin_unchecked(conn)?;
        let given = self.given();
        let fenced = self.fence.as_deref();
        let sql = &LOCK_WORKER[usize::from(with_heartbeat) + 2 * usize::from(fenced.is_some())];
        let stmt = cache.prepare(&mut tx, sql)?;
        let row = match fenced {
            None => tx.query_opt(&stmt, &[id.as_uuid(), &given])?,
            Some(fence) => {
                let (holder, term) = fence.params();
                let schema = self.schema();
                let row = tx.query_opt(&stmt, &[id.as_uuid(), &given, &schema, &holder, term])?;
                match &row {
                    Some(row) if row.get::<_, Option<bool>>(W_LEN + 1).is_none() => {
                        return Err(fence::refused(schema, fence))
                    }
                    Some(_) => {}
                    None => fence::check(&mut tx, &mut cache, schema, fence)?,
                }
                row
            }
        };
        let row = row.ok_or_else(|| not_found(id))?;
        let worker = self.inner.specs.worker(&row)?;
        Ok((tx, cache, worker, slot(&row), row.get(W_LEN)))
    }
}

/// What [`PostgresWorkerRegistry::begin_locked`] returns: the transaction and the statement
/// cache, the worker's record as read after the lock, its counter slot, and the time read after
/// the lock.
pub(super) type Locked<'c> = (postgres::Transaction<'c>, WriteCache<'c>, Worker, i16, i64);

pub(super) fn not_found(id: &WorkerId) -> Fail {
    Fail::Domain(Error::NotFound(*id))
}

/// The worker holding `job`, if any.
pub(crate) fn holder_of(client: &mut impl GenericClient, job: &JobId) -> Step<Option<WorkerId>> {
    let row = client.query_opt(
        "SELECT id FROM workers WHERE current_job = $1",
        &[&job.as_str()],
    )?;
    Ok(row.map(|r| {
        let id: uuid::Uuid = r.get(0);
        WorkerId::from_bytes(*id.as_bytes()).unwrap_or_default()
    }))
}

/// The record after a move to `to` at `now` (timestamps, idle clock), as the in-memory
/// registry's `change` makes it.
pub(super) fn moved(before: &Worker, now: Timestamp, edit: impl FnOnce(&mut Worker)) -> Worker {
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

pub(super) fn jobs_exhausted(w: &Worker) -> bool {
    w.spec
        .max_jobs
        .is_some_and(|max| w.jobs_executed >= u64::from(max))
}
