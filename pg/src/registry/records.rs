//! `register`, `unregister` and the state moves (`update_state`, `transition_if`): each one
//! transaction (see [`super::change`]).

use std::sync::{Arc, LazyLock};

use hodei_workers::{
    Error, EventKind, Result, TerminationReason, TransitionGuard, Transitioned, Worker,
    WorkerHandle, WorkerId, WorkerSpec, WorkerState, POOL_LABEL,
};

use super::change::{
    event_texts, jobs_exhausted, moved, write_change, Write, WriteCache, INSERT_EVENTS,
};
use super::{fence, unique_violation, Fail, PostgresWorkerRegistry, Step};
use crate::pool::Conn;
use crate::sql::{dur_ms, slot_of, st, ts};

/// `register`'s first insert on a fenced view: only while the lease row names the view's
/// holder and term (held `FOR SHARE` until the transaction ends).
static KNOWN_IF_HELD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO known_ids (id) SELECT $1 WHERE EXISTS ({})",
        fence::held(2)
    )
});

impl PostgresWorkerRegistry {
    /// A write transaction whose first statement records `id` as known: ids are never reused,
    /// and the unique index of `known_ids` refuses a second registration (`AlreadyExists`),
    /// also one racing from another replica. On a fenced view the insert is conditional on the
    /// lease check ([`fence::held`]): refused, it inserts nothing and the transaction applies
    /// nothing (`NotLeader`). One round trip less than [`begin`](Self::begin) then the insert.
    fn begin_registering<'c>(
        &self,
        conn: &'c mut Conn,
        id: &WorkerId,
    ) -> Step<(postgres::Transaction<'c>, WriteCache<'c>)> {
        let (mut tx, mut cache) = self.begin_unchecked(conn)?;
        let inserted = match self.fence.as_deref() {
            None => {
                let known = cache.prepare(&mut tx, "INSERT INTO known_ids (id) VALUES ($1)")?;
                tx.execute(&known, &[id.as_uuid()])
            }
            Some(fence) => {
                let known = cache.prepare(&mut tx, &KNOWN_IF_HELD)?;
                let (holder, term) = fence.params();
                match tx.execute(&known, &[id.as_uuid(), &self.schema(), &holder, term]) {
                    // Nothing inserted: the lease row names another holder or term.
                    Ok(0) => return Err(fence::refused(self.schema(), fence)),
                    inserted => inserted,
                }
            }
        };
        match inserted {
            Ok(_) => Ok((tx, cache)),
            Err(e) => {
                let fail = Fail::from(e);
                if unique_violation(&fail).is_some() {
                    return Err(Fail::Domain(Error::AlreadyExists(*id)));
                }
                Err(fail)
            }
        }
    }

    pub(super) fn register_record(
        &self,
        handle: WorkerHandle,
        spec: Arc<WorkerSpec>,
    ) -> Result<Worker> {
        handle.validate()?;
        spec.validate()?;
        let id = handle.worker_id;
        let spec_json = serde_json::to_string(&*spec)
            .map_err(|e| Error::invalid(format!("spec cannot be stored: {e}")))?;
        let labels = serde_json::to_string(&spec.labels).expect("labels serialize");
        let caps: Vec<String> = spec.capabilities.iter().cloned().collect();
        let metadata = serde_json::to_string(&handle.metadata).expect("metadata serialize");
        let provider_id = handle.provider_id.as_str().to_owned();
        let provider_type = handle.provider_type.to_string();
        let slot = slot_of(&id);
        let given = self.given();
        let event = event_texts(&[EventKind::Registered {
            worker_id: id,
            provider_id: handle.provider_id.clone(),
            provider_type: handle.provider_type.clone(),
        }]);
        let max_jobs = spec.max_jobs.map(i64::from);
        // The pool the worker counts in (`pool_counts`, kept by triggers on `workers`).
        let pool = spec.labels.get(POOL_LABEL);
        let (key, now): (String, i64) = self.write("registering a worker", |conn| {
            let (mut tx, mut cache) = self.begin_registering(conn, &id)?;
            let insert = cache.prepare(
                &mut tx,
                "WITH t AS MATERIALIZED (SELECT now_ms($1) AS now, md5($2) AS key), \
                 sp AS (INSERT INTO specs (key, spec, labels, capabilities) \
                     SELECT t.key, $2, ($3::text)::jsonb, $4 FROM t ON CONFLICT (key) DO NOTHING), \
                 hb AS (INSERT INTO heartbeats (id, last_heartbeat) SELECT $5, t.now FROM t), \
                 c AS (UPDATE state_counts SET total = total + 1, s0 = s0 + 1 WHERE slot = $6), \
                 p AS (INSERT INTO provider_counts AS pc (provider_id, provider_type, slot, n) \
                     VALUES ($7, $8, $6, 1) ON CONFLICT (provider_id, provider_type, slot) \
                     DO UPDATE SET n = pc.n + 1) \
                 INSERT INTO workers (id, slot, provider_id, provider_type, resource_id, metadata, \
                     spec_key, idle_timeout_ms, max_lifetime_ms, max_jobs, state, current_job, \
                     jobs_executed, created_at, updated_at, state_changed_at, idle_since, pool) \
                 SELECT $5, $6, $7, $8, $9, $10, t.key, $11, $12, $13, 0, NULL, 0, t.now, t.now, \
                     t.now, NULL, $14 FROM t RETURNING spec_key, created_at",
            )?;
            let row = tx.query_one(
                &insert,
                &[
                    &given,
                    &spec_json,
                    &labels,
                    &caps,
                    id.as_uuid(),
                    &slot,
                    &provider_id,
                    &provider_type,
                    &handle.resource_id,
                    &metadata,
                    &dur_ms(spec.idle_timeout),
                    &dur_ms(spec.max_lifetime),
                    &max_jobs,
                    &pool,
                ],
            )?;
            let key: String = row.get(0);
            let now: i64 = row.get(1);
            let events = cache.prepare(&mut tx, INSERT_EVENTS)?;
            tx.execute(&events, &[&now, id.as_uuid(), &event])?;
            tx.commit()?;
            Ok((key, now))
        })?;
        self.inner.specs.remember(&key, &spec);
        let now = ts(now);
        Ok(Worker {
            id,
            handle: Arc::new(handle),
            spec,
            state: WorkerState::Creating,
            current_job: None,
            jobs_executed: 0,
            created_at: now,
            updated_at: now,
            state_changed_at: now,
            last_heartbeat: now,
            idle_since: None,
        })
    }

    pub(super) fn unregister_record(
        &self,
        id: &WorkerId,
        reason: TerminationReason,
    ) -> Result<Worker> {
        self.write("unregistering a worker", |conn| {
            let (mut tx, mut cache, worker, slot, now) = self.begin_locked(conn, id, true)?;
            let mut events = Vec::new();
            if let Some(job) = &worker.current_job {
                events.push(EventKind::JobLost {
                    worker_id: *id,
                    job_id: job.clone(),
                });
            }
            events.push(EventKind::Unregistered {
                worker_id: *id,
                reason,
            });
            let s = st(worker.state);
            let sql = format!(
                "WITH d AS (DELETE FROM workers WHERE id = $2), \
                 dh AS (DELETE FROM heartbeats WHERE id = $2), \
                 r AS (UPDATE known_ids SET retired = nextval('retire_seq') WHERE id = $2), \
                 c AS (UPDATE state_counts SET total = total - 1, s{s} = s{s} - 1 WHERE slot = $4), \
                 p AS (UPDATE provider_counts SET n = n - 1 \
                     WHERE provider_id = $5 AND provider_type = $6 AND slot = $4) {INSERT_EVENTS}"
            );
            let stmt = cache.prepare(&mut tx, &sql)?;
            tx.execute(
                &stmt,
                &[
                    &now,
                    id.as_uuid(),
                    &event_texts(&events),
                    &slot,
                    &worker.handle.provider_id.as_str(),
                    &worker.handle.provider_type.to_string(),
                ],
            )?;
            tx.commit()?;
            Ok(worker)
        })
    }

    /// The one path of `update_state` and `transition_if`: the guard (if any) and the state
    /// table are checked against the record locked `FOR UPDATE`, and the move, its counters and
    /// its events are written in the same transaction.
    pub(super) fn move_state(
        &self,
        id: &WorkerId,
        guard: Option<&TransitionGuard>,
        to: WorkerState,
    ) -> Result<Option<Transitioned>> {
        self.write("changing a worker's state", |conn| {
            let (mut tx, mut cache, before, slot, now) = self.begin_locked(conn, id, false)?;
            let from = before.state;
            if let Some(guard) = guard {
                if !guard.holds(from, before.idle_since, before.current_job.is_some()) {
                    return Ok(None);
                }
            }
            if from == to {
                return Ok(Some(Transitioned {
                    worker: before,
                    from,
                    lost_job: None,
                }));
            }
            let refuse = Fail::Domain(Error::InvalidTransition {
                worker_id: *id,
                from,
                to,
            });
            if !from.can_update_to(to) || (to == WorkerState::Ready && before.current_job.is_some())
            {
                return Err(refuse);
            }
            // A worker that ran its max_jobs stays out of service (issue 10): not only a drained
            // one, also one restored starting at its max_jobs, as in memory (a `Ready` worker at
            // max_jobs could take another job, and no snapshot of it could be restored).
            if to == WorkerState::Ready && jobs_exhausted(&before) {
                return Err(refuse);
            }
            let lost = if to.is_terminal() {
                before.current_job.clone()
            } else {
                None
            };
            // A starting worker that moves on has reported in: that counts as a heartbeat.
            let reported_in = from.is_starting() && !to.is_terminal();
            let mut after = moved(&before, ts(now), |w| {
                w.state = to;
                if to.is_terminal() {
                    w.current_job = None;
                }
            });
            if reported_in {
                after.last_heartbeat = after.last_heartbeat.max(ts(now));
            }
            let mut events = vec![EventKind::StateChanged {
                worker_id: *id,
                from,
                to,
            }];
            if let Some(job) = &lost {
                events.push(EventKind::JobLost {
                    worker_id: *id,
                    job_id: job.clone(),
                });
            }
            write_change(
                &mut tx,
                &mut cache,
                &Write {
                    before: &before,
                    after: &after,
                    slot,
                    heartbeat: reported_in,
                    events,
                    now,
                },
            )?;
            tx.commit()?;
            Ok(Some(Transitioned {
                worker: after,
                from,
                lost_job: lost,
            }))
        })
    }
}
