//! What only a shared database can get wrong: replicas racing for claims and migrations,
//! events committed out of seq order, SQL errors mapped to the core's kinds, the database
//! clock. Against the server of `HODEI_PG_URL`.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::*;
use hodei_workers::*;
use hodei_workers_postgres::PostgresWorkerRegistry;
use postgres::{Client, NoTls};

fn raw(schema: &str) -> Client {
    let mut client = Client::connect(&url(), NoTls).expect("raw connection");
    client
        .batch_execute(&format!("SET search_path TO \"{schema}\""))
        .unwrap();
    client
}

/// Asserts that `sql`, planned in `schema` with sequential scans ruled out, reads `index`.
fn assert_plan_uses(schema: &str, sql: &str, index: &str) {
    let mut client = raw(schema);
    client.batch_execute("SET enable_seqscan = off").unwrap();
    let plan: Vec<String> = client
        .query(&format!("EXPLAIN {sql}"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        plan.iter().any(|line| line.contains(index)),
        "plan of {sql}: {plan:?}"
    );
}

/// A second replica on the registry's schema (its own pool), on the same clock.
fn replica(name: &str, clock: Arc<ManualClock>) -> PostgresWorkerRegistry {
    PostgresWorkerRegistry::connect_with_clock(&url(), name, clock).unwrap()
}

#[test]
fn replicas_starting_at_once_apply_each_migration_once() {
    let _schema = SchemaGuard::new("migrate");
    let name = _schema.name.clone();
    let barrier = Arc::new(Barrier::new(6));
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let (name, barrier) = (name.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                PostgresWorkerRegistry::connect(&url(), &name).map(|_| ())
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap().expect("every replica connects");
    }
    let mut client = raw(&name);
    let versions: Vec<i32> = client
        .query("SELECT version FROM migrations ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
}

#[test]
fn migration_v3_backfills_the_pool_counts_of_an_existing_fleet() {
    // A registry at v2 with pooled workers in several states (v3 to v5 undone by hand: what
    // an older build left behind), then a new build connects: by_pool must count them.
    let (clock, registry, _schema) = registry("poolmig");
    let pooled = |p: &str| Arc::new(WorkerSpec::new("img").with_label(POOL_LABEL, p));
    let a = ready(&registry, pooled("a"));
    registry.assign_to_job(&a, job("j")).unwrap();
    ready(&registry, pooled("a"));
    registry.register(handle(), pooled("b")).unwrap();
    ready(&registry, spec());
    let expected = registry.stats().unwrap();
    assert_eq!(expected.by_pool["a"].busy, 1);
    drop(registry);
    let mut client = raw(&_schema.name);
    client
        .batch_execute(
            "DROP TRIGGER pool_insert ON workers; DROP TRIGGER pool_state ON workers; \
             DROP TRIGGER pool_delete ON workers; DROP FUNCTION count_pool(); \
             DROP TABLE pool_counts; ALTER TABLE workers DROP COLUMN pool; \
             DROP INDEX workers_terminal; DROP INDEX known_ids_retired; \
             DELETE FROM migrations WHERE version >= 3;",
        )
        .unwrap();
    let upgraded = replica(&_schema.name, clock);
    let stats = upgraded.stats().unwrap();
    assert_eq!(stats, expected, "backfilled");
    let all = upgraded.find(&WorkerFilter::new()).unwrap();
    assert_eq!(stats, WorkerRegistryStats::recount(&all));
    // And maintained from then on.
    let b = upgraded
        .find(&WorkerFilter::new().label(POOL_LABEL, "b"))
        .unwrap()[0]
        .id;
    upgraded.update_state(&b, WorkerState::Ready).unwrap();
    let stats = upgraded.stats().unwrap();
    assert_eq!(
        (stats.by_pool["b"].creating, stats.by_pool["b"].ready),
        (0, 1)
    );
}

/// A registry upgraded by a migration holds the fleet `before` held (workers, retired ids,
/// event seq) and keeps the invariants.
fn assert_the_fleet_survives(before: &Snapshot, upgraded: &PostgresWorkerRegistry) {
    let after = upgraded.snapshot().unwrap();
    assert_eq!(
        (&after.workers, &after.retired_ids, after.seq),
        (&before.workers, &before.retired_ids, before.seq),
        "the fleet survives"
    );
    assert_invariants(upgraded);
}

/// The schema's version as recorded, and the rows of its tables that hold the fleet.
fn version_and_fleet(schema: &str) -> (i32, i64, i64, i64) {
    let row = raw(schema)
        .query_one(
            "SELECT (SELECT max(version) FROM migrations), (SELECT count(*) FROM workers), \
                 (SELECT count(*) FROM known_ids), (SELECT count(*) FROM outbox)",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

/// Asserts that `result` is the refusal of a schema at `newer` by a build that knows `latest`.
fn assert_refuses_newer(result: Result<PostgresWorkerRegistry>, newer: i32, latest: i32) {
    match result {
        Err(Error::Backend(text)) => assert!(
            text.contains(&format!("schema version {newer}"))
                && text.contains(&format!("this build knows up to version {latest}")),
            "{text}"
        ),
        other => panic!("expected Backend refusing schema v{newer}, got {other:?}"),
    }
}

#[test]
fn a_schema_newer_than_this_build_is_refused_and_left_untouched() {
    // A newer build migrated the registry past what this build knows (a rolled-back deploy,
    // an old replica left running): this build must not run its statements against tables
    // whose shape it does not know.
    let (_clock, registry, _schema) = registry("newer");
    let id = ready(&registry, spec());
    registry.assign_to_job(&id, job("j")).unwrap();
    drop(registry);
    let latest = version_and_fleet(&_schema.name).0;
    let newer = latest + 1;
    raw(&_schema.name)
        .execute("INSERT INTO migrations (version) VALUES ($1)", &[&newer])
        .unwrap();
    let before = version_and_fleet(&_schema.name);

    assert_refuses_newer(
        PostgresWorkerRegistry::connect(&url(), &_schema.name),
        newer,
        latest,
    );
    assert_refuses_newer(
        PostgresWorkerRegistry::connect_with_clock(
            &url(),
            &_schema.name,
            Arc::new(ManualClock::new(T0)),
        ),
        newer,
        latest,
    );
    assert_eq!(version_and_fleet(&_schema.name), before, "nothing changed");

    // Also when it is found newer only under the migrations' lock: the open read an older
    // version, and a newer build migrated past this one's while the open waited for the lock.
    let mut client = raw(&_schema.name);
    client
        .execute("DELETE FROM migrations WHERE version >= $1", &[&latest])
        .unwrap();
    let mut newer_build = client.transaction().unwrap();
    newer_build
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('hodei-workers:' || $1, 0))",
            &[&_schema.name],
        )
        .unwrap();
    newer_build
        .execute(
            "INSERT INTO migrations (version) VALUES ($1), ($2)",
            &[&latest, &newer],
        )
        .unwrap();
    let name = _schema.name.clone();
    let opening = thread::spawn(move || PostgresWorkerRegistry::connect(&url(), &name));
    // Until the open waits for the lock (read the old version, then asked for the lock).
    let mut watcher = raw(&_schema.name);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while watcher
        .query_one(
            "SELECT count(*) FROM pg_locks, \
                 hashtextextended('hodei-workers:' || $1, 0) AS k(key) \
             WHERE locktype = 'advisory' AND NOT granted \
                 AND classid::int8 = (k.key >> 32) & 4294967295 \
                 AND objid::int8 = k.key & 4294967295",
            &[&_schema.name],
        )
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the open never waited for the migrations' lock"
        );
        thread::sleep(Duration::from_millis(10));
    }
    newer_build.commit().unwrap();
    assert_refuses_newer(opening.join().unwrap(), newer, latest);
    assert_eq!(version_and_fleet(&_schema.name), before, "nothing changed");
}

#[test]
fn a_registry_made_when_v2_was_the_leases_table_gets_the_managers_lease() {
    // Main briefly shipped schema v2 as `CREATE TABLE leases (name, holder, term, expires_at
    // timestamptz)` (the LeaderLease of pg/src/lease.rs, up to 8ebf63c); v2 was then rewritten
    // in place as `manager_leases`. A registry made by such a build has migration 2 recorded
    // and no `manager_leases`: rebuilt here as that build left it (v3 to v5 undone, v2's table
    // swapped), then a new build connects. Its replicas must be able to lead, and the fleet
    // must be intact.
    let (clock, registry, _schema) = registry("leasemig");
    let busy = ready(&registry, spec());
    registry.assign_to_job(&busy, job("j")).unwrap();
    let gone = ready(&registry, spec());
    registry
        .unregister(&gone, TerminationReason::Requested)
        .unwrap();
    let before = registry.snapshot().unwrap();
    drop(registry);
    let mut client = raw(&_schema.name);
    client
        .batch_execute(
            "DROP TRIGGER pool_insert ON workers; DROP TRIGGER pool_state ON workers; \
             DROP TRIGGER pool_delete ON workers; DROP FUNCTION count_pool(); \
             DROP TABLE pool_counts; ALTER TABLE workers DROP COLUMN pool; \
             DROP INDEX workers_terminal; DROP INDEX known_ids_retired; \
             DROP TABLE manager_leases; \
             CREATE TABLE leases (name text PRIMARY KEY, holder text NOT NULL, \
                 term bigint NOT NULL, expires_at timestamptz NOT NULL); \
             DELETE FROM migrations WHERE version >= 3;",
        )
        .unwrap();
    let upgraded = replica(&_schema.name, clock.clone());
    assert_the_fleet_survives(&before, &upgraded);
    let lease = upgraded.leadership("a", Duration::from_secs(10)).unwrap();
    let term = match lease.acquire_or_renew(None) {
        Ok(LeaseStatus::Held(info)) => info.term,
        other => panic!("the lease of an upgraded registry: {other:?}"),
    };
    // The leader's fenced writes work too (they read the lease row).
    let fenced = upgraded.fenced(&lease, term).expect("a fenced view");
    fenced
        .update_state(&busy, WorkerState::Draining)
        .expect("a fenced write on the upgraded registry");
    // And a second replica sees the same lease: one leader.
    let other = replica(&_schema.name, clock);
    let other_lease = other.leadership("b", Duration::from_secs(10)).unwrap();
    assert!(
        matches!(
            other_lease.acquire_or_renew(None),
            Ok(LeaseStatus::Follower(_))
        ),
        "the second replica follows"
    );
}

#[test]
fn terminal_ids_read_the_terminal_index_not_the_fleet() {
    let (_clock, registry, _schema) = registry("terminal");
    let live: Vec<WorkerId> = (0..20).map(|_| ready(&registry, spec())).collect();
    registry
        .update_state(&live[3], WorkerState::Terminating)
        .unwrap();
    registry
        .update_state(&live[7], WorkerState::Terminated)
        .unwrap();
    let mut ids = registry.terminal_ids().unwrap();
    ids.sort();
    let mut expected = vec![live[3], live[7]];
    expected.sort();
    assert_eq!(ids, expected);
    // The query the registry sends (its predicate as literals, as the index states it) can be
    // answered from the partial index: with sequential scans ruled out, the plan names it.
    assert_plan_uses(
        &_schema.name,
        "SELECT id FROM workers WHERE state IN (5, 6)",
        "workers_terminal",
    );
}

#[test]
fn claims_from_two_replicas_never_share_a_worker_or_a_job() {
    let (clock, a, _schema) = registry("claims");
    let b = replica(a.schema(), clock.clone());
    let workers: Vec<WorkerId> = (0..40).map(|_| ready(&a, spec())).collect();
    // 8 threads, 4 per replica, each claiming from a shared pool of 60 jobs: every claim of a
    // job held elsewhere must be refused, and no worker may get two jobs.
    let replicas: [Arc<dyn WorkerRegistry>; 2] = [Arc::new(a), Arc::new(b)];
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let registry = Arc::clone(&replicas[t % 2]);
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let mut won = Vec::new();
                for j in 0..60 {
                    match registry.claim(&WorkerFilter::new(), job(&format!("job-{j}"))) {
                        Ok(Some(w)) => won.push((j, w.id)),
                        Ok(None) | Err(Error::JobAlreadyAssigned { .. }) => {}
                        Err(e) => panic!("claim failed: {e}"),
                    }
                }
                won
            })
        })
        .collect();
    let mut by_job: BTreeMap<usize, WorkerId> = BTreeMap::new();
    let mut by_worker = HashSet::new();
    for t in threads {
        for (j, w) in t.join().unwrap() {
            assert!(by_job.insert(j, w).is_none(), "job {j} claimed twice");
            assert!(by_worker.insert(w), "worker {w} claimed twice");
        }
    }
    assert_eq!(by_job.len(), 40, "every worker got exactly one job");
    let all = assert_invariants(&*replicas[1]);
    for w in &all {
        assert!(workers.contains(&w.id));
        assert_eq!(w.state, WorkerState::Busy);
    }
}

#[test]
fn assigning_one_job_on_two_replicas_at_once_has_one_winner() {
    for round in 0..10 {
        let (clock, a, _schema) = registry("assign");
        let b = replica(a.schema(), clock);
        let wa = ready(&a, spec());
        let wb = ready(&a, spec());
        let barrier = Arc::new(Barrier::new(2));
        let b = Arc::new(b);
        let other = {
            let (b, barrier) = (b.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                b.assign_to_job(&wb, job("the-job"))
            })
        };
        barrier.wait();
        let mine = a.assign_to_job(&wa, job("the-job"));
        let theirs = other.join().unwrap();
        let (ok, refused) = match (mine, theirs) {
            (Ok(w), Err(e)) | (Err(e), Ok(w)) => (w, e),
            other => panic!("round {round}: exactly one must win, got {other:?}"),
        };
        assert_eq!(
            refused,
            Error::JobAlreadyAssigned {
                job_id: job("the-job"),
                worker_id: ok.id
            },
            "round {round}: the unique index names the holder"
        );
        assert_invariants(&a);
    }
}

/// Events committed before the registry handle is dropped still reach its subscribers (as in
/// memory, and as `Inner`'s drop promises), also when a transaction of another replica holds
/// an earlier seq open at that moment: its event, committed after the drop, is no longer this
/// stream's, and the events committed before must not wait for it. Before, the closing read
/// stopped at the gap, ended the stream, and the committed events were lost, counted nowhere.
#[test]
fn a_dropped_registry_delivers_what_committed_before_past_a_writer_in_flight() {
    let (_clock, registry, _schema) = registry("close_gap");
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    let first = registry.register(handle(), spec()).unwrap().id;
    assert_eq!(events.drain().len(), 1);
    // A transaction of "another replica" takes the next seq and stays open.
    let mut slow = raw(registry.schema());
    let mut tx = slow.transaction().unwrap();
    tx.execute(
        "INSERT INTO outbox (xid, seq, at, kind) SELECT pg_current_xact_id(), \
         nextval('event_seq'), -9223372036854775808, 'x'",
        &[],
    )
    .unwrap();
    // Committed after it, before the drop.
    registry.update_state(&first, WorkerState::Ready).unwrap();
    drop(registry);
    let got: Vec<&str> = std::iter::from_fn(|| events.recv(Some(Duration::from_secs(5))))
        .map(|e| e.kind.name())
        .collect();
    assert_eq!(got, ["state_changed"], "what committed before the drop");
    assert_eq!(events.dropped(), 0);
    tx.rollback().unwrap();
}

/// Events committed before the registry handle is dropped reach its subscribers also when the
/// reader's connection was closed by the server since its last read (a restart, an
/// administrator, `idle_session_timeout`): the client learns of it only at its next request,
/// which for a reader is the closing read, so that read runs once more on a new connection, as
/// a subscriber's next call would. Before, the closing read failed on the dead connection and
/// the stream ended without them, counted nowhere.
#[test]
fn a_dropped_registry_delivers_what_committed_before_when_the_readers_session_had_ended() {
    let (_clock, registry, _schema) = registry("close_dead");
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    let id = registry.register(handle(), spec()).unwrap().id;
    // The reader's session ends (its subscription idle since it was made).
    let mut admin = raw(registry.schema());
    support::end_the_only_reader_session(&mut admin);
    registry.update_state(&id, WorkerState::Ready).unwrap();
    drop(registry);
    let got: Vec<&str> = std::iter::from_fn(|| events.recv(Some(Duration::from_secs(5))))
        .map(|e| e.kind.name())
        .collect();
    assert_eq!(
        got,
        ["registered", "state_changed"],
        "what committed before the drop"
    );
    assert_eq!(events.dropped(), 0);
}

#[test]
fn events_committed_out_of_seq_order_are_delivered_in_order_and_none_is_skipped() {
    let (_clock, registry, _schema) = registry("order");
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    let first = registry.register(handle(), spec()).unwrap().id;
    // A transaction of "another replica" takes the next seq and stays open.
    let mut slow = raw(registry.schema());
    let mut tx = slow.transaction().unwrap();
    tx.execute("SELECT pg_current_xact_id()", &[]).unwrap();
    let held: i64 = tx
        .query_one(
            "INSERT INTO outbox (xid, seq, at, kind) SELECT pg_current_xact_id(), \
             nextval('event_seq'), -9223372036854775808, $1 RETURNING seq",
            &[&serde_json::to_string(&EventKind::ProvisionRequested {
                provider_id: provider("slow"),
            })
            .unwrap()],
        )
        .unwrap()
        .get(0);
    // Later changes commit first.
    registry.update_state(&first, WorkerState::Ready).unwrap();
    let got = events.drain();
    assert_eq!(
        got.len(),
        1,
        "only the registration: the next seq is in flight"
    );
    assert_eq!(got[0].kind.name(), "registered");
    assert!(
        events.drain().is_empty(),
        "still waiting for the open transaction"
    );
    tx.commit().unwrap();
    let got = events.drain();
    let names: Vec<&str> = got.iter().map(|e| e.kind.name()).collect();
    assert_eq!(names, ["provision_requested", "state_changed"]);
    assert_eq!(got[0].seq, (held as u64) ^ (1 << 63));
    assert_eq!(got[1].seq, got[0].seq + 1);

    // A transaction that takes a seq and rolls back leaves a gap, skipped once it is over.
    let mut tx = slow.transaction().unwrap();
    tx.execute(
        "INSERT INTO outbox (xid, seq, at, kind) SELECT pg_current_xact_id(), \
         nextval('event_seq'), -9223372036854775808, 'x'",
        &[],
    )
    .unwrap();
    let before = got[1].seq;
    registry
        .update_state(&first, WorkerState::Draining)
        .unwrap();
    assert!(events.drain().is_empty(), "the gap may still fill");
    tx.rollback().unwrap();
    let got = events.drain();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].kind.name(), "state_changed");
    assert_eq!(got[0].seq, before + 2, "the rolled back seq is a gap");
}

#[test]
fn a_change_on_one_replica_reaches_the_subscriber_of_another() {
    let (clock, a, _schema) = registry("fanout");
    let b = replica(a.schema(), clock);
    let on_b = b.subscribe(SubscribeOptions::default()).unwrap();
    let on_a = a.subscribe(SubscribeOptions::default()).unwrap();
    let id = ready(&a, spec());
    b.claim(&WorkerFilter::new(), job("j")).unwrap().unwrap();
    let seen_b: Vec<WorkerLifecycleEvent> = on_b.drain();
    let seen_a: Vec<WorkerLifecycleEvent> = on_a.drain();
    assert_eq!(seen_a, seen_b, "every subscriber sees the same stream");
    let names: Vec<&str> = seen_b.iter().map(|e| e.kind.name()).collect();
    assert_eq!(
        names,
        [
            "registered",
            "state_changed",
            "state_changed",
            "assigned_to_job"
        ]
    );
    assert_eq!(seen_b[0].kind.worker_id(), Some(id));
    // recv waits (LISTEN) for a change made elsewhere.
    let waiter = thread::spawn(move || on_b.recv(Some(Duration::from_secs(30))));
    a.release_from_job(&id, None).unwrap();
    let got = waiter.join().unwrap().expect("woken by the change");
    assert_eq!(got.kind.name(), "released_from_job");
}

#[test]
fn heartbeats_from_many_threads_each_get_their_own_answer() {
    let (clock, registry, _schema) = registry("hb");
    let registry = Arc::new(registry);
    let known: Vec<WorkerId> = (0..20).map(|_| ready(&*registry, spec())).collect();
    clock.advance(Duration::from_secs(5));
    let barrier = Arc::new(Barrier::new(16));
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let (registry, barrier, known) = (registry.clone(), barrier.clone(), known.clone());
            thread::spawn(move || {
                barrier.wait();
                for round in 0..20 {
                    let id = known[(t * 7 + round) % known.len()];
                    assert_eq!(registry.heartbeat(&id), Ok(()));
                    let unknown = WorkerId::new();
                    assert_eq!(registry.heartbeat(&unknown), Err(Error::NotFound(unknown)));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for id in &known {
        assert_eq!(
            registry.get(id).unwrap().unwrap().last_heartbeat,
            T0 + 5_000
        );
    }
    let unknown = WorkerId::new();
    let beats = registry
        .subscribe(SubscribeOptions::default().heartbeats(true))
        .unwrap();
    assert_eq!(
        registry
            .heartbeat_many(&[known[0], unknown, known[0]])
            .unwrap(),
        vec![Ok(()), Err(Error::NotFound(unknown)), Ok(())]
    );
    // One event per heartbeat answered Ok, repeats included (as in memory).
    assert_eq!(
        kinds(&beats),
        vec![
            EventKind::HeartbeatReceived {
                worker_id: known[0]
            };
            2
        ]
    );
}

#[test]
fn bad_names_and_urls_are_invalid_arguments_and_a_dead_server_is_a_backend_error() {
    for bad in ["", "Fleet", "public", "pg_x", "a-b", "a\"b"] {
        assert!(
            matches!(
                PostgresWorkerRegistry::connect(&url(), bad),
                Err(Error::InvalidArgument(_))
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        PostgresWorkerRegistry::connect("postgresql://[::1", "x"),
        Err(Error::InvalidArgument(_))
    ));
    // A NUL (in the text, or percent-encoded in a URL) makes the string malformed, not the
    // server unreachable: libpq's strings cannot hold one.
    for bad in [
        "host=/tmp\0x user=postgres dbname=postgres",
        "user=postgres dbname=post\0gres",
        "postgresql://%2Ftmp%00x/postgres",
        "postgresql://postgres@localhost/db%00x",
        "postgresql://postgres:pa%00ss@localhost/postgres",
        "postgresql://localhost/postgres?options=-c%20a%3D%00",
        "postgresql://localhost/postgres?application_name=a%00",
    ] {
        match PostgresWorkerRegistry::connect(bad, "x") {
            Err(Error::InvalidArgument(message)) => {
                assert!(message.contains("NUL"), "{bad:?}: {message}")
            }
            other => panic!("{bad:?}: expected InvalidArgument, got {other:?}"),
        }
        assert!(
            matches!(
                PostgresWorkerRegistry::drop_schema(bad, "x"),
                Err(Error::InvalidArgument(_))
            ),
            "{bad:?}"
        );
    }
    let dir = std::env::temp_dir().join(format!("no-server-{}", WorkerId::new()));
    let dead = format!(
        "host={} user=postgres dbname=postgres connect_timeout=2",
        dir.display()
    );
    match PostgresWorkerRegistry::connect(&dead, "x") {
        Err(Error::Backend(message)) => {
            assert!(message.contains("cannot connect"), "{message}");
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[test]
fn on_the_database_clock_now_and_timestamps_follow_the_server() {
    let _schema = SchemaGuard::new("dbclock");
    let name = _schema.name.clone();
    let registry = PostgresWorkerRegistry::connect(&url(), &name).unwrap();
    let wall = SystemClock::new().now();
    let now = registry.now();
    assert!(now.abs_diff(wall) < 60_000, "now {now} vs wall {wall}");
    let w = registry.register(handle(), spec()).unwrap();
    assert!(w.created_at >= now && w.created_at.abs_diff(wall) < 60_000);
    assert!(registry.now() >= w.created_at);
    // Deadlines on the same clock: nothing is due yet, and a zero timeout finds the worker
    // once a millisecond has passed on the server.
    registry
        .update_state(&w.id, WorkerState::Connecting)
        .unwrap();
    assert!(registry
        .find_unhealthy(Duration::from_secs(60))
        .unwrap()
        .is_empty());
    while registry.now() <= w.created_at + 1 {
        thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(
        registry
            .find_startup_expired(Duration::ZERO)
            .unwrap()
            .into_iter()
            .map(|w| w.id)
            .collect::<Vec<_>>(),
        [w.id]
    );
}

#[test]
fn a_snapshot_taken_after_the_server_clock_stepped_back_restores() {
    // The database's clock is the server's wall clock (`clock_timestamp()`), which NTP, a
    // failover to a standby or an operator can step back. Records stamped before the step then
    // hold times after the clock's reading; a snapshot taken then must still be one its own
    // registry, or any other, can restore (a backup that cannot be loaded loses the fleet).
    let _schema = SchemaGuard::new("clockback");
    let name = _schema.name.clone();
    let registry = PostgresWorkerRegistry::connect(&url(), &name).unwrap();
    let w = ready(&registry, spec());
    registry.assign_to_job(&w, job("j")).unwrap();
    registry.heartbeat(&w).unwrap();
    let before = registry.get(&w).unwrap().unwrap();
    // The server's clock steps back 5 s: the schema's clock function reads 5 s earlier.
    raw(&name)
        .batch_execute(
            "CREATE OR REPLACE FUNCTION now_ms(given bigint) RETURNS bigint LANGUAGE sql \
             VOLATILE AS $$ SELECT coalesce(given, floor(date_part('epoch', \
             clock_timestamp() - interval '5 s') * 1000)::bigint + (-9223372036854775807 - 1)) $$",
        )
        .unwrap();
    assert!(
        registry.now() < before.last_heartbeat,
        "the clock stepped back"
    );
    let snapshot = registry.snapshot().unwrap();
    assert_eq!(snapshot.workers.len(), 1);
    assert_eq!(snapshot.workers[0], before, "the records as they are");
    let read = Snapshot::from_json(&snapshot.to_json().unwrap())
        .expect("a registry's own snapshot reads back");
    assert!(
        snapshot.taken_at >= before.last_heartbeat,
        "no time after taken_at"
    );
    let memory = InMemoryWorkerRegistry::new();
    memory.restore(read.clone()).expect("restores in memory");
    assert_eq!(
        memory.get(&w).unwrap().unwrap().current_job,
        before.current_job
    );
    let other = SchemaGuard::new("clockback2");
    let copy = PostgresWorkerRegistry::connect(&url(), &other.name).unwrap();
    copy.restore(read).expect("restores on PostgreSQL");
    assert_invariants(&copy);
}

/// `url()` with its database set to `dbname`.
fn url_of_database(dbname: &str) -> String {
    let url = url();
    match url.split_once("://") {
        // postgres://user@host:port/db?params
        Some((scheme, rest)) => {
            let (main, query) = rest
                .split_once('?')
                .map_or((rest, None), |(m, q)| (m, Some(q)));
            let authority = main.split('/').next().unwrap_or(main);
            let query = query.map(|q| format!("?{q}")).unwrap_or_default();
            format!("{scheme}://{authority}/{dbname}{query}")
        }
        // key=value: the last value of a key wins.
        None => format!("{url} dbname={dbname}"),
    }
}

#[test]
fn text_a_latin1_database_cannot_hold_is_an_invalid_argument_and_changes_nothing() {
    // A registry's strings are any UTF-8 without NUL; a database in another encoding (LATIN1)
    // cannot store some of them. That is the value's problem, not an outage: `Backend` (what
    // a host retries, or reads as "the database is down") misled; nothing is applied either way.
    let dbname = common::support::unique_name("latin1");
    let mut admin = Client::connect(&url(), NoTls).expect("admin connection");
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {dbname} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' \
             TEMPLATE template0"
        ))
        .expect("a LATIN1 database");
    let result = std::panic::catch_unwind(|| {
        let url = url_of_database(&dbname);
        let clock = Arc::new(ManualClock::new(T0));
        let registry = PostgresWorkerRegistry::connect_with_clock(&url, "enc", clock.clone())
            .expect("connect");
        let snowman = WorkerHandle::new(provider("p"), ProviderType::Docker, "c-☃");
        let err = registry.register(snowman.clone(), spec()).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains("encoding")),
            "register: {err:?}"
        );
        // A snapshot holding such a string: refused, the registry left empty.
        let memory = InMemoryWorkerRegistry::with_clock(clock);
        memory.register(snowman, spec()).unwrap();
        let err = registry.restore(memory.snapshot().unwrap()).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains("encoding")),
            "restore: {err:?}"
        );
        assert_eq!(registry.count().unwrap(), 0);
        // Text LATIN1 holds is stored and read back as given.
        let w = registry
            .register(
                WorkerHandle::new(provider("p"), ProviderType::Docker, "c-é"),
                spec(),
            )
            .unwrap();
        assert_eq!(registry.get(&w.id).unwrap(), Some(w));
        drop(registry);
    });
    admin
        .batch_execute(&format!("DROP DATABASE {dbname} WITH (FORCE)"))
        .expect("drop the LATIN1 database");
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn pruned_events_are_a_gap_for_a_subscriber_that_lagged_and_the_stream_goes_on() {
    let (clock, registry, _schema) = registry("prune");
    // A subscriber of another handle (another replica): the prune cannot make it read first.
    let other = replica(&_schema.name, clock.clone());
    let lagging = other.subscribe(SubscribeOptions::default()).unwrap();
    let first = ready(&registry, spec());
    clock.advance(Duration::from_secs(7200));
    registry.heartbeat(&first).unwrap();
    let second = registry.register(handle(), spec()).unwrap().id;
    // The two events of `first` (registered, ready) are older than an hour.
    assert_eq!(registry.prune_events(Duration::from_secs(3600)).unwrap(), 2);
    let got = lagging.drain();
    assert_eq!(got.len(), 1, "only what was left");
    assert_eq!(got[0].kind.worker_id(), Some(second));
    assert_eq!(got[0].seq, 3, "seqs 1 and 2 are the gap");
    registry
        .unregister(&second, TerminationReason::Requested)
        .unwrap();
    assert_eq!(lagging.drain()[0].seq, 4);
}

/// A registry for `test` (on its manual clock) with a subscriber whose queue holds one event
/// and that never reads: `first` registered and made `Ready` (seqs 1 and 2) two hours before
/// `second` is registered (seq 3), so a prune of what is older than an hour deletes two events
/// the subscriber has not read. Returns the registry, its schema guard, the subscriber,
/// `first` and `second`.
fn an_idle_subscriber_of_events_to_prune(
    test: &str,
) -> (
    PostgresWorkerRegistry,
    SchemaGuard,
    Subscription,
    WorkerId,
    WorkerId,
) {
    let (clock, registry, schema) = registry(test);
    let idle = registry
        .subscribe(SubscribeOptions::default().capacity(1))
        .unwrap();
    let first = ready(&registry, spec());
    clock.advance(Duration::from_secs(7200));
    registry.heartbeat(&first).unwrap();
    let second = registry.register(handle(), spec()).unwrap().id;
    (registry, schema, idle, first, second)
}

/// A subscriber of the pruning registry handle that stopped reading loses the pruned events
/// as an in-memory subscriber loses what its queue cannot hold: counted in `dropped()` (and so
/// in `subscriber_drops`), its queue holding the oldest. Before, they vanished as a `seq` gap,
/// counted nowhere, unless a scrape had happened to make it read first.
#[test]
fn a_subscriber_of_the_pruning_handle_that_stopped_reading_counts_what_is_pruned() {
    let (registry, _schema, idle, first, second) =
        an_idle_subscriber_of_events_to_prune("prune_counted");
    assert_eq!(registry.prune_events(Duration::from_secs(3600)).unwrap(), 2);
    // As in memory: seq 1 queued, seqs 2 and 3 dropped (the queue holds one).
    assert_eq!(idle.dropped(), 2, "the events it lost are counted");
    let drops = registry.subscriber_drops().unwrap();
    assert_eq!(
        drops
            .iter()
            .map(|d| (d.dropped, d.queued))
            .collect::<Vec<_>>(),
        [(2, 1)]
    );
    let got = idle.drain();
    assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), [1]);
    assert_eq!(got[0].kind.worker_id(), Some(first));
    registry
        .unregister(&second, TerminationReason::Requested)
        .unwrap();
    assert_eq!(idle.drain()[0].seq, 4, "and the stream goes on");
    assert_eq!(idle.dropped(), 2);
}

/// As above, when the server had closed the idle subscriber's connection since its last read
/// (a restart, an administrator): the client learns of it only at the prune's catch-up read,
/// which then runs once more on a new connection, as a read of the registry does. Before, the
/// catch-up failed quietly, the prune deleted what the subscriber had not read, and its next
/// read found a bare `seq` gap, counted nowhere.
#[test]
fn a_subscriber_of_the_pruning_handle_whose_session_had_ended_counts_what_is_pruned() {
    let (registry, _schema, idle, _first, second) =
        an_idle_subscriber_of_events_to_prune("prune_counted_dead");
    let mut admin = raw(registry.schema());
    support::end_the_only_reader_session(&mut admin);
    assert_eq!(registry.prune_events(Duration::from_secs(3600)).unwrap(), 2);
    // As in memory: seq 1 queued, seqs 2 and 3 dropped (the queue holds one).
    assert_eq!(idle.dropped(), 2, "the events it lost are counted");
    let got = idle.drain();
    assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), [1]);
    registry
        .unregister(&second, TerminationReason::Requested)
        .unwrap();
    assert_eq!(idle.drain()[0].seq, 4, "and the stream goes on");
}

/// The seqs of `events`, in the order given.
fn seqs(events: &[WorkerLifecycleEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// Takes the next seq in a transaction of "another replica" left open on `client`: an event
/// `ProvisionRequested` of provider `slow`, as old as the clock goes. Returns the transaction.
fn hold_a_seq(client: &mut Client) -> postgres::Transaction<'_> {
    let mut tx = client.transaction().unwrap();
    tx.execute(
        "INSERT INTO outbox (xid, seq, at, kind) SELECT pg_current_xact_id(), \
         nextval('event_seq'), -9223372036854775808, $1",
        &[&serde_json::to_string(&EventKind::ProvisionRequested {
            provider_id: provider("slow"),
        })
        .unwrap()],
    )
    .unwrap();
    tx
}

/// A subscriber of the pruning registry handle that is waiting out a gap (an earlier seq still
/// in flight) when the prune runs loses the pruned events past that gap: they are counted in
/// its `dropped()`, as every event pruned before a subscription of the handle read it is,
/// whatever the subscriber was doing (DESIGN.md §10). Before, the prune's catch-up read
/// stopped at the gap, and the events past it vanished as a bare `seq` gap, counted nowhere.
#[test]
fn a_subscriber_of_the_pruning_handle_waiting_out_a_gap_counts_what_is_pruned_past_it() {
    let (clock, registry, _schema) = registry("prune_past_gap");
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    let first = registry.register(handle(), spec()).unwrap().id;
    assert_eq!(seqs(&events.drain()), [1]);
    let mut slow = raw(registry.schema());
    let tx = hold_a_seq(&mut slow);
    registry.update_state(&first, WorkerState::Ready).unwrap();
    clock.advance(Duration::from_secs(7200));
    registry.register(handle(), spec()).unwrap();
    assert!(events.drain().is_empty(), "waiting out the gap at seq 2");
    // Seqs 1 and 3 are older than an hour; 2 is in flight (the prune cannot see it), 4 is not.
    assert_eq!(registry.prune_events(Duration::from_secs(3600)).unwrap(), 2);
    tx.commit().unwrap();
    let got = events.drain();
    assert_eq!(
        (seqs(&got), events.dropped()),
        (vec![2, 4], 1),
        "seq 3 was pruned before the subscriber read it: counted"
    );
    assert_eq!(registry.subscriber_drops().unwrap()[0].dropped, 1);
}

/// A subscription delivers every event whose transaction commits after `subscribe` returns,
/// also one whose transaction took its seq before (below the last seq committed then), and
/// none that committed before it; in seq order, as a gap is waited out (DESIGN.md §10, as in
/// memory: an event published after `subscribe` returns is delivered). Before, a subscription
/// started after the highest seq committed and never delivered the one in flight.
#[test]
fn a_subscription_delivers_an_event_whose_seq_was_taken_before_it_and_committed_after() {
    let (_clock, registry, _schema) = registry("subscribe_in_flight");
    let mut slow = raw(registry.schema());
    let tx = hold_a_seq(&mut slow);
    // Seq 2, committed before the subscription: not its to deliver.
    let first = registry.register(handle(), spec()).unwrap().id;
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    registry.update_state(&first, WorkerState::Ready).unwrap();
    let before = events.drain();
    tx.commit().unwrap();
    let after: Vec<WorkerLifecycleEvent> =
        std::iter::from_fn(|| events.recv(Some(Duration::from_secs(2)))).collect();
    let got: Vec<WorkerLifecycleEvent> = before.iter().chain(&after).cloned().collect();
    assert_eq!(
        seqs(&got),
        [1, 3],
        "the held seq committed after subscribe returned, then the change made after it"
    );
    assert!(before.is_empty(), "seq 3 waits for seq 1, in seq order");
    assert_eq!(
        got.iter().map(|e| e.kind.name()).collect::<Vec<_>>(),
        ["provision_requested", "state_changed"]
    );
    assert_eq!(events.dropped(), 0);
}

/// Registers and unregisters `n` workers in turn; their ids, oldest retirement first.
fn retire(registry: &PostgresWorkerRegistry, n: usize) -> Vec<WorkerId> {
    (0..n)
        .map(|_| {
            let id = registry.register(handle(), spec()).unwrap().id;
            registry
                .unregister(&id, TerminationReason::Requested)
                .unwrap();
            id
        })
        .collect()
}

/// Whether `register` of a handle named `id` is refused as a known id.
fn refused(registry: &PostgresWorkerRegistry, id: WorkerId) -> bool {
    let again = WorkerHandle {
        worker_id: id,
        ..handle()
    };
    match registry.register(again, spec()) {
        Err(Error::AlreadyExists(refused)) => {
            assert_eq!(refused, id);
            true
        }
        Ok(_) => false,
        Err(other) => panic!("register of {id}: {other}"),
    }
}

#[test]
fn retired_ids_are_pruned_on_demand_and_counted() {
    // What the limit keeps is the shared contract's (contract/retired_ids.rs); here, what only
    // this backend has: the default, the prune's count, a limit of 0. (That the prune reads
    // its index: `retention.rs`'s unit test, on the statements themselves.)
    let (_clock, registry, _schema) = registry("retlimit");
    assert_eq!(
        registry.retired_id_limit(),
        InMemoryWorkerRegistry::DEFAULT_RETIRED_ID_LIMIT,
        "the in-memory registry's default"
    );
    let registry = registry.with_retired_id_limit(3);
    let live = ready(&registry, spec());
    let retired = retire(&registry, 5);
    assert_eq!(
        registry.snapshot().unwrap().retired_ids,
        retired,
        "nothing forgotten before a prune"
    );
    assert_eq!(registry.prune_retired_ids().unwrap(), 2);
    assert_eq!(registry.prune_retired_ids().unwrap(), 0, "nothing more");
    // A limit of 0 forgets every retired id, never a live one.
    let registry = registry.with_retired_id_limit(0);
    assert_eq!(registry.prune_retired_ids().unwrap(), 3);
    assert!(registry.snapshot().unwrap().retired_ids.is_empty());
    assert!(refused(&registry, live), "a live worker's id is known");
    assert!(!refused(&registry, retired[4]));
    assert_invariants(&registry);
}

#[test]
fn the_health_check_path_forgets_the_oldest_retired_ids_at_most_once_a_minute() {
    let (_clock, registry, _schema) = registry("retprune");
    let registry = registry.with_retired_id_limit(1);
    let first = retire(&registry, 3);
    // The first call of this process prunes (the events and the retired ids).
    registry.find_for_termination().unwrap();
    assert_eq!(registry.snapshot().unwrap().retired_ids, [first[2]]);
    assert!(!refused(&registry, first[0]));
    assert!(refused(&registry, first[2]));
    // The next prune is a minute away (real time): these stay until then.
    let second = retire(&registry, 2);
    registry.find_for_termination().unwrap();
    assert_eq!(
        registry.snapshot().unwrap().retired_ids,
        [first[2], second[0], second[1]]
    );
}

/// A clock that reads like a `ManualClock`, except that one armed thread is held inside its
/// next reading (after taking its value) until released: "the time was read, then the process
/// was descheduled".
#[derive(Debug)]
struct HeldClock {
    time: ManualClock,
    gate: std::sync::Mutex<(Option<thread::ThreadId>, bool, bool)>,
    changed: std::sync::Condvar,
}

impl HeldClock {
    fn arm(&self) {
        *self.gate.lock().unwrap() = (Some(thread::current().id()), false, false);
    }

    fn wait_holding(&self) {
        let gate = self.gate.lock().unwrap();
        drop(self.changed.wait_while(gate, |g| !g.1).unwrap());
    }

    fn release(&self) {
        self.gate.lock().unwrap().2 = true;
        self.changed.notify_all();
    }
}

impl Clock for HeldClock {
    fn now(&self) -> Timestamp {
        let t = self.time.now();
        let mut gate = self.gate.lock().unwrap();
        if gate.0 == Some(thread::current().id()) {
            gate.0 = None;
            gate.1 = true;
            self.changed.notify_all();
            let (_gate, _) = self
                .changed
                .wait_timeout_while(gate, Duration::from_secs(30), |g| !g.2)
                .unwrap();
        }
        t
    }
}

/// A change whose time was read before another change of the same worker committed a later
/// one still never moves the worker's times backwards (docs/DESIGN.md, "Event times").
#[test]
fn a_workers_own_times_never_go_backwards_when_its_changes_race() {
    let _schema = SchemaGuard::new("owntimes");
    let name = _schema.name.clone();
    let clock = Arc::new(HeldClock {
        time: ManualClock::new(T0),
        gate: Default::default(),
        changed: Default::default(),
    });
    let registry =
        Arc::new(PostgresWorkerRegistry::connect_with_clock(&url(), &name, clock.clone()).unwrap());
    let w = registry.register(handle(), spec()).unwrap();
    let slow = {
        let (registry, clock) = (registry.clone(), clock.clone());
        thread::spawn(move || {
            clock.arm();
            registry.update_state(&w.id, WorkerState::Draining)
        })
    };
    clock.wait_holding();
    // The slow change read T0 and stalls; this one takes T0 + 2 s and commits first.
    clock.time.set(T0 + 2_000);
    let fast = registry.update_state(&w.id, WorkerState::Ready).unwrap();
    clock.release();
    let slow = slow.join().unwrap().unwrap();
    assert_eq!(slow.state, WorkerState::Draining);
    assert!(
        slow.state_changed_at >= fast.state_changed_at && slow.updated_at >= fast.updated_at,
        "the later change's times went back: {} after {}",
        slow.state_changed_at,
        fast.state_changed_at
    );
    let now = registry.get(&w.id).unwrap().unwrap();
    assert_eq!(now.updated_at, slow.updated_at);
}

/// The same for the two changes that are one statement each, `release_from_job` and `claim`:
/// a release or a claim whose time was read before another change of the worker committed a
/// later one leaves the worker's times where that change put them, or later.
#[test]
fn a_release_or_a_claim_that_read_the_time_first_never_moves_the_workers_times_back() {
    let _schema = SchemaGuard::new("owntimes1");
    let clock = Arc::new(HeldClock {
        time: ManualClock::new(T0),
        gate: Default::default(),
        changed: Default::default(),
    });
    let registry = Arc::new(
        PostgresWorkerRegistry::connect_with_clock(&url(), &_schema.name, clock.clone()).unwrap(),
    );
    let w = registry.register(handle(), spec()).unwrap();
    registry.update_state(&w.id, WorkerState::Ready).unwrap();
    registry.assign_to_job(&w.id, job("a")).unwrap();
    // A release that read T0 stalls; a drain at T0 + 2 s commits first.
    let slow = {
        let (registry, clock) = (registry.clone(), clock.clone());
        thread::spawn(move || {
            clock.arm();
            registry.release_from_job(&w.id, None)
        })
    };
    clock.wait_holding();
    clock.time.set(T0 + 2_000);
    let drained = registry.update_state(&w.id, WorkerState::Draining).unwrap();
    clock.release();
    assert_eq!(slow.join().unwrap(), Ok(job("a")));
    let released = registry.get(&w.id).unwrap().unwrap();
    assert_eq!(released.state, WorkerState::Draining);
    assert!(
        released.updated_at >= drained.updated_at,
        "the release's updated_at {} went back behind the drain's {}",
        released.updated_at,
        drained.updated_at
    );
    // A claim that read T0 + 2 s stalls; the worker is made ready again at T0 + 4 s. (The
    // gate is reset first: `wait_holding` must not see the release's hold.)
    *clock.gate.lock().unwrap() = (None, false, false);
    let slow = {
        let (registry, clock) = (registry.clone(), clock.clone());
        thread::spawn(move || {
            clock.arm();
            registry.claim(&WorkerFilter::new(), job("b"))
        })
    };
    clock.wait_holding();
    clock.time.set(T0 + 4_000);
    let ready = registry.update_state(&w.id, WorkerState::Ready).unwrap();
    clock.release();
    let claimed = slow.join().unwrap().unwrap().expect("the ready worker");
    assert!(
        claimed.state_changed_at >= ready.state_changed_at
            && claimed.updated_at >= ready.updated_at,
        "the claim's times ({}, {}) went back behind the move to Ready ({})",
        claimed.state_changed_at,
        claimed.updated_at,
        ready.state_changed_at
    );
    assert_eq!(registry.get(&w.id).unwrap().unwrap(), claimed);
}

/// Holds a lock that changes nothing on worker `id`'s row (`lock`: `UPDATE`, the lock of a
/// move whose guard then fails, or `KEY SHARE`, the lock of `publish`) from another
/// connection, while `claim` runs on `registry`; lets it go after a while. The claim's answer.
fn claim_while_locked(
    registry: &Arc<PostgresWorkerRegistry>,
    id: WorkerId,
    lock: &str,
    job_id: &str,
) -> (Result<Option<Worker>>, Duration) {
    claim_while_locked_by(registry, &WorkerFilter::new(), id, lock, job_id)
}

/// [`claim_while_locked`] with a filter.
fn claim_while_locked_by(
    registry: &Arc<PostgresWorkerRegistry>,
    filter: &WorkerFilter,
    id: WorkerId,
    lock: &str,
    job_id: &str,
) -> (Result<Option<Worker>>, Duration) {
    let mut client = raw(registry.schema());
    let mut tx = client.transaction().unwrap();
    let locked = tx
        .query(
            &format!("SELECT 1 FROM workers WHERE id = $1 FOR {lock}"),
            &[id.as_uuid()],
        )
        .unwrap();
    assert_eq!(locked.len(), 1);
    let claimer = {
        let (registry, job_id, filter) = (registry.clone(), job(job_id), filter.clone());
        thread::spawn(move || {
            let start = std::time::Instant::now();
            let answer = registry.claim(&filter, job_id);
            (answer, start.elapsed())
        })
    };
    thread::sleep(Duration::from_millis(300));
    tx.rollback().unwrap();
    claimer.join().unwrap()
}

#[test]
fn claim_waits_for_a_lock_that_changes_nothing_on_its_only_candidate() {
    let (_clock, registry, _schema) = registry("claimlock");
    let registry = Arc::new(registry);
    let only = ready(&*registry, spec());
    for (round, lock) in ["UPDATE", "NO KEY UPDATE", "KEY SHARE"]
        .into_iter()
        .enumerate()
    {
        let (answer, took) = claim_while_locked(&registry, only, lock, &format!("j{round}"));
        eprintln!(
            "{lock}: claimed {:?} after {took:?}",
            answer.as_ref().map(|w| w.is_some())
        );
        let claimed = answer
            .unwrap()
            .expect("the only worker is Ready: the claim takes it");
        assert_eq!(claimed.id, only, "{lock}");
        registry
            .release_from_job(&only, Some(&job(&format!("j{round}"))))
            .unwrap();
    }
    assert_invariants(&*registry);
}

#[test]
fn a_gated_claim_waits_for_a_lock_that_changes_nothing_on_its_only_ready_worker() {
    // A claim by a pool's label, by a provider, or both (the filters whose statement asks
    // first "does a ready worker of a matching spec or class exist?"): the only ready worker
    // they match is locked by a move that changes nothing, behind a ready fleet of another
    // spec and provider. The question says yes, the first pass skips the locked worker, and
    // the second pass waits for it and takes it, as a claim without a gate does.
    let (_clock, registry, _schema) = registry("claimlockgated");
    let registry = Arc::new(registry);
    let gpu = || Arc::new(WorkerSpec::new("img").with_label(POOL_LABEL, "gpu"));
    for _ in 0..20 {
        ready(&*registry, spec());
    }
    let k8s = |r: &str| WorkerHandle::new(provider("k8s"), ProviderType::Kubernetes, r);
    let only = registry.register(k8s("only"), gpu()).unwrap().id;
    registry.update_state(&only, WorkerState::Ready).unwrap();
    let held = registry.register(k8s("held"), gpu()).unwrap().id;
    registry.update_state(&held, WorkerState::Ready).unwrap();
    registry.assign_to_job(&held, job("held")).unwrap();
    let pool = WorkerFilter::new().label(POOL_LABEL, "gpu");
    let filters = [
        pool.clone(),
        WorkerFilter::new().provider_id(provider("k8s")),
        WorkerFilter::new().provider_type(ProviderType::Kubernetes),
        pool.provider_id(provider("k8s")),
    ];
    for (round, filter) in filters.iter().enumerate() {
        let j = format!("j{round}");
        let (answer, _) = claim_while_locked_by(&registry, filter, only, "NO KEY UPDATE", &j);
        assert_eq!(answer.unwrap().map(|w| w.id), Some(only), "{filter:?}");
        registry.release_from_job(&only, Some(&job(&j))).unwrap();
    }
    // Now no ready worker matches: no worker, for each filter.
    registry.assign_to_job(&only, job("taken")).unwrap();
    for (round, filter) in filters.iter().enumerate() {
        let j = format!("k{round}");
        assert_eq!(registry.claim(filter, job(&j)).unwrap(), None, "{filter:?}");
    }
    assert_invariants(&*registry);
}

#[test]
fn assign_losing_the_job_to_a_holder_that_lets_it_go_at_once_names_no_other_worker() {
    // Another connection gives the job to `other` (uncommitted) while a third waits to take
    // it back: `assign_to_job` waits on the job's unique index, then finds the job held (a
    // unique violation) or already free again. Held, it names `other`; free, it is tried again
    // and gets the job. It never names a worker that does not hold it (it used to name a fresh
    // random id: `WorkerId::default()`).
    let (_clock, registry, _schema) = registry("assignnil");
    let registry = Arc::new(registry);
    let mine = ready(&*registry, spec());
    let other = ready(&*registry, spec());
    let (mut held, mut served) = (0, 0);
    for round in 0..30 {
        let the_job = format!("a{round}");
        let mut giver = raw(registry.schema());
        let mut tx = giver.transaction().unwrap();
        tx.execute(
            "UPDATE workers SET state = 3, current_job = $2 WHERE id = $1",
            &[other.as_uuid(), &the_job],
        )
        .unwrap();
        let taker = {
            let schema = registry.schema().to_owned();
            thread::spawn(move || {
                raw(&schema)
                    .execute(
                        // Waits for the giver's row lock (the row matches on `id` alone).
                        "UPDATE workers SET state = 2, current_job = NULL WHERE id = $1",
                        &[other.as_uuid()],
                    )
                    .unwrap()
            })
        };
        let assign = {
            let (registry, the_job) = (registry.clone(), job(&the_job));
            thread::spawn(move || registry.assign_to_job(&mine, the_job))
        };
        thread::sleep(Duration::from_millis(100));
        tx.commit().unwrap();
        assert_eq!(taker.join().unwrap(), 1, "round {round}");
        match assign.join().unwrap() {
            Ok(w) => {
                served += 1;
                assert_eq!(w.id, mine);
                registry
                    .release_from_job(&mine, Some(&job(&the_job)))
                    .unwrap();
            }
            Err(Error::JobAlreadyAssigned { worker_id, .. }) => {
                held += 1;
                assert_eq!(
                    worker_id, other,
                    "round {round}: the holder, never a nil id"
                );
            }
            Err(e) => panic!("round {round}: {e}"),
        }
    }
    eprintln!("assign: got the job {served} times, refused naming the holder {held} times");
    assert_invariants(&*registry);
}

/// A `HeartbeatReceived` is written only while a heartbeat subscriber of the writing registry
/// handle exists (DESIGN.md §10, "per handle"): a second `connect` in the same process is
/// another replica, whose heartbeats reach this handle's heartbeat subscriber only once it has
/// one of its own.
#[test]
fn heartbeat_events_are_written_per_registry_handle() {
    let (clock, registry, schema) = registry("heartbeat_per_handle");
    let other = replica(&schema.name, clock.clone());
    let id = ready(&registry, spec());
    let heard = registry
        .subscribe(SubscribeOptions::default().heartbeats(true))
        .unwrap();
    let is_heartbeat = |e: &WorkerLifecycleEvent| matches!(e.kind, EventKind::HeartbeatReceived { worker_id } if worker_id == id);

    other.heartbeat(&id).unwrap();
    registry
        .publish(EventKind::ProvisionRequested {
            provider_id: provider("p"),
        })
        .unwrap();
    let got = heard.recv(Some(Duration::from_secs(5))).expect("an event");
    assert!(
        !is_heartbeat(&got),
        "the other handle has no heartbeat subscriber: {got:?}"
    );

    let _keen = other
        .subscribe(SubscribeOptions::default().heartbeats(true))
        .unwrap();
    other.heartbeat(&id).unwrap();
    let got = heard.recv(Some(Duration::from_secs(5))).expect("an event");
    assert!(is_heartbeat(&got), "{got:?}");
}

/// `len` bytes of text drawn from the characters `from..from + span` (pseudo-random, so that
/// PostgreSQL cannot compress them much: an index entry is checked against the btree's limit at
/// its stored size), padded with ASCII to exactly `len` bytes.
fn incompressible(seed: u64, len: usize, from: u32, span: u32) -> String {
    let mut x = seed | 1;
    let mut out = String::new();
    loop {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let c = char::from_u32(from + (x % u64::from(span)) as u32).unwrap();
        if out.len() + c.len_utf8() > len {
            break;
        }
        out.push(c);
    }
    while out.len() < len {
        out.push('x');
    }
    out
}

#[test]
fn the_longest_provider_and_resource_ids_fit_the_provider_resource_index() {
    // Index `workers_provider_resource (provider_id, resource_id)` (v7) holds both ids in one
    // btree entry, whose size PostgreSQL caps (about 2,700 bytes on 8 kB pages): the longest
    // ids a handle may hold, 128 + 2,048 bytes, pseudo-random, in ASCII and in characters of
    // 2, 3 and 4 bytes, must register, be found by them and go again.
    let (_clock, registry, _schema) = registry("longids");
    let provider = ProviderId::new(incompressible(7, MAX_PROVIDER_ID_LEN, 0x0400, 0x100)).unwrap();
    assert_eq!(provider.as_str().len(), MAX_PROVIDER_ID_LEN);
    let resources: Vec<String> = [
        (0x21, 0x5e),     // ASCII
        (0x0400, 0x100),  // Cyrillic: 2 bytes
        (0x4e00, 0x5000), // CJK: 3 bytes
        (0x1f300, 0x300), // pictographs: 4 bytes
    ]
    .iter()
    .enumerate()
    .map(|(i, &(from, span))| incompressible(i as u64 + 11, MAX_RESOURCE_ID_LEN, from, span))
    .collect();
    let mut ids = Vec::new();
    for resource in &resources {
        assert_eq!(resource.len(), MAX_RESOURCE_ID_LEN);
        let handle = WorkerHandle::new(provider.clone(), ProviderType::Docker, resource.as_str());
        ids.push(
            registry
                .register(handle, spec())
                .expect("the longest ids register")
                .id,
        );
    }
    // At least one is stored at its full size, not compressed (the heap may keep it out of
    // line, where `pg_column_size` counts no header; an index entry holds the value itself), so
    // the index holds an entry of the largest size a handle can make.
    let stored: i32 = raw(&_schema.name)
        .query_one("SELECT max(pg_column_size(resource_id)) FROM workers", &[])
        .unwrap()
        .get(0);
    assert!(stored >= MAX_RESOURCE_ID_LEN as i32, "{stored} bytes");
    let asked: Vec<&str> = resources.iter().map(String::as_str).collect();
    let mut found: Vec<WorkerId> = registry
        .find_by_resource_ids(&provider, &asked)
        .unwrap()
        .iter()
        .map(|w| w.id)
        .collect();
    found.sort();
    ids.sort();
    assert_eq!(found, ids);
    for id in &ids {
        registry
            .unregister(id, TerminationReason::Requested)
            .unwrap();
    }
    assert!(registry
        .find_by_resource_ids(&provider, &asked)
        .unwrap()
        .is_empty());
}

#[test]
fn migration_v7_indexes_an_existing_fleet_by_provider_and_resource() {
    // A registry at v6 (v7 undone by hand: the index by provider alone, as v1 made it) with
    // workers of two providers; a new build connects: the index by (provider, resource) must
    // replace it, the fleet intact, and every question by provider still answered from it.
    let (clock, registry, _schema) = registry("resmig");
    let handle_of = |p: &str, r: &str| WorkerHandle::new(provider(p), ProviderType::Docker, r);
    let mut a = Vec::new();
    for i in 0..20 {
        a.push(
            registry
                .register(handle_of("a", &format!("r-{i}")), spec())
                .unwrap()
                .id,
        );
    }
    let b = registry.register(handle_of("b", "r-1"), spec()).unwrap().id;
    registry.update_state(&b, WorkerState::Ready).unwrap();
    let before = registry.snapshot().unwrap();
    drop(registry);
    raw(&_schema.name)
        .batch_execute(
            "DROP INDEX workers_provider_resource; \
             CREATE INDEX workers_provider ON workers (provider_id); \
             DELETE FROM migrations WHERE version >= 7;",
        )
        .unwrap();
    assert_eq!(version_and_fleet(&_schema.name).0, 6);

    let upgraded = replica(&_schema.name, clock);
    // v7 and those after it (v8 and v9 find their indexes there already and leave them).
    assert_eq!(version_and_fleet(&_schema.name).0, 9);
    let indexes: Vec<String> = raw(&_schema.name)
        .query(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() \
                 AND tablename = 'workers' AND indexname LIKE 'workers_provider%' \
             ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(indexes, ["workers_provider_resource"]);
    assert_the_fleet_survives(&before, &upgraded);
    let found = upgraded
        .find_by_resource_ids(&provider("a"), &["r-3", "r-1", "r-99"])
        .unwrap();
    let mut found: Vec<WorkerId> = found.iter().map(|w| w.id).collect();
    found.sort();
    let mut expected = vec![a[1], a[3]];
    expected.sort();
    assert_eq!(found, expected);
    let by_provider = upgraded
        .find(&WorkerFilter::new().provider_id(provider("b")))
        .unwrap();
    assert_eq!(by_provider.iter().map(|w| w.id).collect::<Vec<_>>(), [b]);
    // The questions by provider alone read the new index (its leading column).
    for sql in [
        "SELECT w.id FROM workers w WHERE w.provider_id = 'a'",
        "SELECT w.id FROM workers w WHERE w.provider_id = 'b' AND w.resource_id = ANY('{r-1}')",
    ] {
        assert_plan_uses(&_schema.name, sql, "workers_provider_resource");
    }
}

#[test]
fn migration_v8_indexes_an_existing_fleet_s_ready_workers_by_spec() {
    // A registry at v7 (v8 and v9 undone by hand) with ready and busy workers of two specs; a
    // new build connects: v8 builds the index of the ready workers by spec over them, v9
    // replaces it by the one by class (since 2026-12-08, later), the fleet intact, and a claim
    // for the pool with no ready worker answers from it.
    let (clock, registry, _schema) = registry("readyspecmig");
    let gpu = Arc::new(WorkerSpec::new("img").with_label(POOL_LABEL, "gpu"));
    let mut img = Vec::new();
    for _ in 0..30 {
        img.push(ready(&registry, spec()));
    }
    let g = [ready(&registry, gpu.clone()), ready(&registry, gpu.clone())];
    registry.assign_to_job(&g[0], job("g0")).unwrap();
    registry.assign_to_job(&g[1], job("g1")).unwrap();
    registry.assign_to_job(&img[3], job("i3")).unwrap();
    registry.register(handle(), gpu.clone()).unwrap();
    let before = registry.snapshot().unwrap();
    drop(registry);
    raw(&_schema.name)
        .batch_execute("DROP INDEX workers_ready_class; DELETE FROM migrations WHERE version >= 8;")
        .unwrap();
    assert_eq!(version_and_fleet(&_schema.name).0, 7);

    let upgraded = replica(&_schema.name, clock);
    assert_at_v9_with_the_ready_class_index(&_schema.name);
    assert_the_fleet_survives(&before, &upgraded);
    // The index holds the ready workers, each under its spec: 29 of `img`, none of `gpu`.
    let by_spec: Vec<(String, i64)> = raw(&_schema.name)
        .query(
            "SELECT s.labels::text, count(*) FROM workers w JOIN specs s ON s.key = w.spec_key \
             WHERE w.state = 2 GROUP BY 1 ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(by_spec, [("{}".to_owned(), 29)]);
    let pool = WorkerFilter::new().label(POOL_LABEL, "gpu");
    assert_eq!(upgraded.claim(&pool, job("p1")).unwrap(), None);
    upgraded.release_from_job(&g[1], Some(&job("g1"))).unwrap();
    assert_eq!(
        upgraded.claim(&pool, job("p2")).unwrap().map(|w| w.id),
        Some(g[1])
    );
    // The claim's question reads the new index (once the table's size is known: the planner
    // guesses otherwise).
    raw(&_schema.name).batch_execute("ANALYZE workers").unwrap();
    assert_plan_uses(&_schema.name, GATE_PROBE, "workers_ready_class");
    assert_plan_uses(&_schema.name, SPEC_GATE_PROBE, "workers_ready_class");
    assert_invariants(&upgraded);
}

/// A probe of the claim's gate (`pg/src/claim.rs`) for a filter that names a provider: the
/// next class of the ready workers.
const GATE_PROBE: &str = "SELECT w.spec_key, w.provider_id, w.provider_type FROM workers w \
    WHERE w.state = 2 AND (w.spec_key, w.provider_id, w.provider_type) > ('', '', '') \
    ORDER BY w.spec_key, w.provider_id, w.provider_type LIMIT 1";

/// A probe of the claim's gate for a filter that names no provider: the next spec of the
/// ready workers, on the same index.
const SPEC_GATE_PROBE: &str = "SELECT w.spec_key FROM workers w \
    WHERE w.state = 2 AND (w.spec_key) > ('') ORDER BY w.spec_key LIMIT 1";

/// The indexes of the schema's `workers` whose names start with `workers_ready_` (those of the
/// claim's gate, v8 and v9), each with its definition after `USING btree `.
fn ready_indexes(schema: &str) -> Vec<(String, String)> {
    raw(schema)
        .query(
            "SELECT indexname::text, split_part(indexdef, 'USING btree ', 2) FROM pg_indexes \
             WHERE schemaname = current_schema() AND tablename = 'workers' \
                 AND indexname LIKE 'workers\\_ready\\_%' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The schema is at v9, and its one index of the ready workers besides `workers_ready` is v9's
/// by class.
fn assert_at_v9_with_the_ready_class_index(schema: &str) {
    assert_eq!(version_and_fleet(schema).0, 9);
    assert_eq!(
        ready_indexes(schema),
        [(
            "workers_ready_class".to_owned(),
            "(spec_key, provider_id, provider_type) WHERE (state = 2)".to_owned()
        )]
    );
}

/// Every index of the schema, its definition with the schema's name taken out: what a fresh
/// schema and a migrated one must agree on.
fn index_definitions(schema: &str) -> Vec<(String, String)> {
    raw(schema)
        .query(
            "SELECT indexname::text, indexdef FROM pg_indexes \
             WHERE schemaname = current_schema() ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| {
            let def: String = r.get(1);
            (r.get(0), def.replace(&format!("{schema}."), ""))
        })
        .collect()
}

#[test]
fn migration_v9_indexes_an_existing_fleet_s_ready_workers_by_class() {
    // A registry at v8 (v9 undone by hand: v8's index by spec back, the one by class gone)
    // with ready and busy workers of two specs and two providers; a new build connects: the
    // index of the ready workers by class (spec, provider id, provider type) must replace the
    // one by spec, the fleet intact, the indexes those of a fresh schema, and a claim by a
    // provider with no ready worker answers from it.
    let (clock, registry, _schema) = registry("readyclassmig");
    let gpu = Arc::new(WorkerSpec::new("img").with_label(POOL_LABEL, "gpu"));
    let k8s = |r: &str| WorkerHandle::new(provider("k8s"), ProviderType::Kubernetes, r);
    for _ in 0..30 {
        ready(&registry, spec());
    }
    for _ in 0..3 {
        ready(&registry, gpu.clone());
    }
    let mut pods = Vec::new();
    for i in 0..3 {
        let id = registry
            .register(k8s(&format!("pod{i}")), gpu.clone())
            .unwrap()
            .id;
        registry.update_state(&id, WorkerState::Ready).unwrap();
        registry.assign_to_job(&id, job(&format!("k{i}"))).unwrap();
        pods.push(id);
    }
    registry.register(k8s("starting"), spec()).unwrap();
    let before = registry.snapshot().unwrap();
    drop(registry);
    raw(&_schema.name)
        .batch_execute(
            "DROP INDEX workers_ready_class; \
             CREATE INDEX workers_ready_spec ON workers (spec_key) WHERE state = 2; \
             DELETE FROM migrations WHERE version >= 9;",
        )
        .unwrap();
    assert_eq!(version_and_fleet(&_schema.name).0, 8);
    assert_eq!(
        ready_indexes(&_schema.name),
        [(
            "workers_ready_spec".to_owned(),
            "(spec_key) WHERE (state = 2)".to_owned()
        )]
    );

    let upgraded = replica(&_schema.name, clock);
    assert_at_v9_with_the_ready_class_index(&_schema.name);
    // A fresh schema and the migrated one end identical.
    let (_fresh_clock, fresh, fresh_schema) = common::registry("readyclassfresh");
    drop(fresh);
    assert_eq!(
        index_definitions(&_schema.name),
        index_definitions(&fresh_schema.name)
    );
    assert_the_fleet_survives(&before, &upgraded);
    let by_provider = WorkerFilter::new().provider_type(ProviderType::Kubernetes);
    let pool_k8s = WorkerFilter::new()
        .label(POOL_LABEL, "gpu")
        .provider_id(provider("k8s"));
    assert_eq!(upgraded.claim(&by_provider, job("p1")).unwrap(), None);
    assert_eq!(upgraded.claim(&pool_k8s, job("p2")).unwrap(), None);
    upgraded
        .release_from_job(&pods[1], Some(&job("k1")))
        .unwrap();
    assert_eq!(
        upgraded.claim(&pool_k8s, job("p3")).unwrap().map(|w| w.id),
        Some(pods[1])
    );
    // The gate's probe reads the new index (once the table's size is known).
    raw(&_schema.name).batch_execute("ANALYZE workers").unwrap();
    assert_plan_uses(&_schema.name, GATE_PROBE, "workers_ready_class");
    assert_invariants(&upgraded);
}

/// `n` ready workers in claim order (the most recently idle first), all silent since `T0`;
/// the clock then moves 2 hours on and all but those at the `silent` positions heartbeat.
fn fleet_with_silent(
    registry: &PostgresWorkerRegistry,
    clock: &ManualClock,
    n: usize,
    silent: &[usize],
) -> Vec<WorkerId> {
    for _ in 0..n {
        ready(registry, spec());
    }
    let mut order: Vec<WorkerId> = registry
        .longest_idle(n)
        .unwrap()
        .iter()
        .map(|w| w.id)
        .collect();
    order.reverse();
    clock.advance(Duration::from_secs(7200));
    let beating: Vec<WorkerId> = order
        .iter()
        .enumerate()
        .filter(|(i, _)| !silent.contains(i))
        .map(|(_, id)| *id)
        .collect();
    assert!(registry
        .heartbeat_many(&beating)
        .unwrap()
        .iter()
        .all(|a| a.is_ok()));
    order
}

#[test]
fn a_claim_by_unhealthy_for_takes_the_most_recently_idle_silent_worker_near_or_far() {
    // A claim with `unhealthy_for` checks the first 64 ready workers in claim order against
    // their heartbeats, then (none silent) finds the answer by one pass over the heartbeats:
    // either way the most recently idle silent worker, as a walk of the whole ready set.
    let (clock, registry, _schema) = registry("claimsilent");
    let order = fleet_with_silent(&registry, &clock, 150, &[10, 100, 140]);
    let silent = WorkerFilter::new().unhealthy_for(Duration::from_secs(3600));
    let take = |j: &str| registry.claim(&silent, job(j)).unwrap().map(|w| w.id);
    assert_eq!(take("j1"), Some(order[10]), "among the first 64");
    assert_eq!(take("j2"), Some(order[100]), "past them: the pass");
    assert_eq!(take("j3"), Some(order[140]));
    assert_eq!(take("j4"), None, "no other worker is silent");
    // The static part of the filter still applies past the first 64.
    registry
        .release_from_job(&order[100], Some(&job("j2")))
        .unwrap();
    let other = WorkerFilter::new()
        .unhealthy_for(Duration::from_secs(3600))
        .provider_id(provider("elsewhere"));
    assert_eq!(registry.claim(&other, job("j5")).unwrap(), None);
    assert_invariants(&registry);
}

#[test]
fn a_claim_by_unhealthy_for_passes_over_a_locked_silent_worker_and_waits_only_when_all_are() {
    // The first pass skips locked candidates: the silent worker among the first 64 is locked,
    // so the answer is the next silent one in claim order, past them. When the only silent
    // worker is locked by a lock that changes nothing, the claim waits and takes it, near
    // (among the first 64) or far.
    let (clock, registry, _schema) = registry("claimsilentlock");
    let registry = Arc::new(registry);
    let order = fleet_with_silent(&registry, &clock, 100, &[5, 80]);
    let silent = WorkerFilter::new().unhealthy_for(Duration::from_secs(3600));
    let (answer, _) = claim_while_locked_by(&registry, &silent, order[5], "UPDATE", "j1");
    assert_eq!(
        answer.unwrap().map(|w| w.id),
        Some(order[80]),
        "skipped, not waited on"
    );
    registry
        .release_from_job(&order[80], Some(&job("j1")))
        .unwrap();
    // Now make each silent one the only one in turn: 5 (near), then 80 (far).
    for (round, only) in [5, 80].into_iter().enumerate() {
        // Two more hours, every other worker beating: `only` is the one silent worker.
        clock.advance(Duration::from_secs(7200));
        let others: Vec<WorkerId> = order
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != only)
            .map(|(_, id)| *id)
            .collect();
        registry.heartbeat_many(&others).unwrap();
        let j = format!("w{round}");
        let (answer, _) =
            claim_while_locked_by(&registry, &silent, order[only], "NO KEY UPDATE", &j);
        assert_eq!(
            answer.unwrap().map(|w| w.id),
            Some(order[only]),
            "waited on {only}"
        );
        registry
            .release_from_job(&order[only], Some(&job(&j)))
            .unwrap();
    }
    assert_invariants(&*registry);
}
