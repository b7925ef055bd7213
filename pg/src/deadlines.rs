//! The deadline questions: `find_unhealthy` (and its count), `find_startup_expired`,
//! `find_for_termination`.
//! Each is one statement; each `now` is read once per statement (a materialized CTE, or the
//! given clock's time).

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use hodei_workers::{Result, TerminationReason, Worker, WorkerId};

use crate::registry::PostgresWorkerRegistry;
use crate::sql::{cutoff_params, CUTOFF, W_COLS};

/// Monitored workers (`Connecting`, `Ready`, `Busy`, `Draining`) silent since before
/// `now - timeout`, where a heartbeat older than the grace floor counts from the floor. One
/// sequential pass over the narrow heartbeat table (no index on its time column, so that
/// heartbeats stay HOT updates), then the record of each worker due by its primary key (a
/// LATERAL subquery kept apart by `OFFSET 0`, so that the planner cannot hash the whole
/// workers table when it guesses many are due). The cutoff is a value computed once before
/// the scan (an init plan), so the scan filters each row itself: a join with the one-row
/// `t` made the filter a join filter, twice as slow per row.
static UNHEALTHY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH t AS MATERIALIZED (SELECT {CUTOFF} AS cutoff, \
             (SELECT grace_floor FROM meta) AS floor) \
         SELECT r.* FROM heartbeats h CROSS JOIN LATERAL \
             (SELECT {W_COLS} FROM workers w \
              WHERE w.id = h.id AND w.state IN (1, 2, 3, 4) OFFSET 0) r \
         WHERE h.last_heartbeat < (SELECT cutoff FROM t) \
           AND (SELECT floor < cutoff FROM t)"
    )
});

/// How many rows [`UNHEALTHY`] returns: the same scan and lookups, without sending a row (the
/// brake counts the silent workers at every health check; during a partition that is most of
/// the fleet, which must not travel and be decoded only to be counted).
static COUNT_UNHEALTHY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH t AS MATERIALIZED (SELECT {CUTOFF} AS cutoff, \
         (SELECT grace_floor FROM meta) AS floor) \
         SELECT count(*) FROM heartbeats h CROSS JOIN LATERAL \
             (SELECT 1 FROM workers w WHERE w.id = h.id AND w.state IN (1, 2, 3, 4) OFFSET 0) r \
         WHERE h.last_heartbeat < (SELECT cutoff FROM t) \
           AND (SELECT floor < cutoff FROM t)"
    )
});

/// `Creating`/`Connecting` workers registered before `now - timeout` (and before the grace
/// floor's end), from the partial index on `created_at`.
static STARTUP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH t AS MATERIALIZED (SELECT {CUTOFF} AS cutoff) \
         SELECT {W_COLS} FROM workers w \
         WHERE w.state IN (0, 1) AND w.created_at < (SELECT cutoff FROM t) \
           AND (SELECT grace_floor FROM meta) < (SELECT cutoff FROM t)"
    )
});

/// Due for retirement, each from its partial index: idle (`Ready` past `idle_since +
/// idle_timeout`), lifetime (a live state past `created_at + max_lifetime`), drained
/// (`Draining` without a job). Reason codes: 0 idle, 1 lifetime, 2 drained.
static TERMINATION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH t AS MATERIALIZED (SELECT now_ms($1) AS now) \
         SELECT {W_COLS}, 0 FROM workers w \
           WHERE w.state = 2 AND sat_add(w.idle_since, w.idle_timeout_ms) < (SELECT now FROM t) \
         UNION ALL \
         SELECT {W_COLS}, 1 FROM workers w \
           WHERE w.state IN (0, 1, 2, 3) \
             AND sat_add(w.created_at, w.max_lifetime_ms) < (SELECT now FROM t) \
         UNION ALL \
         SELECT {W_COLS}, 2 FROM workers w \
           WHERE w.state = 4 AND w.current_job IS NULL"
    )
});

pub(crate) fn find_unhealthy(
    registry: &PostgresWorkerRegistry,
    timeout: Duration,
) -> Result<Vec<Worker>> {
    find(registry, "finding unhealthy workers", &UNHEALTHY, timeout)
}

/// [`find_unhealthy`]'s length, counted by the server.
pub(crate) fn count_unhealthy(
    registry: &PostgresWorkerRegistry,
    timeout: Duration,
) -> Result<usize> {
    let (given, timeout, cutoff) = cutoff_params(registry.given(), timeout);
    registry.run("counting unhealthy workers", |conn| {
        let stmt = conn.prepare(&COUNT_UNHEALTHY)?;
        let n: i64 = conn
            .client
            .query_one(&stmt, &[&given, &timeout, &cutoff])?
            .get(0);
        Ok(n as usize)
    })
}

pub(crate) fn find_startup_expired(
    registry: &PostgresWorkerRegistry,
    timeout: Duration,
) -> Result<Vec<Worker>> {
    find(registry, "finding workers past startup", &STARTUP, timeout)
}

fn find(
    registry: &PostgresWorkerRegistry,
    doing: &str,
    sql: &str,
    timeout: Duration,
) -> Result<Vec<Worker>> {
    let (given, timeout, cutoff) = cutoff_params(registry.given(), timeout);
    let specs = &registry.inner.specs;
    registry.run(doing, |conn| {
        let stmt = conn.prepare(sql)?;
        let rows = conn.client.query(&stmt, &[&given, &timeout, &cutoff])?;
        rows.iter().map(|r| specs.worker(r)).collect()
    })
}

pub(crate) fn find_for_termination(
    registry: &PostgresWorkerRegistry,
) -> Result<Vec<(Worker, TerminationReason)>> {
    registry.maybe_prune();
    let given = registry.given();
    let specs = &registry.inner.specs;
    let rows = registry.run("finding workers to retire", |conn| {
        let stmt = conn.prepare(&TERMINATION)?;
        let rows = conn.client.query(&stmt, &[&given])?;
        rows.iter()
            .map(|r| Ok((specs.worker(r)?, r.get::<_, i32>(crate::sql::W_LEN))))
            .collect::<crate::registry::Step<Vec<_>>>()
    })?;
    // Lifetime wins over idle (the harder limit); ordered by id, as the in-memory registry.
    let mut due: BTreeMap<WorkerId, (Worker, TerminationReason)> = BTreeMap::new();
    for (worker, code) in rows {
        let reason = match code {
            0 => TerminationReason::Idle,
            1 => TerminationReason::Lifetime,
            _ if worker
                .spec
                .max_jobs
                .is_some_and(|max| worker.jobs_executed >= u64::from(max)) =>
            {
                TerminationReason::MaxJobs
            }
            _ => TerminationReason::Drained,
        };
        match due.get(&worker.id) {
            Some((_, TerminationReason::Lifetime)) => {}
            _ => {
                due.insert(worker.id, (worker, reason));
            }
        }
    }
    Ok(due.into_values().collect())
}
