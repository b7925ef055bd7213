//! Store-side fencing: the view of a registry a leading manager writes through
//! ([`WorkerRegistry::fenced`]). Each write transaction of the view reads the lease row
//! `FOR SHARE` in its first statement, and goes on only while the row still names the view's
//! holder and term. A transaction that starts by locking a worker's record reads it in that
//! statement ([`JOIN`]); any other runs [`check`] first.
//!
//! Why this is enough: a takeover is an `UPDATE` of that row (`crate::leadership`), which waits
//! for the share lock of every write transaction in flight and is then seen by every later one.
//! So a write either commits before the new term exists (the new leader's takeover reconcile
//! reads it) or finds the new term and is refused with nothing applied. The manager's own fence
//! (its trust window) already stops it in most cases; this closes the gap between that check
//! and the write (a pause of the old leader, a wait for one of the pool's connections).

use std::sync::Arc;

use hodei_workers::{Error, Leadership, Term, WorkerRegistry};

use super::change::WriteCache;
use super::{Fail, PostgresWorkerRegistry, Step};

/// Holds the lease row, if it still names `$2` under term `$3`, until the transaction ends.
const CHECK: &str =
    "SELECT 1 FROM manager_leases WHERE name = $1 AND holder = $2 AND term = $3 FOR SHARE";

/// The same check as a join of a statement that reads one row (a worker's lock, see
/// `change::begin_locked`), with the lease's name, holder and term as `$3`, `$4`, `$5`: it
/// holds the lease row as [`CHECK`] does, and its column `f.ok` is true while the row names
/// the holder and term, null otherwise. It saves the round trip of a separate check. When the
/// statement finds no row, the join may not have run: the caller runs [`check`] then.
pub(crate) const JOIN: &str = " LEFT JOIN (SELECT true AS ok FROM manager_leases \
    WHERE name = $3 AND holder = $4 AND term = $5 FOR SHARE) f ON true";

/// The holder and term a fenced view writes under.
#[derive(Debug)]
pub(crate) struct Fence {
    holder: String,
    term: i64,
}

/// The key of the lease of registry `schema` on the server `config` points to: equal for the
/// lease and the registry exactly when the lease row lives in the registry's store.
pub(crate) fn fence_key(config: &postgres::Config, schema: &str) -> String {
    format!(
        "postgresql {:?} {:?} {:?} {schema}",
        config.get_hosts(),
        config.get_ports(),
        config.get_dbname()
    )
}

/// Runs the check in `tx`, before any write: refused, the transaction applies nothing.
pub(crate) fn check(
    tx: &mut postgres::Transaction<'_>,
    cache: &mut WriteCache<'_>,
    schema: &str,
    fence: &Fence,
) -> Step<()> {
    let stmt = cache.prepare(tx, CHECK)?;
    match tx.query_opt(&stmt, &[&schema, &fence.holder, &fence.term])? {
        Some(_) => Ok(()),
        None => Err(refused(schema, fence)),
    }
}

/// The error of a write the check refused.
pub(crate) fn refused(schema: &str, fence: &Fence) -> Fail {
    Fail::Domain(Error::NotLeader(format!(
        "{} no longer holds term {} of the lease of registry {schema}: another replica took it, \
         and the store refused this write",
        fence.holder, fence.term
    )))
}

impl Fence {
    /// The holder and term, as [`JOIN`]'s `$4` and `$5`.
    pub(crate) fn params(&self) -> (&str, &i64) {
        (&self.holder, &self.term)
    }
}

impl PostgresWorkerRegistry {
    /// The view of [`WorkerRegistry::fenced`]: the same registry (pool, caches, subscribers),
    /// its write transactions checking `term`. `None` for a lease of another store.
    pub(super) fn fenced_view(
        &self,
        lease: &dyn Leadership,
        term: Term,
    ) -> Option<Arc<dyn WorkerRegistry>> {
        let own = fence_key(self.inner.pool.config(), self.schema());
        if lease.fence_key() != Some(own.as_str()) {
            return None;
        }
        Some(Arc::new(PostgresWorkerRegistry {
            inner: Arc::clone(&self.inner),
            fence: Some(Arc::new(Fence {
                holder: lease.holder().to_owned(),
                term: i64::try_from(term).unwrap_or(i64::MAX),
            })),
        }))
    }
}
