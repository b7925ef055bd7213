//! `assign_to_job` (a transaction, as the state moves) and `release_from_job` (one statement;
//! naming no job, inside a transaction of its own: see `release`).

use std::time::{Duration, Instant};

use hodei_workers::{Error, EventKind, JobId, Result, Worker, WorkerId, WorkerState};

use super::change::{holder_of, moved, not_found, write_change, Write};
use super::{unique_violation, Fail, PostgresWorkerRegistry, Settled, Step};
use crate::pool::Conn;
use crate::sql::{ts, W_COLS, W_LEN};

/// `release_from_job` in one statement (one round trip; naming no job, in a transaction of its
/// own, three: see [`PostgresWorkerRegistry::release`]): the record is
/// locked `FOR UPDATE`, the release applies only if it holds a job (the expected one, when
/// named: a stale release is fenced), `Busy -> Ready` (or `Draining` at `max_jobs`; a
/// `Draining` worker stays), `jobs_executed + 1` (saturating; stored as the bits of a `u64`),
/// at a time never before the record's `updated_at` (the time, a given one above all, may have
/// been read before the lock wait: see `change::lock_statement`),
/// the counters of the move and the events (`ReleasedFromJob`, then `StateChanged` when the
/// state changed) are written after the lock. Returns the job, or no row when refused.
const RELEASE: &str = "WITH t AS MATERIALIZED (SELECT now_ms($1) AS now), \
    old AS (SELECT id, state, current_job, jobs_executed, max_jobs, updated_at FROM workers \
        WHERE id = $2 FOR UPDATE), \
    n AS (SELECT old.*, CASE WHEN old.jobs_executed = -1 THEN -1::bigint \
            WHEN old.jobs_executed = 9223372036854775807 THEN (-9223372036854775807 - 1) \
            ELSE old.jobs_executed + 1 END AS jobs, \
            greatest((SELECT now FROM t), old.updated_at) AS now \
        FROM old WHERE old.current_job IS NOT NULL \
            AND ($3::text IS NULL OR old.current_job = $3::text)), \
    n2 AS (SELECT n.*, (CASE WHEN n.state = 3 THEN \
            CASE WHEN n.max_jobs IS NOT NULL AND (n.jobs < 0 OR n.jobs >= n.max_jobs) \
                THEN 4 ELSE 2 END \
            ELSE n.state END)::smallint AS to_state FROM n), \
    u AS (UPDATE workers w SET current_job = NULL, jobs_executed = n2.jobs, \
            state = n2.to_state, updated_at = n2.now, \
            state_changed_at = CASE WHEN n2.to_state <> n2.state THEN n2.now \
                ELSE w.state_changed_at END, \
            idle_since = CASE WHEN n2.to_state = 2 THEN n2.now ELSE w.idle_since END \
        FROM n2 WHERE w.id = n2.id \
        RETURNING w.id, w.slot, n2.state AS from_state, n2.to_state, n2.current_job AS job, \
            n2.now), \
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

/// Worker `$1` if it holds the job `$2`: how an assignment whose reply was lost learns that
/// it applied ([`PostgresWorkerRegistry::assign`]).
static HOLDING: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("SELECT {W_COLS} FROM workers w WHERE w.id = $1 AND w.current_job = $2::text")
});

/// The first `AssignedToJob` event of job `$2` (to worker `$3`, when not NULL) written at or
/// after `$1`, and its worker's record as it is now (NULL columns when the worker is gone,
/// then its id): how a claim or an assignment whose reply was lost, finding its job held by no
/// one, learns that it applied all the same and lost the job since ([`settle_assigned`]).
static ASSIGNED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {W_COLS}, o.worker_id FROM (SELECT worker_id FROM outbox \
         WHERE at >= $1 AND NOT heartbeat AND kind::jsonb->>'type' = 'assigned_to_job' \
         AND kind::jsonb->>'job_id' = $2::text AND ($3::uuid IS NULL OR worker_id = $3::uuid) \
         ORDER BY seq LIMIT 1) o LEFT JOIN workers w ON w.id = o.worker_id"
    )
});

/// How far before the database's time read by [`settle_assigned`], beyond the time the call
/// took on the local clock, its write can have been made: the millisecond the database rounds
/// its time down to, and a small step of its clock.
const CLOCK_SLACK: Duration = Duration::from_millis(20);

/// Whether a claim or an assignment of `job` (to `worker`, when named) whose reply was lost,
/// and whose job no worker holds now (its lost session settled), applied all the same: its
/// `AssignedToJob` event is in the outbox, written at or after the call began (`given`, the
/// time the call passed to its statements on a manual clock; on the database's clock, the
/// database's time now less the time the call took, measured on the local clock from
/// `started`). Its worker then lost the job between the commit and now: released already,
/// or reported lost (`JobLost`: expired by the health check, unregistered). Running the call
/// once more would give the job a second time (to another worker, or to the same one after a
/// release) while it runs, or was reported lost.
///
/// `Some(Ok(worker))`: it applied; the worker's record as it is now. `Some(Err(id))`: it
/// applied on worker `id`, which is gone since. `None`: it did not apply.
pub(crate) fn settle_assigned(
    conn: &mut Conn,
    specs: &crate::sql::Specs,
    given: Option<i64>,
    started: Instant,
    job: &JobId,
    worker: Option<&WorkerId>,
) -> Step<Option<std::result::Result<Worker, WorkerId>>> {
    let since = match given {
        Some(given) => given,
        None => {
            let stmt = conn.prepare("SELECT now_ms(NULL)")?;
            let now: i64 = conn.client.query_one(&stmt, &[])?.get(0);
            // Read once the database answered: at least the time from the call's start to the
            // moment the database read its time.
            let back = started.elapsed() + CLOCK_SLACK;
            now.saturating_sub(i64::try_from(back.as_millis()).unwrap_or(i64::MAX))
        }
    };
    let stmt = conn.prepare(&ASSIGNED)?;
    let Some(row) = conn.client.query_opt(
        &stmt,
        &[&since, &job.as_str(), &worker.map(WorkerId::as_uuid)],
    )?
    else {
        return Ok(None);
    };
    if row.get::<_, Option<uuid::Uuid>>(0).is_some() {
        return Ok(Some(Ok(specs.worker(&row)?)));
    }
    let id: uuid::Uuid = row.get(W_LEN);
    Ok(Some(Err(
        WorkerId::from_bytes(*id.as_bytes()).unwrap_or_default()
    )))
}

/// The answer of a claim or an assignment that applied on worker `id`, which is gone since.
pub(crate) fn applied_on_gone(doing: &str, job: &JobId, id: &WorkerId) -> Fail {
    Fail::Domain(Error::Backend(format!(
        "{doing}: its reply was lost, and it applied: job {job} was given to worker {id}, \
         which has been unregistered since (its job released or reported lost)"
    )))
}

impl PostgresWorkerRegistry {
    pub(super) fn assign(&self, id: &WorkerId, job: JobId) -> Result<Worker> {
        let mut raced = 0;
        let (given, started) = (self.given(), Instant::now());
        // An assignment whose reply was lost (its connection broke once its change was sent)
        // applied if the worker holds the job now, once the lost session is settled: that is
        // its answer, as a claim's (`crate::claim`); answering `Backend` would leave the worker
        // `Busy` with a job the scheduler believes was never placed. Not holding it, the worker
        // may have lost the job since (released, expired): its `AssignedToJob` event then tells
        // that the assignment applied ([`settle_assigned`]), and the answer is the worker as it
        // is now (gone: `Backend` saying so); a second run would assign the job again to a
        // worker released meanwhile. Otherwise it runs once more and answers for what it finds.
        let specs = &self.inner.specs;
        let applied = |conn: &mut Conn| -> Step<Settled<Worker>> {
            let stmt = conn.prepare(&HOLDING)?;
            if let Some(row) = conn
                .client
                .query_opt(&stmt, &[id.as_uuid(), &job.as_str()])?
            {
                return Ok(Settled::Applied(specs.worker(&row)?));
            }
            match settle_assigned(conn, specs, given, started, &job, Some(id))? {
                Some(Ok(worker)) => Ok(Settled::Applied(worker)),
                Some(Err(gone)) => Err(applied_on_gone("assigning a job", &job, &gone)),
                None => Ok(Settled::NotApplied),
            }
        };
        self.write_settled(
            "assigning a job",
            |conn| {
                let (mut tx, mut cache, before, slot, now) = self.begin_locked(conn, id, false)?;
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
                        // Another replica gave the job to another worker since our check: report
                        // that holder; if it let the job go already, the transaction (rolled back
                        // whole) is tried again, as a claim does.
                        drop(tx);
                        if let Some(holder) = holder_of(&mut conn.client, &job)? {
                            return Err(Fail::Domain(Error::JobAlreadyAssigned {
                                job_id: job.clone(),
                                worker_id: holder,
                            }));
                        }
                        raced += 1;
                        if raced < 8 {
                            return Err(Fail::Retry);
                        }
                    }
                    return Err(fail);
                }
                tx.commit()?;
                Ok(after)
            },
            applied,
        )
    }

    pub(super) fn release(&self, id: &WorkerId, expected_job: Option<&JobId>) -> Result<JobId> {
        let given = self.given();
        let expected = expected_job.map(|j| j.as_str().to_owned());
        let op = |conn: &mut Conn| -> Step<JobId> {
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
        };
        let Some(job) = expected_job else {
            // In a transaction of its own, not autocommitted: without a job to ask about, it
            // may run again only when nothing of it was sent, and its `BEGIN` is what tells so.
            // The client learns that the server closed a pooled connection between two calls
            // only by reading after it sent its next request: as one statement, that was the
            // release itself, which then answered `Backend` though the server never received
            // it (the worker stayed `Busy` until the caller retried).
            return self.write("releasing a job", |conn| {
                let (mut tx, mut cache) = self.begin_unchecked(conn)?;
                let stmt = cache.prepare(&mut tx, RELEASE)?;
                let row = tx.query_opt(&stmt, &[&given, id.as_uuid(), &expected])?;
                let Some(row) = row else {
                    let stmt = cache.prepare(&mut tx, "SELECT 1 FROM workers WHERE id = $1")?;
                    if tx.query_opt(&stmt, &[id.as_uuid()])?.is_none() {
                        return Err(not_found(id));
                    }
                    return Err(Fail::Domain(Error::NotBusy {
                        worker_id: *id,
                        expected: None,
                    }));
                };
                tx.commit()?;
                let job: String = row.get(0);
                JobId::new(job).map_err(Fail::Domain)
            });
        };
        // A release of a named job whose reply was lost (its one statement sent, or the server
        // had closed the connection between two calls) did not apply if the worker still holds
        // that job once the lost session is settled: it runs once more rather than answer
        // `Backend` (the worker would stay `Busy` until the caller retried). Not held, it may
        // have applied or have been refused (`NotBusy`): `Backend`, as before. Without a named
        // job the worker may hold a newer one by then, which a second run would release.
        self.write_settled("releasing a job", op, |conn| {
            let stmt = conn.prepare("SELECT 1 FROM workers WHERE id = $1 AND current_job = $2")?;
            let held = conn
                .client
                .query_opt(&stmt, &[id.as_uuid(), &job.as_str()])?
                .is_some();
            Ok(if held {
                Settled::NotApplied
            } else {
                Settled::Unknown
            })
        })
    }
}
