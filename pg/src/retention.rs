//! What the registry forgets, so that its tables stay bounded without a thread of its own: the
//! oldest events of the outbox (see [`events`](crate::events)) and the oldest retired ids.
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
//! Each is one statement on an index range (`outbox.seq`; `known_ids_retired`, schema v5).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hodei_workers::{InMemoryWorkerRegistry, Result};

use crate::registry::PostgresWorkerRegistry;

/// How many retired ids a registry remembers unless told otherwise: the in-memory registry's
/// default, 2^20 (about 60 MiB of `known_ids` on disk).
pub const DEFAULT_RETIRED_ID_LIMIT: usize = InMemoryWorkerRegistry::DEFAULT_RETIRED_ID_LIMIT;

/// The least time between two prunes of one process on the health-check path.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Deletes the retired ids numbered `$1` or more below the newest retirement (the index's
/// range below a bound that its own last entry gives).
const PRUNE_RETIRED: &str = "DELETE FROM known_ids WHERE retired IS NOT NULL AND retired <= \
     (SELECT max(retired) FROM known_ids WHERE retired IS NOT NULL) - $1";

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
        self.inner
            .retired_id_limit
            .store(limit as u64, Ordering::Relaxed);
        self
    }

    /// The number of retired ids the registry remembers (see
    /// [`with_retired_id_limit`](Self::with_retired_id_limit)).
    pub fn retired_id_limit(&self) -> usize {
        self.inner.retired_id_limit.load(Ordering::Relaxed) as usize
    }

    /// Forgets, now, the retired ids older than the last
    /// [`retired_id_limit`](Self::retired_id_limit) retirements; returns how many.
    ///
    /// # Errors
    /// `Backend`.
    pub fn prune_retired_ids(&self) -> Result<u64> {
        let keep = i64::try_from(self.retired_id_limit()).unwrap_or(i64::MAX);
        self.run("forgetting the oldest retired ids", |conn| {
            let stmt = conn.prepare(PRUNE_RETIRED)?;
            Ok(conn.client.execute(&stmt, &[&keep])?)
        })
    }

    /// Both prunes, at most once every [`PRUNE_EVERY`] per process (the first call prunes).
    /// Failures are ignored: the health check must not fail for them, and the next call after
    /// the interval tries again.
    pub(crate) fn maybe_prune(&self) {
        {
            let mut last = self.inner.last_prune.lock();
            if last.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let _ = self.prune_outbox();
        let _ = self.prune_retired_ids();
    }
}
