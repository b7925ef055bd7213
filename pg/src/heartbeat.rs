//! Heartbeats: a narrow table of their own, and callers on several threads coalesced into one
//! statement (a group commit without a thread).
//!
//! A caller that finds fewer than [`MAX_BATCHES`] batches running becomes a *leader*: it takes
//! every heartbeat queued so far (its own included), runs them as one `UPDATE … FROM
//! unnest($ids)` and hands each caller its own answer (`NotFound` for an unknown id). Callers
//! arriving while all batches run join the batch being formed and sleep on that batch's own
//! condvar; when a running batch is done, its leader wakes its own callers (each once, with its
//! answer) and hands the freed slot to one caller of the batch being formed, which leads it.
//! Under load, batches grow by themselves to what arrives during one round trip; a lone caller
//! pays one single-row statement.
//!
//! Why per-batch condvars: with one condvar for all, every finished batch woke every waiting
//! caller (64 threads on 2 cores: a thundering herd of threads waking to find their answer not
//! there yet). Now a caller wakes once for its answer, and at most once more to lead.
//!
//! Heartbeats without events run on connections of their own that commit asynchronously
//! ([`SESSION`]: why, and the one thing it risks).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use hodei_workers::{Error, Result, WorkerId};
use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::registry::PostgresWorkerRegistry;

/// Batches in flight at once. Several round trips overlap, so the database always has a batch
/// to work on while others travel or wait for their callers; batches still grow under load.
/// Measured with 64 callers on 2 shared cores (pg/examples/bench_pg.rs, 20k workers, load
/// 20–40): 1 batch 19k/s, 2: 27–34k/s, 3: 33–40k/s, 4: 41–45k/s, 6: 47–50k/s, 8: 48k/s.
pub(crate) const MAX_BATCHES: usize = 6;

/// Connections of the heartbeat pool: the coalesced batches, and a couple more for hosts
/// calling `heartbeat_many` on threads of their own.
pub(crate) const POOL_SIZE: usize = MAX_BATCHES + 2;

/// The batch callers are joining now.
#[derive(Debug)]
struct Forming {
    number: u64,
    ids: Vec<WorkerId>,
    /// Its callers sleep here.
    wake: Arc<Condvar>,
}

impl Forming {
    fn new(number: u64) -> Forming {
        Forming {
            number,
            ids: Vec::new(),
            wake: Arc::new(Condvar::new()),
        }
    }
}

/// A batch that ran, until each of its callers has taken its answer.
#[derive(Debug)]
struct Done {
    answers: Result<Vec<Result<()>>>,
    unread: usize,
}

#[derive(Debug)]
struct State {
    /// Batches running.
    leading: usize,
    forming: Forming,
    done: HashMap<u64, Done>,
}

impl Default for State {
    fn default() -> Self {
        State {
            leading: 0,
            forming: Forming::new(0),
            done: HashMap::new(),
        }
    }
}

/// The heartbeat batcher of one registry.
#[derive(Debug, Default)]
pub(crate) struct Coalescer {
    state: Mutex<State>,
}

impl Coalescer {
    /// One caller's heartbeat, answered when the batch holding it is done.
    ///
    /// A caller that cannot block (on a thread that drives an async runtime) is answered
    /// `Backend` at once and joins no batch: leading one, it would fail every caller of it.
    pub fn heartbeat(&self, registry: &PostgresWorkerRegistry, id: WorkerId) -> Result<()> {
        if !crate::error::may_block() {
            return Err(Error::Backend(crate::error::ASYNC_CONTEXT.to_owned()));
        }
        let mut state = self.state.lock();
        let number = state.forming.number;
        let index = state.forming.ids.len();
        state.forming.ids.push(id);
        let wake = Arc::clone(&state.forming.wake);
        loop {
            if let Some(done) = state.done.get_mut(&number) {
                let answer = match &done.answers {
                    Ok(answers) => answers[index].clone(),
                    Err(e) => Err(e.clone()),
                };
                done.unread -= 1;
                if done.unread == 0 {
                    state.done.remove(&number);
                }
                return answer;
            }
            // Lead only if our batch is still forming (not running now) and a slot is free.
            if state.forming.number == number && state.leading < MAX_BATCHES {
                Self::lead(registry, &mut state);
                continue;
            }
            wake.wait(&mut state);
        }
    }

    /// Runs the batch being formed; answers every caller in it.
    ///
    /// A panic while it runs (the registry's [`Clock`](hodei_workers::Clock) is the host's
    /// code) goes on in the leader's thread, as it would for a call of its own, once the
    /// others are answered `Backend` and the slot is given back: before, they waited for an
    /// answer for ever, and the slot was lost with them.
    fn lead(registry: &PostgresWorkerRegistry, state: &mut MutexGuard<'_, State>) {
        state.leading += 1;
        let next = Forming::new(state.forming.number + 1);
        let batch = std::mem::replace(&mut state.forming, next);
        // The database call runs without the mutex: callers keep queueing meanwhile.
        let run = MutexGuard::unlocked(state, || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                heartbeat_many(registry, &batch.ids)
            }))
        });
        let (answers, panic) = match run {
            Ok(answers) => (answers, None),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let error = Error::Backend(format!(
                    "recording heartbeats: the thread running this batch of them panicked \
                     ({what}); none was recorded"
                ));
                (Err(error), Some(panic))
            }
        };
        // The leader reads its own answer, unless it goes on panicking.
        let unread = batch.ids.len() - usize::from(panic.is_some());
        if unread > 0 {
            state.done.insert(batch.number, Done { answers, unread });
        }
        state.leading -= 1;
        // Our callers...
        batch.wake.notify_all();
        // ... and the freed slot to one caller of the batch formed meanwhile, if any.
        if !state.forming.ids.is_empty() {
            state.forming.wake.notify_one();
        }
        if let Some(panic) = panic {
            std::panic::resume_unwind(panic);
        }
    }
}

/// The session of the heartbeat connections (the registry's `heartbeat_pool`): heartbeats
/// commit asynchronously. The commit returns without waiting for the WAL flush, which on a
/// durable server is the whole cost of a heartbeat (64 callers would otherwise be capped at
/// 64 ÷ fsync latency heartbeats a second, whatever the batching). The price, on a crash of the
/// database server only: the heartbeats of the last moments before it (at most 3 ×
/// `wal_writer_delay`, 600 ms by default) may be lost, so those workers look that much more
/// silent; a heartbeat is superseded by the next anyway. Nothing else commits this way: no
/// state change, no event (heartbeats with `HeartbeatReceived` events, [`MANY_WITH_EVENTS`],
/// run on the registry's main pool and commit synchronously, since a subscriber may already
/// have read an event that a crash would otherwise take back).
pub(crate) const SESSION: &str = "SET synchronous_commit = off";

/// One heartbeat (`now` is greatest of the stored and the current time: a heartbeat never
/// goes back). Updates the narrow table only: a HOT update, no index touched.
const ONE: &str = "UPDATE heartbeats SET last_heartbeat = greatest(last_heartbeat, now_ms($2)) \
    WHERE id = $1";

/// Many heartbeats (`$1`: distinct ids) in one statement; returns one row: how many were
/// found, and the ids found only when some were not (usually all are: then no id travels back,
/// the reply is one short row instead of one row per heartbeat).
const MANY: &str = "WITH t AS MATERIALIZED (SELECT now_ms($2) AS now), \
    u AS (UPDATE heartbeats h SET last_heartbeat = greatest(h.last_heartbeat, t.now) \
        FROM t, unnest($1::uuid[]) AS x(id) WHERE h.id = x.id RETURNING h.id) \
    SELECT count(*), CASE WHEN count(*) < cardinality($1::uuid[]) THEN array_agg(u.id) END \
    FROM u";

/// Many heartbeats and their `HeartbeatReceived` events (while a subscriber of this registry
/// wants them): one event per heartbeat asked for (`$3`, repeats included), in the order of
/// `$3`, as callers of the in-memory registry each get theirs and `heartbeat_many` publishes
/// them in the order of its ids (before, they were in id order). The sort makes every row
/// update (and lock wait, where a deadlock would roll the statement back) happen before the
/// first seq is taken: a retried batch leaves no gap. The seq of each event is taken under its
/// heartbeat row's lock, which `unregister` also takes before its own seq: no heartbeat event
/// follows `Unregistered`. Run in a transaction of its own (see [`heartbeat_many`]).
const MANY_WITH_EVENTS: &str = "WITH t AS MATERIALIZED (SELECT now_ms($2) AS now), \
    u AS (UPDATE heartbeats h SET last_heartbeat = greatest(h.last_heartbeat, t.now) \
        FROM t, unnest($1::uuid[]) AS x(id) WHERE h.id = x.id RETURNING h.id, t.now) \
    INSERT INTO outbox (xid, seq, at, worker_id, heartbeat, kind) \
    SELECT pg_current_xact_id(), nextval('event_seq'), u.now, u.id, true, \
        json_build_object('type', 'heartbeat_received', 'worker_id', u.id)::text \
    FROM u JOIN unnest($3::uuid[]) WITH ORDINALITY AS each(id, o) ON each.id = u.id \
    ORDER BY each.o \
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
        let n = registry.run_heartbeat("recording a heartbeat", |conn| {
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
        // `None`: every id was found (the usual answer, without a set built from the reply).
        let found: Option<Vec<uuid::Uuid>> = if events {
            // In a transaction of its own, not autocommitted: not idempotent (a second run
            // writes its events twice), it may run again only when nothing of it was sent, and
            // its `BEGIN` is what tells so. The client learns that the server closed a pooled
            // connection between two calls only by reading after it sent its next request
            // (the pool does not probe a connection in steady use): as one statement, that
            // was the heartbeat itself, which then answered `Backend` though the server never
            // received it. Two round trips more, beside the commit's WAL flush (synchronous
            // here) that costs most.
            registry.write("recording heartbeats", |conn| {
                let (client, statements) = conn.parts();
                let mut tx = crate::registry::begin(client)?;
                let stmt = match statements.get(MANY_WITH_EVENTS) {
                    Some(stmt) => stmt.clone(),
                    None => {
                        let stmt = tx.prepare(MANY_WITH_EVENTS)?;
                        statements.insert(MANY_WITH_EVENTS.to_owned(), stmt.clone());
                        stmt
                    }
                };
                let rows = tx.query(&stmt, &[&uuids, &given, &every])?;
                tx.commit()?;
                Ok(Some(rows.iter().map(|r| r.get(0)).collect()))
            })?
        } else {
            registry.run_heartbeat("recording heartbeats", |conn| {
                let stmt = conn.prepare(MANY)?;
                let row = conn.client.query_one(&stmt, &[&uuids, &given])?;
                let n: i64 = row.get(0);
                Ok((n as usize != uuids.len())
                    .then(|| row.get::<_, Option<Vec<uuid::Uuid>>>(1).unwrap_or_default()))
            })?
        };
        match found {
            None => unique,
            Some(found) => found
                .iter()
                .map(|id| WorkerId::from_bytes(*id.as_bytes()).unwrap_or_default())
                .collect(),
        }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use hodei_workers::{ProviderId, ProviderType, WorkerHandle, WorkerRegistry, WorkerSpec};

    use super::*;

    /// Waits (a hang guard, not a timing) until `done` holds of the coalescer's state.
    fn until(registry: &PostgresWorkerRegistry, what: &str, done: impl Fn(&State) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(&registry.inner.heartbeats.state.lock()) {
            assert!(Instant::now() < deadline, "waited too long for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A clock that panics once armed: the registry's clock is the host's code.
    #[derive(Debug)]
    struct ArmedClock {
        inner: hodei_workers::ManualClock,
        armed: std::sync::atomic::AtomicBool,
    }

    impl hodei_workers::Clock for ArmedClock {
        fn now(&self) -> hodei_workers::Timestamp {
            if self.armed.load(std::sync::atomic::Ordering::SeqCst) {
                panic!("the host's clock failed");
            }
            self.inner.now()
        }
    }

    /// Holds each of `ids`' heartbeat rows locked by a transaction of its own, so that a batch
    /// heartbeating one of them runs until that transaction ends.
    fn lock_rows(schema: &crate::test_support::Schema, ids: &[WorkerId]) -> Vec<postgres::Client> {
        ids.iter()
            .map(|id| {
                let mut client = postgres::Client::connect(&schema.url, postgres::NoTls).unwrap();
                client
                    .batch_execute(&format!("SET search_path TO \"{}\"; BEGIN", schema.name))
                    .unwrap();
                client
                    .execute(
                        "SELECT 1 FROM heartbeats WHERE id = $1 FOR UPDATE",
                        &[id.as_uuid()],
                    )
                    .unwrap();
                client
            })
            .collect()
    }

    /// Registers `MAX_BATCHES` workers whose heartbeat rows are then locked (a batch
    /// heartbeating one of them runs until its locker's transaction ends, so as many batches
    /// hold every slot) and one more whose row is free: `(held, free, lockers)`.
    fn every_batch_slot_ready_to_hold(
        schema: &crate::test_support::Schema,
        registry: &PostgresWorkerRegistry,
    ) -> (Vec<WorkerId>, WorkerId, Vec<postgres::Client>) {
        let provider = ProviderId::new("p").unwrap();
        let spec = Arc::new(WorkerSpec::new("img"));
        let register = || {
            let handle = WorkerHandle::new(provider.clone(), ProviderType::Docker, "r");
            registry.register(handle, spec.clone()).unwrap().id
        };
        let held: Vec<WorkerId> = (0..MAX_BATCHES).map(|_| register()).collect();
        let free = register();
        let lockers = lock_rows(schema, &held);
        (held, free, lockers)
    }

    /// The thread leading a batch panics (the host's clock, read for the batch's statement):
    /// its panic goes on, as for a call of its own, but the other callers of the batch are
    /// answered `Backend`, and the batch's slot is given back. Before, they waited for an
    /// answer for ever (a heartbeat that never returns), and the slot stayed taken: six such
    /// panics and no heartbeat of the registry would ever return again.
    #[test]
    fn a_panic_of_a_batchs_leader_answers_the_other_callers_and_frees_its_slot() {
        let url = crate::test_support::url();
        let schema = crate::test_support::Schema {
            url: url.clone(),
            name: format!("heartbeat_panic_{}", std::process::id()),
        };
        let clock = Arc::new(ArmedClock {
            inner: hodei_workers::ManualClock::new(1_700_000_000_000),
            armed: std::sync::atomic::AtomicBool::new(false),
        });
        let registry =
            PostgresWorkerRegistry::connect_with_clock(&url, &schema.name, clock.clone()).unwrap();
        let (held, free, mut lockers) = every_batch_slot_ready_to_hold(&schema, &registry);
        // Threads of their own, not scoped: a caller that never returns fails the test
        // instead of hanging it.
        let registry = Arc::new(registry);
        let running: Vec<_> = held
            .iter()
            .map(|id| {
                let (registry, id) = (Arc::clone(&registry), *id);
                std::thread::spawn(move || registry.heartbeat(&id))
            })
            .collect();
        until(&registry, "every batch running", |state| {
            state.leading == MAX_BATCHES
        });
        // Two callers queue in the batch being formed; the clock fails from now on.
        let (answered, answer) = std::sync::mpsc::channel();
        let callers: Vec<_> = (0..2)
            .map(|_| {
                let (answered, registry) = (answered.clone(), Arc::clone(&registry));
                std::thread::spawn(move || {
                    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        registry.heartbeat(&free)
                    }));
                    let _ = answered.send(got.is_err());
                    got
                })
            })
            .collect();
        until(&registry, "both callers queued", |state| {
            state.forming.ids.len() == 2
        });
        clock.armed.store(true, std::sync::atomic::Ordering::SeqCst);
        // One batch done (it read the clock before it blocked): its slot goes to a caller
        // queued, which leads their batch and panics.
        lockers[0].batch_execute("COMMIT").unwrap();
        let mut panicked = 0;
        for _ in 0..2 {
            // A hang guard, not a timing.
            let got = answer.recv_timeout(Duration::from_secs(30));
            assert!(got.is_ok(), "a caller of the batch waits for ever");
            panicked += usize::from(got.unwrap());
        }
        assert_eq!(
            panicked, 1,
            "the leader's panic goes on, in its thread only"
        );
        for caller in callers {
            match caller.join().unwrap() {
                Err(_) => {}
                Ok(Err(Error::Backend(message))) => {
                    assert!(message.contains("panicked"), "{message}")
                }
                Ok(other) => panic!("the other caller: {other:?}"),
            }
        }
        clock
            .armed
            .store(false, std::sync::atomic::Ordering::SeqCst);
        for locker in &mut lockers[1..] {
            locker.batch_execute("COMMIT").unwrap();
        }
        for batch in running {
            assert_eq!(batch.join().unwrap(), Ok(()));
        }
        let state = registry.inner.heartbeats.state.lock();
        assert_eq!(
            (state.leading, state.done.len()),
            (0, 0),
            "every slot given back, no answer left unread"
        );
        drop(state);
        assert_eq!(registry.heartbeat(&free), Ok(()));
        drop(registry);
    }

    /// A caller on a thread that drives an async runtime cannot make the blocking client's
    /// calls: it is answered `Backend` ("use spawn_blocking"). Before, it joined the batch
    /// being formed like any caller and, when it came to lead that batch, ran the batch's
    /// statement where it could not block: every caller of the batch, from plain threads too,
    /// was answered the async-runtime error meant for it, their heartbeats unrecorded. Here the
    /// batches are all running (each held by a row lock), the runtime's caller queues first and
    /// a plain thread's caller after it; one running batch is let go, whose slot goes to the
    /// first caller queued.
    #[test]
    fn a_caller_inside_an_async_runtime_never_answers_for_the_batch_it_joins() {
        let (schema, registry) = crate::test_support::scratch("heartbeat_async");
        let (held, free, mut lockers) = every_batch_slot_ready_to_hold(&schema, &registry);
        std::thread::scope(|s| {
            let registry = &registry;
            let running: Vec<_> = held
                .iter()
                .map(|id| s.spawn(move || registry.heartbeat(id)))
                .collect();
            until(registry, "every batch running", |state| {
                state.leading == MAX_BATCHES
            });
            let in_runtime = s.spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                runtime.block_on(async { registry.heartbeat(&free) })
            });
            // Queued (before the fix), or answered at once.
            let deadline = Instant::now() + Duration::from_secs(30);
            while registry
                .inner
                .heartbeats
                .state
                .lock()
                .forming
                .ids
                .is_empty()
                && !in_runtime.is_finished()
            {
                assert!(Instant::now() < deadline, "the runtime's caller hangs");
                std::thread::sleep(Duration::from_millis(5));
            }
            let queued = registry.inner.heartbeats.state.lock().forming.ids.len();
            let plain = s.spawn(move || registry.heartbeat(&free));
            until(registry, "the plain caller queued", |state| {
                state.forming.ids.len() == queued + 1
            });
            // One batch done: its slot goes to a caller queued.
            lockers[0].batch_execute("COMMIT").unwrap();
            let plain = plain.join().unwrap();
            for locker in &mut lockers[1..] {
                locker.batch_execute("COMMIT").unwrap();
            }
            for batch in running {
                assert_eq!(batch.join().unwrap(), Ok(()));
            }
            assert_eq!(plain, Ok(()), "the plain thread's heartbeat");
            match in_runtime.join().unwrap() {
                Err(Error::Backend(message)) => {
                    assert!(message.contains("spawn_blocking"), "{message}")
                }
                other => panic!("the runtime's caller: {other:?}"),
            }
        });
    }
}
