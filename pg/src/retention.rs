//! What the registry forgets, so that its tables stay bounded without a thread of its own: the
//! oldest events of the outbox (see [`events`](crate::events)) and the oldest retired ids; and
//! the `listeners` rows of readers whose sessions are gone, which would make every change
//! `NOTIFY` for nobody.
//!
//! # Retired ids
//! Ids are never reused (DESIGN.md §3, invariant 5): `known_ids` keeps every id registered,
//! and `retired` numbers the unregistered ones in retirement order (`retire_seq`). As the
//! in-memory registry remembers the last [`DEFAULT_RETIRED_ID_LIMIT`] retired ids, so does this
//! one: the retirements numbered more than the limit below the newest are deleted, so an id
//! retired longer ago than that may be registered again. Ids of live workers (`retired` null)
//! are never deleted. A retirement whose transaction took its number and then failed (a
//! connection lost during the commit) leaves a gap in the numbers: the registry then remembers
//! that many fewer.
//!
//! Both prunes run on the health-check path (`find_for_termination`, which the leading manager
//! calls every tick) at most once a minute per process, and on demand
//! ([`PostgresWorkerRegistry::prune_retired_ids`], [`PostgresWorkerRegistry::prune_events`]).
//! Each deletes an index range (`outbox.seq`; `known_ids_retired`, schema v5) below a bound
//! taken from the index's newest entry, at most [`PRUNE_BATCH`] consecutive numbers a
//! statement from the oldest: a backlog (a registry upgraded with millions of retired ids, an
//! outbox that grew while no manager ran) drains a batch a minute instead of stalling one
//! health check for minutes, and a churn of up to 50,000 retirements or events a minute never
//! builds one.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hodei_workers::{InMemoryWorkerRegistry, Result};

use crate::registry::PostgresWorkerRegistry;

/// How many retired ids a registry remembers unless told otherwise: the in-memory registry's
/// default, 2^20 (about 60 MiB of `known_ids` on disk).
pub const DEFAULT_RETIRED_ID_LIMIT: usize = InMemoryWorkerRegistry::DEFAULT_RETIRED_ID_LIMIT;

/// The least time between two prunes of one process on the health-check path.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The most consecutive numbers (retirements, event seqs) one prune statement deletes.
pub(crate) const PRUNE_BATCH: i64 = 50_000;

/// The newest retirement number that may be forgotten: `$1` below the newest (read from the
/// index's last entry); null when nothing was retired.
const PRUNE_BOUND: &str = "SELECT max(retired) - $1 FROM known_ids WHERE retired IS NOT NULL";

/// Deletes the retired ids numbered `$1` or less, and less than `$2` above the oldest (one
/// range of the index, its lower end read from its first entry).
const PRUNE_RETIRED: &str = "DELETE FROM known_ids WHERE retired IS NOT NULL \
     AND retired <= $1 \
     AND retired < (SELECT min(retired) FROM known_ids WHERE retired IS NOT NULL) + $2";

impl PostgresWorkerRegistry {
    /// Sets how many unregistered ids the registry remembers (builder style); default
    /// [`DEFAULT_RETIRED_ID_LIMIT`], as in memory
    /// (`InMemoryWorkerRegistry::with_retired_id_limit`).
    ///
    /// `register` of a remembered retired id is `AlreadyExists`, so a late call naming an old
    /// worker never acts on a new one; an id retired longer ago than the last `limit`
    /// retirements is forgotten at the next prune (at most a minute later on the health-check
    /// path, or [`prune_retired_ids`](Self::prune_retired_ids)) and may be registered again.
    /// A limit of 0 remembers none. Ids of `WorkerId::new` do not repeat: the limit matters
    /// for ids chosen by the caller. Replicas with different limits each prune to their own,
    /// so the smallest wins.
    pub fn with_retired_id_limit(self, limit: usize) -> Self {
        self.set_retired_id_limit(limit);
        self
    }

    /// As [`with_retired_id_limit`](Self::with_retired_id_limit), on a registry in use (the C
    /// and Python surfaces set it after construction); the next prune applies it.
    pub fn set_retired_id_limit(&self, limit: usize) {
        self.inner
            .retired_id_limit
            .store(limit as u64, Ordering::Relaxed);
    }

    /// The number of retired ids the registry remembers (see
    /// [`with_retired_id_limit`](Self::with_retired_id_limit)).
    pub fn retired_id_limit(&self) -> usize {
        self.inner.retired_id_limit.load(Ordering::Relaxed) as usize
    }

    /// Forgets, now, the retired ids older than the last
    /// [`retired_id_limit`](Self::retired_id_limit) retirements; returns how many. Runs
    /// 50,000 numbers a statement (each its own transaction) until none is left.
    ///
    /// # Errors
    /// `Backend` (what the statements before it deleted stays deleted).
    pub fn prune_retired_ids(&self) -> Result<u64> {
        // The bound is read once: retirements made meanwhile wait for the next prune, so the
        // loop ends even while other replicas retire workers as fast as it deletes.
        let Some(upto) = self.prune_bound(self.keep())? else {
            return Ok(0);
        };
        let mut total = 0;
        loop {
            // Each batch starts at the oldest remaining retirement: a statement that deletes
            // nothing means nothing is left below the bound.
            match self.prune_retired(upto, PRUNE_BATCH)? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    }

    /// The limit as the statements' parameter.
    fn keep(&self) -> i64 {
        i64::try_from(self.retired_id_limit()).unwrap_or(i64::MAX)
    }

    /// The newest retirement number that a limit of `keep` lets go, if any was retired.
    fn prune_bound(&self, keep: i64) -> Result<Option<i64>> {
        self.run("reading the newest retirement", |conn| {
            let stmt = conn.prepare(PRUNE_BOUND)?;
            Ok(conn.client.query_one(&stmt, &[&keep])?.get(0))
        })
    }

    /// One batch: forgets the retirements numbered `upto` or less and less than `batch` above
    /// the oldest.
    fn prune_retired(&self, upto: i64, batch: i64) -> Result<u64> {
        self.run("forgetting the oldest retired ids", |conn| {
            let stmt = conn.prepare(PRUNE_RETIRED)?;
            Ok(conn.client.execute(&stmt, &[&upto, &batch])?)
        })
    }

    /// One batch of each prune, and the listeners whose sessions are gone
    /// ([`FORGET_DEAD_LISTENERS`](crate::events::FORGET_DEAD_LISTENERS)), at most once every
    /// [`PRUNE_EVERY`] per process (the first call prunes). Failures are ignored: the health check must not fail for them, and the next
    /// call after the interval tries again.
    pub(crate) fn maybe_prune(&self) {
        {
            let mut last = self.inner.last_prune.lock();
            if last.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let _ = self.prune_outbox(crate::events::EVENTS_KEPT, PRUNE_BATCH);
        if let Ok(Some(upto)) = self.prune_bound(self.keep()) {
            let _ = self.prune_retired(upto, PRUNE_BATCH);
        }
        let _ = self.run("forgetting the listeners whose sessions are gone", |conn| {
            let stmt = conn.prepare(crate::events::FORGET_DEAD_LISTENERS)?;
            Ok(conn.client.execute(&stmt, &[])?)
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hodei_workers::{
        ProviderId, ProviderType, TerminationReason, WorkerHandle, WorkerRegistry, WorkerSpec,
    };

    use super::*;

    /// A subscriber whose connection died (its process killed, its server session ended) and
    /// was never reopened leaves its row in `listeners`, and while one is there every change
    /// of every replica `NOTIFY`s at its commit (a database-wide lock) for nobody. Before, such
    /// a row went only when another subscriber of the registry connected: a fleet whose
    /// subscribers were gone paid for them for good. The health-check path's prune forgets
    /// them too.
    #[test]
    fn the_prune_forgets_the_listeners_whose_sessions_are_gone() {
        let (schema, registry) = crate::test_support::scratch("retention_listeners");
        let mut client = postgres::Client::connect(&schema.url, postgres::NoTls).unwrap();
        client
            .batch_execute(&format!("SET search_path TO \"{}\"", schema.name))
            .unwrap();
        let listeners = |client: &mut postgres::Client| -> i64 {
            client
                .query_one("SELECT count(*) FROM listeners", &[])
                .unwrap()
                .get(0)
        };
        let subscription = registry
            .subscribe(hodei_workers::SubscribeOptions::default())
            .unwrap();
        let first: i32 = client
            .query_one("SELECT pid FROM listeners", &[])
            .unwrap()
            .get(0);
        let live = registry
            .subscribe(hodei_workers::SubscribeOptions::default())
            .unwrap();
        assert_eq!(listeners(&mut client), 2);
        // The first one's session ends; the subscription goes without reading again.
        let ended: bool = client
            .query_one("SELECT pg_terminate_backend($1, 10000)", &[&first])
            .unwrap()
            .get(0);
        assert!(ended);
        let _ = live.try_recv();
        drop(subscription);
        assert_eq!(listeners(&mut client), 2, "its row is left behind");
        registry.maybe_prune();
        assert_eq!(
            listeners(&mut client),
            1,
            "only the live subscriber's row stays"
        );
        drop(live);
        assert_eq!(listeners(&mut client), 0);
    }

    /// A batch deletes at most its count of consecutive numbers from the oldest, and never
    /// into the newest `keep`: the backlog drains batch by batch, in order.
    #[test]
    fn a_backlog_is_forgotten_a_batch_at_a_time_oldest_first() {
        let (schema, registry) = crate::test_support::scratch("retention_unit");
        let (url, name) = (&schema.url, &schema.name);
        // A subscriber of this handle that never reads (capacity 2): what the outbox prune
        // below deletes is counted in its drops, as in memory, not lost as a bare seq gap.
        let idle = registry
            .subscribe(hodei_workers::SubscribeOptions::default().capacity(2))
            .unwrap();
        let provider = ProviderId::new("p").unwrap();
        let spec = Arc::new(WorkerSpec::new("img"));
        let ids: Vec<_> = (0..7)
            .map(|_| {
                let handle = WorkerHandle::new(provider.clone(), ProviderType::Docker, "r");
                let id = registry.register(handle, spec.clone()).unwrap().id;
                registry
                    .unregister(&id, TerminationReason::Requested)
                    .unwrap();
                id
            })
            .collect();
        let remembered = || registry.snapshot().unwrap().retired_ids;
        // Keep 2 of 7 retirements (numbers 1 to 7: up to 5 may go), batches of 2: 2, 2, 1,
        // then nothing.
        let upto = registry.prune_bound(2).unwrap();
        assert_eq!(upto, Some(5));
        let upto = upto.unwrap();
        assert_eq!(registry.prune_retired(upto, 2).unwrap(), 2);
        assert_eq!(remembered(), ids[2..]);
        assert_eq!(registry.prune_retired(upto, 2).unwrap(), 2);
        // A retirement after the bound was read is left for the next prune.
        let late = registry
            .register(
                WorkerHandle::new(provider.clone(), ProviderType::Docker, "r"),
                spec.clone(),
            )
            .unwrap()
            .id;
        registry
            .unregister(&late, TerminationReason::Requested)
            .unwrap();
        assert_eq!(registry.prune_retired(upto, 2).unwrap(), 1);
        assert_eq!(registry.prune_retired(upto, 2).unwrap(), 0);
        assert_eq!(remembered(), [ids[5], ids[6], late]);
        // The outbox the same way: seqs 1 to 16 (8 workers registered and unregistered), keep
        // 3 below the newest (seqs 13 to 16 stay), batches of 5: 5, 5, 2.
        let (mut deleted, mut rounds) = (0, 0);
        loop {
            match registry.prune_outbox(3, 5).unwrap() {
                0 => break,
                n => {
                    assert!(n <= 5, "a batch of {n}");
                    deleted += n;
                    rounds += 1;
                }
            }
        }
        assert_eq!((deleted, rounds), (12, 3));
        // 16 events: seqs 1 and 2 queued, the other 14 dropped; 12 of them were pruned.
        assert_eq!(idle.dropped(), 14);
        assert_eq!(
            idle.drain().iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2]
        );

        // The statements that read the retired ids (the prune's bound and batch, a snapshot's
        // list), as the registry sends them, read their index (v5): with sequential scans
        // ruled out, each plan names it.
        let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
        client
            .batch_execute(&format!(
                "SET search_path TO \"{name}\"; SET enable_seqscan = off"
            ))
            .unwrap();
        for (sql, args) in [
            (PRUNE_BOUND, "(3)"),
            (PRUNE_RETIRED, "(4, 50000)"),
            (crate::snapshot::RETIRED_IDS, ""),
        ] {
            client
                .batch_execute(&format!("DEALLOCATE ALL; PREPARE q AS {sql}"))
                .unwrap();
            let plan: Vec<String> = client
                .query(&format!("EXPLAIN EXECUTE q{args}"), &[])
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert!(
                plan.iter().any(|line| line.contains("known_ids_retired")),
                "plan of {sql}: {plan:?}"
            );
        }
    }
}
