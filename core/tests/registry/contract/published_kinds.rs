//! Item 23: `publish` refuses the kinds the registry alone emits as it changes its records
//! (`EventKind::is_registry_change`), on every backend; every other kind stays publishable.

use super::{get, job, kinds, ready, setup, T0};
use hodei_workers::*;

/// The registry's own kinds about `id`: before, `publish` took each of them, and every
/// subscriber read of a change that never happened (a `StateChanged` to `Busy` of a worker
/// still `Ready`, a `JobLost` of a job no worker held).
fn registry_changes(id: WorkerId) -> Vec<EventKind> {
    vec![
        EventKind::Registered {
            worker_id: id,
            provider_id: ProviderId::new("docker-local").unwrap(),
            provider_type: ProviderType::Docker,
        },
        EventKind::StateChanged {
            worker_id: id,
            from: WorkerState::Ready,
            to: WorkerState::Busy,
        },
        EventKind::AssignedToJob {
            worker_id: id,
            job_id: job("j1"),
        },
        EventKind::ReleasedFromJob {
            worker_id: id,
            job_id: job("j1"),
        },
        EventKind::JobLost {
            worker_id: id,
            job_id: job("j1"),
        },
        EventKind::Unregistered {
            worker_id: id,
            reason: TerminationReason::Requested,
        },
    ]
}

#[test]
fn publish_refuses_the_kinds_of_a_change_of_the_registrys_records() {
    let (_clock, registry) = setup();
    let id = ready(&*registry);
    let before = get(&*registry, &id);
    let events = registry
        .subscribe(SubscribeOptions {
            heartbeats: true,
            ..SubscribeOptions::default()
        })
        .unwrap();
    let answers: Vec<(EventKind, Result<()>)> = registry_changes(id)
        .into_iter()
        .map(|kind| (kind.clone(), registry.publish(kind)))
        .collect();
    // Nobody read of a change, and none happened.
    let read: Vec<EventKind> = events.drain().into_iter().map(|e| e.kind).collect();
    assert_eq!(read, [], "subscribers read of changes that never happened");
    assert_eq!(get(&*registry, &id), before);
    // Refused for its kind, naming it; first, whether the worker is registered or not.
    let never = WorkerId::new();
    let answers = answers.into_iter().chain(
        registry_changes(never)
            .into_iter()
            .map(|kind| (kind.clone(), registry.publish(kind))),
    );
    for (kind, answer) in answers {
        let err = answer.expect_err(&format!("{kind:?} was published"));
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{kind:?}: {err}");
        assert!(err.to_string().contains(kind.name()), "{err}");
    }
    assert_eq!(kinds(&events.drain()), Vec::<&str>::new());
}

#[test]
fn publish_still_carries_the_hosts_and_the_managers_kinds() {
    let (_clock, registry) = setup();
    let id = ready(&*registry);
    let events = registry
        .subscribe(SubscribeOptions {
            heartbeats: true,
            ..SubscribeOptions::default()
        })
        .unwrap();
    let provider_id = ProviderId::new("docker-local").unwrap();
    let publishable = [
        EventKind::HeartbeatReceived { worker_id: id },
        EventKind::UnhealthyDetected {
            worker_id: id,
            last_heartbeat: T0,
        },
        EventKind::ProvisionRequested {
            provider_id: provider_id.clone(),
        },
        EventKind::ProvisionFailed {
            provider_id: provider_id.clone(),
            error: "quota".into(),
        },
        EventKind::DestroyFailed {
            worker_id: id,
            provider_id,
            error: "boom".into(),
            attempts: 1,
        },
        EventKind::MassExpiryHeld {
            would_expire: 3,
            live: 4,
        },
        EventKind::LeaderChanged {
            holder: Some("a".into()),
            term: 2,
            by: "a".into(),
        },
    ];
    for kind in &publishable {
        assert!(!kind.is_registry_change(), "{kind:?}");
        registry.publish(kind.clone()).unwrap();
    }
    let got: Vec<EventKind> = events.drain().into_iter().map(|e| e.kind).collect();
    assert_eq!(got, publishable);
}

/// Published events whose text the manager's own never carry: an error over
/// `MAX_PROVIDER_MESSAGE_LEN` + 64 bytes (the manager's carry a provider's message, cut with
/// `cut_provider_message`, and its kind) and a leader named outside the lease holder's rules
/// (1..=`MAX_LEASE_HOLDER_LEN` bytes, no NUL). Before, `publish` took a megabyte of error text
/// and handed every subscriber (every replica's, on PostgreSQL, through one outbox row) a copy.
fn oversized(id: WorkerId) -> Vec<EventKind> {
    let provider_id = ProviderId::new("docker-local").unwrap();
    let long = "x".repeat(MAX_PROVIDER_MESSAGE_LEN + 65);
    let holder = "h".repeat(MAX_LEASE_HOLDER_LEN + 1);
    vec![
        EventKind::ProvisionFailed {
            provider_id: provider_id.clone(),
            error: long.clone(),
        },
        EventKind::DestroyFailed {
            worker_id: id,
            provider_id,
            error: long,
            attempts: 1,
        },
        EventKind::LeaderChanged {
            holder: Some(holder.clone()),
            term: 2,
            by: "a".into(),
        },
        EventKind::LeaderChanged {
            holder: None,
            term: 2,
            by: holder,
        },
        EventKind::LeaderChanged {
            holder: Some(String::new()),
            term: 2,
            by: "a".into(),
        },
        EventKind::LeaderChanged {
            holder: Some("a".into()),
            term: 2,
            by: "a\0b".into(),
        },
    ]
}

#[test]
fn publish_refuses_text_the_managers_events_never_carry() {
    let (_clock, registry) = setup();
    let id = ready(&*registry);
    let events = registry.subscribe(SubscribeOptions::default()).unwrap();
    for kind in oversized(id) {
        let err = registry
            .publish(kind.clone())
            .expect_err(&format!("{} was published", kind.name()));
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert!(err.to_string().contains(kind.name()), "{err}");
    }
    assert_eq!(kinds(&events.drain()), Vec::<&str>::new());
    // At the limits, they go through: the manager's cut messages with their kind among them.
    let provider_id = ProviderId::new("docker-local").unwrap();
    let at_limits = [
        EventKind::ProvisionFailed {
            provider_id: provider_id.clone(),
            error: ProviderError::no_capacity("é".repeat(MAX_PROVIDER_MESSAGE_LEN)).to_string(),
        },
        EventKind::ProvisionFailed {
            provider_id,
            error: "x".repeat(MAX_PROVIDER_MESSAGE_LEN + 64),
        },
        EventKind::LeaderChanged {
            holder: Some("h".repeat(MAX_LEASE_HOLDER_LEN)),
            term: 3,
            by: "b".repeat(MAX_LEASE_HOLDER_LEN),
        },
    ];
    for kind in &at_limits {
        registry.publish(kind.clone()).unwrap();
    }
    let got: Vec<EventKind> = events.drain().into_iter().map(|e| e.kind).collect();
    assert_eq!(got, at_limits);
}
