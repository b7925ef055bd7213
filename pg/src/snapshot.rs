//! `snapshot` and `restore`: the core's [`Snapshot`] (serde JSON of every record plus `seq`),
//! so a snapshot of the in-memory registry restores into PostgreSQL and back.

use std::collections::{BTreeMap, HashMap};

use hodei_workers::{
    Error, Result, Snapshot, Worker, WorkerId, WorkerRegistry, POOL_LABEL, SNAPSHOT_FORMAT,
};
use postgres::IsolationLevel;

use crate::registry::{begin, Fail, PostgresWorkerRegistry};
use crate::sql::{db_count, db_ts, dur_ms, slot_of, st, ts, W_COLS};

/// The retired ids a snapshot carries, oldest retirement first (a range of the index
/// `known_ids_retired`, schema v5; `retention.rs` checks the plan).
pub(crate) const RETIRED_IDS: &str =
    "SELECT id FROM known_ids WHERE retired IS NOT NULL ORDER BY retired";

/// Every record and the seq of the last event, in one repeatable-read transaction (one
/// instant). `taken_at` is read in that transaction, after its snapshot, or is the latest time
/// in a record if that is later (a database clock that stepped back).
pub(crate) fn snapshot(registry: &PostgresWorkerRegistry) -> Result<Snapshot> {
    let specs = &registry.inner.specs;
    registry.run("taking a snapshot", |conn| {
        let mut tx = conn
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let seq: i64 = tx
            .query_one(
                "SELECT greatest(coalesce((SELECT max(seq) FROM outbox), -9223372036854775807 - 1), \
                 (SELECT seq_floor FROM meta))",
                &[],
            )?
            .get(0);
        // The time is read after the transaction's snapshot is taken (by the statement
        // above): every change it shows was stamped before, so no time in it is after
        // `taken_at`, also with a clock that other threads move meanwhile.
        let given = registry.given();
        let taken_at: i64 = tx.query_one("SELECT now_ms($1)", &[&given])?.get(0);
        let rows = tx.query(
            &format!("SELECT {W_COLS} FROM workers w ORDER BY w.created_at, w.id"),
            &[],
        )?;
        let retired = tx.query(RETIRED_IDS, &[])?;
        // Committed before the rows are decoded: a large fleet's decoding would otherwise
        // keep the session idle inside the transaction, which the server ends past
        // `STALLED_TRANSACTION` (`pool.rs`).
        tx.commit()?;
        let workers = rows
            .iter()
            .map(|r| specs.worker(r))
            .collect::<std::result::Result<Vec<Worker>, Fail>>()?;
        // The database's clock is the server's wall clock, which can step back (NTP, an
        // operator, a failover to a standby whose clock is behind): records stamped before
        // the step then hold times after the reading above, and a snapshot dated by it alone
        // would be refused by every restore (`Snapshot::validate`: no time after `taken_at`).
        // So `taken_at` is the latest time this clock is known to have shown; a restore fits
        // the snapshot to its own clock (`Snapshot::fit_to_clock`) as any snapshot dated ahead.
        let taken_at = workers
            .iter()
            .flat_map(|w| {
                [
                    w.created_at,
                    w.updated_at,
                    w.state_changed_at,
                    w.last_heartbeat,
                    w.idle_since.unwrap_or(0),
                ]
            })
            .fold(ts(taken_at), u64::max);
        let retired_ids = retired
            .iter()
            .map(|r| {
                let id: uuid::Uuid = r.get(0);
                WorkerId::from_bytes(*id.as_bytes()).unwrap_or_default()
            })
            .collect();
        Ok(Snapshot {
            format: SNAPSHOT_FORMAT.to_owned(),
            seq: ts(seq),
            taken_at,
            workers,
            retired_ids,
        })
    })
}

/// Loads `snapshot` into this (empty) registry in one transaction: records, heartbeats, known
/// ids, counters, the seq floor (new events continue after `snapshot.seq`) and a grace period
/// from now (`grant_grace(now)`: no worker expires at the first check after a restore). The
/// table lock taken first keeps other replicas from registering meanwhile.
///
/// # Errors
/// `Snapshot` for a snapshot that fails [`Snapshot::validate`] or
/// [`Snapshot::fit_to_clock`]; `InvalidArgument` when the
/// registry is not empty; `Backend`. On any error nothing is applied.
pub(crate) fn restore(registry: &PostgresWorkerRegistry, mut snapshot: Snapshot) -> Result<()> {
    snapshot.validate()?;
    // Times after this clock's now are clamped to it (or refused beyond the skew bound), as in
    // memory. Read before the transaction: the clock only moves on, so what is clamped stays
    // at or before the transaction's now.
    snapshot.fit_to_clock(registry.now())?;
    // Distinct specs, by their JSON.
    let mut spec_index: HashMap<String, i32> = HashMap::new();
    let mut spec_json: Vec<String> = Vec::new();
    let mut spec_labels: Vec<String> = Vec::new();
    let mut spec_caps: Vec<String> = Vec::new();
    let n = snapshot.workers.len();
    let mut ids = Vec::with_capacity(n);
    let mut slots = Vec::with_capacity(n);
    let mut provider_ids = Vec::with_capacity(n);
    let mut provider_types = Vec::with_capacity(n);
    let mut resource_ids = Vec::with_capacity(n);
    let mut metadata = Vec::with_capacity(n);
    let mut spec_of = Vec::with_capacity(n);
    let mut idle_ms = Vec::with_capacity(n);
    let mut life_ms = Vec::with_capacity(n);
    let mut max_jobs: Vec<Option<i64>> = Vec::with_capacity(n);
    let mut states = Vec::with_capacity(n);
    let mut jobs: Vec<Option<String>> = Vec::with_capacity(n);
    let mut executed = Vec::with_capacity(n);
    let mut created = Vec::with_capacity(n);
    let mut updated = Vec::with_capacity(n);
    let mut changed = Vec::with_capacity(n);
    let mut heartbeat = Vec::with_capacity(n);
    let mut idle_since: Vec<Option<i64>> = Vec::with_capacity(n);
    // The pool each worker counts in: the triggers on `workers` count it into `pool_counts`.
    let mut pools: Vec<Option<&str>> = Vec::with_capacity(n);
    // Counters, recounted: per slot (total + per state) and per (provider, type, slot).
    let mut slot_counts: BTreeMap<i16, [i64; 8]> = BTreeMap::new();
    let mut provider_counts: BTreeMap<(String, String, i16), i64> = BTreeMap::new();
    for w in &snapshot.workers {
        let json = serde_json::to_string(&*w.spec)
            .map_err(|e| Error::Snapshot(format!("worker {}: spec: {e}", w.id)))?;
        let next = spec_json.len() as i32 + 1;
        let index = *spec_index.entry(json.clone()).or_insert_with(|| {
            spec_json.push(json);
            spec_labels.push(serde_json::to_string(&w.spec.labels).expect("labels serialize"));
            spec_caps
                .push(serde_json::to_string(&w.spec.capabilities).expect("capabilities serialize"));
            next
        });
        let slot = slot_of(&w.id);
        ids.push(*w.id.as_uuid());
        slots.push(slot);
        provider_ids.push(w.handle.provider_id.as_str().to_owned());
        provider_types.push(w.handle.provider_type.to_string());
        resource_ids.push(w.handle.resource_id.clone());
        metadata.push(serde_json::to_string(&w.handle.metadata).expect("metadata serialize"));
        spec_of.push(index);
        idle_ms.push(dur_ms(w.spec.idle_timeout));
        life_ms.push(dur_ms(w.spec.max_lifetime));
        max_jobs.push(w.spec.max_jobs.map(i64::from));
        states.push(st(w.state));
        jobs.push(w.current_job.as_ref().map(|j| j.as_str().to_owned()));
        executed.push(db_count(w.jobs_executed));
        created.push(db_ts(w.created_at));
        updated.push(db_ts(w.updated_at));
        changed.push(db_ts(w.state_changed_at));
        heartbeat.push(db_ts(w.last_heartbeat));
        idle_since.push(w.idle_since.map(db_ts));
        pools.push(w.spec.labels.get(POOL_LABEL).map(String::as_str));
        let counts = slot_counts.entry(slot).or_default();
        counts[0] += 1;
        counts[1 + w.state as usize] += 1;
        *provider_counts
            .entry((
                w.handle.provider_id.as_str().to_owned(),
                w.handle.provider_type.to_string(),
                slot,
            ))
            .or_default() += 1;
    }
    let count_slots: Vec<i16> = slot_counts.keys().copied().collect();
    let count_cols: Vec<Vec<i64>> = (0..8)
        .map(|i| slot_counts.values().map(|c| c[i]).collect())
        .collect();
    let (pc_ids, pc_types, pc_slots, pc_n): (Vec<String>, Vec<String>, Vec<i16>, Vec<i64>) =
        provider_counts.into_iter().fold(
            Default::default(),
            |(mut a, mut b, mut c, mut d), ((p, t, s), n)| {
                a.push(p);
                b.push(t);
                c.push(s);
                d.push(n);
                (a, b, c, d)
            },
        );
    let seq = db_ts(snapshot.seq);
    let retired: Vec<uuid::Uuid> = snapshot
        .retired_ids
        .iter()
        .map(|id| *id.as_uuid())
        .collect();
    let given = registry.given();
    registry.write("restoring a snapshot", |conn| {
        let mut tx = begin(&mut conn.client)?;
        tx.batch_execute("LOCK TABLE workers IN SHARE ROW EXCLUSIVE MODE")?;
        let held: i64 = tx.query_one("SELECT count(*) FROM workers", &[])?.get(0);
        if held > 0 {
            return Err(Fail::Domain(Error::invalid(format!(
                "restore needs an empty registry; this one holds {held} workers"
            ))));
        }
        tx.execute(
            "INSERT INTO specs (key, spec, labels, capabilities) \
             SELECT md5(j), j, l::jsonb, ARRAY(SELECT jsonb_array_elements_text(c::jsonb)) \
             FROM unnest($1::text[], $2::text[], $3::text[]) AS x(j, l, c) \
             ON CONFLICT (key) DO NOTHING",
            &[&spec_json, &spec_labels, &spec_caps],
        )?;
        // Ids are never reused: not even by a restore.
        if let Some(row) = tx.query_opt(
            "SELECT id FROM known_ids WHERE id = ANY($1::uuid[]) LIMIT 1",
            &[&ids],
        )? {
            let id: uuid::Uuid = row.get(0);
            return Err(Fail::Domain(Error::invalid(format!(
                "worker {id} was registered in this registry before and retired: ids are never \
                 reused"
            ))));
        }
        tx.execute(
            "INSERT INTO known_ids (id) SELECT unnest($1::uuid[])",
            &[&ids],
        )?;
        // Numbered only when not known already, each once (the first place wins): a number
        // taken for an id that is not inserted (one this registry remembers, or a repeat)
        // would be a gap, and the retired-id limit counts numbers (`crate::retention`), so
        // the registry would forget that many ids too early, as it does for a retirement
        // whose transaction failed. Before, every id of the list took one.
        tx.execute(
            "INSERT INTO known_ids (id, retired) \
             SELECT r.id, nextval('retire_seq') FROM \
                 (SELECT id, min(o) AS o FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, o) \
                  GROUP BY id) r \
             WHERE NOT EXISTS (SELECT 1 FROM known_ids k WHERE k.id = r.id) \
             ORDER BY r.o ON CONFLICT (id) DO NOTHING",
            &[&retired],
        )?;
        tx.execute(
            "WITH sp AS (SELECT md5(j) AS key, i FROM unnest($7::text[]) WITH ORDINALITY AS s(j, i)) \
             INSERT INTO workers (id, slot, provider_id, provider_type, resource_id, metadata, \
                 spec_key, idle_timeout_ms, max_lifetime_ms, max_jobs, state, current_job, \
                 jobs_executed, created_at, updated_at, state_changed_at, idle_since, pool) \
             SELECT x.id, x.slot, x.pid, x.ptype, x.rid, x.meta, sp.key, x.idle, x.life, x.maxj, \
                 x.state, x.job, x.exec, x.created, x.updated, x.changed, x.idle_since, x.pool \
             FROM unnest($1::uuid[], $2::smallint[], $3::text[], $4::text[], $5::text[], \
                 $6::text[], $8::int[], $9::bigint[], $10::bigint[], $11::bigint[], \
                 $12::smallint[], $13::text[], $14::bigint[], $15::bigint[], $16::bigint[], \
                 $17::bigint[], $18::bigint[], $19::text[]) \
                 AS x(id, slot, pid, ptype, rid, meta, spec, idle, life, maxj, state, job, exec, \
                     created, updated, changed, idle_since, pool) \
             JOIN sp ON sp.i = x.spec",
            &[
                &ids,
                &slots,
                &provider_ids,
                &provider_types,
                &resource_ids,
                &metadata,
                &spec_json,
                &spec_of,
                &idle_ms,
                &life_ms,
                &max_jobs,
                &states,
                &jobs,
                &executed,
                &created,
                &updated,
                &changed,
                &idle_since,
                &pools,
            ],
        )?;
        tx.execute(
            "INSERT INTO heartbeats (id, last_heartbeat) SELECT * FROM unnest($1::uuid[], $2::bigint[])",
            &[&ids, &heartbeat],
        )?;
        tx.execute(
            "UPDATE state_counts c SET total = c.total + x.t, s0 = c.s0 + x.a, s1 = c.s1 + x.b, \
                 s2 = c.s2 + x.c, s3 = c.s3 + x.d, s4 = c.s4 + x.e, s5 = c.s5 + x.f, \
                 s6 = c.s6 + x.g \
             FROM unnest($1::smallint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], \
                 $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[]) \
                 AS x(slot, t, a, b, c, d, e, f, g) WHERE c.slot = x.slot",
            &[
                &count_slots,
                &count_cols[0],
                &count_cols[1],
                &count_cols[2],
                &count_cols[3],
                &count_cols[4],
                &count_cols[5],
                &count_cols[6],
                &count_cols[7],
            ],
        )?;
        tx.execute(
            "INSERT INTO provider_counts AS pc (provider_id, provider_type, slot, n) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::smallint[], $4::bigint[]) \
             ON CONFLICT (provider_id, provider_type, slot) DO UPDATE SET n = pc.n + excluded.n",
            &[&pc_ids, &pc_types, &pc_slots, &pc_n],
        )?;
        // New events continue after the snapshot's seq; grace from now.
        tx.execute(
            "UPDATE meta SET seq_floor = greatest(seq_floor, $1), \
                 grace_floor = greatest(grace_floor, now_ms($2))",
            &[&seq, &given],
        )?;
        // The sequence's last value through `pg_sequence_last_value` (what the `pg_sequences`
        // view reads), which needs USAGE (or SELECT) on it: reading the sequence as a relation
        // (`FROM event_seq`) needed SELECT, a right a runtime role lacks (README,
        // "PostgreSQL"). Its NULL means "never used yet" (the next value is the start, 1 past
        // the minimum: every seq is past it) only when the role may read it: PostgreSQL 18
        // answers NULL too, instead of an error, to a role that may not, and setting the
        // sequence back would hand out seqs again. So a role that may not is refused, and the
        // CASE runs `setval` only when it may.
        let readable: bool = tx
            .query_one(
                "SELECT has_sequence_privilege('event_seq', 'USAGE, SELECT'), \
                     CASE WHEN has_sequence_privilege('event_seq', 'USAGE, SELECT') \
                         AND $1 > coalesce(pg_sequence_last_value('event_seq'), \
                             (-9223372036854775807 - 1)) \
                     THEN setval('event_seq', $1) END",
                &[&seq],
            )?
            .get(0);
        if !readable {
            return Err(Fail::Domain(Error::Backend(
                "restoring a snapshot: the role may not read sequence event_seq (restore reads \
                 it to continue the snapshot's seqs): grant it USAGE, which a runtime role \
                 needs with UPDATE on the registry's sequences (README, \"PostgreSQL\")"
                    .to_owned(),
            )));
        }
        tx.commit()?;
        Ok(())
    })
}
