//! What the crate's unit tests that talk to a server share: the server's URL and a registry in
//! a schema of its own.

use std::sync::Arc;

use hodei_workers::ManualClock;

use crate::PostgresWorkerRegistry;

/// The server the tests use (`HODEI_PG_URL`): a unit test that needs one fails without it.
pub(crate) fn url() -> String {
    std::env::var("HODEI_PG_URL")
        .expect("HODEI_PG_URL: the PostgreSQL tests need a server (see pg/tests/support)")
}

/// A test's schema, dropped however the test ends.
pub(crate) struct Schema {
    pub url: String,
    pub name: String,
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = PostgresWorkerRegistry::drop_schema(&self.url, &self.name);
    }
}

/// A registry on a manual clock (at 2023-11-14) in the schema `{prefix}_{process id}`. Bind
/// the schema first (`let (schema, registry) = scratch(…)`), so that the registry is dropped
/// before its schema.
pub(crate) fn scratch(prefix: &str) -> (Schema, PostgresWorkerRegistry) {
    let schema = Schema {
        url: url(),
        name: format!("{prefix}_{}", std::process::id()),
    };
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let registry =
        PostgresWorkerRegistry::connect_with_clock(&schema.url, &schema.name, clock).unwrap();
    (schema, registry)
}
