//! The C structs that mirror the core's serde schema must name every field of it (issue 10
//! item 13). The core's values are serialised to JSON (the same JSON `hw_report_get_json` and
//! `hw_manager_new_from_json` speak), and each key must be a field of the C struct in the
//! committed header — under its own name, with `_ms` for durations and timestamps, or under a
//! rename listed here — or be listed as JSON-only with the reason. A field added to the core and
//! forgotten in C fails this test.

use std::collections::BTreeSet;
use std::path::PathBuf;

use engine::{
    CleanupResult, HealthCheckResult, MassExpiryGiveUp, MassExpiryHold, ReconcileReport,
    TickReport, WorkerLifecycleConfig,
};
use serde::Serialize;

fn header() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../include/hodei_workers.h");
    std::fs::read_to_string(path).expect("include/hodei_workers.h is readable")
}

/// The field names of `typedef struct NAME { ... } NAME;` in the header.
fn c_fields(header: &str, name: &str) -> BTreeSet<String> {
    let start = header
        .find(&format!("typedef struct {name} {{"))
        .unwrap_or_else(|| panic!("struct {name} is not in the header"));
    let end = start
        + header[start..]
            .find(&format!("}} {name};"))
            .expect("the struct ends");
    let body = &header[start..end];
    let mut fields = BTreeSet::new();
    let mut in_comment = false;
    for line in body.lines().skip(1) {
        let line = line.trim();
        if line.starts_with("/*") {
            in_comment = true;
        }
        if in_comment {
            in_comment = !line.ends_with("*/");
            continue;
        }
        if let Some(decl) = line.strip_suffix(';') {
            let field = decl.rsplit([' ', '*']).next().expect("a field name");
            fields.insert(field.to_owned());
        }
    }
    assert!(!fields.is_empty(), "no field found in {name}");
    fields
}

/// The top-level keys of a value's JSON object.
fn keys<T: Serialize>(value: &T) -> Vec<String> {
    match serde_json::to_value(value).expect("serialisable") {
        serde_json::Value::Object(map) => map.keys().cloned().collect(),
        other => panic!("not an object: {other}"),
    }
}

/// Checks that every key of `value` is a field of C struct `c_struct`.
fn check<T: Serialize>(
    value: &T,
    c_struct: &str,
    renamed: &[(&str, &str)],
    json_only: &[&str],
) -> Vec<String> {
    let fields = c_fields(&header(), c_struct);
    let mut missing = Vec::new();
    for key in keys(value) {
        if json_only.contains(&key.as_str()) {
            continue;
        }
        let candidates: Vec<String> = match renamed.iter().find(|(k, _)| *k == key) {
            Some((_, c)) => vec![(*c).to_owned()],
            None => vec![key.clone(), format!("{key}_ms")],
        };
        if !candidates.iter().any(|c| fields.contains(c)) {
            missing.push(format!("{c_struct} lacks `{key}` (tried {candidates:?})"));
        }
    }
    missing
}

fn hold() -> MassExpiryHold {
    MassExpiryHold {
        would_expire: 3,
        suspect: 4,
        live: 5,
        allowed: 2,
    }
}

#[test]
fn the_c_summary_names_every_field_of_the_core_reports() {
    let mut missing = Vec::new();
    let tick = TickReport {
        mass_expiry_held: Some(hold()),
        ..Default::default()
    };
    missing.extend(check(
        &tick,
        "hw_report_summary",
        &[
            ("at", "at_ms"),
            ("provider_backoff", "provider_backoffs"),
            ("scaling", "scaled"),
        ],
        // The pool plan (per-pool decisions, spills, waiting demand): its lines are among the
        // decisions; the whole of it is in the JSON form (`hw_manager_plan_pools_json` too).
        // Who leads (holder, term, since, expiry): `hw_report_get_leader`.
        // The reconcile brake's holds, per provider (each also a line among the decisions):
        // the JSON form.
        // The panic that cut the tick short (its message): `hw_report_get_panicked`.
        &["pools", "leader", "reconcile_held", "panicked"],
    ));
    missing.extend(check(
        &HealthCheckResult::default(),
        "hw_report_summary",
        &[("checked_at", "at_ms"), ("held", "mass_expiry_held")],
        &[],
    ));
    missing.extend(check(
        &CleanupResult::default(),
        "hw_report_summary",
        &[],
        &[],
    ));
    missing.extend(check(
        &ReconcileReport::default(),
        "hw_report_summary",
        &[("at", "at_ms"), ("vanished", "terminated")],
        // Per-provider detail of a rare, host-initiated operation: read it from the JSON form.
        &[
            "checked",
            "unsupported",
            "errors",
            "orphans",
            "orphan_check_skipped",
            "adopted_terminating",
        ],
    ));
    missing.extend(check(&hold(), "hw_mass_expiry_hold", &[], &[]));
    missing.extend(check(
        &MassExpiryGiveUp {
            held_for: 1,
            hold: hold(),
        },
        "hw_report_summary",
        &[("held_for", "brake_held_for_ms")],
        &[],
    ));
    assert!(missing.is_empty(), "{missing:#?}");
}

#[test]
fn the_c_counts_name_every_state_the_core_counts() {
    let stats = engine::WorkerRegistryStats::default();
    let mut missing = check(&stats.by_state, "hw_worker_counts", &[], &[]);
    missing.extend(check(
        &stats,
        "hw_worker_counts",
        &[("by_state", "creating")],
        // Maps keyed by provider or pool: `hw_registry_stats_json` (one pool's counts:
        // `hw_registry_pool_counts`, checked above through `by_state`'s fields).
        &["by_provider", "by_provider_type", "by_pool"],
    ));
    assert!(missing.is_empty(), "{missing:#?}");
}

#[test]
fn the_c_config_names_every_field_of_the_core_config() {
    let missing = check(
        &WorkerLifecycleConfig::default(),
        "hw_manager_config",
        &[],
        &[],
    );
    assert!(missing.is_empty(), "{missing:#?}");
}
