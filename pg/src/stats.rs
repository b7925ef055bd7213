//! `stats()`: from the maintained counters (32 slot rows and the provider rows), never the
//! fleet. One statement, so one snapshot: the counts are those of one instant.

use hodei_workers::{ProviderId, ProviderType, Result, WorkerRegistryStats, WorkerState};

use crate::registry::{Fail, PostgresWorkerRegistry};

const STATS: &str = "SELECT NULL::text, NULL::text, sum(total)::bigint, sum(s0)::bigint, \
        sum(s1)::bigint, sum(s2)::bigint, sum(s3)::bigint, sum(s4)::bigint, sum(s5)::bigint, \
        sum(s6)::bigint FROM state_counts \
    UNION ALL \
    SELECT provider_id, provider_type, sum(n)::bigint, 0, 0, 0, 0, 0, 0, 0 FROM provider_counts \
        GROUP BY provider_id, provider_type HAVING sum(n) <> 0";

fn count(v: i64) -> usize {
    usize::try_from(v).unwrap_or(0)
}

pub(crate) fn stats(registry: &PostgresWorkerRegistry) -> Result<WorkerRegistryStats> {
    registry.run("reading the counters", |conn| {
        let stmt = conn.prepare(STATS)?;
        let rows = conn.client.query(&stmt, &[])?;
        let mut stats = WorkerRegistryStats::default();
        for row in rows {
            let provider: Option<String> = row.get(0);
            let n = |i: usize| count(row.get::<_, Option<i64>>(i).unwrap_or(0));
            match provider {
                None => {
                    stats.total = n(2);
                    let by = &mut stats.by_state;
                    for (i, state) in WorkerState::ALL.into_iter().enumerate() {
                        let v = n(3 + i);
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
                }
                Some(provider) => {
                    let kind: String = row.get(1);
                    let corrupt = |e: hodei_workers::Error| {
                        Fail::Domain(hodei_workers::Error::Backend(format!(
                            "unreadable counter row: {e}"
                        )))
                    };
                    let provider = ProviderId::new(provider).map_err(corrupt)?;
                    let kind = kind.parse::<ProviderType>().map_err(corrupt)?;
                    let v = n(2);
                    *stats.by_provider.entry(provider).or_default() += v;
                    *stats.by_provider_type.entry(kind).or_default() += v;
                }
            }
        }
        Ok(stats)
    })
}
