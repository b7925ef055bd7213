//! Rows to records and back: the column lists, conversions, and the translation of a
//! [`WorkerFilter`] into a `WHERE` clause.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hodei_workers::{
    Error, JobId, ProviderId, ProviderType, Timestamp, Worker, WorkerFilter, WorkerHandle,
    WorkerId, WorkerSpec, WorkerState,
};
use parking_lot::Mutex;
use postgres::types::ToSql;
use postgres::Row;

use crate::registry::Fail;

/// The columns of a worker snapshot, over `workers w`; read by [`Specs::worker`]. The
/// heartbeat and the spec are read by key for each row returned (not joined): a query that
/// returns a few workers from an index never hashes the whole heartbeat table.
pub(crate) const W_COLS: &str = "w.id, w.provider_id, w.provider_type, w.resource_id, \
    w.metadata, w.spec_key, (SELECT y.spec FROM specs y WHERE y.key = w.spec_key), w.state, \
    w.current_job, w.jobs_executed, w.created_at, w.updated_at, w.state_changed_at, \
    (SELECT x.last_heartbeat FROM heartbeats x WHERE x.id = w.id), w.idle_since, w.slot";

/// Workers with their heartbeat (`h`) and spec (`s`) joined: what `find`'s filters read.
pub(crate) const FROM_WORKERS: &str =
    "workers w JOIN heartbeats h ON h.id = w.id JOIN specs s ON s.key = w.spec_key";

/// Number of columns in [`W_COLS`]: what follows in a row is the statement's own.
pub(crate) const W_LEN: usize = 16;

/// A timestamp (or an event seq) as stored: the whole `u64` range mapped onto `bigint` in
/// order (`v - 2^63`), so that a snapshot's extreme values survive and comparisons in SQL keep
/// their meaning. Arithmetic on stored values goes through the schema's saturating functions
/// (`sat_add`, `sat_sub`) or [`cutoff`] (`age_ge` is no longer used: it capped durations).
pub(crate) fn db_ts(t: Timestamp) -> i64 {
    (t ^ (1 << 63)) as i64
}

/// A stored timestamp (or seq): the inverse of [`db_ts`].
pub(crate) fn ts(v: i64) -> Timestamp {
    (v as u64) ^ (1 << 63)
}

/// A count (`jobs_executed`) as stored: its bits (only Rust reads it).
pub(crate) fn db_count(n: u64) -> i64 {
    n as i64
}

/// A stored count.
pub(crate) fn count(v: i64) -> u64 {
    v as u64
}

/// A duration in whole milliseconds, saturating (deadline arithmetic on `Timestamp`s).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A duration as stored for deadline arithmetic: milliseconds, `i64::MAX` standing for "at
/// least 2^63 - 1 ms" (292 million years), which the schema's functions treat as never
/// ending, as the in-memory registry's saturating `u64` arithmetic does for any realistic
/// start.
pub(crate) fn dur_ms(d: Duration) -> i64 {
    millis(d).min(i64::MAX as u64) as i64
}

/// `now - d` (`d` in milliseconds) as an SQL expression, or NULL when `now < d` ("no cutoff
/// yet"): where a deadline question or a filter's duration starts counting. `now` is the
/// statement's time (`now_ms(given)`). On a given clock it is computed here, in `u64` as in
/// memory; on the database's, `sat_sub(now, d)` with `d` capped at 2^63 - 1 ms, exact there
/// since that clock never reaches 2^63 ms (PostgreSQL's timestamps end in 294276 AD). Before,
/// every form capped `d` ([`dur_ms`]), so on a manual clock past 2^63 ms a timeout of 2^63 - 1
/// ms or more was read as 2^63 - 1 ms (or as never ending, by `age_ge`): workers silent or
/// starting for less than it were found due, and filters found none of those silent or idle
/// for more.
pub(crate) fn cutoff(now: &str, given: Option<i64>, d: u64, params: &mut Params) -> String {
    match given {
        Some(given) => format!(
            "{}::bigint",
            param(params, ts(given).checked_sub(d).map(db_ts))
        ),
        None => format!(
            "sat_sub({now}, {}::bigint)",
            param(params, d.min(i64::MAX as u64) as i64)
        ),
    }
}

/// The parameters of a deadline question's [`CUTOFF`]: the given time, the timeout capped for
/// the database's clock, and the cutoff computed for a given clock (see [`cutoff`]).
pub(crate) fn cutoff_params(
    given: Option<i64>,
    timeout: Duration,
) -> (Option<i64>, i64, Option<i64>) {
    let d = millis(timeout);
    let cut = given.and_then(|g| ts(g).checked_sub(d).map(db_ts));
    (given, d.min(i64::MAX as u64) as i64, cut)
}

/// [`cutoff`] in a prepared statement, over the parameters `$1`, `$2`, `$3` of
/// [`cutoff_params`].
pub(crate) const CUTOFF: &str =
    "CASE WHEN $1::bigint IS NULL THEN sat_sub(now_ms(NULL), $2::bigint) ELSE $3::bigint END";

/// The stored form of a state.
pub(crate) fn st(state: WorkerState) -> i16 {
    state as i16
}

fn corrupt(what: impl std::fmt::Display) -> Fail {
    Fail::Domain(Error::Backend(format!("unreadable registry row: {what}")))
}

/// Parsed specs by key: a spec row never changes, so each is parsed once per process and
/// shared (`Arc`) by the snapshots of every worker made from it.
#[derive(Debug, Default)]
pub(crate) struct Specs {
    cache: Mutex<HashMap<String, Arc<WorkerSpec>>>,
}

impl Specs {
    pub fn spec(&self, key: &str, json: &str) -> Result<Arc<WorkerSpec>, Fail> {
        if let Some(spec) = self.cache.lock().get(key) {
            return Ok(Arc::clone(spec));
        }
        let spec: Arc<WorkerSpec> = Arc::new(serde_json::from_str(json).map_err(corrupt)?);
        let mut cache = self.cache.lock();
        // Bounded: a registry with more distinct specs than this re-parses some.
        if cache.len() >= 4096 {
            cache.clear();
        }
        cache.insert(key.to_owned(), Arc::clone(&spec));
        Ok(spec)
    }

    /// Remembers a spec just written (register), under its key.
    pub fn remember(&self, key: &str, spec: &Arc<WorkerSpec>) {
        let mut cache = self.cache.lock();
        if cache.len() < 4096 {
            cache
                .entry(key.to_owned())
                .or_insert_with(|| Arc::clone(spec));
        }
    }

    /// The worker in a row starting with [`W_COLS`].
    pub fn worker(&self, row: &Row) -> Result<Worker, Fail> {
        let id: uuid::Uuid = row.get(0);
        let id = WorkerId::from_bytes(*id.as_bytes()).map_err(corrupt)?;
        let provider_id: &str = row.get(1);
        let provider_type: &str = row.get(2);
        let metadata: &str = row.get(4);
        let handle = WorkerHandle {
            worker_id: id,
            provider_id: ProviderId::new(provider_id).map_err(corrupt)?,
            provider_type: provider_type.parse::<ProviderType>().map_err(corrupt)?,
            resource_id: row.get::<_, String>(3),
            metadata: serde_json::from_str(metadata).map_err(corrupt)?,
        };
        let spec = self.spec(row.get(5), row.get(6))?;
        let state: i16 = row.get(7);
        let state = u8::try_from(state)
            .ok()
            .and_then(WorkerState::from_u8)
            .ok_or_else(|| corrupt(format!("state {state}")))?;
        let job: Option<String> = row.get(8);
        Ok(Worker {
            id,
            handle: Arc::new(handle),
            spec,
            state,
            current_job: job.map(JobId::new).transpose().map_err(corrupt)?,
            jobs_executed: count(row.get(9)),
            created_at: ts(row.get(10)),
            updated_at: ts(row.get(11)),
            state_changed_at: ts(row.get(12)),
            last_heartbeat: ts(row.get(13)),
            idle_since: row.get::<_, Option<i64>>(14).map(ts),
        })
    }
}

/// The slot of a worker in a row starting with [`W_COLS`].
pub(crate) fn slot(row: &Row) -> i16 {
    row.get(15)
}

/// The counter slot of a worker id.
pub(crate) fn slot_of(id: &WorkerId) -> i16 {
    let b = id.as_bytes();
    i16::from(b[15] ^ b[7]) & (crate::schema::SLOTS - 1)
}

/// Parameters of a statement under construction.
pub(crate) type Params = Vec<Box<dyn ToSql + Sync + Send>>;

/// Adds a parameter; returns its placeholder.
pub(crate) fn param(params: &mut Params, value: impl ToSql + Sync + Send + 'static) -> String {
    params.push(Box::new(value));
    format!("${}", params.len())
}

/// Whether `filter` names a string no stored worker can hold: a NUL byte in a label's key or
/// value, a capability, a GPU model or a custom provider type's name. `register` refuses NUL
/// in all of them (strings that may reach C), so such a filter matches nothing, as in memory;
/// sent to the server it would fail instead (`text` and `jsonb` cannot hold NUL), reported as
/// `Backend`, which reads as a lost database.
pub(crate) fn matches_nothing(filter: &WorkerFilter) -> bool {
    let nul = |s: &str| s.contains('\0');
    filter.labels.iter().any(|(k, v)| nul(k) || nul(v))
        || filter.capabilities.iter().any(|c| nul(c))
        || filter
            .fits
            .as_ref()
            .and_then(|need| need.gpu_type.as_deref())
            .is_some_and(nul)
        || matches!(&filter.provider_type, Some(ProviderType::Custom(name)) if nul(name))
}

/// The conditions of `filter` on `w` (workers), `h` (heartbeats), `s` (specs), with `now` an
/// SQL expression for the time, `now_ms(given)`. `claim` passes `for_claim` (it already
/// requires a `Ready` worker without a job, and handles the hopeless filters itself).
pub(crate) fn conditions(
    filter: &WorkerFilter,
    now: &str,
    given: Option<i64>,
    params: &mut Params,
    for_claim: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    if !for_claim {
        if !filter.states.is_empty() {
            let states: Vec<i16> = filter.states.iter().map(|s| st(*s)).collect();
            out.push(format!("w.state = ANY({})", param(params, states)));
        }
        match filter.accepting_jobs {
            Some(true) => out.push("(w.state = 2 AND w.current_job IS NULL)".into()),
            Some(false) => out.push("NOT (w.state = 2 AND w.current_job IS NULL)".into()),
            None => {}
        }
    }
    out.extend(provider_conditions(
        filter,
        "w.provider_id",
        "w.provider_type",
        params,
    ));
    if let Some(idle) = filter.idle_for {
        // Idle for at least `idle`: since at most `now - idle` (any time for 0).
        let since = match millis(idle) {
            0 => String::new(),
            d => format!(" AND w.idle_since <= {}", cutoff(now, given, d, params)),
        };
        out.push(format!("(w.state = 2 AND w.idle_since IS NOT NULL{since})"));
    }
    if let Some(silent) = filter.unhealthy_for {
        out.push(match silent_cutoff(now, given, silent, params) {
            Some(cut) => format!("h.last_heartbeat <= {cut}"),
            None => "false".to_owned(),
        });
    }
    out.extend(spec_conditions(filter, params));
    out
}

/// The conditions of `filter` on the worker's provider (its id, then its type), over the
/// columns named: those of [`conditions`], in its order, on `w`. A claim also asks them of the
/// classes of the ready workers before walking any worker (`crate::claim`).
pub(crate) fn provider_conditions(
    filter: &WorkerFilter,
    id_col: &str,
    type_col: &str,
    params: &mut Params,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(p) = &filter.provider_id {
        out.push(format!(
            "{id_col} = {}",
            param(params, p.as_str().to_owned())
        ));
    }
    if let Some(t) = &filter.provider_type {
        out.push(format!("{type_col} = {}", param(params, t.to_string())));
    }
    out
}

/// The conditions of `filter` on the spec alone (`s`, specs): labels, capabilities,
/// architecture, resources — the last of [`conditions`], in its order. A claim also asks them
/// of the specs of the ready workers before walking any worker (`crate::claim`).
pub(crate) fn spec_conditions(filter: &WorkerFilter, params: &mut Params) -> Vec<String> {
    let mut out = Vec::new();
    if !filter.labels.is_empty() {
        let json = serde_json::to_string(&filter.labels).unwrap_or_else(|_| "{}".into());
        out.push(format!(
            "s.labels @> ({}::text)::jsonb",
            param(params, json)
        ));
    }
    if !filter.capabilities.is_empty() {
        let caps: Vec<String> = filter.capabilities.iter().cloned().collect();
        out.push(format!("s.capabilities @> {}::text[]", param(params, caps)));
    }
    // Resources and architecture live in the spec's JSON (its serde form): the same static
    // conditions as `WorkerFilter::matches_static`, so `claim` by fit keeps to the ready
    // index's order and a job never lands on a worker too small for it.
    if let Some(arch) = filter.architecture {
        out.push(format!(
            "(s.spec::jsonb ->> 'architecture') = {}",
            param(params, arch.as_str().to_owned())
        ));
    }
    if let Some(need) = &filter.fits {
        let r = "(s.spec::jsonb -> 'resources')";
        out.push(format!(
            "(({r} ->> 'cpu_cores')::float8 >= {} AND ({r} ->> 'memory_bytes')::numeric >= ({}::text)::numeric \
             AND ({r} ->> 'disk_bytes')::numeric >= ({}::text)::numeric AND ({r} ->> 'gpu_count')::int8 >= {})",
            param(params, need.cpu_cores),
            param(params, need.memory_bytes.to_string()),
            param(params, need.disk_bytes.to_string()),
            param(params, i64::from(need.gpu_count)),
        ));
        if let Some(t) = &need.gpu_type {
            out.push(format!(
                "({r} ->> 'gpu_type') = {}",
                param(params, t.clone())
            ));
        }
    }
    out
}

/// The latest heartbeat of a worker silent for longer than `silent` (`unhealthy_for`), as an
/// SQL expression over `now` ([`cutoff`]); `None` when no worker can be (past the end of the
/// clock). Silent for longer than `silent`: at least `silent + 1` ms, so since at most
/// `now - silent - 1`.
pub(crate) fn silent_cutoff(
    now: &str,
    given: Option<i64>,
    silent: Duration,
    params: &mut Params,
) -> Option<String> {
    millis(silent)
        .checked_add(1)
        .map(|d| cutoff(now, given, d, params))
}

/// `params` as the slice the client wants.
pub(crate) fn refs(params: &Params) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect()
}
