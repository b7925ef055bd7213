//! `find_by_resource_ids`: the records of one provider holding some resource ids (what the
//! lifecycle manager's orphan retries ask), answered alike by every backend and matching
//! `find_by_provider` restricted to those ids — terminal records included, another
//! provider's record of the same resource id never.

use std::collections::BTreeSet;

use super::*;

fn provider(name: &str) -> ProviderId {
    ProviderId::new(name).unwrap()
}

fn reg(registry: &dyn WorkerRegistry, p: &str, resource: &str) -> WorkerId {
    registry
        .register(
            WorkerHandle::new(provider(p), ProviderType::Docker, resource),
            spec(),
        )
        .unwrap()
        .id
}

fn ids(workers: &[Worker]) -> BTreeSet<WorkerId> {
    workers.iter().map(|w| w.id).collect()
}

#[test]
fn finds_the_records_of_one_provider_holding_the_ids_asked_for() {
    let (_clock, registry) = setup();
    let r = &*registry;
    let a1 = reg(r, "cloud-a", "i-1");
    let a2 = reg(r, "cloud-a", "i-2");
    // Two records of one provider under one resource id (a host that registered twice).
    let a2_again = reg(r, "cloud-a", "i-2");
    let a3 = reg(r, "cloud-a", "i-3");
    // Another provider holding the same resource ids.
    let b1 = reg(r, "cloud-b", "i-1");
    let b9 = reg(r, "cloud-b", "i-9");
    // Terminal records count, as in `find_by_provider`.
    r.update_state(&a3, WorkerState::Terminating).unwrap();
    r.update_state(&b9, WorkerState::Terminated).unwrap();

    let find = |p: &str, asked: &[&str]| ids(&r.find_by_resource_ids(&provider(p), asked).unwrap());
    assert_eq!(find("cloud-a", &["i-1"]), BTreeSet::from([a1]));
    assert_eq!(find("cloud-b", &["i-1"]), BTreeSet::from([b1]));
    assert_eq!(
        find("cloud-a", &["i-2", "i-3", "nobody's", "i-9"]),
        BTreeSet::from([a2, a2_again, a3])
    );
    assert_eq!(find("cloud-b", &["i-9", "i-2"]), BTreeSet::from([b9]));
    // An id asked twice: each record once.
    assert_eq!(
        r.find_by_resource_ids(&provider("cloud-a"), &["i-1", "i-1"])
            .unwrap()
            .len(),
        1
    );
    // Ids nobody holds, a provider with no record, an empty slice: nothing.
    assert!(find("cloud-a", &["i-4", "i-"]).is_empty());
    assert!(find("cloud-c", &["i-1"]).is_empty());
    assert!(find("cloud-a", &[]).is_empty());

    // What `find_by_provider` says of the same ids, snapshot for snapshot.
    for p in ["cloud-a", "cloud-b"] {
        let asked = ["i-1", "i-2", "i-3", "i-9"];
        let mut expected = r.find_by_provider(&provider(p)).unwrap();
        expected.retain(|w| asked.contains(&w.handle.resource_id.as_str()));
        expected.sort_by_key(|w| w.id);
        let mut found = r.find_by_resource_ids(&provider(p), &asked).unwrap();
        found.sort_by_key(|w| w.id);
        assert_eq!(found, expected, "{p}");
    }

    // Many ids at once (a backend may look them up differently past a few).
    let many: Vec<String> = (0..40).map(|k| format!("i-{k}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        find("cloud-a", &many),
        BTreeSet::from([a1, a2, a2_again, a3])
    );
    assert_eq!(find("cloud-b", &many), BTreeSet::from([b1, b9]));

    // Unregistered: gone from the answer.
    r.unregister(&a1, TerminationReason::Requested).unwrap();
    assert!(find("cloud-a", &["i-1"]).is_empty());
    assert_eq!(find("cloud-b", &["i-1"]), BTreeSet::from([b1]));
}

/// Resource ids that are long, multi-byte, or hold characters a query language gives a
/// meaning to, are compared as they are.
#[test]
fn resource_ids_are_compared_exactly() {
    let (_clock, registry) = setup();
    let r = &*registry;
    let odd: Vec<String> = ["i-%", "i_1", "'; --", &"ä".repeat(40), &"x".repeat(200)]
        .map(str::to_owned)
        .into();
    let held: Vec<WorkerId> = odd.iter().map(|s| reg(r, "cloud-a", s)).collect();
    reg(r, "cloud-a", "i-1");
    for (s, id) in odd.iter().zip(&held) {
        let found = r
            .find_by_resource_ids(&provider("cloud-a"), &[s.as_str()])
            .unwrap();
        assert_eq!(ids(&found), BTreeSet::from([*id]), "{s:?}");
    }
    assert!(r
        .find_by_resource_ids(&provider("cloud-a"), &["i-", "I-1", "i-1 "])
        .unwrap()
        .is_empty());
    // No handle holds a NUL byte: such an id matches nothing, and is no error.
    assert!(r
        .find_by_resource_ids(&provider("cloud-a"), &["i-1\0", "\0"])
        .unwrap()
        .is_empty());
    let found = r
        .find_by_resource_ids(&provider("cloud-a"), &["i-1\0", "i_1"])
        .unwrap();
    assert_eq!(ids(&found), BTreeSet::from([held[1]]));
}
