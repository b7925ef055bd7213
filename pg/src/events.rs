//! Events across replicas: the outbox, and the reader behind each [`Subscription`].
//!
//! # Writing
//! Every change inserts its events into `outbox` **in its own transaction**, after taking its
//! row locks, each with `seq = nextval('event_seq')` and the writing transaction's id
//! (`pg_current_xact_id()`, assigned by the change's first write, before any seq is taken).
//! The order matters to readers (below), and an `INSERT … VALUES (pg_current_xact_id(),
//! nextval(…))` does not give it: `VALUES` are evaluated in the table's column order, `seq`
//! first. A writer with a seq and no xid yet is in no snapshot's list and holds no transaction
//! lock, so a reader cannot tell its gap from an aborted one.
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
//! progress at S (every writer has its xid before it takes a seq) and holding the outbox's
//! table lock (taken when its inserting statement starts, before the seq, released after its
//! commit is visible). So, right after the read, the reader asks which transactions hold that
//! lock (`pg_locks`), keeps those in progress at S, and waits until none of them is in
//! progress any more; then it reads again with a new snapshot: a row that appeared is handed
//! out in its place, a seq still missing is skipped for good. A writer that ended between the
//! read and the lock query is visible to that next read. No timeout is involved: the rule is
//! exact, and a permanent gap costs only the wait for the outbox's writers that were running
//! when it was seen (unrelated long transactions on the server do not hold readers up).
//!
//! # What a gap in `seq` means for a subscriber
//! - events dropped because its queue was full (counted by `Subscription::dropped`);
//! - `HeartbeatReceived` events it did not opt in to (written only while a subscriber of the
//!   writing registry handle wants them: a handle of another `connect`, in the same process
//!   or not, counts as another replica);
//! - a transaction that took a seq and then failed: only a failure after every check passed
//!   (connection lost, server crash), since every statement takes its seqs after its row
//!   locks, checks and unique indexes;
//! - events pruned from the outbox before it read them, for a subscription of another
//!   registry handle or process: the registry keeps the newest [`EVENTS_KEPT`] (pruned at
//!   most once a minute, on `find_for_termination`'s path), and
//!   [`PostgresWorkerRegistry::prune_events`] deletes by age (the oldest seqs up to the first
//!   event not old enough: a prune never cuts a range out of the middle). For the
//!   subscriptions of its own handle, a prune counts in `dropped()` every event it deletes
//!   that the subscription had not read, like any event its queue could not hold, whatever
//!   the subscriber was doing: it first lets the idle ones read (as `subscriber_drops` does,
//!   so that their queues hold the oldest), then holds every reader of the handle while it
//!   deletes and counts, for each, the deleted events past its cursor or of a writer it waits
//!   for since it was made (clarified 2026-12-07: before, a subscriber waiting out a gap, or
//!   in a call of its own, lost the events past the gap uncounted;
//!   `postgres_specific::a_subscriber_of_the_pruning_handle_waiting_out_a_gap_counts_…`; and a
//!   subscription being made, whose reader joined the list only after reading its start).
//!
//! # Where a subscription starts
//! A subscription delivers every event whose transaction commits after `subscribe` returns,
//! and none that committed before it, in `seq` order. It starts after the last seq committed
//! in its snapshot `S`, but a writer in progress at `S` may already hold a lower seq and
//! commit later. So `subscribe`, right after reading `S`, asks which transactions hold the
//! outbox's lock and keeps those in progress at `S` (as a read does for a gap); until none of
//! them is in progress any more the reader hands nothing out, then it reads their events up to
//! the start (by their `xid`, which no index holds: one pass over the outbox's rows up to the
//! start, once per subscription made while a writer was in flight) and hands them out
//! first, then goes on after the start. A writer that ended between `S` and the lock query
//! committed before `subscribe` returned (or never). (Clarified 2026-12-07: before, such an
//! event was never delivered;
//! `postgres_specific::a_subscription_delivers_an_event_whose_seq_was_taken_before_it_and_…`.)
//!
//! The reader runs on the subscriber's thread: each call of the `Subscription` first lets it
//! read what arrived; `recv` waits on `LISTEN` (a notification wakes it; without one it polls
//! every second, and every 20 ms while waiting out a gap). Each read first takes the
//! notifications already received, which announce commits it sees: they never pile up in the
//! connection, and a wait wakes only for a commit made after the last read. The session
//! listens only while a call waits: it `LISTEN`s before the call's first wait (and reads once
//! more then, as a commit between the read and the `LISTEN` notified nobody) and `UNLISTEN`s
//! when the call returns, two requests more for a call that waits, none for one that finds
//! events. (Clarified 2026-12-07: before, it listened for as long as the subscription lived,
//! and a subscription nobody called read none of the notifications sent to it: its server
//! process blocked sending them, and the server's notification queue, which that process no
//! longer advanced, grew with every notifying commit until `NOTIFY` failed, and every
//! notifying commit with it; `events::tests::a_reader_between_calls_is_sent_no_notifications`.)
//!
//! # Bounded whatever the server does
//! A reader never waits on the server without a bound (clarified 2026-12-07: before, a
//! `recv(timeout)`, a `try_recv`, a subscription's drop and its registry's drop each blocked
//! for as long as a server that had stopped answering stayed so: a frozen server, a dark
//! network path, a stopped backend on a Unix socket, where no transport timeout applies;
//! `pg/tests/frozen_reader.rs`). Its connection is the asynchronous client on a runtime of its
//! own, as the leadership lease's (`connection`), and every request runs under a deadline on
//! the client's clock: a fill given `wait` returns within `wait` plus `REPLY_TIMEOUT` (5 s),
//! so `recv(Some(d))` returns within `d` plus 5 s, `None` when nothing came in time (a server
//! that does not answer is, for a subscriber, a connection lost: no error, only a delay), and
//! the calls that never wait within 5 s. A request that runs out of time drops the connection
//! (its socket closed); the next call opens a new one and goes on from the cursor and the gap
//! it was waiting out, so nothing handed out is lost or handed out twice. Dropping a
//! subscription takes at most 5 s (its `listeners` row is removed if the server answers in
//! time, else by a later reader), dropping the registry at most `CLOSE_TIMEOUT` (10 s) per
//! subscription (see `Reader::close`), `subscribe` at most 10 s.
//!
//! `subscriber_drops` (the event-drop metrics) lists the live subscriptions of this registry
//! handle; it lets each one that is not in a call of its own read first, on the caller's
//! thread, so that a subscriber that stopped reading shows the events it loses.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hodei_workers::{
    Error, EventFeed, EventKind, EventSource, Result, SubscribeOptions, SubscriberDrops,
    Subscription, SubscriptionMonitor, Timestamp, WorkerLifecycleEvent,
};
use parking_lot::Mutex;

use crate::error::{guard, DbError};

mod connection;
mod prune;

pub use prune::EVENTS_KEPT;

use crate::registry::PostgresWorkerRegistry;
use crate::schema::channel;
use crate::sql::ts;
use connection::{deadline_after, discard, ReaderConn, REPLY_TIMEOUT};

/// Rows read per round trip.
const BATCH: i64 = 1000;

/// The rows after the cursor and the snapshot they were read in.
const READ: &str = "WITH s AS MATERIALIZED (SELECT pg_current_snapshot()::text AS snap) \
    SELECT s.snap, o.seq, o.at, o.heartbeat, o.kind FROM s LEFT JOIN LATERAL \
    (SELECT seq, at, heartbeat, kind FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2) o ON true";

/// The transactions writing to this registry's outbox now: every writer holds its table lock
/// from the start of the statement that takes its seq until it ends (32-bit xids).
const WRITERS: &str = "SELECT coalesce(array_agg(DISTINCT x.transactionid::text::bigint), '{}') \
    FROM pg_locks o JOIN pg_locks x ON x.pid = o.pid AND x.locktype = 'transactionid' \
    WHERE o.locktype = 'relation' AND o.relation = 'outbox'::regclass \
      AND o.database = (SELECT oid FROM pg_database WHERE datname = current_database())";

/// Where a new subscription starts: its snapshot, and the last seq committed in it (or the
/// floor a restored registry continues after).
const START: &str = "WITH s AS MATERIALIZED (SELECT pg_current_snapshot()::text AS snap) \
    SELECT s.snap, greatest(coalesce((SELECT max(seq) FROM outbox), -9223372036854775807 - 1), \
    (SELECT seq_floor FROM meta)) FROM s";

/// The events, up to the seq `$1` a subscription started after, of the writers `$2` (full
/// xids, as text) that were in progress when it was made: committed after it, they are its.
/// Read once, when none of them is in progress any more: every row up to `$1` is looked at
/// (no index holds `xid`; the outbox keeps at most a million rows, see [`EVENTS_KEPT`]).
const BEFORE_START: &str = "SELECT seq, at, heartbeat, kind FROM outbox \
    WHERE seq <= $1 AND xid::text = ANY($2) ORDER BY seq";

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

    /// The full (epoch-qualified) id of a 32-bit xid seen near this snapshot.
    fn widen(&self, low: u64) -> Option<u64> {
        let near = self.xmax;
        let candidate = (near & !0xffff_ffff) | (low & 0xffff_ffff);
        if candidate > near.saturating_add(1 << 31) {
            candidate.checked_sub(1 << 32)
        } else if candidate.saturating_add(1 << 31) < near {
            candidate.checked_add(1 << 32)
        } else {
            Some(candidate)
        }
    }

    fn in_progress(&self, xid: u64) -> bool {
        xid >= self.xmin && (xid >= self.xmax || self.xip.contains(&xid))
    }
}

/// The reader of one subscription: its connection, cursor and gap state. Shared (behind a
/// mutex) by the subscription's [`OutboxSource`] and, weakly, by its registry, which reads
/// every reader to the end when it is dropped (events committed before the registry was
/// dropped are still delivered; then the stream ends).
pub(crate) struct Reader {
    config: tokio_postgres::Config,
    schema: String,
    conn: Option<ReaderConn>,
    /// The last seq handed out (or skipped as a permanent gap).
    cursor: i64,
    /// Gaps up to here are permanent.
    resolved_upto: i64,
    /// A gap seen and not yet judged: the last seq read then, and the transactions in progress.
    pending: Option<(i64, Vec<u64>)>,
    /// The writers in progress when the subscription was made (at its snapshot) and holding
    /// the outbox's lock, with the seq it started after: their events may have seqs up to
    /// that one, and are this subscription's (they commit after it was made). Until none of
    /// them is in progress, nothing is handed out; then theirs are, first (see the module docs).
    before_start: Option<(i64, Vec<u64>)>,
    heartbeats: bool,
    heartbeat_subscribers: Option<Arc<AtomicUsize>>,
    /// `at` handed out last: clamped so that it never goes back in seq order (two transactions
    /// read the clock and take their seq in either order, a millisecond apart).
    last_at: Timestamp,
    /// Read when the registry was dropped, not yet handed to the subscription: at most the
    /// subscription's capacity (the oldest), as its queue could hold no more.
    prefetched: VecDeque<WorkerLifecycleEvent>,
    /// The subscription's capacity, which bounds `prefetched`.
    capacity: usize,
    /// Events this subscription lost without its queue seeing them, counted in its `dropped()`
    /// at its next call: read when the registry was dropped, beyond `capacity`, and pruned
    /// from the outbox by this registry handle before it read them ([`Reader::count_pruned`]).
    overflow: u64,
    /// The registry is gone: nothing more will be read.
    closed: bool,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("schema", &self.schema)
            .field("cursor", &self.cursor)
            .field("pending", &self.pending)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// The [`EventSource`] of a subscription.
#[derive(Debug)]
pub(crate) struct OutboxSource {
    reader: Arc<Mutex<Reader>>,
}

/// Forgets the listeners whose sessions are gone: a reader's row stays behind when its
/// connection died and was not reopened (its process killed, its subscription dropped after
/// the server ended its session), and while a row is there every change `NOTIFY`s at commit.
/// Run by every new reader and by the health-check path's prune (`crate::retention`). A row
/// visible to the statement was committed before it began, by a session that then existed.
pub(crate) const FORGET_DEAD_LISTENERS: &str =
    "DELETE FROM listeners WHERE pid NOT IN (SELECT pid FROM pg_stat_activity)";

/// Opens a reader's connection before `deadline`: the session of the registry's connections
/// (`crate::pool::Conn::open`) and its `listeners` row. It listens only while a `fill` waits
/// ([`ReaderConn::listen`]).
fn open(
    config: &tokio_postgres::Config,
    schema: &str,
    deadline: Instant,
) -> std::result::Result<ReaderConn, DbError> {
    let session = format!(
        "SET search_path TO {}; SET application_name = 'hodei-workers'; SET jit = off; \
         {}; {FORGET_DEAD_LISTENERS}; \
         INSERT INTO listeners (pid) VALUES (pg_backend_pid()) ON CONFLICT DO NOTHING",
        crate::pool::quote_ident(schema),
        crate::pool::bound_stalls(),
    );
    ReaderConn::open(config, &session, deadline)
}

/// A subscription of `registry`'s events: every event whose transaction commits after this
/// returns (also one whose seq was taken before, below the last one committed then: it is
/// handed out first, and nothing after it goes out before it), none that committed before;
/// see the module docs. Opens the subscription's own connection.
///
/// # Errors
/// `InvalidArgument` for a capacity of 0; `Backend` when the connection cannot be opened.
pub(crate) fn subscribe(
    registry: &PostgresWorkerRegistry,
    options: SubscribeOptions,
) -> Result<Subscription> {
    if options.capacity == 0 {
        return Err(Error::invalid(
            "subscription capacity must be at least 1 (0 would drop every event)",
        ));
    }
    if !crate::error::may_block() {
        // Its runtime cannot block on a thread that drives one (and dropping one there may
        // panic, during the unwind of the first: an abort).
        return Err(Error::Backend(crate::error::ASYNC_CONTEXT.to_owned()));
    }
    let config = registry.inner.lease_config.clone();
    let schema = registry.schema().to_owned();
    // The reader joins the handle's list before its start is read, and is held until it is:
    // a prune of this handle (which holds the list from its look at it to its delete's end)
    // either ended before the start was read, so deleted no event of this subscription, or
    // waits for the start and counts what it deletes of it (`prune_counted`). Closed until
    // then: a prune counts nothing in it.
    let reader = Arc::new(Mutex::new(Reader {
        config: config.clone(),
        schema: schema.clone(),
        conn: None,
        cursor: 0,
        resolved_upto: 0,
        pending: None,
        before_start: None,
        heartbeats: options.heartbeats,
        heartbeat_subscribers: None,
        last_at: 0,
        prefetched: VecDeque::new(),
        capacity: options.capacity,
        overflow: 0,
        closed: true,
    }));
    let mut starting = {
        let mut readers = registry.inner.readers.lock();
        readers.retain(|r| r.strong_count() > 0);
        readers.push(Arc::downgrade(&reader));
        // Taken with the list held: no prune looks at the list between the two.
        reader.lock()
    };
    // Connecting and the first statements, as a read of a `recv` that waits for nothing.
    let deadline = deadline_after(2 * REPLY_TIMEOUT);
    let (conn, cursor, early) = guard(|| {
        let mut conn = open(&config, &schema, deadline).map_err(|e| e.backend("subscribing"))?;
        let start = |conn: &mut ReaderConn| -> std::result::Result<(i64, Vec<u64>), DbError> {
            let rows = conn.query(START, &[], deadline)?;
            let row = rows
                .first()
                .ok_or_else(|| DbError::Other("no start read".to_owned()))?;
            let (snap, cursor): (String, i64) = (row.get(0), row.get(1));
            let snap = Snap::parse(&snap)
                .ok_or_else(|| DbError::Other(format!("unreadable snapshot {snap:?}")))?;
            // A writer in progress at the snapshot may hold a seq below `cursor` and commit
            // after this call returns: its events are this subscription's. One that ended
            // before the lock query committed before this call returned (or never).
            Ok((cursor, writers_in_progress(conn, &snap, deadline)?))
        };
        let started = start(&mut conn);
        #[cfg(test)]
        tests::after_start(&schema);
        match started {
            Ok((cursor, early)) => Ok((conn, cursor, early)),
            Err(e) => {
                discard(conn);
                Err(e.backend("subscribing"))
            }
        }
    })?;
    starting.heartbeat_subscribers = options.heartbeats.then(|| {
        let counter = Arc::clone(&registry.inner.heartbeat_subscribers);
        counter.fetch_add(1, Ordering::Relaxed);
        counter
    });
    starting.conn = Some(conn);
    starting.cursor = cursor;
    starting.resolved_upto = cursor;
    starting.before_start = (!early.is_empty()).then_some((cursor, early));
    starting.closed = false;
    drop(starting);
    let id = registry
        .inner
        .next_subscription
        .fetch_add(1, Ordering::Relaxed);
    let subscription =
        Subscription::from_source_with_id(id, options, Box::new(OutboxSource { reader }));
    if let Some(monitor) = subscription.monitor() {
        let mut subscriptions = registry.inner.subscriptions.lock();
        subscriptions.retain(SubscriptionMonitor::is_live);
        subscriptions.push(monitor);
    }
    Ok(subscription)
}

/// Every live subscription of this registry handle (those of other handles and processes
/// are theirs to report), with its drops as an in-memory registry counts them: a subscription
/// not in a call of its own reads what arrived first, so a subscriber that stopped reading
/// shows the events it loses (`SubscriptionMonitor::drops`). One read of the outbox per idle
/// subscription, on its own connection.
pub(crate) fn subscriber_drops(registry: &PostgresWorkerRegistry) -> Vec<SubscriberDrops> {
    let monitors = {
        let mut subscriptions = registry.inner.subscriptions.lock();
        subscriptions.retain(SubscriptionMonitor::is_live);
        subscriptions.clone()
    };
    // The outbox is read with the list's lock released: a subscriber may subscribe meanwhile.
    monitors
        .iter()
        .filter_map(SubscriptionMonitor::drops)
        .collect()
}

/// The transactions writing to the outbox now that were in progress at `snap` (full xids):
/// only they can still fill a seq missing from what `snap` shows.
fn writers_in_progress(
    conn: &mut ReaderConn,
    snap: &Snap,
    deadline: Instant,
) -> std::result::Result<Vec<u64>, DbError> {
    let rows = conn.query(WRITERS, &[], deadline)?;
    let writers: Vec<i64> = rows.first().map(|r| r.get(0)).unwrap_or_default();
    Ok(writers
        .into_iter()
        .filter_map(|x| snap.widen(x as u64))
        .filter(|x| snap.in_progress(*x))
        .collect())
}

/// Hands the event of an outbox row out to `out`, unless it is a heartbeat the subscriber did
/// not opt in to or written by a newer version this one cannot read (a gap). `last_at` is the
/// `at` handed out last: an event's is never earlier.
fn deliver(
    row: &postgres::Row,
    heartbeats: bool,
    last_at: &mut Timestamp,
    out: &mut dyn FnMut(WorkerLifecycleEvent),
) {
    let (seq, at, heartbeat, kind): (i64, i64, bool, &str) = (
        row.get("seq"),
        row.get("at"),
        row.get("heartbeat"),
        row.get("kind"),
    );
    if heartbeat && !heartbeats {
        return;
    }
    let Ok(kind) = serde_json::from_str::<EventKind>(kind) else {
        return;
    };
    let at = ts(at).max(*last_at);
    *last_at = at;
    out(WorkerLifecycleEvent {
        seq: ts(seq),
        at,
        kind,
    });
}

impl Reader {
    /// Reads once (in batches, up to the first gap still open); returns how many rows moved
    /// the cursor, and hands the events out to `out` one by one, as each batch is read (a
    /// subscriber a million events behind costs one batch in memory, not a million events).
    /// Every request is answered before `deadline` or fails, leaving the connection broken
    /// (`connection`); what was handed out before stays handed out.
    fn read(
        &mut self,
        out: &mut dyn FnMut(WorkerLifecycleEvent),
        deadline: Instant,
    ) -> std::result::Result<usize, DbError> {
        if !crate::error::may_block() {
            // As in `subscribe`: the connection's runtime cannot block here.
            return Err(DbError::Other(crate::error::ASYNC_CONTEXT.to_owned()));
        }
        if self.conn.as_ref().is_none_or(|c| !c.is_usable()) {
            // An inherited one (this process is a fork of the one that opened it) is left to
            // that process: forgotten, not closed (`connection::discard`).
            self.drop_connection();
            self.conn = Some(open(&self.config, &self.schema, deadline)?);
        }
        let conn = self.conn.as_mut().expect("just opened");
        // The notifications already here announce commits this read sees: taken now, they
        // neither pile up in the client (a subscriber that never waits never took them) nor
        // wake a later wait once each for nothing new. One that arrives during the read is
        // left for the wait (it may announce a commit the read's snapshot missed). A broken
        // connection shows at the query below.
        conn.take_notifications()?;
        let mut moved = 0;
        loop {
            let rows = conn.query(READ, &[&self.cursor, &BATCH], deadline)?;
            let Some(first) = rows.first() else {
                return Ok(moved);
            };
            let snap: String = first.get(0);
            let snap = Snap::parse(&snap)
                .ok_or_else(|| DbError::Other(format!("unreadable snapshot {snap:?}")))?;
            if let Some((start, xids)) = &self.before_start {
                // Nothing past the start goes out before the events of the writers that were
                // in progress when the subscription was made: theirs may have lower seqs. When
                // closing (every gap for good), those committed by now go out.
                if self.resolved_upto != i64::MAX && xids.iter().any(|x| snap.in_progress(*x)) {
                    return Ok(moved);
                }
                let xids: Vec<String> = xids.iter().map(u64::to_string).collect();
                let late = conn.query(BEFORE_START, &[start, &xids], deadline)?;
                for row in &late {
                    deliver(row, self.heartbeats, &mut self.last_at, out);
                }
                moved += late.len();
                self.before_start = None;
            }
            if let Some((horizon, xids)) = &self.pending {
                if xids.iter().all(|x| !snap.in_progress(*x)) {
                    self.resolved_upto = self.resolved_upto.max(*horizon);
                    self.pending = None;
                }
            }
            let seqs: Vec<Option<i64>> = rows.iter().map(|r| r.get(1)).collect();
            let Some(last) = seqs.iter().flatten().copied().max() else {
                return Ok(moved);
            };
            let mut blocked = false;
            for row in &rows {
                let seq: i64 = row.get(1);
                if Some(seq) != self.cursor.checked_add(1) && seq > self.resolved_upto {
                    // A gap before this row: judge it, or wait for its writers.
                    if self.pending.is_none() {
                        // Only the transactions writing to this outbox can fill it (a writer
                        // holds the table's lock from before it takes its seq until it ends),
                        // and only those in progress at the read (in its xip list, or at or
                        // past its xmax: a writer may have got its xid after the last
                        // completed one). The gap is judged at the next read, never on this
                        // one: a writer that ended between this read and the lock query is
                        // in neither, and its row is visible only to a later snapshot.
                        let inflight = writers_in_progress(conn, &snap, deadline)?;
                        self.pending = Some((last, inflight));
                    }
                    if seq > self.resolved_upto {
                        blocked = true;
                        break;
                    }
                }
                self.cursor = seq;
                moved += 1;
                deliver(row, self.heartbeats, &mut self.last_at, out);
            }
            if blocked {
                // No writer left to wait for: read again now (a new snapshot) to judge the gap.
                if self
                    .pending
                    .as_ref()
                    .is_some_and(|(_, xids)| xids.is_empty())
                {
                    continue;
                }
                return Ok(moved);
            }
            if (rows.len() as i64) < BATCH {
                return Ok(moved);
            }
        }
    }

    /// [`read`](Self::read), and once more on a new connection when the connection it had,
    /// in use since an earlier read, fails under it: most often the server closed it in
    /// between (a restart, an administrator, `idle_session_timeout`), which the client learns
    /// only at its next request, this one. As a read of the registry runs once more, rather
    /// than leave the events to the subscriber's next call: the closing read of a dropped
    /// registry and a prune's catch-up have none after them. The cursor is kept (what was
    /// handed out stays handed out). A connection that cannot be opened is not tried twice.
    /// The first read must answer before `deadline`, the second before `again` (a read that
    /// ran out of time on a stopped backend may well succeed on a new connection).
    fn read_again_if_closed(
        &mut self,
        out: &mut dyn FnMut(WorkerLifecycleEvent),
        deadline: Instant,
        again: Instant,
    ) -> std::result::Result<usize, DbError> {
        let used = self.conn.as_ref().is_some_and(ReaderConn::is_usable);
        match self.read(out, deadline) {
            Err(_) if used => {
                self.drop_connection();
                self.read(out, again)
            }
            result => result,
        }
    }

    /// Drops the connection (closing it, unless another process opened it: `discard`).
    fn drop_connection(&mut self) {
        if let Some(conn) = self.conn.take() {
            discard(conn);
        }
    }

    /// Reads what is there now into `prefetched` and ends the stream (the registry is being
    /// dropped): every event committed before, past any gap still open. Keeps at most the
    /// subscription's capacity, the oldest, and counts the rest as dropped: its queue could not
    /// hold more, whatever the backlog.
    ///
    /// Returns within [`CLOSE_TIMEOUT`] whatever the server does: the read gets
    /// [`REPLY_TIMEOUT`], once more on a new connection until the end of the bound when its own
    /// fails or runs out of time, and the connection's release what is left. A read that gets
    /// no answer in time ends the stream without the events it could not read (nothing of them
    /// can be counted: they were never seen).
    pub(crate) fn close(&mut self) {
        if self.closed {
            return;
        }
        let (mut kept, capacity, mut overflow) = (VecDeque::new(), self.capacity, 0);
        // Every gap is for good now: a row this read cannot see belongs to a transaction in
        // progress at the drop (its event commits after it, or never), and the events
        // committed before the drop, after such a gap, must not wait for it.
        self.pending = None;
        self.resolved_upto = i64::MAX;
        let end = deadline_after(CLOSE_TIMEOUT);
        let _ = guard(|| {
            let mut out = |event| {
                if kept.len() < capacity {
                    kept.push_back(event);
                } else {
                    overflow += 1;
                }
            };
            let _ = self.read_again_if_closed(&mut out, deadline_after(REPLY_TIMEOUT), end);
            Ok(())
        });
        self.prefetched.extend(kept);
        self.overflow += overflow;
        self.closed = true;
        self.release_connection(end);
    }

    /// Removes the reader's `listeners` row (before `deadline`) and closes its connection.
    fn release_connection(&mut self, deadline: Instant) {
        if let Some(mut conn) = self.conn.take() {
            if conn.is_usable() && crate::error::may_block() {
                // Best effort: a row left behind is removed by the next subscriber.
                let _ = guard(|| {
                    let _ = conn.batch_execute(
                        "DELETE FROM listeners WHERE pid = pg_backend_pid()",
                        deadline,
                    );
                    Ok::<(), Error>(())
                });
            }
            discard(conn);
        }
    }

    fn fill(&mut self, feed: &EventFeed<'_>, wait: Duration) -> bool {
        while let Some(event) = self.prefetched.pop_front() {
            feed.push(event);
        }
        feed.count_dropped(std::mem::take(&mut self.overflow));
        if self.closed {
            return false;
        }
        // The caller's wait, then at most `REPLY_TIMEOUT` for the server's answers.
        let waited_until = deadline_after(wait);
        let deadline = waited_until
            .checked_add(REPLY_TIMEOUT)
            .unwrap_or(waited_until);
        let _ = guard(|| {
            let filled = self.fill_waiting(feed, wait, waited_until, deadline);
            // Listening ends with the call (see `ReaderConn::listen`); a connection that cannot
            // say so in time is dropped (its session, and its `LISTEN`, end with it).
            if let Some(conn) = self.conn.as_mut() {
                if conn.unlisten(deadline).is_err() {
                    self.drop_connection();
                }
            }
            filled
        });
        true
    }

    /// [`fill`](Self::fill)'s reads and waits, until something was read, or `waited_until`,
    /// or the connection failed. Listens (once) before its first wait: and reads again then,
    /// as a commit between the read and the `LISTEN` sent no notification.
    fn fill_waiting(
        &mut self,
        feed: &EventFeed<'_>,
        wait: Duration,
        waited_until: Instant,
        deadline: Instant,
    ) -> Result<()> {
        let mut waited = false;
        loop {
            let result = self.read_again_if_closed(
                &mut |event| {
                    feed.push(event);
                },
                deadline,
                deadline,
            );
            feed.count_dropped(std::mem::take(&mut self.overflow));
            match result {
                Ok(moved) if moved > 0 || wait.is_zero() || waited => return Ok(()),
                Ok(_) => {}
                Err(_) => {
                    // Connection lost, or no answer in time: reopened at the next call;
                    // the cursor is kept. A short pause (within the caller's wait) keeps a
                    // `recv` from reconnecting in a loop while the server is down.
                    self.drop_connection();
                    let left = waited_until.saturating_duration_since(Instant::now());
                    std::thread::sleep(left.min(Duration::from_millis(100)));
                    return Ok(());
                }
            }
            if let Some(conn) = self.conn.as_mut().filter(|c| !c.is_listening()) {
                let channel = crate::pool::quote_ident(&channel(&self.schema));
                if conn.listen(&channel, deadline).is_err() {
                    self.drop_connection();
                    return Ok(());
                }
                continue;
            }
            waited = true;
            let slice = if self.pending.is_some() || self.before_start.is_some() {
                wait.min(Duration::from_millis(20))
            } else {
                wait
            };
            let until = deadline_after(slice).min(waited_until);
            let broken = match self.conn.as_mut() {
                Some(conn) => conn.wait(until).is_err(),
                None => false,
            };
            if broken {
                self.drop_connection();
            }
        }
    }
}

impl EventSource for OutboxSource {
    fn fill(&mut self, feed: &EventFeed<'_>, wait: Duration) -> bool {
        self.reader.lock().fill(feed, wait)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(counter) = &self.heartbeat_subscribers {
            counter.fetch_sub(1, Ordering::Relaxed);
        }
        self.release_connection(deadline_after(REPLY_TIMEOUT));
    }
}

/// How long closing a reader may take at most (its registry's drop, per subscription): two
/// [`REPLY_TIMEOUT`]s, see [`Reader::close`].
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hodei_workers::{ProviderId, ProviderType, WorkerHandle, WorkerSpec};

    use super::*;

    /// Subscriptions to pause once they have read their start, by schema: each waits twice on
    /// its barrier (there, then until released).
    pub(in crate::events) static AFTER_START: Mutex<Vec<(String, Arc<std::sync::Barrier>)>> =
        Mutex::new(Vec::new());

    /// Called by `subscribe` once its start is read (see [`AFTER_START`]).
    pub(super) fn after_start(schema: &str) {
        let barrier = AFTER_START
            .lock()
            .iter()
            .find(|(s, _)| s == schema)
            .map(|(_, b)| Arc::clone(b));
        if let Some(barrier) = barrier {
            barrier.wait();
            barrier.wait();
        }
    }

    /// Every commit that writes events while someone listens sends each listening reader a
    /// notification, which its client buffers until it is taken. A subscriber that never waits
    /// (`drain`, `try_recv`, a scrape) never took them: they piled up in its connection for as
    /// long as the subscription lived (one per committed change: a leak that grows with the
    /// fleet's activity), and a `recv` that waited later woke once for each of them, reading the
    /// outbox twice per stale notification instead of sleeping (see also
    /// `pg/tests/subscription_waits.rs`). Each read now first takes the notifications already
    /// there: what they announce is visible to that read.
    #[test]
    fn a_subscriber_that_never_waits_keeps_no_backlog_of_notifications() {
        use hodei_workers::WorkerRegistry;
        let (_schema, registry) = crate::test_support::scratch("events_notes");
        let subscription = registry.subscribe(SubscribeOptions::default()).unwrap();
        let reader = registry.inner.readers.lock()[0].upgrade().unwrap();
        let kind = EventKind::ProvisionRequested {
            provider_id: ProviderId::new("p").unwrap(),
        };
        let mut got = 0;
        for _ in 0..100 {
            registry.publish(kind.clone()).unwrap();
            got += subscription.drain().len();
        }
        assert_eq!(got, 100, "every event, as it committed");
        let buffered = reader.lock().conn.as_mut().map(|conn| conn.notified());
        assert!(
            buffered.is_some_and(|n| n <= 2),
            "notifications left in the reader's connection: {buffered:?}"
        );
    }

    /// A session that `LISTEN`s is sent every notifying commit's notification as soon as it is
    /// idle, and a subscriber nobody calls never reads them: once the socket's buffers are full,
    /// its server process blocks sending (`ClientWrite`), and the server's notification queue,
    /// which that process no longer advances, grows with every notifying commit until `NOTIFY`
    /// fails, and with it every commit that notifies (this stop's hunt: 30,000 commits left an
    /// untouched subscription's backend in `ClientWrite`, the queue growing). A reader now
    /// listens only while a call of its subscription waits: between calls it is sent nothing.
    #[test]
    fn a_reader_between_calls_is_sent_no_notifications() {
        use hodei_workers::WorkerRegistry;
        let (_schema, registry) = crate::test_support::scratch("events_idle");
        let subscription = registry.subscribe(SubscribeOptions::default()).unwrap();
        let reader = registry.inner.readers.lock()[0].upgrade().unwrap();
        let kind = EventKind::ProvisionRequested {
            provider_id: ProviderId::new("p").unwrap(),
        };
        let notified = |reader: &Arc<Mutex<Reader>>| {
            // A request on the reader's connection: a notification sent to its session before
            // it answered is received (and counted) before the answer.
            let mut reader = reader.lock();
            let conn = reader.conn.as_mut().expect("the reader's connection");
            conn.batch_execute("SELECT 1", deadline_after(REPLY_TIMEOUT))
                .unwrap();
            conn.notified()
        };
        registry.publish(kind.clone()).unwrap();
        assert_eq!(notified(&reader), 0, "notifications sent between calls");
        assert_eq!(
            subscription.recv(Some(Duration::ZERO)).map(|e| e.kind),
            Some(kind.clone()),
            "the event, read all the same"
        );
        // After a call that waited too.
        assert_eq!(subscription.recv(Some(Duration::from_millis(50))), None);
        registry.publish(kind.clone()).unwrap();
        assert_eq!(notified(&reader), 0, "notifications sent after a wait");
        assert_eq!(
            subscription.recv(Some(Duration::ZERO)).map(|e| e.kind),
            Some(kind)
        );
    }

    /// Dropping the registry reads its subscriptions' backlogs for them, but a subscription
    /// holds at most its capacity: a reader keeps no more than that for it (the oldest), the
    /// rest is counted as dropped, as an in-memory registry drops what its queue cannot hold.
    /// Before, `close` kept the whole backlog in memory (a million events for a subscriber of
    /// capacity 100), and the queue dropped them only at the subscriber's next call.
    #[test]
    fn a_closing_registry_keeps_no_more_than_a_subscription_can_hold() {
        use hodei_workers::WorkerRegistry;
        let (schema, registry) = crate::test_support::scratch("events_unit");
        let (url, name) = (&schema.url, &schema.name);
        let subscription = registry
            .subscribe(SubscribeOptions::default().capacity(3))
            .unwrap();
        let provider = ProviderId::new("p").unwrap();
        let handle = WorkerHandle::new(provider, ProviderType::Docker, "r");
        registry
            .register(handle, Arc::new(WorkerSpec::new("img")))
            .unwrap();
        // A backlog of 5,001 events: the registration's, and 5,000 copies of it.
        let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
        client
            .batch_execute(&format!(
                "SET search_path TO \"{name}\"; \
                 INSERT INTO outbox (seq, xid, at, worker_id, heartbeat, kind) \
                 SELECT nextval('event_seq'), pg_current_xact_id(), o.at, o.worker_id, \
                        o.heartbeat, o.kind \
                 FROM outbox o, generate_series(1, 5000)"
            ))
            .unwrap();
        let reader = registry.inner.readers.lock()[0].upgrade().unwrap();
        drop(registry);
        {
            let reader = reader.lock();
            assert!(reader.closed);
            assert_eq!(
                (reader.prefetched.len(), reader.overflow),
                (3, 4998),
                "kept for the subscription, and counted dropped"
            );
        }
        let got: Vec<u64> = std::iter::from_fn(|| subscription.recv(None))
            .map(|e| e.seq)
            .collect();
        assert_eq!(got, [1, 2, 3], "the oldest, then the stream ends");
        assert_eq!(subscription.dropped(), 4998);
    }
}
