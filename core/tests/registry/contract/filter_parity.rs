//! A filter is judged the same way by every backend, whatever its strings hold: label keys and
//! values, capabilities, GPU models and custom provider types are compared exactly (no pattern
//! characters, no JSON path, no normalisation), and a string no worker can hold (a NUL byte,
//! which `register` refuses) matches nothing rather than failing the call.

use std::sync::Arc;

use super::*;

/// A ready worker with label `key=value` and capability `key`.
fn labelled(registry: &dyn WorkerRegistry, key: &str, value: &str) -> WorkerId {
    let spec = Arc::new(
        WorkerSpec::new("img")
            .with_label(key, value)
            .with_capability(key),
    );
    let id = registry.register(handle(), spec).unwrap().id;
    registry.update_state(&id, WorkerState::Ready).unwrap();
    id
}

fn found(registry: &dyn WorkerRegistry, filter: &WorkerFilter) -> Vec<WorkerId> {
    registry
        .find(filter)
        .unwrap_or_else(|e| panic!("find({filter:?}): {e}"))
        .into_iter()
        .map(|w| w.id)
        .collect()
}

#[test]
fn labels_and_capabilities_with_unusual_strings_match_exactly() {
    let (_, registry) = setup();
    // SQL LIKE wildcards, quotes, backslashes, JSON and JSON-path look-alikes, control
    // characters, and two spellings of "é" that are equal only after normalisation.
    let cases = [
        ("", ""),
        ("%", "%"),
        ("_", "_"),
        ("a'b", "c'd"),
        ("a\"b", "c\"d"),
        ("a\\b", "c\\d"),
        ("ü", "日本"),
        ("\u{1}", "\u{7f}"),
        ("k", "\u{2028}"),
        ("a.b", "{\"x\":1}"),
        ("$.x", "[1]"),
        ("e\u{301}", "\u{e9}"),
    ];
    let ids: Vec<WorkerId> = cases
        .iter()
        .map(|(k, v)| labelled(&*registry, k, v))
        .collect();
    for ((k, v), id) in cases.iter().zip(&ids) {
        let label = WorkerFilter::new().label(*k, *v);
        assert_eq!(found(&*registry, &label), vec![*id], "label {k:?}={v:?}");
        let capability = WorkerFilter::new().capability(*k);
        assert_eq!(
            found(&*registry, &capability),
            vec![*id],
            "capability {k:?}"
        );
    }
    for (k, v) in [
        ("%", "x"),
        ("%", "%%"),
        ("_", "a"),
        ("e\u{301}", "e\u{301}"),
    ] {
        let label = WorkerFilter::new().label(k, v);
        assert!(found(&*registry, &label).is_empty(), "label {k:?}={v:?}");
    }
    assert!(found(&*registry, &WorkerFilter::new().capability("a%")).is_empty());
    let claimed = registry
        .claim(&WorkerFilter::new().label("a\\b", "c\\d"), job("j"))
        .unwrap()
        .expect("the worker with that label");
    assert_eq!(claimed.id, ids[5]);
}

#[test]
fn a_filter_naming_a_string_with_a_nul_matches_nothing() {
    let (_, registry) = setup();
    ready(&*registry);
    let gpu = |t: &str| ResourceRequirements {
        gpu_type: Some(t.into()),
        ..Default::default()
    };
    let filters = [
        WorkerFilter::new().label("pool\0", "ci"),
        WorkerFilter::new().label("pool", "ci\0"),
        WorkerFilter::new().capability("docker\0"),
        WorkerFilter::new().fits(gpu("a100\0")),
        WorkerFilter::new().provider_type(ProviderType::Custom("nomad\0".into())),
    ];
    for filter in &filters {
        assert_eq!(registry.find(filter), Ok(vec![]), "find {filter:?}");
        assert_eq!(
            registry.claim(filter, job("j")),
            Ok(None),
            "claim {filter:?}"
        );
    }
    // Matching nothing does not hide a job held already.
    let busy = registry.claim(&WorkerFilter::new(), job("held")).unwrap();
    let holder = busy.expect("the ready worker").id;
    assert_eq!(
        registry.claim(&filters[0], job("held")),
        Err(Error::JobAlreadyAssigned {
            job_id: job("held"),
            worker_id: holder
        })
    );
}
