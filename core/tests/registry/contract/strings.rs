//! Item 17: strings that may reach C: no NUL, bounded lengths, a resource id that names
//! something; and filters that ask for strings beyond those bounds are refused.

use std::sync::Arc;

use super::{get, handle, job, ready, setup, spec};
use hodei_workers::*;

fn bad_specs() -> Vec<(&'static str, WorkerSpec)> {
    let base = WorkerSpec::new("img");
    let mut gpu = base.clone();
    gpu.resources.gpu_type = Some("a\0b".into());
    let mut env_key = base.clone();
    env_key.environment.insert("A\0".into(), "v".into());
    let mut env_value = base.clone();
    env_value.environment.insert("A".into(), "v\0".into());
    let mut long_env = base.clone();
    long_env
        .environment
        .insert("A".into(), "v".repeat(MAX_VALUE_LEN + 1));
    let mut many_labels = base.clone();
    for i in 0..=MAX_ENTRIES {
        many_labels.labels.insert(format!("k{i}"), "v".into());
    }
    vec![
        ("image NUL", WorkerSpec::new("ubuntu\0:24.04")),
        ("image long", WorkerSpec::new("i".repeat(MAX_IMAGE_LEN + 1))),
        ("label key NUL", base.clone().with_label("a\0", "v")),
        ("label value NUL", base.clone().with_label("a", "v\0")),
        (
            "label key long",
            base.clone().with_label("k".repeat(MAX_KEY_LEN + 1), "v"),
        ),
        (
            "label value long",
            base.clone().with_label("k", "v".repeat(MAX_VALUE_LEN + 1)),
        ),
        ("capability NUL", base.clone().with_capability("gp\0u")),
        (
            "capability long",
            base.clone().with_capability("c".repeat(MAX_KEY_LEN + 1)),
        ),
        ("gpu type NUL", gpu),
        ("env key NUL", env_key),
        ("env value NUL", env_value),
        ("env value long", long_env),
        ("too many labels", many_labels),
    ]
}

fn bad_handles() -> Vec<(&'static str, WorkerHandle)> {
    let provider = ProviderId::new("p").unwrap();
    let with =
        |resource: String| WorkerHandle::new(provider.clone(), ProviderType::Docker, resource);
    vec![
        ("resource id empty", with(String::new())),
        ("resource id NUL", with("c-\0-1".into())),
        (
            "resource id long",
            with("r".repeat(MAX_RESOURCE_ID_LEN + 1)),
        ),
        (
            "metadata key NUL",
            with("c".into()).with_metadata("k\0", "v"),
        ),
        (
            "metadata value NUL",
            with("c".into()).with_metadata("k", "\0"),
        ),
        (
            "metadata value long",
            with("c".into()).with_metadata("k", "v".repeat(MAX_VALUE_LEN + 1)),
        ),
    ]
}

#[test]
fn strings_with_nul_or_over_their_limit_are_refused_at_register() {
    let (_clock, registry) = setup();
    for (what, spec) in bad_specs() {
        assert!(
            matches!(spec.validate(), Err(Error::InvalidArgument(_))),
            "{what}"
        );
        assert!(
            matches!(
                registry.register(handle(), Arc::new(spec.clone())),
                Err(Error::InvalidArgument(_))
            ),
            "{what}"
        );
        // Through JSON (the bindings' way in): it parses, and validate() refuses it.
        let text = serde_json::to_string(&spec).unwrap();
        let parsed: WorkerSpec = serde_json::from_str(&text).unwrap();
        assert!(parsed.validate().is_err(), "{what} (JSON)");
    }
    for (what, h) in bad_handles() {
        assert!(
            matches!(h.validate(), Err(Error::InvalidArgument(_))),
            "{what}"
        );
        assert!(
            matches!(registry.register(h, spec()), Err(Error::InvalidArgument(_))),
            "{what}"
        );
    }
    assert_eq!(registry.count().unwrap(), 0);
    // At the limits: accepted.
    let spec = WorkerSpec::new("i".repeat(MAX_IMAGE_LEN))
        .with_label("k".repeat(MAX_KEY_LEN), "v".repeat(MAX_VALUE_LEN))
        .with_capability("c".repeat(MAX_KEY_LEN));
    let h = WorkerHandle::new(
        ProviderId::new("p").unwrap(),
        ProviderType::Docker,
        "r".repeat(MAX_RESOURCE_ID_LEN),
    )
    .with_metadata("k".repeat(MAX_KEY_LEN), "ä".repeat(MAX_VALUE_LEN / 2));
    registry.register(h, Arc::new(spec)).unwrap();
}

#[test]
fn strings_with_nul_are_refused_at_restore() {
    let (_clock, source) = setup();
    ready(&*source);
    let good = source.snapshot().unwrap();
    let mut cases: Vec<(&str, Snapshot)> = Vec::new();
    for (what, spec) in bad_specs() {
        let mut s = good.clone();
        s.workers[0].spec = Arc::new(spec);
        cases.push((what, s));
    }
    for (what, mut h) in bad_handles() {
        let mut s = good.clone();
        h.worker_id = s.workers[0].id;
        s.workers[0].handle = Arc::new(h);
        cases.push((what, s));
    }
    for (what, bad) in cases {
        let (_clock, target) = setup();
        assert!(
            matches!(target.restore(bad.clone()), Err(Error::Snapshot(_))),
            "{what}"
        );
        let text = bad.to_json().unwrap();
        assert!(
            matches!(Snapshot::from_json(&text), Err(Error::Snapshot(_))),
            "{what} (JSON)"
        );
        assert_eq!(target.count().unwrap(), 0);
    }
}

/// Filters asking for a string no worker can hold (over the limit of the worker's own string,
/// or more labels or capabilities than a worker may have), each with the field its error
/// names.
fn over_limit_filters() -> Vec<(&'static str, WorkerFilter)> {
    let cpu = |cpu_cores: f64| ResourceRequirements {
        cpu_cores,
        ..Default::default()
    };
    let long_key = "k".repeat(MAX_KEY_LEN + 1);
    let mut many_labels = WorkerFilter::new();
    let mut many_capabilities = WorkerFilter::new();
    for i in 0..=MAX_ENTRIES {
        many_labels = many_labels.label(format!("k{i}"), "v");
        many_capabilities = many_capabilities.capability(format!("c{i}"));
    }
    let gpu = ResourceRequirements {
        gpu_type: Some(long_key.clone()),
        ..Default::default()
    };
    vec![
        (
            "filter.labels key",
            WorkerFilter::new().label(&long_key, "v"),
        ),
        (
            "filter.labels[\"k\"] value",
            WorkerFilter::new().label("k", "v".repeat(MAX_VALUE_LEN + 1)),
        ),
        (
            "filter.capabilities",
            WorkerFilter::new().capability(&long_key),
        ),
        ("filter.fits.gpu_type", WorkerFilter::new().fits(gpu)),
        ("filter.labels", many_labels),
        ("filter.capabilities", many_capabilities),
        // Not a string, but the same silent "no worker": a need no worker can cover.
        (
            "filter.fits.cpu_cores",
            WorkerFilter::new().fits(cpu(f64::NAN)),
        ),
        ("filter.fits.cpu_cores", WorkerFilter::new().fits(cpu(-1.0))),
    ]
}

#[test]
fn a_filter_asking_for_strings_over_their_limit_is_refused_by_find_and_claim() {
    let (_clock, registry) = setup();
    // A ready worker holding strings at the limits, which a filter at the limits finds.
    let key = "k".repeat(MAX_KEY_LEN);
    let value = "v".repeat(MAX_VALUE_LEN);
    let gpu = "g".repeat(MAX_KEY_LEN);
    let mut at_limit = WorkerSpec::new("img")
        .with_label(&key, &value)
        .with_capability(&key);
    at_limit.resources.gpu_type = Some(gpu.clone());
    let id = registry.register(handle(), Arc::new(at_limit)).unwrap().id;
    registry.update_state(&id, WorkerState::Ready).unwrap();
    let fits = ResourceRequirements {
        gpu_type: Some(gpu),
        ..Default::default()
    };
    let matching = WorkerFilter::new()
        .label(&key, &value)
        .capability(&key)
        .fits(fits);
    let found: Vec<WorkerId> = registry
        .find(&matching)
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(found, vec![id], "a filter at the limits");

    for (field, filter) in over_limit_filters() {
        let said = |e: Error| match e {
            Error::InvalidArgument(m) => assert!(m.contains(field), "{field}: {m}"),
            other => panic!("{field}: {other:?}, expected InvalidArgument"),
        };
        said(registry.find(&filter).unwrap_err());
        said(registry.claim(&filter, job("j-over")).unwrap_err());
        // With a limit, and joined to a condition that matches: refused all the same.
        said(registry.find(&filter.clone().limit(1)).unwrap_err());
    }
    // Nothing was claimed: the worker is still free for a filter that fits.
    assert_eq!(get(&*registry, &id).state, WorkerState::Ready);
    let taken = registry.claim(&matching, job("j-fit")).unwrap();
    assert_eq!(taken.map(|w| w.id), Some(id));
}
