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

/// A plain client on the test's schema (`search_path` set to it).
pub(crate) fn raw(schema: &Schema) -> postgres::Client {
    let mut client = postgres::Client::connect(&schema.url, postgres::NoTls).unwrap();
    client
        .batch_execute(&format!("SET search_path TO \"{}\"", schema.name))
        .unwrap();
    client
}

/// The nodes of the plan of `EXPLAIN (ANALYZE, FORMAT JSON) {sql}`, depth first (subplans
/// included). Sent as a simple query, so that the JSON comes back as text.
pub(crate) fn plan_nodes(client: &mut postgres::Client, sql: &str) -> Vec<serde_json::Value> {
    let messages = client
        .simple_query(&format!("EXPLAIN (ANALYZE, FORMAT JSON) {sql}"))
        .unwrap();
    let text = messages
        .iter()
        .find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("a plan");
    plan_tree(&text)
}

/// The nodes of a plan in `EXPLAIN`'s JSON format, depth first (subplans included).
pub(crate) fn plan_tree(json: &str) -> Vec<serde_json::Value> {
    let plan: serde_json::Value = serde_json::from_str(json).unwrap();
    flatten(&plan[0]["Plan"])
}

/// `node` and the nodes under it, depth first.
pub(crate) fn flatten(node: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut todo = vec![node.clone()];
    while let Some(node) = todo.pop() {
        if let Some(children) = node["Plans"].as_array() {
            todo.extend(children.iter().rev().cloned());
        }
        out.push(node);
    }
    out
}

/// The nodes of `nodes` that read the table `table`.
pub(crate) fn reading<'a>(
    nodes: &'a [serde_json::Value],
    table: &'a str,
) -> impl Iterator<Item = &'a serde_json::Value> {
    nodes
        .iter()
        .filter(move |n| n["Relation Name"].as_str() == Some(table))
}
