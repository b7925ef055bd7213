//! Heartbeats: a narrow table of their own, and callers on several threads coalesced into one
//! statement (a group commit without a thread).
//!
//! A caller that finds fewer than [`MAX_BATCHES`] batches running becomes a *leader*: it takes
//! every heartbeat queued so far (its own included), runs them as one `UPDATE … FROM
//! unnest($ids)` and hands each caller its own answer (`NotFound` for an unknown id). Callers
//! arriving while all batches run queue and wait on a condvar; when a batch is done, one of
//! them leads the next batch with all that queued in the meantime. Under load, batches grow by
//! themselves to what arrives during one round trip; a lone caller pays one single-row
//! statement.

use std::collections::{BTreeSet, HashMap};

use hodei_workers::{Error, Result, WorkerId};
use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::registry::PostgresWorkerRegistry;

/// Batches in flight at once: several round trips overlap (the pool has 8 connections), and
/// batches still grow under load.
pub(crate) const MAX_BATCHES: usize = 3;

#[derive(Debug, Default)]
struct State {
    /// Batches running.
    leading: usize,
    next_ticket: u64,
    pending: Vec<(u64, WorkerId)>,
    answers: HashMap<u64, Result<()>>,
}

/// The heartbeat batcher of one registry.
#[derive(Debug, Default)]
pub(crate) struct Coalescer {
    state: Mutex<State>,
    done: Condvar,
}

impl Coalescer {
    /// One caller's heartbeat, answered when the batch holding it is done.
    pub fn heartbeat(&self, registry: &PostgresWorkerRegistry, id: WorkerId) -> Result<()> {
        let mut state = self.state.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.pending.push((ticket, id));
        loop {
            if let Some(answer) = state.answers.remove(&ticket) {
                return answer;
            }
            // Lead only if our heartbeat is still queued (not in a batch running now).
            if state.leading < MAX_BATCHES && state.pending.iter().any(|(t, _)| *t == ticket) {
                self.lead(registry, &mut state);
                continue;
            }
            self.done.wait(&mut state);
        }
    }

    /// Runs one batch of everything queued; answers every caller in it.
    fn lead(&self, registry: &PostgresWorkerRegistry, state: &mut MutexGuard<'_, State>) {
        state.leading += 1;
        let batch = std::mem::take(&mut state.pending);
        let ids: Vec<WorkerId> = batch.iter().map(|(_, id)| *id).collect();
        // The database call runs without the mutex: callers keep queueing meanwhile.
        let results = MutexGuard::unlocked(state, || heartbeat_many(registry, &ids));
        match results {
            Ok(answers) => {
                for ((ticket, _), answer) in batch.into_iter().zip(answers) {
                    state.answers.insert(ticket, answer);
                }
            }
            Err(e) => {
                for (ticket, _) in batch {
                    state.answers.insert(ticket, Err(e.clone()));
                }
            }
        }
        state.leading -= 1;
        self.done.notify_all();
    }
}

/// One heartbeat (`now` is greatest of the stored and the current time: a heartbeat never
/// goes back). Updates the narrow table only: a HOT update, no index touched.
const ONE: &str = "UPDATE heartbeats SET last_heartbeat = greatest(last_heartbeat, now_ms($2)) \
    WHERE id = $1";

/// Many heartbeats in one statement; returns the ids found.
const MANY: &str = "WITH t AS MATERIALIZED (SELECT now_ms($2) AS now) \
    UPDATE heartbeats h SET last_heartbeat = greatest(h.last_heartbeat, t.now) \
    FROM t, unnest($1::uuid[]) AS x(id) WHERE h.id = x.id RETURNING h.id";

/// Many heartbeats and their `HeartbeatReceived` events (while a subscriber of this registry
/// wants them): one event per heartbeat asked for (`$3`, repeats included), as callers of the
/// in-memory registry each get theirs. The sort makes every row update (and lock wait, where a
/// deadlock would roll the statement back) happen before the first seq is taken: a retried
/// batch leaves no gap. The seq of each event is taken under its heartbeat row's lock, which
/// `unregister` also takes before its own seq: no heartbeat event follows `Unregistered`.
const MANY_WITH_EVENTS: &str = "WITH t AS MATERIALIZED (SELECT now_ms($2) AS now), \
    u AS (UPDATE heartbeats h SET last_heartbeat = greatest(h.last_heartbeat, t.now) \
        FROM t, unnest($1::uuid[]) AS x(id) WHERE h.id = x.id RETURNING h.id, t.now) \
    INSERT INTO outbox (xid, seq, at, worker_id, heartbeat, kind) \
    SELECT pg_current_xact_id(), nextval('event_seq'), u.now, u.id, true, \
        json_build_object('type', 'heartbeat_received', 'worker_id', u.id)::text \
    FROM u JOIN unnest($3::uuid[]) AS each(id) ON each.id = u.id ORDER BY u.id \
    RETURNING worker_id";

/// Heartbeats for `ids` in one statement, one answer per id in order (`NotFound` for an
/// unknown one; a repeated id gets the same answer each time).
///
/// # Errors
/// `Backend` when the statement fails (then no heartbeat of the batch was recorded).
pub(crate) fn heartbeat_many(
    registry: &PostgresWorkerRegistry,
    ids: &[WorkerId],
) -> Result<Vec<Result<()>>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let given = registry.given();
    let events = registry
        .inner
        .heartbeat_subscribers
        .load(std::sync::atomic::Ordering::Relaxed)
        > 0;
    // Sorted and unique: rows are locked in one order by every batch (fewer deadlocks
    // between replicas; one is retried whole anyway).
    let unique: BTreeSet<WorkerId> = ids.iter().copied().collect();
    let found: BTreeSet<WorkerId> = if unique.len() == 1 && !events {
        let id = *unique.first().expect("one");
        let n = registry.run("recording a heartbeat", |conn| {
            let stmt = conn.prepare(ONE)?;
            Ok(conn.client.execute(&stmt, &[id.as_uuid(), &given])?)
        })?;
        if n == 1 {
            unique
        } else {
            BTreeSet::new()
        }
    } else {
        let uuids: Vec<uuid::Uuid> = unique.iter().map(|id| *id.as_uuid()).collect();
        let every: Vec<uuid::Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
        registry.run("recording heartbeats", |conn| {
            let rows = if events {
                let stmt = conn.prepare(MANY_WITH_EVENTS)?;
                conn.client.query(&stmt, &[&uuids, &given, &every])?
            } else {
                let stmt = conn.prepare(MANY)?;
                conn.client.query(&stmt, &[&uuids, &given])?
            };
            Ok(rows
                .iter()
                .map(|r| {
                    let id: uuid::Uuid = r.get(0);
                    WorkerId::from_bytes(*id.as_bytes()).unwrap_or_default()
                })
                .collect())
        })?
    };
    Ok(ids
        .iter()
        .map(|id| {
            if found.contains(id) {
                Ok(())
            } else {
                Err(Error::NotFound(*id))
            }
        })
        .collect())
}
