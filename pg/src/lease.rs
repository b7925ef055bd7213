//! A leader lease with a term (issue 14, ahead of the replicated manager): at most one holder
//! per lease name at a time, on the database's clock, with a fencing token.
//!
//! Modelled on River's elector: a row per lease (`leases`: holder, term, expiry). Acquiring
//! takes a free or expired lease and increments its term; renewing extends the expiry only
//! for the holder of the *current* term (a holder whose lease expired and was taken by
//! another replica learns it at its next renewal, and its term is worth nothing); stepping down
//! expires it at once. Every leader-only write can carry the term and be checked against the
//! row (`fenced`), so a deposed leader that has not noticed yet cannot act.
//!
//! Trust window: a holder trusts its leadership only until `renewal start + ttl - margin` on
//! its own monotonic clock ([`LeaderLease::term`]); the database may see the lease expire a
//! little later (its clock started counting after ours), never earlier, so two holders never
//! both trust a lease.
//!
//! The lease uses a connection of its own (not the registry's pool): a leader that cannot
//! renew because the pool is busy would lose its lease for nothing.

use std::time::{Duration, Instant};

use hodei_workers::{Error, Result};
use parking_lot::Mutex;

use crate::error::{guard, DbError};
use crate::pool::Conn;
use crate::schema;

/// Takes the lease if it is free or expired (a new term), or keeps it if we hold it.
const ACQUIRE: &str = "INSERT INTO leases AS l (name, holder, term, expires_at) \
    VALUES ($1, $2, 1, clock_timestamp() + $3::bigint * interval '1 millisecond') \
    ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
        term = CASE WHEN l.holder = excluded.holder AND l.expires_at >= clock_timestamp() \
            THEN l.term ELSE l.term + 1 END, \
        expires_at = excluded.expires_at \
    WHERE l.expires_at < clock_timestamp() OR l.holder = excluded.holder \
    RETURNING term";

/// Extends the lease, only for the holder of this very term.
const RENEW: &str =
    "UPDATE leases SET expires_at = clock_timestamp() + $4::bigint * interval '1 millisecond' \
    WHERE name = $1 AND holder = $2 AND term = $3 RETURNING term";

/// Gives the lease up at once (only our term).
const STEP_DOWN: &str =
    "UPDATE leases SET expires_at = clock_timestamp() - interval '1 millisecond' \
    WHERE name = $1 AND holder = $2 AND term = $3";

#[derive(Debug, Clone, Copy)]
struct Held {
    term: i64,
    trusted_until: Instant,
}

/// One replica's handle on a leader lease. See the module doc.
#[derive(Debug)]
pub struct LeaderLease {
    config: postgres::Config,
    schema: String,
    name: String,
    holder: String,
    ttl: Duration,
    margin: Duration,
    conn: Mutex<Option<Conn>>,
    held: Mutex<Option<Held>>,
}

impl LeaderLease {
    /// A handle on lease `name` of registry `registry_name` (its schema, migrated if needed),
    /// for the replica `holder`, with time-to-live `ttl`. The holder trusts its leadership until
    /// `ttl - ttl/5` after the start of its last successful acquire or renewal.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed url or name, an empty holder, a ttl under 10 ms;
    /// `Backend` when the server cannot be reached.
    pub fn connect(
        url: &str,
        registry_name: &str,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<LeaderLease> {
        schema::validate_name(registry_name)?;
        if holder.is_empty() || holder.contains('\0') || name.is_empty() || name.contains('\0') {
            return Err(Error::invalid(
                "lease name and holder must be non-empty, without NUL",
            ));
        }
        if ttl < Duration::from_millis(10) || ttl > Duration::from_secs(86_400) {
            return Err(Error::invalid("lease ttl must be between 10 ms and a day"));
        }
        let config = url
            .parse::<postgres::Config>()
            .map_err(|e| Error::invalid(format!("invalid PostgreSQL connection string: {e}")))?;
        let conn = guard(|| {
            let mut conn = Conn::open(&config, registry_name)
                .map_err(|c| Error::Backend(format!("cannot connect to PostgreSQL: {c}")))?;
            schema::migrate(&mut conn, registry_name)?;
            Ok(conn)
        })?;
        Ok(LeaderLease {
            config,
            schema: registry_name.to_owned(),
            name: name.to_owned(),
            holder: holder.to_owned(),
            ttl,
            margin: ttl / 5,
            conn: Mutex::new(Some(conn)),
            held: Mutex::new(None),
        })
    }

    fn ttl_ms(&self) -> i64 {
        self.ttl.as_millis() as i64
    }

    /// Runs one statement on the lease's own connection (reopened after a loss).
    fn query(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Option<i64>> {
        guard(|| {
            let mut slot = self.conn.lock();
            if slot.as_ref().is_none_or(|c| c.client.is_closed()) {
                *slot =
                    Some(Conn::open(&self.config, &self.schema).map_err(|c| {
                        Error::Backend(format!("cannot connect to PostgreSQL: {c}"))
                    })?);
            }
            let conn = slot.as_mut().expect("just opened");
            let run = |conn: &mut Conn| -> std::result::Result<Option<i64>, DbError> {
                let stmt = conn.prepare(sql)?;
                Ok(conn.client.query_opt(&stmt, params)?.map(|r| r.get(0)))
            };
            run(conn).map_err(|e| e.backend("leader lease"))
        })
    }

    /// Takes the lease if it is free or expired, or renews it if we hold it. Returns the term
    /// we hold, `None` when another replica holds it.
    ///
    /// # Errors
    /// `Backend` (then we trust no term).
    pub fn try_acquire(&self) -> Result<Option<u64>> {
        let start = Instant::now();
        let result = self.query(ACQUIRE, &[&self.name, &self.holder, &self.ttl_ms()]);
        self.settle(start, result)
    }

    /// Extends our lease, only if our term is still the lease's term. Returns whether we still
    /// lead.
    ///
    /// # Errors
    /// `Backend` (then we trust no term).
    pub fn renew(&self) -> Result<bool> {
        let Some(held) = *self.held.lock() else {
            return Ok(false);
        };
        let start = Instant::now();
        let result = self.query(
            RENEW,
            &[&self.name, &self.holder, &held.term, &self.ttl_ms()],
        );
        Ok(self.settle(start, result)?.is_some())
    }

    fn settle(&self, start: Instant, result: Result<Option<i64>>) -> Result<Option<u64>> {
        let mut held = self.held.lock();
        match result {
            Ok(Some(term)) => {
                *held = Some(Held {
                    term,
                    trusted_until: start + self.ttl - self.margin,
                });
                Ok(Some(term as u64))
            }
            Ok(None) => {
                *held = None;
                Ok(None)
            }
            Err(e) => {
                *held = None;
                Err(e)
            }
        }
    }

    /// Gives the lease up now (another replica may take it at once).
    ///
    /// # Errors
    /// `Backend` (the lease then expires by itself).
    pub fn step_down(&self) -> Result<()> {
        let Some(held) = self.held.lock().take() else {
            return Ok(());
        };
        self.query(STEP_DOWN, &[&self.name, &self.holder, &held.term])
            .map(|_| ())
    }

    /// The term we lead with, while we may trust it (held, and within the trust window on our
    /// own monotonic clock); `None` otherwise.
    pub fn term(&self) -> Option<u64> {
        let held = (*self.held.lock())?;
        (Instant::now() < held.trusted_until).then_some(held.term as u64)
    }

    /// Whether `term` is the lease's current term, read from the database: the fencing check
    /// of a leader-only write (best done in the write's own transaction, with
    /// `SELECT 1 FROM leases WHERE name = $1 AND term = $2 FOR SHARE`).
    ///
    /// # Errors
    /// `Backend`.
    pub fn fenced(&self, term: u64) -> Result<bool> {
        let term = i64::try_from(term).unwrap_or(i64::MAX);
        Ok(self
            .query(
                "SELECT term FROM leases WHERE name = $1 AND term = $2",
                &[&self.name, &term],
            )?
            .is_some())
    }
}
