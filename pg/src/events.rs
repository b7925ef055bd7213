//! Events across replicas: the outbox, and the reader behind each [`Subscription`].
//!
//! # Writing
//! Every change inserts its events into `outbox` **in its own transaction**, after taking its
//! row locks, each with `seq = nextval('event_seq')` and the writing transaction's id
//! (`pg_current_xact_id()`, assigned by the change's first write, before any seq is taken).
//! So the events of one worker are in `seq` order of its changes, and an event exists exactly
//! when its change committed. A statement trigger `NOTIFY`s the registry's channel, only while
//! some subscriber listens (`listeners`): NOTIFY serialises committing transactions on a
//! database-wide lock, which writers should not pay for nobody.
//!
//! # Reading: never skip a row committed out of order
//! Transactions commit in any order, so `seq` 7 may become visible before `seq` 6. Each
//! subscription has its own connection and a cursor (the last `seq` handed out), and reads the
//! rows after it together with its snapshot (`pg_current_snapshot()`). It hands rows out in
//! order up to the first **gap**. A gap seen in snapshot S was taken by a transaction that was
//! either finished at S (then its row would be visible: it aborted, the gap is permanent) or in
//! progress at S (its xid is in S's in-progress list, since every writer has its xid before it
//! takes a seq). So the reader remembers S's in-progress xids and waits until none of them is
//! in progress any more; then it reads again: a row that appeared is handed out in its place,
//! a seq still missing is skipped for good. No timeout is involved: the rule is exact, and a
//! permanent gap costs only the wait for the transactions that were running when it was seen.
//!
//! # What a gap in `seq` means for a subscriber
//! - events dropped because its queue was full (counted by `Subscription::dropped`);
//! - `HeartbeatReceived` events it did not opt in to (written only while a subscriber of the
//!   writing process wants them);
//! - a transaction that took a seq and then failed (rolled back, connection lost);
//! - events pruned from the outbox before it read them (see
//!   [`PostgresWorkerRegistry::prune_events`]).
//!
//! A subscription starts after the last event committed when it was made.
//!
//! The reader runs on the subscriber's thread: each call of the `Subscription` first lets it
//! read what arrived; `recv` waits on `LISTEN` (a notification wakes it; without one it polls
//! every second, and every 20 ms while waiting out a gap).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hodei_workers::{
    Error, EventFeed, EventKind, EventSource, Result, SubscribeOptions, Subscription, Timestamp,
    WorkerLifecycleEvent,
};
use postgres::fallible_iterator::FallibleIterator;

use crate::error::{guard, DbError};
use crate::pool::Conn;
use crate::registry::PostgresWorkerRegistry;
use crate::schema::channel;
use crate::sql::ts;

/// Rows read per round trip.
const BATCH: i64 = 1000;

/// The rows after the cursor and the snapshot they were read in.
const READ: &str = "WITH s AS MATERIALIZED (SELECT pg_current_snapshot()::text AS snap) \
    SELECT s.snap, o.seq, o.at, o.heartbeat, o.kind FROM s LEFT JOIN LATERAL \
    (SELECT seq, at, heartbeat, kind FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2) o ON true";

/// A PostgreSQL snapshot: `xmin:xmax:xip,...`.
#[derive(Debug)]
struct Snap {
    xmin: u64,
    xmax: u64,
    xip: HashSet<u64>,
}

impl Snap {
    fn parse(text: &str) -> Option<Snap> {
        let mut parts = text.split(':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let xip = match parts.next() {
            Some("") | None => HashSet::new(),
            Some(list) => list
                .split(',')
                .map(|x| x.parse().ok())
                .collect::<Option<HashSet<u64>>>()?,
        };
        Some(Snap { xmin, xmax, xip })
    }

    fn in_progress(&self, xid: u64) -> bool {
        xid >= self.xmin && (xid >= self.xmax || self.xip.contains(&xid))
    }
}

/// The reader of one subscription.
pub(crate) struct OutboxSource {
    config: postgres::Config,
    schema: String,
    conn: Option<Conn>,
    /// The last seq handed out (or skipped as a permanent gap).
    cursor: i64,
    /// Gaps up to here are permanent.
    resolved_upto: i64,
    /// A gap seen and not yet judged: the last seq read then, and the transactions in progress.
    pending: Option<(i64, Vec<u64>)>,
    heartbeats: bool,
    heartbeat_subscribers: Option<Arc<AtomicUsize>>,
    /// `at` handed out last: clamped so that it never goes back in seq order (two transactions
    /// read the clock and take their seq in either order, a millisecond apart).
    last_at: Timestamp,
}

impl std::fmt::Debug for OutboxSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxSource")
            .field("schema", &self.schema)
            .field("cursor", &self.cursor)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

fn open(config: &postgres::Config, schema: &str) -> std::result::Result<Conn, DbError> {
    let mut conn = Conn::open(config, schema).map_err(DbError::Other)?;
    conn.client.batch_execute(&format!(
        "DELETE FROM listeners WHERE pid NOT IN (SELECT pid FROM pg_stat_activity); \
         INSERT INTO listeners (pid) VALUES (pg_backend_pid()) ON CONFLICT DO NOTHING; \
         LISTEN {}",
        crate::pool::quote_ident(&channel(schema))
    ))?;
    Ok(conn)
}

pub(crate) fn subscribe(
    registry: &PostgresWorkerRegistry,
    options: SubscribeOptions,
) -> Result<Subscription> {
    let config = registry.inner.pool.config().clone();
    let schema = registry.schema().to_owned();
    let (conn, cursor) = guard(|| {
        let mut conn = open(&config, &schema).map_err(|e| e.backend("subscribing"))?;
        let cursor: i64 = conn
            .client
            .query_one(
                "SELECT greatest(coalesce((SELECT max(seq) FROM outbox), 0), \
                 (SELECT seq_floor FROM meta))",
                &[],
            )
            .map_err(|e| DbError::from(e).backend("subscribing"))?
            .get(0);
        Ok((conn, cursor))
    })?;
    let heartbeat_subscribers = options.heartbeats.then(|| {
        let counter = Arc::clone(&registry.inner.heartbeat_subscribers);
        counter.fetch_add(1, Ordering::Relaxed);
        counter
    });
    let source = OutboxSource {
        config,
        schema,
        conn: Some(conn),
        cursor,
        resolved_upto: cursor,
        pending: None,
        heartbeats: options.heartbeats,
        heartbeat_subscribers,
        last_at: 0,
    };
    Ok(Subscription::from_source(options, Box::new(source)))
}

impl OutboxSource {
    /// Reads once; returns how many rows moved the cursor.
    fn read(&mut self, feed: &EventFeed<'_>) -> std::result::Result<usize, DbError> {
        if self.conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            self.conn = Some(open(&self.config, &self.schema)?);
        }
        let conn = self.conn.as_mut().expect("just opened");
        let mut moved = 0;
        loop {
            let stmt = conn.prepare(READ)?;
            let rows = conn.client.query(&stmt, &[&self.cursor, &BATCH])?;
            let Some(first) = rows.first() else {
                return Ok(moved);
            };
            let snap: String = first.get(0);
            let snap = Snap::parse(&snap)
                .ok_or_else(|| DbError::Other(format!("unreadable snapshot {snap:?}")))?;
            if let Some((horizon, xids)) = &self.pending {
                if xids.iter().all(|x| !snap.in_progress(*x)) {
                    self.resolved_upto = self.resolved_upto.max(*horizon);
                    self.pending = None;
                }
            }
            let seqs: Vec<Option<i64>> = rows.iter().map(|r| r.get(1)).collect();
            let last = seqs.iter().flatten().copied().max();
            let Some(last) = last else {
                return Ok(moved);
            };
            let mut blocked = false;
            for row in &rows {
                let seq: i64 = row.get(1);
                if seq != self.cursor + 1 && seq > self.resolved_upto {
                    // A gap before this row: judge it, or wait for its writers.
                    if self.pending.is_none() {
                        let inflight: Vec<u64> = snap.xip.iter().copied().collect();
                        if inflight.is_empty() {
                            self.resolved_upto = last;
                        } else {
                            self.pending = Some((last, inflight));
                        }
                    }
                    if seq > self.resolved_upto {
                        blocked = true;
                        break;
                    }
                }
                self.cursor = seq;
                moved += 1;
                let heartbeat: bool = row.get(3);
                if heartbeat && !self.heartbeats {
                    continue;
                }
                let kind: &str = row.get(4);
                let Ok(kind) = serde_json::from_str::<EventKind>(kind) else {
                    // Written by a newer version we cannot read: skipped (a gap).
                    continue;
                };
                let at = ts(row.get(2)).max(self.last_at);
                self.last_at = at;
                feed.push(WorkerLifecycleEvent {
                    seq: seq as u64,
                    at,
                    kind,
                });
            }
            if blocked || (rows.len() as i64) < BATCH {
                return Ok(moved);
            }
        }
    }
}

impl EventSource for OutboxSource {
    fn fill(&mut self, feed: &EventFeed<'_>, wait: Duration) {
        let _ = guard(|| {
            let mut waited = false;
            loop {
                match self.read(feed) {
                    Ok(moved) if moved > 0 || wait.is_zero() || waited => return Ok(()),
                    Ok(_) => {}
                    Err(_) => {
                        // Connection lost: reopened at the next call; the cursor is kept.
                        self.conn = None;
                        if !wait.is_zero() {
                            std::thread::sleep(wait.min(Duration::from_millis(100)));
                        }
                        return Ok(());
                    }
                }
                waited = true;
                let slice = if self.pending.is_some() {
                    wait.min(Duration::from_millis(20))
                } else {
                    wait
                };
                let broken = match self.conn.as_mut() {
                    Some(conn) => {
                        let mut notes = conn.client.notifications();
                        let mut it = notes.timeout_iter(slice);
                        it.next().is_err()
                    }
                    None => false,
                };
                if broken {
                    self.conn = None;
                }
            }
        });
    }
}

impl Drop for OutboxSource {
    fn drop(&mut self) {
        if let Some(counter) = &self.heartbeat_subscribers {
            counter.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(mut conn) = self.conn.take() {
            // Best effort: a row left behind is removed by the next subscriber.
            let _ = guard(|| {
                let _ = conn
                    .client
                    .batch_execute("DELETE FROM listeners WHERE pid = pg_backend_pid()");
                drop(conn);
                Ok::<(), Error>(())
            });
        }
    }
}

impl PostgresWorkerRegistry {
    /// Deletes the events older than `older_than` (by their `at`, on the registry's clock),
    /// keeping the newest one (it carries the seq a new subscription starts from). Returns the
    /// number deleted. A subscriber that had not read them sees a gap.
    ///
    /// # Errors
    /// `Backend`.
    pub fn prune_events(&self, older_than: Duration) -> Result<u64> {
        use hodei_workers::WorkerRegistry;
        let cutoff = crate::sql::db_ts(
            self.now()
                .saturating_sub(hodei_workers::clock::millis(older_than)),
        );
        self.run("pruning events", |conn| {
            let stmt = conn.prepare(
                "DELETE FROM outbox WHERE at < $1 AND seq < (SELECT max(seq) FROM outbox)",
            )?;
            Ok(conn.client.execute(&stmt, &[&cutoff])?)
        })
    }
}
