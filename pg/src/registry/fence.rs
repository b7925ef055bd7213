//! Store-side fencing: the view of a registry a leading manager writes through
//! ([`WorkerRegistry::fenced`]). Each write transaction of the view reads the lease row
//! `FOR SHARE` in its first statement, and goes on only while the row still names the view's
//! holder and term. A transaction that starts by locking a worker's record reads it in that
//! statement, and `register` in its first insert ([`held`]); any other runs [`check`] first.
//!
//! Why this is enough: a takeover is an `UPDATE` of that row (`crate::leadership`), which waits
//! for the share lock of every write transaction in flight and is then seen by every later one.
//! So a write either commits before the new term exists (the new leader's takeover reconcile
//! reads it) or finds the new term and is refused with nothing applied. The manager's own fence
//! (its trust window) already stops it in most cases; this closes the gap between that check
//! and the write (a pause of the old leader, a wait for one of the pool's connections).

use std::sync::{Arc, LazyLock};

use hodei_workers::{Error, Leadership, Term, WorkerRegistry};

use super::change::WriteCache;
use super::{Fail, PostgresWorkerRegistry, Step};

/// The lease row, held `FOR SHARE` until the transaction ends, if it still names the holder
/// under the term: a row (`ok`, true) or none. The lease's name, holder and term are the
/// statement's parameters `$first`, `$first + 1` and `$first + 2`. Every form of the check is
/// this query: alone ([`check`]), joined to a worker's lock (`change::begin_locked`: its
/// column `f.ok` is null when refused), or as the condition of `register`'s first insert.
pub(crate) fn held(first: usize) -> String {
    format!(
        "SELECT true AS ok FROM manager_leases WHERE name = ${} AND holder = ${} AND term = ${} \
         FOR SHARE",
        first,
        first + 1,
        first + 2
    )
}

/// The check as a statement of its own.
static CHECK: LazyLock<String> = LazyLock::new(|| held(1));

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
    let stmt = cache.prepare(tx, &CHECK)?;
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
    /// The holder and term, the parameters after the lease's name in [`held`].
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
