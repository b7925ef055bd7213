//! Opening a registry as a least-privilege runtime role (README, "PostgreSQL": the owner role
//! migrates, the application role only reads and writes the tables), and refusing a schema a
//! newer build made. Against the server of `HODEI_PG_URL`, whose user must be able to create
//! roles (the throwaway server's `postgres` is a superuser).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::support::unique_name;
use common::*;
use hodei_workers::*;
use hodei_workers_postgres::PostgresWorkerRegistry;
use postgres::{Client, NoTls};

fn admin() -> Client {
    Client::connect(&url(), NoTls).expect("admin connection")
}

/// `url()` with its user and password replaced.
fn url_as(user: &str, password: &str) -> String {
    let url = url();
    match url.split_once("://") {
        // postgres://user:pw@host:port/db?params
        Some((scheme, rest)) => {
            // The user information is the authority's part up to its last '@'.
            let authority = rest.split(['/', '?']).next().unwrap_or("");
            let rest = match authority.rfind('@') {
                Some(at) => &rest[at + 1..],
                None => rest,
            };
            format!("{scheme}://{user}:{password}@{rest}")
        }
        // key=value: the last value of a key wins.
        None => format!("{url} user={user} password={password}"),
    }
}

/// A login role (with the runtime rights of the README on the schemas it is granted), dropped
/// with its grants and what it owns on drop. Names are unique: roles are cluster-wide and tests run at once.
struct Role {
    name: String,
    password: String,
}

impl Role {
    /// A role with no rights on anything yet.
    fn new() -> Role {
        let name = unique_name("hw_role");
        let password = WorkerId::new().to_string();
        admin()
            .batch_execute(&format!(
                "CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'"
            ))
            .expect("create the role");
        Role { name, password }
    }

    /// A role with the runtime rights on the schema of registry `schema`.
    fn runtime(schema: &str) -> Role {
        let role = Role::new();
        role.grant_runtime(schema);
        role
    }

    /// The runtime rights (README, "PostgreSQL"): USAGE on the schema, SELECT, INSERT,
    /// UPDATE, DELETE on its tables, USAGE and UPDATE on its sequences; nothing else.
    fn grant_runtime(&self, schema: &str) {
        let r = &self.name;
        admin()
            .batch_execute(&format!(
                "GRANT USAGE ON SCHEMA \"{schema}\" TO \"{r}\";
                 GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"{schema}\" TO \"{r}\";
                 GRANT USAGE, UPDATE ON ALL SEQUENCES IN SCHEMA \"{schema}\" TO \"{r}\";"
            ))
            .expect("grant the runtime rights");
    }

    fn url(&self) -> String {
        url_as(&self.name, &self.password)
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let r = &self.name;
        let mut admin = admin();
        // Its sessions first (a registry's pool may still be closing them).
        let _ = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
            &[r],
        );
        if let Err(e) = admin.batch_execute(&format!("DROP OWNED BY \"{r}\"; DROP ROLE \"{r}\"")) {
            eprintln!("warning: could not drop test role {r:?}: {e}");
        }
    }
}

/// Every kind of call a scheduler makes, as the runtime role: they all work.
#[test]
fn a_runtime_role_without_create_rights_opens_and_uses_a_registry_the_owner_made() {
    let schema = SchemaGuard::new("roles_use");
    let clock = Arc::new(ManualClock::new(T0));
    // The owner (the test's user) makes the registry, as a deployment's migration step does.
    drop(PostgresWorkerRegistry::connect_with_clock(&url(), &schema.name, clock.clone()).unwrap());
    let role = Role::runtime(&schema.name);

    let registry =
        PostgresWorkerRegistry::connect_with_clock(&role.url(), &schema.name, clock.clone())
            .unwrap_or_else(|e| panic!("the runtime role opens the registry: {e}"));
    let sub = registry
        .subscribe(SubscribeOptions::default().heartbeats(true))
        .unwrap();
    let a = ready(&registry, spec());
    let b = ready(&registry, spec());
    registry.heartbeat(&a).unwrap();
    assert!(registry
        .heartbeat_many(&[a, b])
        .unwrap()
        .iter()
        .all(|r| r.is_ok()));
    let claimed = registry
        .claim(&WorkerFilter::new(), job("j1"))
        .unwrap()
        .expect("a ready worker");
    registry
        .release_from_job(&claimed.id, Some(&job("j1")))
        .unwrap();
    let stats = registry.stats().unwrap();
    assert_eq!(
        (stats.total, stats.by_state.get(WorkerState::Ready)),
        (2, 2)
    );
    clock.advance(Duration::from_secs(3600 * 2));
    assert_eq!(registry.find_for_termination().unwrap().len(), 2);
    registry.grant_grace(clock.now()).unwrap();
    registry
        .unregister(&b, TerminationReason::Requested)
        .unwrap();
    assert!(registry.get(&b).unwrap().is_none());
    assert!(!kinds(&sub).is_empty(), "the subscriber hears the changes");
    assert_eq!(registry.prune_retired_ids().unwrap(), 0);
    registry.prune_events(Duration::from_secs(1)).unwrap();

    // The lease and a write fenced by it.
    let lease = registry.leadership("m", Duration::from_secs(30)).unwrap();
    let LeaseStatus::Held(info) = lease.acquire_or_renew(None).unwrap() else {
        panic!("a fresh registry's lease is free");
    };
    let view = registry.fenced(&lease, info.term).unwrap();
    view.update_state(&a, WorkerState::Draining).unwrap();
    lease.step_down(info.term).unwrap();

    // A snapshot restored into another registry the owner made.
    let snapshot = registry.snapshot().unwrap();
    let other = SchemaGuard::new("roles_restore");
    drop(PostgresWorkerRegistry::connect_with_clock(&url(), &other.name, clock.clone()).unwrap());
    role.grant_runtime(&other.name);
    let restored =
        PostgresWorkerRegistry::connect_with_clock(&role.url(), &other.name, clock.clone())
            .unwrap();
    restored.restore(snapshot).unwrap();
    assert_eq!(restored.stats().unwrap().total, 1);

    // On the database's clock too (it reads the server's time when it opens).
    let on_db_clock = PostgresWorkerRegistry::connect(&role.url(), &schema.name).unwrap();
    assert_eq!(on_db_clock.stats().unwrap().total, 1);
    drop((sub, registry, restored, on_db_clock));
}

/// A role that may not create what a step needs is told which right it lacks, for a registry
/// not created yet and for one behind this build; and the failed step changes nothing.
#[test]
fn a_role_too_weak_to_create_or_migrate_is_told_which_right_it_lacks() {
    let schema = SchemaGuard::new("roles_weak");
    let role = Role::new();
    let backend = |e: Error| match e {
        Error::Backend(text) => text,
        other => panic!("expected Backend, got {other:?}"),
    };

    // Not created yet: creating it needs CREATE on the database.
    let text = backend(PostgresWorkerRegistry::connect(&role.url(), &schema.name).unwrap_err());
    assert!(
        text.contains("not created yet")
            && text.contains("CREATE on the database")
            && text.contains("permission denied for database"),
        "{text}"
    );

    // Behind this build (its last migration undone by hand): migrating needs the owner.
    drop(PostgresWorkerRegistry::connect(&url(), &schema.name).unwrap());
    let mut admin = admin();
    let q = format!("\"{}\"", schema.name);
    let latest: i32 = admin
        .query_one(&format!("SELECT max(version) FROM {q}.migrations"), &[])
        .unwrap()
        .get(0);
    admin
        .batch_execute(&format!(
            "DELETE FROM {q}.migrations WHERE version = {latest}"
        ))
        .unwrap();
    role.grant_runtime(&schema.name);
    let text = backend(PostgresWorkerRegistry::connect(&role.url(), &schema.name).unwrap_err());
    assert!(
        text.contains(&format!("schema version {}", latest - 1))
            && text.contains(&format!("needs version {latest}"))
            && text.contains("own its schema")
            // The server's own words, which depend on the last migration's DDL: "permission
            // denied for schema" (a CREATE TABLE, v6), "must be owner of table" (a CREATE
            // INDEX on a table, v7 to v9).
            && (text.contains("permission denied") || text.contains("must be owner of table")),
        "{text}"
    );
    let versions: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {q}.migrations"), &[])
        .unwrap()
        .get(0);
    assert_eq!(
        versions,
        i64::from(latest - 1),
        "the failed migration applied nothing"
    );
    // Once the owner has migrated it, the runtime role opens it.
    drop(PostgresWorkerRegistry::connect(&url(), &schema.name).unwrap());
    drop(PostgresWorkerRegistry::connect(&role.url(), &schema.name).unwrap());

    // Without USAGE on the schema, even a current registry cannot be read: the message says
    // what a runtime role needs.
    admin
        .batch_execute(&format!(
            "REVOKE USAGE ON SCHEMA {q} FROM \"{}\"",
            role.name
        ))
        .unwrap();
    let text = backend(PostgresWorkerRegistry::connect(&role.url(), &schema.name).unwrap_err());
    assert!(
        text.contains("permission denied for schema") && text.contains("USAGE on the schema"),
        "{text}"
    );
}

/// A schema made beforehand for the owner role (`CREATE SCHEMA … AUTHORIZATION`, a DBA's
/// usual step) is migrated by that role without CREATE on the database.
#[test]
fn the_owner_of_a_schema_made_beforehand_creates_the_registry_in_it() {
    let schema = SchemaGuard::new("roles_owned");
    let role = Role::new();
    admin()
        .batch_execute(&format!(
            "CREATE SCHEMA \"{}\" AUTHORIZATION \"{}\"",
            schema.name, role.name
        ))
        .unwrap();
    let registry = PostgresWorkerRegistry::connect(&role.url(), &schema.name)
        .unwrap_or_else(|e| panic!("the schema's owner creates the registry in it: {e}"));
    ready(&registry, spec());
    assert_eq!(registry.stats().unwrap().total, 1);
}

/// `restore` reads the event sequence to continue the snapshot's seqs: a role that may not
/// read it (UPDATE alone, no USAGE) is refused with the right it lacks, and nothing is
/// restored, rather than the sequence being set back.
#[test]
fn restore_by_a_role_that_may_not_read_the_event_sequence_is_refused_naming_the_right() {
    let source = SchemaGuard::new("roles_src");
    let clock = Arc::new(ManualClock::new(T0));
    let from =
        PostgresWorkerRegistry::connect_with_clock(&url(), &source.name, clock.clone()).unwrap();
    ready(&from, spec());
    let snapshot = from.snapshot().unwrap();
    // The target has run further than the snapshot's seq (events of a worker since gone).
    let target = SchemaGuard::new("roles_dst");
    let owner =
        PostgresWorkerRegistry::connect_with_clock(&url(), &target.name, clock.clone()).unwrap();
    for _ in 0..3 {
        let id = ready(&owner, spec());
        owner.unregister(&id, TerminationReason::Requested).unwrap();
    }
    let role = Role::new();
    let (r, t) = (&role.name, &target.name);
    admin()
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA \"{t}\" TO \"{r}\";
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"{t}\" TO \"{r}\";
             GRANT UPDATE ON ALL SEQUENCES IN SCHEMA \"{t}\" TO \"{r}\";"
        ))
        .unwrap();
    let weak = PostgresWorkerRegistry::connect_with_clock(&role.url(), t, clock.clone()).unwrap();
    match weak.restore(snapshot) {
        Err(Error::Backend(text)) => assert!(
            text.contains("event_seq") && text.contains("USAGE"),
            "{text}"
        ),
        other => panic!("expected Backend naming the right, got {other:?}"),
    }
    assert_eq!(owner.stats().unwrap().total, 0, "nothing was restored");
    // The registry goes on: its next events take new seqs.
    let sub = owner.subscribe(SubscribeOptions::default()).unwrap();
    ready(&owner, spec());
    assert!(!kinds(&sub).is_empty());
    drop((weak, owner, from));
}
