//! The [`WorkerRegistry`] trait on PostgreSQL: one method each, the reads written here, the
//! changes in the registry's other modules and the crate's (`claim`, `deadlines`, `stats`,
//! `heartbeat`, `events`, `snapshot`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use hodei_workers::{
    Clock, EventKind, JobId, ProviderId, Result, Snapshot, SubscribeOptions, Subscription,
    TerminationReason, Timestamp, TransitionGuard, Transitioned, Worker, WorkerFilter,
    WorkerHandle, WorkerId, WorkerRegistry, WorkerRegistryStats, WorkerSpec, WorkerState,
};

use super::change::{event_texts, not_found, INSERT_EVENTS, INSERT_HEARTBEAT_EVENTS};
use super::{Fail, PostgresWorkerRegistry};
use crate::schema::terminal_predicate;
use crate::sql::{conditions, db_ts, matches_nothing, param, refs, Params, FROM_WORKERS, W_COLS};

static GET: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {W_COLS} FROM workers w WHERE w.id = $1"));

/// The ids of the terminal workers: an index-only scan of `workers_terminal`. The predicate is
/// the index's own text, with literals: a parameter would hide from the planner that the
/// partial index covers the query.
static TERMINAL_IDS: LazyLock<String> =
    LazyLock::new(|| format!("SELECT id FROM workers WHERE {}", terminal_predicate()));

/// The records of one provider holding some resource ids: the rows asked about, found by
/// index `workers_provider_resource` (v7); only the matches travel.
static BY_RESOURCE_IDS: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {W_COLS} FROM workers w WHERE w.provider_id = $1 AND w.resource_id = ANY($2)")
});

/// The `n` longest-idle ready workers: the ready index read backwards.
static LONGEST_IDLE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {W_COLS} FROM workers w WHERE w.state = 2 AND w.current_job IS NULL \
         ORDER BY w.idle_since ASC, w.id ASC LIMIT $1"
    )
});

impl WorkerRegistry for PostgresWorkerRegistry {
    fn fenced(
        &self,
        lease: &dyn hodei_workers::Leadership,
        term: hodei_workers::Term,
    ) -> Option<Arc<dyn WorkerRegistry>> {
        self.fenced_view(lease, term)
    }

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
        self.register_record(handle, spec)
    }

    fn unregister(&self, id: &WorkerId, reason: TerminationReason) -> Result<Worker> {
        self.unregister_record(id, reason)
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
        filter.validate()?;
        if filter.limit == Some(0) || matches_nothing(filter) {
            return Ok(Vec::new());
        }
        let mut params: Params = Vec::new();
        let given = self.given();
        let now = param(&mut params, given);
        let conds = conditions(filter, "(SELECT now FROM t)", given, &mut params, false);
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

    /// One query, `provider_id = $1 AND resource_id = ANY($2)`, whose matching rows alone
    /// travel, decoded as `find` decodes its rows (`W_COLS`, `Specs::worker`). Cost: O(ids
    /// asked × log fleet) on the server, whatever the share of the fleet the provider holds:
    /// the index `workers_provider_resource (provider_id, resource_id)` (schema v7) finds each
    /// asked id's row, and no other row is read (since 2026-12-07; before, the index by
    /// provider alone or a sequential scan read every row of the provider: 53 ms at 100,000
    /// workers of one provider).
    ///
    /// An id with a NUL byte is left out of the ask (no handle holds one, and a text
    /// parameter cannot carry it); none left, no query.
    fn find_by_resource_ids(
        &self,
        provider_id: &ProviderId,
        resource_ids: &[&str],
    ) -> Result<Vec<Worker>> {
        let asked: Vec<&str> = resource_ids
            .iter()
            .copied()
            .filter(|r| !r.contains('\0'))
            .collect();
        if asked.is_empty() {
            return Ok(Vec::new());
        }
        let provider = provider_id.as_str();
        let specs = &self.inner.specs;
        self.run("finding workers by resource id", |conn| {
            let stmt = conn.prepare(&BY_RESOURCE_IDS)?;
            let rows = conn.client.query(&stmt, &[&provider, &asked])?;
            rows.iter().map(|r| specs.worker(r)).collect()
        })
    }

    fn terminal_ids(&self) -> Result<Vec<WorkerId>> {
        self.run("reading the terminal ids", |conn| {
            // The ids alone: no join, no row decoded into a worker.
            let stmt = conn.prepare(&TERMINAL_IDS)?;
            let rows = conn.client.query(&stmt, &[])?;
            rows.iter()
                .map(|r| {
                    let id: uuid::Uuid = r.get(0);
                    WorkerId::from_bytes(*id.as_bytes()).map_err(|e| {
                        Fail::Domain(hodei_workers::Error::Backend(format!(
                            "unreadable registry row: {e}"
                        )))
                    })
                })
                .collect()
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
        self.assign(id, job)
    }

    fn release_from_job(&self, id: &WorkerId, expected_job: Option<&JobId>) -> Result<JobId> {
        self.release(id, expected_job)
    }

    fn claim(&self, filter: &WorkerFilter, job: JobId) -> Result<Option<Worker>> {
        filter.validate()?;
        crate::claim::claim(self, filter, job)
    }

    fn find_unhealthy(&self, heartbeat_timeout: Duration) -> Result<Vec<Worker>> {
        crate::deadlines::find_unhealthy(self, heartbeat_timeout)
    }

    fn count_unhealthy(&self, heartbeat_timeout: Duration) -> Result<usize> {
        crate::deadlines::count_unhealthy(self, heartbeat_timeout)
    }

    fn find_startup_expired(&self, startup_timeout: Duration) -> Result<Vec<Worker>> {
        crate::deadlines::find_startup_expired(self, startup_timeout)
    }

    fn find_for_termination(&self) -> Result<Vec<(Worker, TerminationReason)>> {
        crate::deadlines::find_for_termination(self)
    }

    fn grant_grace(&self, since: Timestamp) -> Result<()> {
        self.write("granting grace", |conn| {
            let (mut tx, mut cache) = self.begin(conn)?;
            let stmt = cache.prepare(
                &mut tx,
                "UPDATE meta SET grace_floor = greatest(grace_floor, $1)",
            )?;
            tx.execute(&stmt, &[&db_ts(since)])?;
            tx.commit()?;
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
        kind.check_publishable()?;
        let given = self.given();
        let event = event_texts(std::slice::from_ref(&kind));
        let worker = kind.worker_id().map(|w| *w.as_uuid());
        // A `HeartbeatReceived` is written as `heartbeat`'s are: flagged, so that only the
        // subscribers that opted in read it, and only while a subscriber of this handle wants
        // them (nothing is written otherwise: a plain subscriber would see a gap, or, before
        // the flag, the event itself).
        let heartbeat = matches!(kind, EventKind::HeartbeatReceived { .. });
        let write_event =
            !heartbeat || self.inner.heartbeat_subscribers.load(Ordering::Relaxed) > 0;
        self.write("publishing an event", |conn| {
            let (mut tx, mut cache) = self.begin(conn)?;
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
            if !write_event {
                tx.commit()?;
                return Ok(());
            }
            let now: i64 = tx
                .query_one("SELECT now_ms($1), pg_current_xact_id()::text", &[&given])?
                .get(0);
            let insert = if heartbeat {
                INSERT_HEARTBEAT_EVENTS
            } else {
                INSERT_EVENTS
            };
            let stmt = cache.prepare(&mut tx, insert)?;
            tx.execute(&stmt, &[&now, &worker, &event])?;
            tx.commit()?;
            Ok(())
        })
    }

    fn subscriber_drops(&self) -> Result<Vec<hodei_workers::SubscriberDrops>> {
        Ok(crate::events::subscriber_drops(self))
    }

    fn snapshot(&self) -> Result<Snapshot> {
        crate::snapshot::snapshot(self)
    }

    fn restore(&self, snapshot: Snapshot) -> Result<()> {
        crate::snapshot::restore(self, snapshot)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hodei_workers::{InMemoryWorkerRegistry, ManualClock, ProviderType};

    use super::*;
    use crate::test_support::{plan_nodes, raw, reading, scratch};

    /// The orphan retries of the lifecycle manager ask every tick about a few resource ids of
    /// a provider that may hold most of the fleet: the server must read the rows asked about,
    /// not the provider's (before v7 its rows were found by `workers_provider (provider_id)` or
    /// a sequential scan, and each compared: 4,997 of 5,000 read and thrown away here).
    #[test]
    fn find_by_resource_ids_reads_only_the_rows_asked_about() {
        let (schema, registry) = scratch("resource_ids_plan");
        // On the registry's clock (a restore refuses a snapshot from far ahead of it).
        let memory =
            InMemoryWorkerRegistry::with_clock(Arc::new(ManualClock::new(1_700_000_000_000)));
        let spec = Arc::new(WorkerSpec::new("img"));
        for (p, n) in [("big", 5000), ("small", 10)] {
            let provider = ProviderId::new(p).unwrap();
            for i in 0..n {
                let handle =
                    WorkerHandle::new(provider.clone(), ProviderType::Docker, format!("r-{i}"));
                memory.register(handle, spec.clone()).unwrap();
            }
        }
        registry.restore(memory.snapshot().unwrap()).unwrap();
        let mut client = raw(&schema);
        client.batch_execute("ANALYZE workers").unwrap();
        let asked = ["r-17", "r-2500", "r-4999", "r-5000"];
        let found = registry
            .find_by_resource_ids(&ProviderId::new("big").unwrap(), &asked)
            .unwrap();
        assert_eq!(found.len(), 3);
        // The registry's own statement, prepared as its connections prepare it, under the plan
        // a prepared statement starts with (custom) and the one it may settle on (generic).
        client
            .batch_execute(&format!(
                "PREPARE by_resource(text, text[]) AS {}",
                *BY_RESOURCE_IDS
            ))
            .unwrap();
        for mode in ["force_custom_plan", "force_generic_plan"] {
            client
                .batch_execute(&format!("SET plan_cache_mode = {mode}"))
                .unwrap();
            let nodes = plan_nodes(
                &mut client,
                "EXECUTE by_resource('big', ARRAY['r-17', 'r-2500', 'r-4999', 'r-5000'])",
            );
            let scans: Vec<&serde_json::Value> = reading(&nodes, "workers").collect();
            assert!(!scans.is_empty(), "{mode}: {nodes:#?}");
            for scan in &scans {
                for removed in ["Rows Removed by Filter", "Rows Removed by Index Recheck"] {
                    assert_eq!(
                        scan[removed].as_i64().unwrap_or(0),
                        0,
                        "{mode}: {removed} in {scan:#}"
                    );
                }
                assert_eq!(scan["Actual Rows"].as_i64(), Some(3), "{mode}: {scan:#}");
            }
            assert!(
                scans.iter().any(|s| s["Index Cond"]
                    .as_str()
                    .is_some_and(|c| c.contains("resource_id"))),
                "{mode}: no index condition on resource_id: {scans:#?}"
            );
        }
    }
}
