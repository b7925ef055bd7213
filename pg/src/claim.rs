//! `claim`: pick the most recently idle matching `Ready` worker and give it the job, in one
//! statement.

use hodei_workers::{Error, JobId, Result, Worker, WorkerFilter, WorkerId, WorkerState};

use crate::pool::Conn;
use crate::registry::{
    applied_on_gone, holder_of, settle_assigned, unique_violation, Fail, PostgresWorkerRegistry,
    Settled, Step,
};
use crate::sql::{
    conditions, matches_nothing, param, provider_conditions, refs, silent_cutoff, spec_conditions,
    Params, W_COLS, W_LEN,
};

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
///
/// The candidate is the first ready worker in claim order that the filter matches; with
/// `unhealthy_for`, found as [`silent_candidate`] says (at most 64 heartbeats looked up, else
/// one pass over them). Without it, the statement is the same text as before that bound
/// (2026-12-07): nothing on the hot path changed.
///
/// A filter with spec conditions ([`spec_conditions`]: labels, capabilities, architecture,
/// resources) gets a **gate** (since 2026-12-08): whether some ready worker has a spec they
/// match, asked once, before any worker is read. (Since 2026-12-08, later: the gate asks of
/// classes, not specs — the in-memory registry's class, (spec, provider id, provider type) —
/// and a filter with provider conditions ([`provider_conditions`]) gets it too, with or
/// without spec conditions: a claim by a provider no ready worker has, or by a pool whose
/// ready workers are all another provider's, walked the whole ready set, then the second pass
/// walked it again.) It walks the distinct classes of the ready workers in index order, one
/// index-only probe of `workers_ready_class` (schema v9) each for the next class after the
/// last (`(spec_key, provider_id, provider_type) > (…)`, a row comparison the B-tree answers
/// as one descent; a recursive CTE, the probe a `LATERAL` subquery: the index has no skip scan
/// in PostgreSQL 15). A class passes when its provider id and type meet the filter's
/// provider conditions and its spec, looked up by its primary key, meets the spec conditions.
/// A filter that names no provider walks the distinct specs instead, on the same index (the
/// spec key leads it): a spec served by many providers is one step, not one a provider, as
/// it was by v8's index. Its cost follows the specs or classes that ready workers have now,
/// not the specs ever stored (`specs` is never pruned; a first form that read `specs` whole
/// cost 1.8–2.0 ms a claim at 5,000 stored specs), and it looks at [`WALK_LIMIT`] of them at
/// most: past that many (a spec a worker, say) it answers "maybe" and the claim walks as it
/// did before the gate. Each spec is read by a scalar subquery, which the planner cannot
/// turn into a join that reads `specs` whole. The walk for the candidate runs under the gate
/// as a one-time filter (an uncorrelated subquery: the plan's `One-Time Filter`), so when it
/// is false no worker row is read at all: the claim for a pool scaled to zero beside a large
/// ready fleet walked the whole ready set. The gate is a "maybe": the worker conditions
/// (idleness, silence; the provider again) and the locks stay the walk's. Its value is the
/// row's last column, which tells [`claim`] that a second pass would find nothing either. A
/// filter with neither spec nor provider conditions (no filter, `idle_for`, `unhealthy_for`:
/// the unfiltered hot path) sends the statement it sent before, byte for byte.
///
/// Returns the text, its parameters, and whether the row carries the gate's column.
fn statement(
    filter: &WorkerFilter,
    given: Option<i64>,
    job: &JobId,
    skip: bool,
) -> (String, Params, bool) {
    let mut params: Params = Vec::new();
    let now_p = param(&mut params, given);
    let job_p = param(&mut params, job.as_str().to_owned());
    let skip = if skip { " SKIP LOCKED" } else { "" };
    let spec_conds = spec_conditions(filter, &mut params);
    let mut unit_conds = provider_conditions(filter, "k.pid", "k.ptype", &mut params);
    let gated = !spec_conds.is_empty() || !unit_conds.is_empty();
    // The unit the gate walks: the class when the filter names a provider, else the spec
    // alone, so that a spec served by many providers is one step, not one a provider.
    let unit: &[&str] = if unit_conds.is_empty() {
        &["spec_key"]
    } else {
        &["spec_key", "provider_id", "provider_type"]
    };
    if !spec_conds.is_empty() {
        unit_conds.push(format!(
            "(SELECT {} FROM specs s WHERE s.key = k.key)",
            spec_conds.join(" AND ")
        ));
    }
    let (gate, gated_walk, gate_col) = if gated {
        let of = |table: &str| {
            let cols: Vec<String> = unit.iter().map(|c| format!("{table}.{c}")).collect();
            cols.join(", ")
        };
        let (r, x) = (of("r"), of("x"));
        let k = ["k.key", "k.pid", "k.ptype"][..unit.len()].join(", ");
        let k_names = ["key", "pid", "ptype"][..unit.len()].join(", ");
        (
            format!(
                "gate AS MATERIALIZED (SELECT EXISTS (WITH RECURSIVE k({k_names}, n) AS (\
                     (SELECT {r}, 1 FROM workers r WHERE r.state = 2 ORDER BY {r} LIMIT 1) \
                     UNION ALL \
                     SELECT {x}, k.n + 1 \
                     FROM k CROSS JOIN LATERAL (\
                         SELECT {r} FROM workers r WHERE r.state = 2 AND ({r}) > ({k}) \
                         ORDER BY {r} LIMIT 1) x \
                     WHERE k.n < {WALK_LIMIT}) \
                 SELECT 1 FROM k WHERE k.n = {WALK_LIMIT} OR ({conds})) AS ok), ",
                conds = unit_conds.join(" AND ")
            ),
            " AND (SELECT ok FROM gate)",
            ", (SELECT ok FROM gate)",
        )
    } else {
        (String::new(), "", "")
    };
    let candidate = match filter.unhealthy_for {
        None => {
            let conds = conditions(filter, "(SELECT now FROM t)", given, &mut params, true);
            format!(
                "SELECT w.id FROM workers w JOIN specs s ON s.key = w.spec_key \
                 WHERE w.state = 2 AND w.current_job IS NULL \
                 AND NOT EXISTS (SELECT 1 FROM held){extra}{gated_walk} \
                 ORDER BY w.idle_since DESC, w.id DESC LIMIT 1 FOR UPDATE OF w{skip}",
                extra = and_all(conds)
            )
        }
        Some(silent) => silent_candidate(filter, silent, given, &mut params, skip, gated_walk),
    };
    let sql = format!(
        "WITH t AS MATERIALIZED (SELECT now_ms({now_p}::bigint) AS now), \
         held AS MATERIALIZED (SELECT id FROM workers WHERE current_job = {job_p}::text), \
         {gate}c AS ({candidate}), \
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
         SELECT {cols}, (SELECT id FROM held){gate_col} FROM (VALUES (1)) AS one \
         LEFT JOIN u w ON true",
        cols = W_COLS,
    );
    (sql, params, gated)
}

/// How many candidates a claim with `unhealthy_for` checks against their heartbeats in claim
/// order before it looks for the answer with one pass over the heartbeats: the in-memory
/// registry's walk limit (`core/src/registry/memory/claim.rs`).
const WALK_LIMIT: usize = 64;

/// `" AND c1 AND c2 …"`.
fn and_all(conds: Vec<String>) -> String {
    conds.into_iter().map(|c| format!(" AND {c}")).collect()
}

/// The candidate of a claim with `unhealthy_for(silent)`: in one statement, two searches, the
/// second run only when the first finds nothing (the `Append` under `LIMIT 1` asks its second
/// branch for a row only once the first has none; no `ORDER BY` over the two).
///
/// 1. **near**: the first [`WALK_LIMIT`] ready workers in claim order that the static part of
///    the filter matches (the ready index, as a claim without `unhealthy_for` reads it), each
///    heartbeat then looked up by key: the newest silent one of them, locked.
/// 2. **far**: the ids of the workers silent for that long, from one sequential pass over the
///    narrow `heartbeats` table (never an index on `last_heartbeat`: heartbeats stay HOT
///    updates), their records read by key, the newest ready one that the filter matches,
///    locked. It covers the near candidates too, so when those were all locked (`SKIP
///    LOCKED`) the answer is the next one in claim order, as before.
///
/// The answer is the one a walk of the whole ready set gives: the most recently idle matching
/// worker silent for that long; near, every worker above it was checked, and far reads them
/// all. Two things keep the planner from the unbounded plan this replaces (the ready index
/// walked to its end, a heartbeat looked up for each row), since it cannot know how few rows
/// the cutoff leaves: near reads each heartbeat by a scalar subquery on its key, and far's
/// order is `idle_since + 0` (the same order, which no index offers), so that its rows can
/// only be the silent ids (an array, `= ANY(ARRAY(…))`) read by key and sorted. Both searches
/// re-check the worker's state under the lock, as the `UPDATE` does again. `gated` (the gate
/// of [`statement`], or nothing) is one more condition of both: when the gate is false, neither
/// reads a worker, nor the far one the heartbeats.
fn silent_candidate(
    filter: &WorkerFilter,
    silent: std::time::Duration,
    given: Option<i64>,
    params: &mut Params,
    skip: &str,
    gated: &str,
) -> String {
    let now = "(SELECT now FROM t)";
    let statics = WorkerFilter {
        unhealthy_for: None,
        ..filter.clone()
    };
    let extra = and_all(conditions(&statics, now, given, params, true)) + gated;
    // `h.last_heartbeat <= cutoff`, or `false` when no worker can be silent that long. The
    // cutoff is an uncorrelated subquery, computed once: over `(SELECT now FROM t)` in the row
    // filter, `sat_sub` is not inlined and the pass calls an SQL function per row (260 ms for
    // 100,000 heartbeats, against 6 ms).
    let silent = match silent_cutoff("t.now", given, silent, params) {
        Some(cut) => format!("h.last_heartbeat <= (SELECT {cut} FROM t)"),
        None => "false".to_owned(),
    };
    format!(
        "SELECT id FROM (\
             SELECT id FROM (SELECT w.id FROM (SELECT w.id FROM workers w \
                     JOIN specs s ON s.key = w.spec_key \
                     WHERE w.state = 2 AND w.current_job IS NULL \
                     AND NOT EXISTS (SELECT 1 FROM held){extra} \
                     ORDER BY w.idle_since DESC, w.id DESC LIMIT {WALK_LIMIT}) near \
                 JOIN workers w ON w.id = near.id \
                 WHERE w.state = 2 AND w.current_job IS NULL \
                 AND (SELECT {silent} FROM heartbeats h WHERE h.id = w.id) \
                 ORDER BY w.idle_since DESC, w.id DESC LIMIT 1 FOR UPDATE OF w{skip}) a \
             UNION ALL \
             SELECT id FROM (SELECT w.id FROM workers w JOIN specs s ON s.key = w.spec_key \
                 WHERE w.id = ANY(ARRAY(SELECT h.id FROM heartbeats h WHERE {silent})) \
                 AND w.state = 2 AND w.current_job IS NULL \
                 AND NOT EXISTS (SELECT 1 FROM held){extra} \
                 ORDER BY w.idle_since + 0 DESC, w.id DESC LIMIT 1 FOR UPDATE OF w{skip}) b\
         ) x LIMIT 1"
    )
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
/// only waits when every candidate was locked, as an in-memory claim would. The second pass is
/// not sent when the first one's gate ([`statement`]) found no ready worker of a matching
/// spec (since 2026-12-08; since 2026-12-08, later: of a matching class, spec and provider):
/// there is no candidate, locked or not, to wait on.
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
            for (sql, params, gated) in &passes {
                #[cfg(test)]
                tests::SENT.with(|n| n.set(n.get() + 1));
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
                        if *gated && !row.get::<_, bool>(W_LEN + 1) {
                            // No ready worker had a matching class on this statement's
                            // snapshot, locked or not: the second pass, which waits on locked
                            // candidates, has none to wait on. The answer is "no worker" as
                            // at that snapshot, as it is when the second pass finds none.
                            return Ok(None);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use hodei_workers::{
        InMemoryWorkerRegistry, ManualClock, ProviderId, ProviderType, WorkerHandle,
        WorkerRegistry, WorkerSpec,
    };
    use postgres::types::{FromSql, Type};

    use super::*;
    use crate::test_support::{flatten, plan_tree, raw, reading, scratch};

    const T0: u64 = 1_700_000_000_000;

    thread_local! {
        /// How many claim statements (passes) this thread sent: what the tests read to see
        /// whether a claim ran its second pass.
        pub(super) static SENT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// What `claim` answers, and how many claim statements it sent on this thread.
    fn passes_of<T>(claim: impl FnOnce() -> T) -> (T, usize) {
        SENT.with(|n| n.set(0));
        let answer = claim();
        (answer, SENT.with(|n| n.get()))
    }

    /// A `json` value as its text (the client reads `json` only with a feature we do without).
    struct JsonText(String);

    impl<'a> FromSql<'a> for JsonText {
        fn from_sql(
            _: &Type,
            raw: &'a [u8],
        ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
            Ok(JsonText(String::from_utf8(raw.to_vec())?))
        }

        fn accepts(ty: &Type) -> bool {
            *ty == Type::JSON
        }
    }

    /// `n` ready workers (restored, so in one transaction) on the registry's clock at `T0`;
    /// their heartbeats are all at `T0`.
    fn ready_fleet(registry: &PostgresWorkerRegistry, n: usize) {
        let memory = InMemoryWorkerRegistry::with_clock(Arc::new(ManualClock::new(T0)));
        let spec = Arc::new(WorkerSpec::new("img"));
        let provider = ProviderId::new("p").unwrap();
        for i in 0..n {
            let handle = WorkerHandle::new(provider.clone(), ProviderType::Docker, format!("r{i}"));
            let id = memory.register(handle, spec.clone()).unwrap().id;
            memory.update_state(&id, WorkerState::Ready).unwrap();
        }
        registry.restore(memory.snapshot().unwrap()).unwrap();
    }

    /// The pool label of the scaled-to-zero pool of the tests below.
    const GPU: (&str, &str) = ("pool", "gpu");

    /// `ready` ready workers of spec `img` (no labels), then `busy` workers of a spec labelled
    /// [`GPU`], each holding a job (`gpu-{i}`): a pool with no ready worker beside a large
    /// ready fleet. Restored on the registry's clock at `T0`, then analyzed.
    fn fleet_with_busy_pool(
        registry: &PostgresWorkerRegistry,
        schema: &crate::test_support::Schema,
        ready: usize,
        busy: usize,
    ) {
        let memory = InMemoryWorkerRegistry::with_clock(Arc::new(ManualClock::new(T0)));
        let img = Arc::new(WorkerSpec::new("img"));
        let gpu = Arc::new(WorkerSpec::new("img").with_label(GPU.0, GPU.1));
        let provider = ProviderId::new("p").unwrap();
        for i in 0..ready + busy {
            let handle = WorkerHandle::new(provider.clone(), ProviderType::Docker, format!("r{i}"));
            let spec = if i < ready { &img } else { &gpu };
            let id = memory.register(handle, spec.clone()).unwrap().id;
            memory.update_state(&id, WorkerState::Ready).unwrap();
            if i >= ready {
                memory
                    .assign_to_job(&id, JobId::new(format!("gpu-{i}")).unwrap())
                    .unwrap();
            }
        }
        registry.restore(memory.snapshot().unwrap()).unwrap();
        raw(schema)
            .batch_execute("ANALYZE workers; ANALYZE heartbeats; ANALYZE specs")
            .unwrap();
    }

    /// The nodes of the plan of the claim statement `filter` builds (its first pass, skipping
    /// locked rows) on the clock `given` (`None`: the database's), run with `EXPLAIN (ANALYZE,
    /// FORMAT JSON)` in a transaction rolled back, under `plan_cache_mode = mode`.
    fn claim_plan(
        client: &mut postgres::Client,
        filter: &WorkerFilter,
        given: Option<i64>,
        mode: &str,
    ) -> Vec<serde_json::Value> {
        let (sql, params, _) = statement(filter, given, &JobId::new("j").unwrap(), true);
        let mut tx = client.transaction().unwrap();
        tx.batch_execute(&format!("SET LOCAL plan_cache_mode = {mode}"))
            .unwrap();
        let row = tx
            .query_one(
                &format!("EXPLAIN (ANALYZE, FORMAT JSON) {sql}"),
                &refs(&params),
            )
            .unwrap();
        let JsonText(text) = row.get(0);
        tx.rollback().unwrap();
        plan_tree(&text)
    }

    /// Rows a node read and dropped (its filter) in all its loops.
    fn removed(node: &serde_json::Value) -> i64 {
        node["Rows Removed by Filter"].as_i64().unwrap_or(0)
    }

    /// Rows a node produced in all its loops.
    fn rows_out(node: &serde_json::Value) -> i64 {
        node["Actual Rows"].as_i64().unwrap_or(0) * node["Actual Loops"].as_i64().unwrap_or(0)
    }

    /// A claim with `unhealthy_for` that no ready worker meets looked up the heartbeat of
    /// every ready worker, walking the ready index to its end (1.54 s at 100,000 on the
    /// database clock). Now: at most 64 candidates checked, then one pass over the heartbeats.
    #[test]
    fn a_claim_no_ready_worker_is_silent_enough_for_reads_64_candidates_and_one_pass() {
        let (schema, registry) = scratch("claim_silent_plan");
        ready_fleet(&registry, 3000);
        let mut client = raw(&schema);
        // Every heartbeat now on the database's clock (so after T0 too): none is silent on
        // either clock.
        client
            .batch_execute(
                "UPDATE heartbeats SET last_heartbeat = now_ms(NULL); \
                 ANALYZE workers; ANALYZE heartbeats",
            )
            .unwrap();
        let silent = WorkerFilter::new().unhealthy_for(Duration::from_secs(3600));
        assert!(registry
            .claim(&silent, JobId::new("j").unwrap())
            .unwrap()
            .is_none());
        let clocks = [("given", Some(crate::sql::db_ts(T0))), ("database", None)];
        for ((clock, given), mode) in clocks
            .into_iter()
            .flat_map(|c| ["force_custom_plan", "force_generic_plan"].map(|m| (c, m)))
        {
            let mode_name = format!("{clock} clock, {mode}");
            let nodes = claim_plan(&mut client, &silent, given, mode);
            // The candidate's search (`c`), not the answer's own columns (`W_COLS`).
            let c = nodes
                .iter()
                .find(|n| n["Subplan Name"] == "CTE c")
                .expect("the candidate CTE");
            let nodes = flatten(c);
            let probes: i64 = reading(&nodes, "heartbeats")
                .filter(|n| n["Node Type"] != "Seq Scan")
                .map(|n| n["Actual Loops"].as_i64().unwrap_or(0))
                .sum();
            assert!(
                probes <= 64,
                "{mode_name}: {probes} heartbeat look-ups: {nodes:#?}"
            );
            let ready: i64 = reading(&nodes, "workers")
                .filter(|n| n["Index Name"] == "workers_ready")
                .map(|n| rows_out(n) + removed(n))
                .sum();
            assert!(
                ready <= 64,
                "{mode_name}: {ready} ready rows read: {nodes:#?}"
            );
            // Nor a pass over the wide table: the candidates' records are read by key.
            assert!(
                reading(&nodes, "workers").all(|n| n["Node Type"] != "Seq Scan"),
                "{mode_name}: a sequential scan of workers: {nodes:#?}"
            );
            let passes = reading(&nodes, "heartbeats")
                .filter(|n| n["Node Type"] == "Seq Scan")
                .map(|n| n["Actual Loops"].as_i64().unwrap_or(0))
                .sum::<i64>();
            assert!(passes <= 1, "{mode_name}: {passes} passes: {nodes:#?}");
        }
    }

    /// A claim for a pool with no ready worker (its spec's workers all busy) beside a large
    /// ready fleet of another spec walked the whole ready set, joining each worker's spec
    /// (3,000 rows here; 52 ms at 100,000): the scheduler's everyday case with a pool scaled
    /// to zero. Now no worker row is read: the statement first asks whether any ready worker
    /// has a spec the filter's spec conditions match, and the walk runs only if one does.
    #[test]
    fn a_claim_whose_spec_conditions_no_ready_worker_meets_reads_no_worker_row() {
        let (schema, registry) = scratch("claim_nomatch_plan");
        fleet_with_busy_pool(&registry, &schema, 3000, 5);
        let mut client = raw(&schema);
        let gpu = WorkerFilter::new().label(GPU.0, GPU.1);
        let filters = [
            ("label", gpu.clone()),
            (
                "label and unhealthy_for",
                gpu.clone().unhealthy_for(Duration::from_secs(3600)),
            ),
            (
                "label and provider",
                gpu.clone().provider_id(ProviderId::new("p").unwrap()),
            ),
            (
                "a capability no spec has",
                WorkerFilter::new().capability("cuda"),
            ),
        ];
        for (name, filter) in &filters {
            assert!(
                registry
                    .claim(filter, JobId::new("j").unwrap())
                    .unwrap()
                    .is_none(),
                "{name}"
            );
        }
        let clocks = [("given", Some(crate::sql::db_ts(T0))), ("database", None)];
        for (name, filter) in &filters {
            for ((clock, given), mode) in clocks
                .into_iter()
                .flat_map(|c| ["force_custom_plan", "force_generic_plan"].map(|m| (c, m)))
            {
                let case = format!("{name}, {clock} clock, {mode}");
                let nodes = claim_plan(&mut client, filter, given, mode);
                // Every node of the statement that reads `workers`, the candidate's walk
                // above all, reads nothing; the gate's probes of the ready workers by class
                // read one index entry for each distinct class of the ready workers (here
                // one: the pool's workers are busy).
                let read: i64 = reading(&nodes, "workers")
                    .filter(|n| n["Index Name"] != "workers_ready_class")
                    .map(|n| rows_out(n) + removed(n))
                    .sum();
                assert_eq!(read, 0, "{case}: workers rows read: {nodes:#?}");
                let probed: i64 = reading(&nodes, "workers")
                    .filter(|n| n["Index Name"] == "workers_ready_class")
                    .map(|n| rows_out(n) + removed(n))
                    .sum();
                assert!(probed <= 1, "{case}: {probed} probed: {nodes:#?}");
                let heartbeats: i64 = reading(&nodes, "heartbeats")
                    .map(|n| rows_out(n) + removed(n))
                    .sum();
                assert_eq!(heartbeats, 0, "{case}: heartbeats read: {nodes:#?}");
            }
        }
    }

    /// The gate reads the specs of the ready workers only, not every spec ever stored: the
    /// `specs` table is never pruned, and a deployment whose templates change (an image tag a
    /// deploy) keeps adding rows. The gate read them all, for every claim with spec
    /// conditions: at 5,000 stored specs of which 20 had ready workers, 1.8–2.0 ms a claim for
    /// a pool with ready workers (the hot path of pooled claims) and 1.1 ms for one without.
    /// Here 300 specs are stored, one has ready workers: the gate reads that one.
    #[test]
    fn a_claims_gate_reads_the_specs_of_ready_workers_not_every_spec_stored() {
        let (schema, registry) = scratch("claim_gate_specs");
        fleet_with_busy_pool(&registry, &schema, 50, 2);
        let provider = ProviderId::new("p").unwrap();
        for i in 0..300 {
            let spec = Arc::new(WorkerSpec::new(format!("img:{i}")).with_label("team", "t"));
            let handle = WorkerHandle::new(provider.clone(), ProviderType::Docker, format!("o{i}"));
            let id = registry.register(handle, spec).unwrap().id;
            registry
                .unregister(&id, hodei_workers::TerminationReason::Requested)
                .unwrap();
        }
        let mut client = raw(&schema);
        client
            .batch_execute("ANALYZE specs; ANALYZE workers")
            .unwrap();
        assert_eq!(
            registry
                .claim(
                    &WorkerFilter::new().label("team", "t"),
                    JobId::new("t").unwrap()
                )
                .unwrap(),
            None
        );
        let stored: i64 = client
            .query_one("SELECT count(*) FROM specs", &[])
            .unwrap()
            .get(0);
        assert!(stored > 300, "{stored} specs stored");
        for filter in [
            WorkerFilter::new().label(GPU.0, GPU.1),
            WorkerFilter::new().label("team", "t"),
        ] {
            for mode in ["force_custom_plan", "force_generic_plan"] {
                let nodes = claim_plan(&mut client, &filter, None, mode);
                let specs_read: i64 = reading(&nodes, "specs")
                    .map(|n| rows_out(n) + removed(n))
                    .sum();
                assert!(
                    specs_read <= 2,
                    "{filter:?}, {mode}: {specs_read} specs rows read of {stored}: {nodes:#?}"
                );
            }
        }
        // With more specs of ready workers than the gate looks at (a spec a worker), it says
        // "maybe" after WALK_LIMIT of them, and the claim walks as before the gate.
        for i in 0..WALK_LIMIT + 36 {
            let spec = Arc::new(WorkerSpec::new(format!("own:{i}")).with_label("own", "yes"));
            let handle = WorkerHandle::new(provider.clone(), ProviderType::Docker, format!("w{i}"));
            let id = registry.register(handle, spec).unwrap().id;
            registry.update_state(&id, WorkerState::Ready).unwrap();
        }
        client
            .batch_execute("ANALYZE specs; ANALYZE workers")
            .unwrap();
        let none = WorkerFilter::new().label("own", "no");
        assert_eq!(
            passes_of(|| registry.claim(&none, JobId::new("o").unwrap()).unwrap()),
            (None, 2),
            "too many specs to judge: a maybe, then both passes"
        );
        let nodes = claim_plan(&mut client, &none, None, "force_custom_plan");
        let looked_up: i64 = reading(&nodes, "specs")
            .filter(|n| n["Index Name"] == "specs_pkey")
            .map(|n| rows_out(n) + removed(n))
            .sum();
        assert!(
            looked_up <= WALK_LIMIT as i64,
            "{looked_up} specs looked up by the gate: {nodes:#?}"
        );
        let own = WorkerFilter::new().label("own", "yes");
        let (taken, _) = passes_of(|| registry.claim(&own, JobId::new("y").unwrap()).unwrap());
        assert!(taken.is_some(), "a maybe that is a yes: the walk finds it");
    }

    /// A claim that finds no candidate runs its second statement, waiting on the locked
    /// candidates, unless the first one said that no ready worker has a matching spec (and,
    /// since 2026-12-08, later: a matching provider): then there is no candidate, locked or
    /// not, and the claim answers "no worker" at once.
    #[test]
    fn a_claim_whose_spec_conditions_no_ready_worker_meets_runs_one_statement() {
        let (schema, registry) = scratch("claim_nomatch_passes");
        fleet_with_busy_pool(&registry, &schema, 200, 3);
        let gpu = WorkerFilter::new().label(GPU.0, GPU.1);
        let claim = |filter: &WorkerFilter, job: &str| {
            passes_of(|| registry.claim(filter, JobId::new(job).unwrap()).unwrap())
        };
        assert_eq!(claim(&gpu, "a"), (None, 1), "no ready worker of the pool");
        // A ready worker of the pool that the worker conditions refuse: the gate says maybe,
        // the walk finds nothing, the second statement runs (as before). (Since 2026-12-08,
        // later: the provider is the gate's too, so the maybe is one of idleness; a provider
        // the pool's ready worker lacks is a no, in one statement.)
        let busy = registry.find(&gpu).unwrap()[0].id;
        registry.release_from_job(&busy, None).unwrap();
        let long_idle = gpu.clone().idle_for(Duration::from_secs(3600));
        assert_eq!(claim(&long_idle, "b"), (None, 2), "a maybe");
        let elsewhere = gpu
            .clone()
            .provider_id(ProviderId::new("elsewhere").unwrap());
        assert_eq!(claim(&elsewhere, "b"), (None, 1), "another provider's pool");
        // And the ready one is claimed by the pool's filter, in one statement.
        let (taken, passes) = claim(&gpu, "c");
        assert_eq!((taken.map(|w| w.id), passes), (Some(busy), 1));
        // Without spec nor provider conditions nothing changed: a claim that finds no
        // candidate (none idle for an hour) runs both statements.
        let other = WorkerFilter::new().idle_for(Duration::from_secs(3600));
        assert_eq!(
            claim(&other, "d"),
            (None, 2),
            "no spec nor provider conditions"
        );
        // With provider conditions alone, a provider no ready worker has: one statement.
        let other = WorkerFilter::new().provider_id(ProviderId::new("elsewhere").unwrap());
        assert_eq!(
            claim(&other, "d"),
            (None, 1),
            "a provider with no ready worker"
        );
    }

    /// A group of workers of [`fleet_of`]: `n` workers of one provider (id, type) and spec,
    /// ready, or each holding a job (`busy`).
    struct Group {
        provider: String,
        kind: ProviderType,
        spec: Arc<WorkerSpec>,
        n: usize,
        busy: bool,
    }

    fn group(provider: &str, kind: ProviderType, spec: &Arc<WorkerSpec>, n: usize) -> Group {
        Group {
            provider: provider.to_owned(),
            kind,
            spec: spec.clone(),
            n,
            busy: false,
        }
    }

    fn busy(group: Group) -> Group {
        Group {
            busy: true,
            ..group
        }
    }

    /// The groups' workers, made ready in the order given, one millisecond apart and up to
    /// `T0` (so the first is the longest idle: the last in claim order; a restore would move
    /// times after the registry's clock back to it), then restored and analyzed. Their ids,
    /// by group.
    fn fleet_of(
        registry: &PostgresWorkerRegistry,
        schema: &crate::test_support::Schema,
        groups: &[Group],
    ) -> Vec<Vec<WorkerId>> {
        let total: usize = groups.iter().map(|g| g.n).sum();
        let clock = Arc::new(ManualClock::new(T0 - total as u64));
        let memory = InMemoryWorkerRegistry::with_clock(clock.clone());
        let mut ids = Vec::new();
        for (g, group) in groups.iter().enumerate() {
            let provider = ProviderId::new(group.provider.as_str()).unwrap();
            let mut these = Vec::new();
            for i in 0..group.n {
                let handle =
                    WorkerHandle::new(provider.clone(), group.kind.clone(), format!("g{g}-{i}"));
                let id = memory.register(handle, group.spec.clone()).unwrap().id;
                memory.update_state(&id, WorkerState::Ready).unwrap();
                if group.busy {
                    memory
                        .assign_to_job(&id, JobId::new(format!("held-{g}-{i}")).unwrap())
                        .unwrap();
                }
                clock.advance(Duration::from_millis(1));
                these.push(id);
            }
            ids.push(these);
        }
        registry.restore(memory.snapshot().unwrap()).unwrap();
        raw(schema)
            .batch_execute("ANALYZE workers; ANALYZE heartbeats; ANALYZE specs")
            .unwrap();
        ids
    }

    /// For each filter: the claim answers "no worker" in one statement, and its plan (both
    /// clocks, custom and generic plans) reads no worker row but the gate's index entries (at
    /// most `probes`) and no heartbeat.
    fn assert_claims_read_no_worker(
        registry: &PostgresWorkerRegistry,
        schema: &crate::test_support::Schema,
        filters: &[(&str, WorkerFilter)],
        probes: i64,
    ) {
        let mut client = raw(schema);
        let clocks = [("given", Some(crate::sql::db_ts(T0))), ("database", None)];
        for (name, filter) in filters {
            for ((clock, given), mode) in clocks
                .into_iter()
                .flat_map(|c| ["force_custom_plan", "force_generic_plan"].map(|m| (c, m)))
            {
                let case = format!("{name}, {clock} clock, {mode}");
                let nodes = claim_plan(&mut client, filter, given, mode);
                let workers: Vec<_> = reading(&nodes, "workers")
                    .filter(|n| rows_out(n) + removed(n) > 0)
                    .map(|n| {
                        format!(
                            "{} {} ({} rows, {} removed)",
                            n["Node Type"].as_str().unwrap_or("?"),
                            n["Index Name"].as_str().unwrap_or("-"),
                            rows_out(n),
                            removed(n)
                        )
                    })
                    .collect();
                let read: i64 = reading(&nodes, "workers")
                    .filter(|n| n["Index Name"] != "workers_ready_class")
                    .map(|n| rows_out(n) + removed(n))
                    .sum();
                assert_eq!(read, 0, "{case}: {read} worker rows read: {workers:?}");
                let probed: i64 = reading(&nodes, "workers")
                    .filter(|n| n["Index Name"] == "workers_ready_class")
                    .map(|n| rows_out(n) + removed(n))
                    .sum();
                assert!(probed <= probes, "{case}: {probed} probed: {workers:?}");
                let heartbeats: i64 = reading(&nodes, "heartbeats")
                    .map(|n| rows_out(n) + removed(n))
                    .sum();
                assert_eq!(heartbeats, 0, "{case}: heartbeats read");
            }
            let (answer, sent) =
                passes_of(|| registry.claim(filter, JobId::new("j").unwrap()).unwrap());
            assert_eq!((answer, sent), (None, 1), "{name}: statements sent");
        }
    }

    /// A claim for a provider with no ready worker (its 1,000 workers all busy) beside a large
    /// ready fleet of another provider read the ready set or the provider's rows, whichever
    /// the planner chose, then ran its second (waiting) pass and read them again: a job pinned
    /// to Kubernetes while the Docker fleet is idle. Now the gate walks the classes of the ready workers (spec, provider id,
    /// provider type) and finds none of that provider: no worker row is read, one statement
    /// is sent.
    #[test]
    fn a_claim_by_a_provider_no_ready_worker_has_reads_no_worker_row() {
        let (schema, registry) = scratch("claim_noprovider_plan");
        let img = Arc::new(WorkerSpec::new("img"));
        fleet_of(
            &registry,
            &schema,
            &[
                group("p", ProviderType::Docker, &img, 3000),
                busy(group("k8s", ProviderType::Kubernetes, &img, 1000)),
            ],
        );
        let k8s = || ProviderId::new("k8s").unwrap();
        let filters = [
            ("provider id", WorkerFilter::new().provider_id(k8s())),
            (
                "provider type",
                WorkerFilter::new().provider_type(ProviderType::Kubernetes),
            ),
            (
                "provider id and type",
                WorkerFilter::new()
                    .provider_id(k8s())
                    .provider_type(ProviderType::Kubernetes),
            ),
            (
                "a provider id and a type no ready worker has together",
                WorkerFilter::new()
                    .provider_id(ProviderId::new("p").unwrap())
                    .provider_type(ProviderType::Kubernetes),
            ),
            (
                "provider id and unhealthy_for",
                WorkerFilter::new()
                    .provider_id(k8s())
                    .unhealthy_for(Duration::from_secs(3600)),
            ),
        ];
        // One class of ready workers: one index entry read.
        assert_claims_read_no_worker(&registry, &schema, &filters, 1);
    }

    /// A claim by a pool's label and a provider, whose pool has ready workers, all of another
    /// provider: the spec-only gate said "maybe" and the walk read the whole ready set (then
    /// the second pass again). The class gate says no.
    #[test]
    fn a_claim_whose_spec_s_ready_workers_are_all_another_provider_s_reads_no_worker_row() {
        let (schema, registry) = scratch("claim_otherprovider_plan");
        let img = Arc::new(WorkerSpec::new("img"));
        let gpu = Arc::new(WorkerSpec::new("img").with_label(GPU.0, GPU.1));
        fleet_of(
            &registry,
            &schema,
            &[
                group("p", ProviderType::Docker, &img, 3000),
                group("p", ProviderType::Docker, &gpu, 5),
                busy(group("k8s", ProviderType::Kubernetes, &gpu, 1000)),
            ],
        );
        let pool = WorkerFilter::new().label(GPU.0, GPU.1);
        let filters = [
            (
                "label and provider id",
                pool.clone().provider_id(ProviderId::new("k8s").unwrap()),
            ),
            (
                "label and provider type",
                pool.clone().provider_type(ProviderType::Kubernetes),
            ),
            (
                "label, provider type and unhealthy_for",
                pool.clone()
                    .provider_type(ProviderType::Kubernetes)
                    .unhealthy_for(Duration::from_secs(3600)),
            ),
        ];
        // Two classes of ready workers: at most two index entries read.
        assert_claims_read_no_worker(&registry, &schema, &filters, 2);
    }

    /// The gate is only ever a "no" when no ready worker of a matching class exists: a
    /// provider's (or a pool's and provider's) only ready worker is claimed, in one statement,
    /// also when it is the longest idle, behind a large ready fleet of another provider.
    #[test]
    fn a_claim_by_provider_takes_its_ready_worker_even_the_longest_idle() {
        let (schema, registry) = scratch("claim_provider_take");
        let img = Arc::new(WorkerSpec::new("img"));
        let gpu = Arc::new(WorkerSpec::new("img").with_label(GPU.0, GPU.1));
        let ids = fleet_of(
            &registry,
            &schema,
            &[
                group("k8s", ProviderType::Kubernetes, &gpu, 1),
                group("k8s", ProviderType::Kubernetes, &img, 1),
                group("fg", ProviderType::Fargate, &img, 1),
                group("p", ProviderType::Docker, &img, 3000),
                group("p", ProviderType::Docker, &gpu, 5),
            ],
        );
        let k8s = || ProviderId::new("k8s").unwrap();
        let pool = WorkerFilter::new().label(GPU.0, GPU.1);
        let claim = |filter: &WorkerFilter, job: &str| {
            let (taken, sent) =
                passes_of(|| registry.claim(filter, JobId::new(job).unwrap()).unwrap());
            (taken.map(|w| w.id), sent)
        };
        assert_eq!(
            claim(&pool.clone().provider_id(k8s()), "a"),
            (Some(ids[0][0]), 1),
            "the pool's worker of k8s, the longest idle of all"
        );
        assert_eq!(
            claim(
                &WorkerFilter::new().provider_type(ProviderType::Kubernetes),
                "b"
            ),
            (Some(ids[1][0]), 1),
            "the other Kubernetes worker"
        );
        assert_eq!(
            claim(
                &WorkerFilter::new().provider_id(ProviderId::new("fg").unwrap()),
                "c"
            ),
            (Some(ids[2][0]), 1)
        );
        assert_eq!(
            claim(&pool.clone().provider_type(ProviderType::Fargate), "d"),
            (None, 1),
            "no ready Fargate worker of the pool"
        );
        assert_eq!(
            claim(&pool.provider_id(ProviderId::new("p").unwrap()), "e"),
            (Some(ids[4][4]), 1),
            "the pool's most recently idle worker of p"
        );
    }

    /// The gate's unit is the spec when the filter names no provider: a fleet of more than
    /// [`WALK_LIMIT`] classes but one spec (a spec served by many providers) still has its
    /// claim by a pool no ready worker is in answered "no", reading no worker. Walked by class
    /// alone, the gate stopped at its 64th class and said "maybe", and the claim read the
    /// whole ready set, twice.
    #[test]
    fn a_claim_by_spec_alone_walks_specs_not_classes() {
        let (schema, registry) = scratch("claim_spec_unit");
        let img = Arc::new(WorkerSpec::new("img"));
        let mut groups = vec![group("p", ProviderType::Docker, &img, 3000)];
        groups.extend(
            (0..WALK_LIMIT + 6).map(|i| group(&format!("p{i}"), ProviderType::Docker, &img, 1)),
        );
        let ids = fleet_of(&registry, &schema, &groups);
        let filters = [
            ("a pool's label", WorkerFilter::new().label(GPU.0, GPU.1)),
            ("a capability", WorkerFilter::new().capability("cuda")),
        ];
        // One spec of ready workers: its entry, and the probe past it.
        assert_claims_read_no_worker(&registry, &schema, &filters, 2);
        // A filter by provider walks classes, and past the 64th it says "maybe": the class
        // last in index order (provider "p9") is still found, and a provider no class has
        // is looked for by the walk, in two statements, as before the gate.
        let by = |p: &str| WorkerFilter::new().provider_id(ProviderId::new(p).unwrap());
        // Group 10 is provider "p9", the last in text order ("p", "p0", "p1", "p10", …).
        let last = ids[10][0];
        assert_eq!(
            registry
                .get(&last)
                .unwrap()
                .unwrap()
                .handle
                .provider_id
                .as_str(),
            "p9"
        );
        let (taken, sent) =
            passes_of(|| registry.claim(&by("p9"), JobId::new("a").unwrap()).unwrap());
        assert_eq!((taken.map(|w| w.id), sent), (Some(last), 1));
        let (taken, sent) =
            passes_of(|| registry.claim(&by("zz"), JobId::new("b").unwrap()).unwrap());
        assert_eq!(
            (taken.map(|w| w.id), sent),
            (None, 2),
            "a maybe past 64 classes"
        );
    }
}
