//! The registry's schema: one PostgreSQL schema per registry name, built by versioned
//! migrations that `connect` applies.
//!
//! # Tables (schema v1; v2 and v3 add the tables marked so, v4 and v5 an index each; v6
//! creates v2's table where an older v2 made another; v7 replaces the index by provider by
//! one by provider and resource id; v8 adds an index of the ready workers by spec, which v9
//! replaces by one by class: spec, provider id, provider type)
//! | table | what | why |
//! |---|---|---|
//! | `workers` | one row per worker: handle, state, job, timestamps, the spec's deadlines | the record; `current_job` is `UNIQUE` (invariant 2 across processes) |
//! | `heartbeats` | `(id, last_heartbeat)` | narrow, no index on the time column: a heartbeat is a HOT update of a 40-byte row, never of the wide record |
//! | `specs` | each distinct spec once (JSON, labels, capabilities), keyed by the md5 of its JSON | a fleet made from a few specs stores them a few times |
//! | `known_ids` | every id ever registered, and when it was retired (unregistered) | ids are never reused: `register` of a known id is `AlreadyExists` (a unique index, so two replicas registering one id cannot both win). `retired` numbers the retirements (`retire_seq`); the oldest past the registry's retired-id limit are forgotten, as in memory (`crate::retention`, index `known_ids_retired`, v5): ~60 bytes an id on disk |
//! | `state_counts` | per slot (32 of them, by worker id): total and one count per state | `stats()` sums 32 rows; a change updates its worker's slot row in the same transaction, so two replicas rarely wait on the same counter |
//! | `provider_counts` | per (provider, provider type, slot): count | the per-provider counts of `stats()` |
//! | `outbox` | every event: `seq` (from `event_seq`), the writer's `xid`, `at`, the event as JSON | events of every replica reach every subscriber (see `events`) |
//! | `meta` | one row: the grace floor, the seq floor | `grant_grace` and `restore` |
//! | `listeners` | backend pids of subscribers waiting with `LISTEN` | writers `NOTIFY` only when someone listens (NOTIFY takes a database-wide lock at commit) |
//! | `manager_leases` | (v2) the managers' leadership lease per name: holder, term, since, expiry (see [`PostgresLeadership`](crate::PostgresLeadership)) | |
//! | `pool_counts` | (v3) per (pool, slot, state): count, for the workers whose spec carries the label `POOL_LABEL` (`workers.pool`, v3) | the per-pool counts of `stats()` (`by_pool`); maintained by row triggers on `workers` that fire only for a pooled worker's insert, state change and delete, so every writer (register, moves, claims, restore, unregister) keeps them without knowing of them, and an unpooled fleet pays nothing |
//! | `migrations` | applied versions | |
//!
//! Indexes serve each question that must not scan the fleet: the ready workers by `(idle_since
//! DESC, id DESC)` (claim, most recently idle first; `longest_idle` from the other end), the ready
//! workers by class (`workers_ready_class`, v9, in place of v8's `workers_ready_spec` by spec
//! alone: whether a claim's spec and provider conditions leave any ready worker to walk), the
//! startup deadline (`created_at` of `Creating`/`Connecting`), the idle deadline
//! (`idle_since + idle_timeout_ms` of `Ready`), the lifetime deadline (`created_at +
//! max_lifetime_ms` of the live states), the drained workers (`Draining` without a job), the
//! provider and resource id (`workers_provider_resource`, v7: a provider's rows, or the few of them
//! holding the resource ids asked about), the terminal workers (`Terminating`/`Terminated`, v4).
//! The heartbeat deadline is found by one sequential pass over the narrow `heartbeats` table (an
//! index on the time column would make every heartbeat a non-HOT update).

use hodei_workers::{quote_input, Error, Result, WorkerState, POOL_LABEL};

use crate::error::DbError;
use crate::pool::{quote_ident, Conn};
use crate::sql::st;

/// Number of counter slots (a power of two).
pub(crate) const SLOTS: i16 = 32;

/// Checks a registry name, which is also the name of its PostgreSQL schema: 1 to 48 bytes of
/// `[a-z0-9_]`, starting with a letter or `_`, not a reserved schema (`public`, `pg_*`,
/// `information_schema`).
///
/// # Errors
/// `InvalidArgument`.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 48
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
        && name != "public"
        && name != "information_schema"
        && !name.starts_with("pg_");
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid registry name {}: 1..=48 bytes of [a-z0-9_], not starting with a \
             digit, not public, information_schema or pg_*",
            quote_input(name)
        )))
    }
}

/// The LISTEN/NOTIFY channel of a registry.
pub(crate) fn channel(schema: &str) -> String {
    format!("hodei_workers_{schema}")
}

/// The advisory lock key that serialises migrations (and drops) of one schema across
/// processes: two replicas starting at once apply each migration once.
const LOCK_SQL: &str = "SELECT pg_advisory_xact_lock(hashtextextended('hodei-workers:' || $1, 0))";

/// The migrations, in order; version = index + 1. Each runs in the transaction that holds the
/// advisory lock and records it, so it applies whole or not at all.
fn migrations(schema: &str) -> Vec<String> {
    let channel = channel(schema);
    let q = quote_ident(schema);
    let mut counts = String::from("INSERT INTO state_counts (slot) SELECT generate_series(0, ");
    counts.push_str(&(SLOTS - 1).to_string());
    counts.push_str(");");
    vec![
        format!(
            r#"
-- Timestamps are stored as ms - 2^63 (the u64 range in order, see sql::db_ts).
-- The clock of every deadline: the given time (a ManualClock), or the database's.
CREATE FUNCTION now_ms(given bigint) RETURNS bigint LANGUAGE sql VOLATILE AS
$$ SELECT coalesce(given,
    floor(date_part('epoch', clock_timestamp()) * 1000)::bigint + (-9223372036854775807 - 1)) $$;
-- t + d, saturating at the end of time (d >= 0): deadlines never wrap.
CREATE FUNCTION sat_add(t bigint, d bigint) RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT CASE WHEN d = 9223372036854775807 OR t > 9223372036854775807 - d
    THEN 9223372036854775807 ELSE t + d END $$;
-- t - d, or NULL before the beginning of time (d >= 0): "no cutoff yet".
CREATE FUNCTION sat_sub(t bigint, d bigint) RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT CASE WHEN t < (-9223372036854775807 - 1) + d THEN NULL ELSE t - d END $$;
-- now.saturating_sub(t) >= d, as the in-memory registry computes it.
CREATE FUNCTION age_ge(now bigint, t bigint, d bigint) RETURNS boolean LANGUAGE sql IMMUTABLE
    PARALLEL SAFE AS
$$ SELECT CASE WHEN d = 9223372036854775807 THEN false
               WHEN t >= now THEN d = 0
               WHEN now < (-9223372036854775807 - 1) + d THEN false
               ELSE t <= now - d END $$;

CREATE TABLE meta (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    -- WorkerRegistry::grant_grace: no heartbeat/startup deadline starts before it.
    grace_floor bigint NOT NULL DEFAULT (-9223372036854775807 - 1),
    -- The seq a restored registry continues after, when the outbox holds nothing later.
    seq_floor bigint NOT NULL DEFAULT (-9223372036854775807 - 1)
);
INSERT INTO meta DEFAULT VALUES;

-- Ids are never reused: every id ever registered, never deleted; `retired` orders the
-- unregistered ones (snapshots carry them oldest first).
CREATE SEQUENCE retire_seq;
CREATE TABLE known_ids (id uuid PRIMARY KEY, retired bigint);

CREATE TABLE specs (
    key text PRIMARY KEY,
    spec text NOT NULL,
    labels jsonb NOT NULL,
    capabilities text[] NOT NULL
);

CREATE TABLE workers (
    id uuid PRIMARY KEY,
    slot smallint NOT NULL,
    provider_id text NOT NULL,
    provider_type text NOT NULL,
    resource_id text NOT NULL,
    metadata text NOT NULL,
    spec_key text NOT NULL,
    idle_timeout_ms bigint NOT NULL,
    max_lifetime_ms bigint NOT NULL,
    max_jobs bigint,
    state smallint NOT NULL CHECK (state BETWEEN 0 AND 6),
    -- Invariant 2: a job is held by at most one worker, across every replica.
    current_job text CONSTRAINT workers_job_unique UNIQUE,
    jobs_executed bigint NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    state_changed_at bigint NOT NULL,
    idle_since bigint,
    -- Invariant 1, checked by the database too.
    CONSTRAINT workers_job_state CHECK (
        CASE WHEN current_job IS NULL THEN state <> 3 ELSE state IN (3, 4) END),
    CONSTRAINT workers_ready_idle CHECK (state <> 2 OR idle_since IS NOT NULL)
);
-- claim: the most recently idle ready worker first; longest_idle: from the other end.
CREATE INDEX workers_ready ON workers (idle_since DESC, id DESC) WHERE state = 2;
CREATE INDEX workers_idle_due ON workers ((sat_add(idle_since, idle_timeout_ms))) WHERE state = 2;
CREATE INDEX workers_startup_due ON workers (created_at) WHERE state IN (0, 1);
CREATE INDEX workers_lifetime_due ON workers ((sat_add(created_at, max_lifetime_ms)))
    WHERE state IN (0, 1, 2, 3);
CREATE INDEX workers_drained ON workers (id) WHERE state = 4 AND current_job IS NULL;
CREATE INDEX workers_provider ON workers (provider_id);

-- Narrow, no index on last_heartbeat: heartbeats are HOT updates (fillfactor leaves room).
CREATE TABLE heartbeats (
    id uuid PRIMARY KEY,
    last_heartbeat bigint NOT NULL
) WITH (fillfactor = 70);

-- Counters behind stats(), one row per slot: a change updates one row of its worker's slot
-- in its own transaction (invariant 4 without a GROUP BY over the fleet).
CREATE TABLE state_counts (
    slot smallint PRIMARY KEY,
    total bigint NOT NULL DEFAULT 0,
    s0 bigint NOT NULL DEFAULT 0, s1 bigint NOT NULL DEFAULT 0, s2 bigint NOT NULL DEFAULT 0,
    s3 bigint NOT NULL DEFAULT 0, s4 bigint NOT NULL DEFAULT 0, s5 bigint NOT NULL DEFAULT 0,
    s6 bigint NOT NULL DEFAULT 0
);
{counts}
CREATE TABLE provider_counts (
    provider_id text NOT NULL,
    provider_type text NOT NULL,
    slot smallint NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (provider_id, provider_type, slot)
);

-- Seqs are stored as v - 2^63 (see sql::db_ts): the first event is seq 1.
CREATE SEQUENCE event_seq MINVALUE -9223372036854775808 START -9223372036854775807;
CREATE TABLE outbox (
    seq bigint PRIMARY KEY,
    -- The writing transaction: readers use it to tell a row still in flight from a gap.
    xid xid8 NOT NULL,
    at bigint NOT NULL,
    worker_id uuid,
    heartbeat boolean NOT NULL DEFAULT false,
    kind text NOT NULL
);
CREATE INDEX outbox_at ON outbox USING brin (at);

CREATE TABLE listeners (pid integer PRIMARY KEY);
CREATE FUNCTION notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM {q}.listeners) THEN
        PERFORM pg_notify('{channel}', '');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION notify_events();

"#
        ),
        // v2: the replicated managers' leadership lease (issue 14; crate::leadership): one row
        // per lease name, its holder, its term (the fencing token, incremented by every new
        // holder), since when that holder leads and its expiry, in ms on the registry's clock.
        r#"
CREATE TABLE manager_leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    term bigint NOT NULL CHECK (term > 0),
    since bigint NOT NULL,
    expires_at bigint NOT NULL
);
"#
        .to_owned(),
        // v3: per-pool counts (INTERFACES.md A, issue 15). `workers.pool` is the value of the
        // spec's POOL_LABEL, written by register and restore and never changed (a spec is
        // immutable); the triggers fire only when it is set, so they cost an unpooled fleet
        // nothing. Existing workers are backfilled from their specs before the triggers exist.
        format!(
            r#"
ALTER TABLE workers ADD COLUMN pool text;
UPDATE workers w SET pool = s.labels ->> '{POOL_LABEL}' FROM specs s
    WHERE s.key = w.spec_key AND s.labels ? '{POOL_LABEL}';
CREATE TABLE pool_counts (
    pool text NOT NULL,
    slot smallint NOT NULL,
    state smallint NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (pool, slot, state)
);
INSERT INTO pool_counts (pool, slot, state, n)
    SELECT pool, slot, state, count(*) FROM workers WHERE pool IS NOT NULL GROUP BY 1, 2, 3;
CREATE FUNCTION count_pool() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        UPDATE {q}.pool_counts SET n = n - 1
            WHERE pool = OLD.pool AND slot = OLD.slot AND state = OLD.state;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO {q}.pool_counts AS pc (pool, slot, state, n)
            VALUES (NEW.pool, NEW.slot, NEW.state, 1)
            ON CONFLICT (pool, slot, state) DO UPDATE SET n = pc.n + 1;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER pool_insert AFTER INSERT ON workers
    FOR EACH ROW WHEN (NEW.pool IS NOT NULL) EXECUTE FUNCTION count_pool();
CREATE TRIGGER pool_state AFTER UPDATE OF state ON workers
    FOR EACH ROW WHEN (NEW.pool IS NOT NULL AND OLD.state <> NEW.state)
    EXECUTE FUNCTION count_pool();
CREATE TRIGGER pool_delete AFTER DELETE ON workers
    FOR EACH ROW WHEN (OLD.pool IS NOT NULL) EXECUTE FUNCTION count_pool();
"#
        ),
        // v4: the terminal workers' ids (`terminal_ids`, which the lifecycle manager reads
        // every health-check interval while its destroy queue is not empty): an index-only
        // scan of the few terminal rows instead of a pass over the fleet.
        format!(
            "CREATE INDEX workers_terminal ON workers (id) WHERE {};",
            terminal_predicate()
        ),
        // v5: the retired ids in retirement order, so that forgetting the oldest past the
        // registry's limit (`crate::retention`) and a snapshot's list read a range of this
        // index instead of every id ever registered.
        "CREATE INDEX known_ids_retired ON known_ids (retired) WHERE retired IS NOT NULL;"
            .to_owned(),
        // v6: the managers' lease for registries whose v2 was the first one, the table
        // `leases` of `LeaderLease` (main up to 8ebf63c; v2 was then rewritten in place): they
        // have migration 2 recorded and no `manager_leases`, so no replica could ever lead
        // (every lease call and fenced write failed: "relation manager_leases does not
        // exist"). The table is created as v2 creates it now (a no-op where v2 did), and the
        // old one dropped: nothing reads it any more, and a replica of such a build left
        // running then fails to lead instead of leading beside the new ones.
        r#"
CREATE TABLE IF NOT EXISTS manager_leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    term bigint NOT NULL CHECK (term > 0),
    since bigint NOT NULL,
    expires_at bigint NOT NULL
);
DROP TABLE IF EXISTS leases;
"#
        .to_owned(),
        // v7: the workers by (provider, resource id) instead of by provider alone (v1's
        // `workers_provider`): `find_by_resource_ids`, which the lifecycle manager's orphan
        // retries call every tick while orphans are pending, reads the rows asked about
        // instead of every row of the provider (53 ms at 100,000 workers of one provider). The
        // provider is the leading column, so every question by provider alone is still
        // answered from it; still one index to maintain on insert, and neither column is ever
        // updated, so HOT updates of the record are untouched. An entry holds both ids: at most
        // 128 + 2,048 bytes (MAX_PROVIDER_ID_LEN, MAX_RESOURCE_ID_LEN), under the btree's cap
        // of about 2,700. Written to be applied again (`IF [NOT] EXISTS`), as v6 is.
        r#"
CREATE INDEX IF NOT EXISTS workers_provider_resource ON workers (provider_id, resource_id);
DROP INDEX IF EXISTS workers_provider;
"#
        .to_owned(),
        // v8: the ready workers by spec, so that a claim whose filter has spec conditions (a
        // pool's label, capabilities, architecture, resources) first asks whether any ready
        // worker has a matching spec — a probe of this index for each matching spec
        // (`crate::claim`) — instead of walking the whole ready set when none has: the
        // scheduler's claim for a pool scaled to zero beside a large ready fleet (52 ms at
        // 100,000 ready workers). `state = 2` as `workers_ready`: the same rows (the CHECK
        // `workers_job_state` keeps a ready worker's job NULL), the predicate every claim
        // states. Its cost: one more index entry written by each move into `Ready`, which
        // changes `state`, a column of the partial indexes' predicates, so it is never a HOT
        // update and already writes `workers_ready`; nothing on heartbeats (their own table)
        // nor on the moves between other states. Written to be applied again, as v7.
        "CREATE INDEX IF NOT EXISTS workers_ready_spec ON workers (spec_key) WHERE state = 2;"
            .to_owned(),
        // v9: the ready workers by class — (spec, provider id, provider type), the class of
        // the in-memory registry — in place of v8's index by spec alone, so that the claim's
        // gate (`crate::claim`) also says no for a filter by provider that no ready worker
        // meets (a job pinned to Kubernetes while the Docker fleet is idle), alone or beside
        // spec conditions whose ready workers are all another provider's: before, such a claim
        // walked the whole ready set. The spec key leads, so a walk of the distinct classes
        // visits each spec's classes together; entries of one class share a posting list (B-tree
        // deduplication), as v8's of one spec did. Same predicate and the same write cost as
        // v8 (neither provider column is ever updated): one entry for each move into `Ready`.
        // v8's index is dropped: nothing reads it any more. Written to be applied again, as v8.
        r#"
CREATE INDEX IF NOT EXISTS workers_ready_class ON workers (spec_key, provider_id, provider_type)
    WHERE state = 2;
DROP INDEX IF EXISTS workers_ready_spec;
"#
        .to_owned(),
    ]
}

/// The `WHERE` clause of the terminal rows (`Terminating`, `Terminated`), with the states as
/// literals: the one text of index `workers_terminal` (v4) and of the query it serves, which
/// must state the same predicate for the planner to use a partial index.
pub(crate) fn terminal_predicate() -> String {
    format!(
        "state IN ({}, {})",
        st(WorkerState::Terminating),
        st(WorkerState::Terminated)
    )
}

/// Whether the registry's `migrations` table exists, from the catalog: readable by any role,
/// and a question, never DDL.
const HAS_MIGRATIONS_SQL: &str = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c \
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
    WHERE n.nspname = $1 AND c.relname = 'migrations' AND c.relkind IN ('r', 'p'))";

/// Whether the registry's schema exists, from the catalog.
const HAS_SCHEMA_SQL: &str =
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)";

/// The rights a runtime role needs on a registry that is current (README, "PostgreSQL").
const RUNTIME_RIGHTS: &str = "USAGE on the schema, SELECT, INSERT, UPDATE and DELETE on its \
    tables, USAGE and UPDATE on its sequences";

/// The version of the registry's schema: the last migration it recorded, 0 when it has no
/// `migrations` table (not created yet). Reads only (the catalog, then `migrations`).
fn applied_version(
    client: &mut impl postgres::GenericClient,
    schema: &str,
) -> std::result::Result<i32, postgres::Error> {
    let exists: bool = client.query_one(HAS_MIGRATIONS_SQL, &[&schema])?.get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_one(
            &format!(
                "SELECT coalesce(max(version), 0) FROM {}.migrations",
                quote_ident(schema)
            ),
            &[],
        )?
        .get(0))
}

/// Whether the server refused `e` for want of a privilege (SQLSTATE 42501).
fn lacks_privilege(e: &postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| db.code() == &postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
}

/// Opens the registry's schema for this build: when it is current, only reads its version (no
/// DDL, no lock: a runtime role without CREATE rights opens it); otherwise creates the schema
/// if needed and applies the migrations it lacks, in one transaction under an advisory lock on
/// the schema's name (replicas starting at once wait for each other; each migration is applied
/// once).
///
/// # Errors
/// `Backend`: the server failed; the role lacks a right the step needs (the message names
/// it: reading needs the runtime rights, migrating those of the schema's owner); the schema
/// is newer than this build's migrations (a newer build migrated it: refused, nothing done).
pub(crate) fn migrate(conn: &mut Conn, schema: &str) -> Result<()> {
    let latest = migrations(schema).len() as i32;
    let applied = applied_version(&mut conn.client, schema).map_err(|e| {
        if lacks_privilege(&e) {
            Error::Backend(format!(
                "reading the version of registry {schema:?}: {}: the role opening a registry \
                 needs {RUNTIME_RIGHTS} (README, \"PostgreSQL\")",
                DbError::from(e).text()
            ))
        } else {
            DbError::from(e).backend("reading the registry's schema version")
        }
    })?;
    if applied == latest {
        return Ok(());
    }
    if applied > latest {
        return Err(newer(schema, applied, latest));
    }
    let doing = "applying the registry's migrations";
    // `Ok(Some(v))`: the schema is at version `v`, newer than this build's (nothing done).
    let run = |conn: &mut Conn| -> std::result::Result<Option<i32>, postgres::Error> {
        let mut tx = conn.client.transaction()?;
        tx.execute(LOCK_SQL, &[&schema])?;
        let q = quote_ident(schema);
        // Only what is missing: a schema made beforehand (`CREATE SCHEMA … AUTHORIZATION`)
        // is migrated by its owner without CREATE on the database.
        let has_schema: bool = tx.query_one(HAS_SCHEMA_SQL, &[&schema])?.get(0);
        if !has_schema {
            tx.batch_execute(&format!("CREATE SCHEMA {q}"))?;
        }
        let applied = applied_version(&mut tx, schema)?;
        // A newer build may have migrated it while we waited for the lock.
        if applied > latest {
            return Ok(Some(applied));
        }
        if applied == 0 {
            tx.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {q}.migrations (
                     version integer PRIMARY KEY,
                     applied_at timestamptz NOT NULL DEFAULT now())"
            ))?;
        }
        for (i, sql) in migrations(schema).iter().enumerate() {
            let version = i as i32 + 1;
            if version <= applied {
                continue;
            }
            tx.batch_execute(&format!("SET LOCAL search_path TO {q}; {sql}"))?;
            tx.execute(
                &format!("INSERT INTO {q}.migrations (version) VALUES ($1)"),
                &[&version],
            )?;
        }
        tx.commit()?;
        Ok(None)
    };
    let newer_found = run(conn).map_err(|e| {
        if lacks_privilege(&e) {
            Error::Backend(format!(
                "{doing}: registry {schema:?} is at schema version {applied} (0: not created \
                 yet) and this build needs version {latest}; the role lacks a right to create \
                 or migrate it: {}. Creating a registry needs CREATE on the database (or a \
                 schema of that name the role owns); migrating one needs to own its schema and \
                 tables. Open it once with the owner role; a runtime role then needs only \
                 {RUNTIME_RIGHTS} (README, \"PostgreSQL\")",
                DbError::from(e).text()
            ))
        } else {
            DbError::from(e).backend(doing)
        }
    })?;
    if let Some(applied) = newer_found {
        return Err(newer(schema, applied, latest));
    }
    conn.forget_statements();
    Ok(())
}

/// The refusal of a schema a newer build migrated: this build's statements assume the
/// tables' shape at `latest`, and running them against another shape could fail half-way or
/// write what the newer build reads wrongly. `Backend`, as any registry the store cannot serve
/// to this build (retrying does not help; upgrading the build does).
fn newer(schema: &str, applied: i32, latest: i32) -> Error {
    Error::Backend(format!(
        "registry {schema:?} is at schema version {applied}, made by a newer build of \
         hodei-workers; this build knows up to version {latest} and does not know the shape of \
         its tables, so it refuses to open it (nothing was changed): run a build that knows \
         version {applied}"
    ))
}

/// Drops a schema and everything in it (under the migrations' lock).
pub(crate) fn drop_schema(conn: &mut Conn, schema: &str) -> Result<()> {
    let run = |conn: &mut Conn| -> std::result::Result<(), DbError> {
        let mut tx = conn.client.transaction()?;
        tx.execute(LOCK_SQL, &[&schema])?;
        tx.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            quote_ident(schema)
        ))?;
        tx.commit()?;
        Ok(())
    };
    run(conn).map_err(|e| e.backend("dropping the registry's schema"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["a", "fleet_1", "_x", &"a".repeat(48)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1a",
            "A",
            "a-b",
            "a b",
            "a\"b",
            "public",
            "pg_x",
            "information_schema",
            &"a".repeat(49),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_huge_name_is_refused_with_a_short_message() {
        let message = validate_name(&"N".repeat(1 << 20)).unwrap_err().to_string();
        assert!(message.len() < 400, "{} bytes", message.len());
        assert!(message.contains("(1048576 bytes)"), "{message}");
    }
}
