//! `stats()`: from the maintained counters (32 slot rows, the provider rows and the pool rows),
//! never the fleet. One statement, so one snapshot: the counts are those of one instant.

use hodei_workers::{
    ProviderId, ProviderType, Result, StateCounts, WorkerRegistryStats, WorkerState,
};

use crate::registry::{Fail, PostgresWorkerRegistry};

/// Rows of kind 0: the totals (one row); kind 1: one per (provider, provider type); kind 2: one
/// per (pool, state) with workers (at most pools × 7 rows, summed from pools × 32 × 7).
const STATS: &str = "SELECT 0::smallint, NULL::text, NULL::text, sum(total)::bigint, \
        sum(s0)::bigint, sum(s1)::bigint, sum(s2)::bigint, sum(s3)::bigint, sum(s4)::bigint, \
        sum(s5)::bigint, sum(s6)::bigint FROM state_counts \
    UNION ALL \
    SELECT 1::smallint, provider_id, provider_type, sum(n)::bigint, 0, 0, 0, 0, 0, 0, 0 \
        FROM provider_counts GROUP BY provider_id, provider_type HAVING sum(n) <> 0 \
    UNION ALL \
    SELECT 2::smallint, pool, NULL::text, sum(n)::bigint, state::bigint, 0, 0, 0, 0, 0, 0 \
        FROM pool_counts GROUP BY pool, state HAVING sum(n) <> 0";

fn count(v: i64) -> usize {
    usize::try_from(v).unwrap_or(0)
}

fn set(by: &mut StateCounts, state: WorkerState, v: usize) {
    match state {
        WorkerState::Creating => by.creating = v,
        WorkerState::Connecting => by.connecting = v,
        WorkerState::Ready => by.ready = v,
        WorkerState::Busy => by.busy = v,
        WorkerState::Draining => by.draining = v,
        WorkerState::Terminating => by.terminating = v,
        WorkerState::Terminated => by.terminated = v,
    }
}

pub(crate) fn stats(registry: &PostgresWorkerRegistry) -> Result<WorkerRegistryStats> {
    registry.run("reading the counters", |conn| {
        let stmt = conn.prepare(STATS)?;
        let rows = conn.client.query(&stmt, &[])?;
        let mut stats = WorkerRegistryStats::default();
        let corrupt = |what: String| {
            Fail::Domain(hodei_workers::Error::Backend(format!(
                "unreadable counter row: {what}"
            )))
        };
        for row in rows {
            let kind: i16 = row.get(0);
            let n = |i: usize| count(row.get::<_, Option<i64>>(i).unwrap_or(0));
            match kind {
                0 => {
                    stats.total = n(3);
                    for (i, state) in WorkerState::ALL.into_iter().enumerate() {
                        set(&mut stats.by_state, state, n(4 + i));
                    }
                }
                1 => {
                    let provider: String = row.get(1);
                    let kind: String = row.get(2);
                    let provider = ProviderId::new(provider).map_err(|e| corrupt(e.to_string()))?;
                    let kind = kind
                        .parse::<ProviderType>()
                        .map_err(|e| corrupt(e.to_string()))?;
                    let v = n(3);
                    *stats.by_provider.entry(provider).or_default() += v;
                    *stats.by_provider_type.entry(kind).or_default() += v;
                }
                _ => {
                    let pool: String = row.get(1);
                    let state = row.get::<_, Option<i64>>(4).unwrap_or(-1);
                    // Stored as `state as i16` (sql::st); ALL is in that order.
                    let state = usize::try_from(state)
                        .ok()
                        .and_then(|i| WorkerState::ALL.get(i).copied())
                        .ok_or_else(|| corrupt(format!("pool {pool:?}: state {state}")))?;
                    set(stats.by_pool.entry(pool).or_default(), state, n(3));
                }
            }
        }
        Ok(stats)
    })
}
