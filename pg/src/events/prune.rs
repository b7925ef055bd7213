//! Pruning the outbox: by count (the registry's own retention) and by age (the host's
//! `prune_events`), counting in the `dropped()` of each subscription of the pruning handle
//! every deleted event it had not read (see the parent module's docs on gaps).

use std::sync::Arc;
use std::time::Duration;

use hodei_workers::Result;
use parking_lot::Mutex;

use super::{subscriber_drops, Reader};
use crate::registry::PostgresWorkerRegistry;
use crate::schema::channel;

/// Lets every live subscription of this registry handle that is not in a call of its own read
/// what the outbox holds, as a scrape does (`subscriber_drops`): run before the outbox is
/// pruned, so that what a subscriber of this handle that stopped reading loses is counted in
/// its `dropped()` as an in-memory registry counts it, instead of vanishing as a `seq` gap.
/// The subscriptions of other handles and processes read only when used: for them, events
/// pruned before they read them remain an uncounted gap.
fn catch_up_before_pruning(registry: &PostgresWorkerRegistry) {
    let _ = subscriber_drops(registry);
}

/// Events the outbox keeps at least (the newest ones), when pruned by the registry itself.
pub const EVENTS_KEPT: i64 = 1_000_000;

/// `prune_outbox`: the seqs more than `$1` below the newest and less than `$2` above the
/// oldest (`$1`, `$2` ≥ 0), one range of the primary key. Seqs are stored as `v - 2^63` (the
/// first is `-2^63 + 1`), so the bounds are clamped before the arithmetic: `max(seq) - $1`
/// overflowed `bigint` ("bigint out of range") whenever fewer than `$1` events had ever been
/// written, and `min(seq) + $2` near the top of the range.
const PRUNE_BY_COUNT: &str = "DELETE FROM outbox \
     WHERE seq < (SELECT greatest(max(seq), (-9223372036854775807 - 1) + $1) - $1 FROM outbox) \
     AND seq < (SELECT least(min(seq), 9223372036854775807 - $2) + $2 FROM outbox)";

/// `prune_events`: the longest `seq`-prefix of the outbox whose events are all older than `$1`,
/// never the newest event. One statement: its two bounds are read on its snapshot, each from
/// one end of the primary key (the first event not older than `$1`, walked from the oldest, and
/// the newest), so it reads what it deletes and one row more. A prefix and not every event
/// older than `$1`: `at` is not monotonic in `seq`, and deleting by `at` alone cut holes in the
/// middle of what a subscriber behind had yet to read, leaving younger events below them.
const PRUNE_BY_AGE: &str = "DELETE FROM outbox WHERE seq < least( \
     (SELECT min(seq) FROM outbox WHERE at >= $1), (SELECT max(seq) FROM outbox))";

/// `prune` (a statement of `n` parameters deleting from the outbox) answering the number it
/// deleted, and the seq, `heartbeat` flag and writer (full xid, as text) of each deleted event a
/// reader of this handle may not have read: past the lowest cursor (`$n+1`), or written by a
/// writer one of them waits for since it was made (`$n+2`). One statement.
fn counting(prune: &str, n: usize) -> String {
    let unread = format!("seq > ${} OR xid = ANY(${})", n + 1, n + 2);
    format!(
        "WITH d AS ({prune} RETURNING seq, heartbeat, xid::text AS xid) \
         SELECT count(*), \
         coalesce(array_agg(seq ORDER BY seq) FILTER (WHERE {unread}), '{{}}'), \
         coalesce(array_agg(heartbeat ORDER BY seq) FILTER (WHERE {unread}), '{{}}'), \
         coalesce(array_agg(xid ORDER BY seq) FILTER (WHERE {unread}), '{{}}') FROM d"
    )
}

/// The events a prune deleted that a reader of the pruning handle may not have read.
#[derive(Debug, Default)]
struct Pruned {
    seqs: Vec<i64>,
    heartbeats: Vec<bool>,
    xids: Vec<String>,
}

impl Reader {
    /// Counts in the subscription's `dropped()` (at its next call) the events of `pruned` it
    /// had not read, and so will never hand out: past its cursor, or of a writer it waits for
    /// since it was made; not the heartbeats it did not opt in to. Exact only while the reader
    /// has not read since the prune's delete began: its caller holds it throughout.
    fn count_pruned(&mut self, pruned: &Pruned) {
        if self.closed {
            return;
        }
        let rows = pruned.seqs.iter().zip(&pruned.heartbeats).zip(&pruned.xids);
        for ((seq, heartbeat), xid) in rows {
            let early = self.before_start.as_ref().is_some_and(|(start, xids)| {
                seq <= start && xid.parse().is_ok_and(|x: u64| xids.contains(&x))
            });
            if (*seq > self.cursor || early) && (self.heartbeats || !heartbeat) {
                self.overflow += 1;
            }
        }
    }
}

impl PostgresWorkerRegistry {
    /// Runs `prune` (see [`counting`]), counting in the `dropped()` of each subscription of this
    /// handle the events it deletes that the subscription had not read, whatever the
    /// subscriber is doing (waiting out a gap, in a `recv` on another thread, reading a
    /// backlog), as its queue's drops are counted. First the idle ones read
    /// ([`catch_up_before_pruning`]), so that their queues hold the oldest, as in memory; then
    /// every reader of the handle is held until the delete has answered, so that what each had
    /// read is exact. A reader busy then is first woken by a notification on the registry's
    /// channel (a `recv` in its wait would otherwise hold the prune up to a second; one
    /// waiting out a gap reads every 20 ms). Events deleted by a run whose answer was lost (the statement runs once
    /// more on a new connection when its connection fails) are not counted. Returns the number
    /// deleted.
    fn prune_counted(
        &self,
        prune: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<u64> {
        // Held until the delete has answered: a subscription made meanwhile reads its start
        // after it (see `subscribe`), so none of its events is deleted uncounted.
        let list = self.inner.readers.lock();
        let readers: Vec<Arc<Mutex<Reader>>> =
            list.iter().filter_map(std::sync::Weak::upgrade).collect();
        // A reader in a `recv`'s wait holds its lock for as long as that wait (a second at a
        // time through `Subscription::recv`), and this prune runs on the leader's tick path: a
        // notification on the channel the reader LISTENs to wakes it at once. Only when one is
        // busy (every listener of the registry, in every process, wakes for it and reads once).
        if readers.iter().any(|reader| reader.try_lock().is_none()) {
            let wake = channel(self.inner.pool.schema());
            let _ = self.run("waking the readers before a prune", |conn| {
                conn.client.execute("SELECT pg_notify($1, '')", &[&wake])?;
                Ok(())
            });
        }
        catch_up_before_pruning(self);
        // Always in the list's order: two prunes of one handle take them in the same order.
        let mut held: Vec<_> = readers.iter().map(|reader| reader.lock()).collect();
        let lowest = held.iter().map(|r| r.cursor).min().unwrap_or(i64::MAX);
        let early: Vec<String> = held
            .iter()
            .filter_map(|r| r.before_start.as_ref())
            .flat_map(|(_, xids)| xids.iter().map(u64::to_string))
            .collect();
        let sql = counting(prune, params.len());
        let (deleted, pruned) = self.run("pruning events", |conn| {
            let stmt = conn.prepare(&sql)?;
            let mut all = params.to_vec();
            all.push(&lowest);
            all.push(&early);
            let row = conn.client.query_one(&stmt, &all)?;
            let pruned = Pruned {
                seqs: row.get(1),
                heartbeats: row.get(2),
                xids: row.get(3),
            };
            Ok((row.get::<_, i64>(0), pruned))
        })?;
        for reader in &mut held {
            reader.count_pruned(&pruned);
        }
        drop(list);
        Ok(deleted as u64)
    }

    /// Deletes the oldest events but the newest `keep` ([`EVENTS_KEPT`] when the registry
    /// prunes itself, at most once a minute: `crate::retention`), at most the `batch` oldest
    /// seqs at a time (an index range on `seq`). What this handle's subscriptions had not read
    /// is counted in their `dropped()` ([`prune_counted`](Self::prune_counted)); a subscriber
    /// of another handle more than `keep` events behind sees a gap. Returns the number deleted.
    pub(crate) fn prune_outbox(&self, keep: i64, batch: i64) -> Result<u64> {
        self.prune_counted(PRUNE_BY_COUNT, &[&keep, &batch])
    }

    /// Deletes the oldest events, in `seq` order, up to the first one not older than
    /// `older_than` (by its `at`, on the registry's clock), keeping the newest one (it carries
    /// the seq a new subscription starts from): what is left is always every event from some
    /// `seq` on, never a range cut out of the middle. `at` does not follow `seq` exactly
    /// (replicas' clocks, transactions committing out of order: DESIGN.md §10, "Event
    /// times"), so an event older than the cutoff behind a younger one stays until that one
    /// is old too. Returns the number deleted: by the last run of the statement, which runs
    /// once more on a new connection when the server closed the first under it (a prune is
    /// idempotent), so a count whose reply was lost is not in it. Every event it deletes that a
    /// subscription of this registry handle had not read is counted in that subscription's
    /// `dropped()` (those not in a call of their own read first, so their queues hold the
    /// oldest; the prune then waits for each reader to be between two reads, and wakes one
    /// waiting in a `recv` with a notification on the registry's channel); a subscriber of
    /// another handle or process that had not read them sees a `seq` gap.
    ///
    /// # Errors
    /// `Backend`.
    pub fn prune_events(&self, older_than: Duration) -> Result<u64> {
        use hodei_workers::WorkerRegistry;
        let cutoff = crate::sql::db_ts(self.now().saturating_sub(crate::sql::millis(older_than)));
        self.prune_counted(PRUNE_BY_AGE, &[&cutoff])
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use hodei_workers::{EventKind, ProviderId, SubscribeOptions};

    use super::super::connection::REPLY_TIMEOUT;
    use super::super::tests::AFTER_START;
    use super::*;

    /// A prune of the handle that runs while a subscription of it is being made, between the
    /// read of its start and its return, deletes an event of a writer that was in progress at
    /// the start (so the subscription's, committed after it): the subscription must hand it
    /// out or count it in `dropped()`, as it counts every event a prune of its handle deletes
    /// before it read it. Before, the reader joined the handle's list only after its start was
    /// read, so the prune neither waited for it nor counted the event: a silent gap.
    #[test]
    fn a_prune_racing_a_new_subscription_counts_what_it_deletes_of_it() {
        use hodei_workers::WorkerRegistry;
        let (schema, registry) = crate::test_support::scratch("events_prune_subscribe");
        let registry = Arc::new(registry);
        let mut writer = postgres::Client::connect(&schema.url, postgres::NoTls).unwrap();
        writer
            .batch_execute(&format!("SET search_path TO \"{}\"", schema.name))
            .unwrap();
        let kind = EventKind::ProvisionRequested {
            provider_id: ProviderId::new("p").unwrap(),
        };
        // A writer in progress, holding the outbox's lock (its xid taken before its seq, as
        // every registry statement takes them), with an event older than the prune's cutoff.
        let mut open = writer.transaction().unwrap();
        open.batch_execute(
            "INSERT INTO outbox (xid, seq, at, worker_id, kind) SELECT x, nextval('event_seq'), \
             0, NULL, '{\"type\":\"leader_changed\"}' FROM (SELECT pg_current_xact_id() AS x) t",
        )
        .unwrap();
        registry.publish(kind.clone()).unwrap();
        let barrier = Arc::new(std::sync::Barrier::new(2));
        AFTER_START
            .lock()
            .push((schema.name.clone(), Arc::clone(&barrier)));
        let subscribing = {
            let registry = Arc::clone(&registry);
            std::thread::spawn(move || registry.subscribe(SubscribeOptions::default()))
        };
        barrier.wait(); // The subscription has read its start: the writer is in progress.
        open.commit().unwrap();
        registry.publish(kind.clone()).unwrap();
        let pruning = {
            let registry = Arc::clone(&registry);
            // The seqs more than one below the newest: the writer's.
            std::thread::spawn(move || registry.prune_outbox(1, crate::retention::PRUNE_BATCH))
        };
        // Time for the prune to run to its end, if nothing holds it.
        std::thread::sleep(Duration::from_millis(300));
        barrier.wait();
        let subscription = subscribing.join().unwrap().unwrap();
        AFTER_START.lock().retain(|(s, _)| *s != schema.name);
        let deleted = pruning.join().unwrap().unwrap();
        assert_eq!(deleted, 1, "the writer's event");
        let got = subscription.drain();
        assert_eq!(got.len(), 1, "the newest event: {got:?}");
        assert_eq!(
            subscription.dropped(),
            1,
            "the writer's event, deleted before the subscription read it, is counted"
        );
    }

    /// The prune by count, at either end of the seqs' range (stored as `v - 2^63`): a
    /// registry that wrote fewer events than it keeps has nothing to prune, and one whose seqs
    /// reach the top of the range (a restored snapshot's) prunes as any other. Before, both
    /// failed with "bigint out of range" (an error the health-check path ignores: at the top,
    /// the outbox was never pruned).
    #[test]
    fn a_prune_by_count_works_at_both_ends_of_the_seq_range() {
        let (schema, registry) = crate::test_support::scratch("events_prune_count");
        let (url, name) = (&schema.url, &schema.name);
        let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
        client
            .batch_execute(&format!("SET search_path TO \"{name}\""))
            .unwrap();
        let insert = |client: &mut postgres::Client, n: usize| {
            for _ in 0..n {
                client
                    .execute(
                        "INSERT INTO outbox (seq, xid, at, worker_id, kind) \
                         VALUES (nextval('event_seq'), pg_current_xact_id(), 0, NULL, \
                                 '{\"type\":\"leader_changed\"}')",
                        &[],
                    )
                    .unwrap();
            }
        };
        let count = |client: &mut postgres::Client| -> i64 {
            client
                .query_one("SELECT count(*) FROM outbox", &[])
                .unwrap()
                .get(0)
        };
        insert(&mut client, 5);
        assert_eq!(
            registry
                .prune_outbox(EVENTS_KEPT, crate::retention::PRUNE_BATCH)
                .unwrap(),
            0
        );
        assert_eq!(registry.prune_outbox(2, 2).unwrap(), 2, "seqs 1 and 2");
        assert_eq!(count(&mut client), 3);
        // The top of the range: seqs up to u64::MAX - 1 (stored i64::MAX - 1).
        client
            .batch_execute(
                "DELETE FROM outbox; SELECT setval('event_seq', 9223372036854775807 - 7)",
            )
            .unwrap();
        insert(&mut client, 6);
        assert_eq!(
            registry
                .prune_outbox(2, crate::retention::PRUNE_BATCH)
                .unwrap(),
            3
        );
        assert_eq!(count(&mut client), 3);
    }

    /// `at` is not monotonic in `seq` (replicas' clocks, transactions committing out of
    /// order), so a prune by age deletes a `seq`-prefix: the events up to the first one not
    /// older than the cutoff, never the newest. Before, it deleted every event older than the
    /// cutoff: holes in the middle of what a subscriber behind had yet to read, with younger
    /// events left below them. Its statement reads the primary key from both ends.
    #[test]
    fn a_prune_by_age_deletes_a_prefix_in_seq_when_at_is_out_of_order() {
        use hodei_workers::WorkerRegistry;
        let (schema, registry) = crate::test_support::scratch("events_prune_age");
        let (url, name) = (&schema.url, &schema.name);
        let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
        client
            .batch_execute(&format!("SET search_path TO \"{name}\""))
            .unwrap();
        let now = registry.now();
        let minutes_ago = |m: u64| crate::sql::db_ts(now - m * 60_000);
        // Events in seq order, each this many minutes old; prunes of what is older than an
        // hour. The oldest events are first, but a younger one (10 min) sits between them.
        let mut seqs = Vec::new();
        let insert = |client: &mut postgres::Client, seqs: &mut Vec<i64>, ages: &[u64]| {
            for age in ages {
                let row = client
                    .query_one(
                        "INSERT INTO outbox (seq, xid, at, worker_id, kind) \
                         VALUES (nextval('event_seq'), pg_current_xact_id(), $1, NULL, \
                                 '{\"type\":\"leader_changed\"}') RETURNING seq",
                        &[&minutes_ago(*age)],
                    )
                    .unwrap();
                seqs.push(row.get::<_, i64>(0));
            }
        };
        let left = |client: &mut postgres::Client| -> Vec<i64> {
            client
                .query("SELECT seq FROM outbox ORDER BY seq", &[])
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect()
        };
        insert(&mut client, &mut seqs, &[180, 120, 10, 150, 120, 5, 90]);
        let hour = Duration::from_secs(3600);
        assert_eq!(registry.prune_events(hour).unwrap(), 2);
        assert_eq!(
            left(&mut client),
            seqs[2..],
            "the prefix up to the 10-minute one"
        );
        // Once the younger one is old too, the older ones behind it go with it, up to the
        // 5-minute one.
        client
            .execute(
                "UPDATE outbox SET at = $1 WHERE seq = $2",
                &[&minutes_ago(61), &seqs[2]],
            )
            .unwrap();
        assert_eq!(registry.prune_events(hour).unwrap(), 3);
        assert_eq!(left(&mut client), seqs[5..]);
        // Nothing younger than the cutoff but the newest itself: all go but the newest.
        insert(&mut client, &mut seqs, &[120, 240, 70]);
        client
            .execute(
                "UPDATE outbox SET at = $1 WHERE seq = $2",
                &[&minutes_ago(61), &seqs[5]],
            )
            .unwrap();
        assert_eq!(registry.prune_events(hour).unwrap(), 4);
        assert_eq!(left(&mut client), seqs[9..]);
        assert_eq!(registry.prune_events(hour).unwrap(), 0, "the newest stays");

        // Its plan reads the primary key (from the oldest for the first young event, from the
        // newest for the last, then the range it deletes): no other index, no sequential scan.
        client
            .batch_execute(&format!(
                "SET enable_seqscan = off; DEALLOCATE ALL; PREPARE q AS {PRUNE_BY_AGE}"
            ))
            .unwrap();
        let plan: Vec<String> = client
            .query("EXPLAIN EXECUTE q(0)", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let scans: Vec<&String> = plan.iter().filter(|l| l.contains("Scan")).collect();
        assert!(
            scans.len() >= 3
                && scans
                    .iter()
                    .all(|l| l.contains("outbox_pkey") || l.contains("Bitmap Heap Scan")),
            "plan: {plan:#?}"
        );
    }

    /// The prune, on the leader's tick path once a minute, waits for each reader of its handle
    /// to be between two reads. A reader waiting for a notification (a `recv` with nothing to
    /// read) held it for its whole wait: a tick a minute up to a second late for a host with a
    /// subscriber in `recv` (the wait is a second at a time through `Subscription::recv`; here
    /// the reader's own wait is given a minute). The prune now wakes it first (clarified
    /// 2026-12-07).
    #[test]
    fn a_prune_wakes_a_reader_waiting_for_a_notification() {
        use hodei_workers::WorkerRegistry;
        let (schema, registry) = crate::test_support::scratch("events_prune_wakes");
        let _subscription = registry.subscribe(SubscribeOptions::default()).unwrap();
        let reader = registry.inner.readers.lock()[0].upgrade().unwrap();
        let (reader, registry) = (&reader, &registry);
        let channel = crate::pool::quote_ident(&channel(&schema.name));
        std::thread::scope(|s| {
            let (waiting, wait_began) = std::sync::mpsc::channel();
            s.spawn(move || {
                let mut r = reader.lock();
                let conn = r.conn.as_mut().expect("the subscription's connection");
                // As a `fill` that waits: listening first.
                conn.listen(&channel, Instant::now() + REPLY_TIMEOUT)
                    .unwrap();
                conn.take_notifications().unwrap();
                waiting.send(()).unwrap();
                let _ = conn.wait(Instant::now() + Duration::from_secs(60));
            });
            wait_began.recv().unwrap();
            let (pruned, prune_done) = std::sync::mpsc::channel();
            s.spawn(move || {
                let _ = pruned.send(registry.prune_outbox(EVENTS_KEPT, 10));
            });
            let outcome = prune_done.recv_timeout(Duration::from_secs(30));
            assert!(
                matches!(outcome, Ok(Ok(_))),
                "the prune waited for the reader's wait to end: {outcome:?}"
            );
        });
    }
}
