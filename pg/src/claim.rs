//! `claim`: pick the most recently idle matching `Ready` worker and give it the job, in one
//! statement.

use hodei_workers::{Error, JobId, Result, Worker, WorkerFilter, WorkerState};

use crate::registry::{unique_violation, Fail, PostgresWorkerRegistry};
use crate::sql::{conditions, param, refs, Params, W_COLS};

/// Builds the claim statement for `filter`. Atomic as one statement: the candidate is locked
/// `FOR UPDATE SKIP LOCKED` inside a CTE (two replicas never wait on, nor take, the same
/// worker), re-checked by the `UPDATE`, and the counters and the two events
/// (`StateChanged Ready -> Busy`, then `AssignedToJob`) are written by the same statement,
/// after the row lock. The unique index on `current_job` refuses a job held elsewhere, even by
/// a claim committing at the same moment.
fn statement(filter: &WorkerFilter, given: Option<i64>, job: &JobId) -> (String, Params) {
    let mut params: Params = Vec::new();
    let now_p = param(&mut params, given);
    let job_p = param(&mut params, job.as_str().to_owned());
    let conds = conditions(filter, "(SELECT now FROM t)", &mut params, true);
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
         c AS (SELECT w.id FROM workers w JOIN specs s ON s.key = w.spec_key{heartbeat_join} \
             WHERE w.state = 2 AND w.current_job IS NULL \
             AND NOT EXISTS (SELECT 1 FROM workers x WHERE x.current_job = {job_p}::text){extra} \
             ORDER BY w.idle_since DESC, w.id DESC LIMIT 1 FOR UPDATE OF w SKIP LOCKED), \
         u AS (UPDATE workers w SET state = 3, current_job = {job_p}::text, updated_at = t.now, \
             state_changed_at = t.now FROM c, t \
             WHERE w.id = c.id AND w.state = 2 AND w.current_job IS NULL \
             RETURNING w.*, t.now AS now), \
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
         SELECT {cols} FROM u w",
        cols = W_COLS,
    );
    (sql, params)
}

pub(crate) fn claim(
    registry: &PostgresWorkerRegistry,
    filter: &WorkerFilter,
    job: JobId,
) -> Result<Option<Worker>> {
    let hopeless = (!filter.states.is_empty() && !filter.states.contains(&WorkerState::Ready))
        || filter.accepting_jobs == Some(false)
        || filter.limit == Some(0);
    let (sql, params) = statement(filter, registry.given(), &job);
    let specs = &registry.inner.specs;
    let mut raced = 0;
    registry.run("claiming a worker", |conn| {
        let holder = |conn: &mut crate::pool::Conn| -> crate::registry::Step<Option<Worker>> {
            let stmt = conn.prepare("SELECT id FROM workers WHERE current_job = $1")?;
            match conn.client.query_opt(&stmt, &[&job.as_str()])? {
                Some(row) => {
                    let id: uuid::Uuid = row.get(0);
                    Err(Fail::Domain(Error::JobAlreadyAssigned {
                        job_id: job.clone(),
                        worker_id: hodei_workers::WorkerId::from_bytes(*id.as_bytes())
                            .unwrap_or_default(),
                    }))
                }
                None => Ok(None),
            }
        };
        if hopeless {
            // No worker can match; a job already held is still an error.
            return holder(conn);
        }
        let stmt = conn.prepare(&sql)?;
        match conn.client.query_opt(&stmt, &refs(&params)) {
            Ok(Some(row)) => Ok(Some(specs.worker(&row)?)),
            Ok(None) => holder(conn),
            Err(e) => {
                let fail = Fail::Db(e);
                if unique_violation(&fail).is_some() {
                    // A claim or assign elsewhere took the job while we did: report its
                    // holder; if it let the job go already, the statement (rolled back
                    // whole) is tried again.
                    holder(conn)?;
                    raced += 1;
                    if raced < 8 {
                        return Err(Fail::Retry);
                    }
                }
                Err(fail)
            }
        }
    })
}
