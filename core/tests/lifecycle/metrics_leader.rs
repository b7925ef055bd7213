//! The leadership gauges (#14): `hodei_workers_leader` (1 while the manager leads, else 0) and
//! `hodei_workers_leader_term` (the lease term as the manager last saw it), on a plain manager
//! and on two replicas trading the lease.

use std::sync::Arc;
use std::time::Duration;

use hodei_workers::*;

/// The value of the unlabelled sample `name` in the OpenMetrics text.
fn value(text: &str, name: &str) -> f64 {
    assert!(
        text.contains(&format!("# TYPE {name} gauge")),
        "{name} is not a gauge:\n{text}"
    );
    let line = text
        .lines()
        .find(|l| l.split(' ').next() == Some(name))
        .unwrap_or_else(|| panic!("no sample {name}:\n{text}"));
    line.rsplit_once(' ').unwrap().1.parse().unwrap()
}

fn gauges(manager: &WorkerLifecycleManager) -> (f64, f64) {
    let text = manager.metrics().encode_text();
    (
        value(&text, "hodei_workers_leader"),
        value(&text, "hodei_workers_leader_term"),
    )
}

/// A replica's manager and its own clock.
type Replica = (WorkerLifecycleManager, Arc<ManualClock>);

/// Replicas "a" and "b" of a 15 s in-memory lease on one registry, whose clock is `store`
/// (each manager's own clock starts at 0): `(store, a, b)`.
fn two_replicas() -> (Arc<ManualClock>, Replica, Replica) {
    let store = Arc::new(ManualClock::new(1_000_000));
    let registry: Arc<dyn WorkerRegistry> =
        Arc::new(InMemoryWorkerRegistry::with_clock(store.clone()));
    let lease = InMemoryLease::new(store.clone(), "a", Duration::from_secs(15));
    let replica = |name: &str| {
        let local = Arc::new(ManualClock::new(0));
        let m = WorkerLifecycleManager::with_leadership(
            registry.clone(),
            WorkerLifecycleConfig::default(),
            Arc::new(lease.replica(name)),
            local.clone(),
        )
        .unwrap();
        (m, local)
    };
    let (a, b) = (replica("a"), replica("b"));
    (store, a, b)
}

#[test]
fn a_plain_manager_leads_under_term_1() {
    let registry = Arc::new(InMemoryWorkerRegistry::with_clock(Arc::new(
        ManualClock::new(1_000),
    )));
    let manager = WorkerLifecycleManager::new(registry, WorkerLifecycleConfig::default()).unwrap();
    assert_eq!(gauges(&manager), (1.0, 1.0));
}

#[test]
fn the_gauges_follow_the_lease_between_replicas() {
    let (store, (a, a_clock), (b, b_clock)) = two_replicas();
    // Before any tick nobody leads and no term was seen.
    assert_eq!(gauges(&a), (0.0, 0.0));
    assert!(a.tick(0).leading);
    assert_eq!(gauges(&a), (1.0, 1.0));
    assert!(!b.tick(0).leading);
    assert_eq!(gauges(&b), (0.0, 1.0), "b follows and saw term 1");

    // a stops ticking past the ttl: its trust window closes, b takes term 2.
    for c in [&store, &a_clock, &b_clock] {
        c.advance(Duration::from_secs(20));
    }
    assert_eq!(gauges(&a), (0.0, 1.0), "a's trust window closed");
    assert!(b.tick(0).leading);
    assert_eq!(gauges(&b), (1.0, 2.0));
    assert!(!a.tick(0).leading);
    assert_eq!(gauges(&a), (0.0, 2.0), "a learnt that b leads under term 2");
}

/// The value of the sample `name` (labels included) in the OpenMetrics text.
fn sample(text: &str, name: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.rsplit_once(' ').map(|(k, _)| k) == Some(name))
        .unwrap_or_else(|| panic!("no sample {name}:\n{text}"));
    line.rsplit_once(' ').unwrap().1.parse().unwrap()
}

/// Every call of `tick` counts in `hodei_workers_tick_duration_seconds` ("`_count` is
/// exact") and in `hodei_workers_ticks_total`: a follower's ticks too, not only the ticks that
/// run to their end.
#[test]
fn a_followers_ticks_are_counted_in_the_tick_duration() {
    let (_store, (a, _), (b, _)) = two_replicas();
    let count = |m: &WorkerLifecycleManager| {
        let text = m.metrics_text();
        let timed = sample(&text, "hodei_workers_tick_duration_seconds_count");
        assert_eq!(sample(&text, "hodei_workers_ticks_total"), timed);
        timed
    };
    assert!(a.tick(0).leading);
    for _ in 0..3 {
        let r = b.tick(0);
        assert!(!r.leading, "{r:?}");
    }
    assert_eq!(count(&a), 1.0);
    assert_eq!(count(&b), 3.0, "the follower's three ticks");
    // a steps down: its next tick, whatever it does, is counted all the same.
    a.step_down().unwrap();
    a.tick(0);
    assert_eq!(count(&a), 2.0);
    let buckets: f64 = sample(
        &a.metrics_text(),
        "hodei_workers_tick_duration_seconds_bucket{le=\"+Inf\"}",
    );
    assert_eq!(buckets, 2.0, "+Inf bucket agrees with _count");
}

/// A health check refused before it checked anything — a follower's `run_health_check`,
/// answered `NotLeader` — is no health check: it is neither observed in
/// `hodei_workers_health_check_duration_seconds` nor counted in
/// `hodei_workers_health_checks_total` (it was observed, so a follower's dashboard showed
/// health checks that never ran).
#[test]
fn a_refused_health_check_is_neither_observed_nor_counted() {
    let (_store, (a, _), (b, _)) = two_replicas();
    let counts = |m: &WorkerLifecycleManager| {
        let text = m.metrics_text();
        (
            sample(&text, "hodei_workers_health_check_duration_seconds_count"),
            sample(&text, "hodei_workers_health_checks_total"),
        )
    };
    assert!(a.tick(0).leading);
    assert!(!b.tick(0).leading);
    for _ in 0..3 {
        let refused = b.run_health_check();
        assert!(matches!(refused, Err(Error::NotLeader(_))), "{refused:?}");
    }
    assert_eq!(counts(&b), (0.0, 0.0), "the follower's refused calls");
    // The leader's own call counts; refused once it stepped down, it no longer does.
    let before = counts(&a);
    a.run_health_check().unwrap();
    let led = counts(&a);
    assert_eq!(led, (before.0 + 1.0, before.1 + 1.0));
    a.step_down().unwrap();
    let refused = a.run_health_check();
    assert!(matches!(refused, Err(Error::NotLeader(_))), "{refused:?}");
    assert_eq!(counts(&a), led, "refused after the step-down");
}

/// Replica "a" of a 15 s in-memory lease on the registry clock `store` (its own clock starts at
/// 0), made with `config`: `(manager, store clock, local clock)`.
fn replica_a(
    config: WorkerLifecycleConfig,
) -> (WorkerLifecycleManager, Arc<ManualClock>, Arc<ManualClock>) {
    let store = Arc::new(ManualClock::new(1_000_000));
    let registry: Arc<dyn WorkerRegistry> =
        Arc::new(InMemoryWorkerRegistry::with_clock(store.clone()));
    let lease = InMemoryLease::new(store.clone(), "a", Duration::from_secs(15));
    let local = Arc::new(ManualClock::new(0));
    let a = WorkerLifecycleManager::with_leadership(
        registry,
        config,
        Arc::new(lease.replica("a")),
        local.clone(),
    )
    .unwrap();
    (a, store, local)
}

/// Lets 20 s pass on both clocks without a tick (the leader stalls past its trust window),
/// checks that `a` no longer says it leads, and returns its metrics text, whose
/// `hodei_workers_leader` reads 0.
fn stall_and_scrape(
    a: &WorkerLifecycleManager,
    store: &ManualClock,
    local: &ManualClock,
) -> String {
    for c in [store, local] {
        c.advance(Duration::from_secs(20));
    }
    assert!(!a.is_leader());
    let text = a.metrics_text();
    assert_eq!(value(&text, "hodei_workers_leader"), 0.0);
    text
}

/// The per-pool gauges are the leader's ("none on a replica that does not lead"): a leader
/// whose trust window closed without a tick (it stalled) shows `hodei_workers_leader 0` and
/// no pool series either, or a dashboard summing over the replicas counts its pools twice
/// once another replica leads.
#[test]
fn a_replica_whose_trust_window_closed_shows_no_pool_gauges() {
    let (a, store, local) = replica_a(WorkerLifecycleConfig::default());
    a.register_provider(crate::common::TestProvider::new("p"))
        .unwrap();
    a.set_pools(vec![Pool::new(
        "cpu",
        ProviderId::new("p").unwrap(),
        WorkerSpec::new("img"),
    )
    .unwrap()])
        .unwrap();
    assert!(a.tick(Demand::new().with(Requirement::new(1))).leading);
    let text = a.metrics_text();
    assert!(
        text.contains("hodei_workers_pool_demand{pool=\"cpu\"} 1"),
        "{text}"
    );

    let text = stall_and_scrape(&a, &store, &local);
    assert!(
        !text.contains("pool=\"cpu\""),
        "a replica that does not lead shows pool gauges:\n{text}"
    );
}

/// The provider back-off and the destroy queue are leader state too (forgotten when the lease
/// is lost, see DESIGN "A replica that stops leading forgets the leader state"): a leader whose
/// trust window closed without a tick (it stalled) shows 0 in
/// `hodei_workers_provider_backoff_seconds`, `_provider_consecutive_failures` and
/// `_destroys_pending`, as a follower that forgot them does. Before, it kept showing its last
/// back-off and pending destroys while the new leader destroyed those very workers.
#[test]
fn a_replica_whose_trust_window_closed_shows_no_backoff_or_pending_destroys() {
    use crate::common::{CreateStep, DestroyStep, TestProvider};
    let config = WorkerLifecycleConfig {
        provider_backoff_initial: Duration::from_secs(120),
        provider_backoff_max: Duration::from_secs(300),
        destroy_retry_initial: Duration::from_secs(120),
        ..WorkerLifecycleConfig::default()
    };
    let (a, store, local) = replica_a(config);
    let p = TestProvider::new("p");
    a.register_provider(p.clone()).unwrap();
    assert!(a.tick(0).leading);
    // One destroy that fails (retried in 120 s), one create that fails (backed off 120 s).
    let w = a
        .provision_worker(&ProviderId::new("p").unwrap(), crate::common::spec())
        .unwrap();
    p.script_destroys([DestroyStep::Fail("stuck")]);
    let r = a
        .terminate_worker(&w.id, TerminationReason::Requested)
        .unwrap();
    assert_eq!(r.failed.len(), 1, "{r:?}");
    p.script_creates([CreateStep::Fail("down")]);
    assert!(a
        .provision_worker(&ProviderId::new("p").unwrap(), crate::common::spec())
        .is_err());
    let text = a.metrics_text();
    assert_eq!(
        value(&text, "hodei_workers_destroys_pending"),
        1.0,
        "{text}"
    );
    assert!(
        text.contains("hodei_workers_provider_consecutive_failures{provider=\"p\"} 1"),
        "{text}"
    );

    let text = stall_and_scrape(&a, &store, &local);
    for sample in [
        "hodei_workers_provider_backoff_seconds{provider=\"p\"} 0",
        "hodei_workers_provider_consecutive_failures{provider=\"p\"} 0",
        "hodei_workers_destroys_pending 0",
    ] {
        assert!(
            text.lines()
                .any(|l| l == sample || l == format!("{sample}.0")),
            "a replica that does not lead shows no `{sample}`:\n{text}"
        );
    }
    // The calls, unlike the gauges, answer the replica's memory as it is (DESIGN.md §11): a
    // stalled leader has not forgotten its state, which its next tick keeps or forgets.
    assert_eq!(a.pending_destroys().len(), 1);
    assert_eq!(a.stats().unwrap().pending_destroys, 1);
    assert_eq!(a.provider_backoff().len(), 1);
}

/// The limit of `hodei_workers_leader` summed over the replicas: a leader paused in a way its
/// own clock did not see (a suspended VM: the monotonic clock stood still) still trusts its
/// lease when it wakes up, and a scrape reads that trust without asking the store — so until
/// its next tick (or write) learns from the store that b leads now, both replicas show 1. The
/// sum is 2 for that while, not "never 2"; the store fences the old leader's writes meanwhile
/// (DESIGN.md §11), and its first tick drops it to 0.
#[test]
fn a_leader_whose_clock_missed_the_pause_shows_1_until_it_asks_the_store() {
    let (store, (a, _a_clock), (b, b_clock)) = two_replicas();
    assert!(a.tick(0).leading);
    // a's pause: the store's time and b's pass, a's own clock does not move.
    store.advance(Duration::from_secs(20));
    b_clock.advance(Duration::from_secs(20));
    assert!(b.tick(0).leading);
    assert_eq!(gauges(&b), (1.0, 2.0));
    assert_eq!(gauges(&a), (1.0, 1.0), "a still trusts its term 1");
    assert!(!a.tick(0).leading);
    assert_eq!(gauges(&a), (0.0, 2.0), "a asked the store");
}
