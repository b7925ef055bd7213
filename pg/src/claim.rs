//! `claim`: pick the most recently idle matching `Ready` worker and give it the job, in one
//! statement.

use hodei_workers::{Error, JobId, Result, Worker, WorkerFilter, WorkerId, WorkerState};

use crate::pool::Conn;
use crate::registry::{
    applied_on_gone, holder_of, settle_assigned, unique_violation, Fail, PostgresWorkerRegistry,
    Settled, Step,
};
use crate::sql::{conditions, matches_nothing, param, refs, Params, W_COLS, W_LEN};

/// Builds the claim statement for `filter`. Atomic as one statement: the candidate is locked
/// `FOR UPDATE` inside a CTE (with `skip`, `SKIP LOCKED`: two replicas never wait on, nor take,
/// the same worker), re-checked by the `UPDATE`, and the counters and the two events
/// (`StateChanged Ready -> Busy`, then `AssignedToJob`) are written by the same statement,
/// after the row lock. The unique index on `current_job` refuses a job held elsewhere, even by
/// a claim committing at the same moment. Its time is never before the record's `updated_at`
/// (read after the lock): the time, a given one above all, may have been read before a wait
/// (for the lock, for a connection) while another change of the worker committed a later one.
///
/// Always one row: the claimed worker's columns (all NULL when none was claimed), then the
/// holder of the job as the statement's snapshot saw it (NULL when free). The candidate search
/// skips a held job on that same snapshot, so "no worker" and "held by X" are each true at one
/// moment; a second look at the holder later could see the job released meanwhile and answer
/// "no worker" for a job that was held when the workers were looked at.
fn statement(
    filter: &WorkerFilter,
    given: Option<i64>,
    job: &JobId,
    skip: bool,
) -> (String, Params) {
    let mut params: Params = Vec::new();
    let now_p = param(&mut params, given);
    let job_p = param(&mut params, job.as_str().to_owned());
    let conds = conditions(filter, "(SELECT now FROM t)", given, &mut params, true);
    let heartbeat_join = if filter.unhealthy_for.is_some() {
        " JOIN heartbeats h ON h.id = w.id"
    } else {
        ""
    };
    let mut extra = String::new();
    for c in conds {
        extra.push_str(" AND ");
        extra.push_str(&c);
    }
    let sql = format!(
        "WITH t AS MATERIALIZED (SELECT now_ms({now_p}::bigint) AS now), \
         held AS MATERIALIZED (SELECT id FROM workers WHERE current_job = {job_p}::text), \
         c AS (SELECT w.id FROM workers w JOIN specs s ON s.key = w.spec_key{heartbeat_join} \
             WHERE w.state = 2 AND w.current_job IS NULL \
             AND NOT EXISTS (SELECT 1 FROM held){extra} \
             ORDER BY w.idle_since DESC, w.id DESC LIMIT 1 FOR UPDATE OF w{skip}), \
         u AS (UPDATE workers w SET state = 3, current_job = {job_p}::text, \
             updated_at = greatest(t.now, w.updated_at), \
             state_changed_at = greatest(t.now, w.updated_at) FROM c, t \
             WHERE w.id = c.id AND w.state = 2 AND w.current_job IS NULL \
             RETURNING w.*, w.updated_at AS now), \
         cnt AS (UPDATE state_counts k SET s2 = k.s2 - 1, s3 = k.s3 + 1 FROM u \
             WHERE k.slot = u.slot), \
         ev AS (INSERT INTO outbox (xid, seq, at, worker_id, kind) \
             SELECT pg_current_xact_id(), nextval('event_seq'), u.now, u.id, e.k \
             FROM u CROSS JOIN LATERAL (VALUES \
                 (1, json_build_object('type', 'state_changed', 'worker_id', u.id, \
                     'from', 'ready', 'to', 'busy')::text), \
                 (2, json_build_object('type', 'assigned_to_job', 'worker_id', u.id, \
                     'job_id', u.current_job)::text)) AS e(o, k) \
             ORDER BY e.o) \
         SELECT {cols}, (SELECT id FROM held) FROM (VALUES (1)) AS one LEFT JOIN u w ON true",
        cols = W_COLS,
        skip = if skip { " SKIP LOCKED" } else { "" },
    );
    (sql, params)
}

/// The worker holding the job `$1`, as a claim answers it: how a claim whose reply was lost
/// learns that it applied ([`claim`]).
static HOLDER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("SELECT {W_COLS} FROM workers w WHERE w.current_job = $1::text")
});

/// The job's holder as a `JobAlreadyAssigned` refusal.
fn held_by(job: &JobId, worker_id: WorkerId) -> Fail {
    Fail::Domain(Error::JobAlreadyAssigned {
        job_id: job.clone(),
        worker_id,
    })
}

/// Two passes, each one statement. The first skips the candidates other transactions have
/// locked, so that claims of different workers never wait on each other. A locked candidate
/// is not always taken, though: the lock may be a move that changes nothing (a guard that no
/// longer holds, a state it is already in, a refused transition) or an event published about
/// the worker (`FOR KEY SHARE`). So when the first pass finds nothing, the second waits on the
/// locked candidates in the same order and re-checks each after its lock is released: "no
/// worker" then means no candidate is left, not that they were all busy being looked at. It
/// only waits when every candidate was locked, as an in-memory claim would.
pub(crate) fn claim(
    registry: &PostgresWorkerRegistry,
    filter: &WorkerFilter,
    job: JobId,
) -> Result<Option<Worker>> {
    let hopeless = (!filter.states.is_empty() && !filter.states.contains(&WorkerState::Ready))
        || filter.accepting_jobs == Some(false)
        || filter.limit == Some(0)
        || matches_nothing(filter);
    let (given, started) = (registry.given(), std::time::Instant::now());
    let passes = [true, false].map(|skip| statement(filter, given, &job, skip));
    let specs = &registry.inner.specs;
    let mut raced = 0;
    // A claim whose reply was lost (its connection broke after the statement was sent, or the
    // server had closed it between two calls) applied if the job is held now, once the lost
    // session is settled: a job is held by at most one worker, so the holder is the claimed
    // worker, and answering `Backend` would leave it `Busy` with a job the scheduler believes
    // was never placed. Not held, the claimed worker may have lost the job since (released,
    // expired by the health check: `JobLost`): the claim's `AssignedToJob` event then tells
    // that it applied (`settle_assigned`), and the answer is that worker as it is now (gone:
    // `Backend` saying so); running the claim again would give the job to a second worker
    // while it runs, or was reported lost. No such event: the claim did not apply and runs once
    // more. A hopeless claim writes nothing: it runs once more (a read).
    let applied = |conn: &mut Conn| -> Step<Settled<Option<Worker>>> {
        if hopeless {
            return Ok(Settled::NotApplied);
        }
        let stmt = conn.prepare(&HOLDER)?;
        if let Some(row) = conn.client.query_opt(&stmt, &[&job.as_str()])? {
            return Ok(Settled::Applied(Some(specs.worker(&row)?)));
        }
        match settle_assigned(conn, specs, given, started, &job, None)? {
            Some(Ok(worker)) => Ok(Settled::Applied(Some(worker))),
            Some(Err(gone)) => Err(applied_on_gone("claiming a worker", &job, &gone)),
            None => Ok(Settled::NotApplied),
        }
    };
    registry.write_settled(
        "claiming a worker",
        |conn| {
            if hopeless {
                // No worker can match; a job already held is still an error.
                return match holder_of(&mut conn.client, &job)? {
                    Some(holder) => Err(held_by(&job, holder)),
                    None => Ok(None),
                };
            }
            for (sql, params) in &passes {
                let stmt = conn.prepare(sql)?;
                match conn.client.query_one(&stmt, &refs(params)) {
                    Ok(row) => {
                        if row.get::<_, Option<uuid::Uuid>>(0).is_some() {
                            return Ok(Some(specs.worker(&row)?));
                        }
                        if let Some(holder) = row.get::<_, Option<uuid::Uuid>>(W_LEN) {
                            // As `holder_of` reads it (a stored id is never nil).
                            let holder =
                                WorkerId::from_bytes(*holder.as_bytes()).unwrap_or_default();
                            return Err(held_by(&job, holder));
                        }
                    }
                    Err(e) => {
                        let fail = Fail::Db(e);
                        if unique_violation(&fail).is_some() {
                            // A claim or assign elsewhere took the job after our snapshot: report
                            // its holder; if it let the job go already, the statement (rolled back
                            // whole) is tried again.
                            if let Some(holder) = holder_of(&mut conn.client, &job)? {
                                return Err(held_by(&job, holder));
                            }
                            raced += 1;
                            if raced < 8 {
                                return Err(Fail::Retry);
                            }
                        }
                        return Err(fail);
                    }
                }
            }
            Ok(None)
        },
        applied,
    )
}
