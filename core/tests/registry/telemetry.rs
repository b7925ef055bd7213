//! What a registry tells about itself for metrics, where the backend maintains it
//! (`job_totals`, `heartbeat_age_histogram`; `Ok(None)` otherwise), against a recount: the
//! calls that succeeded, and the heartbeats and grace floor of the records. And what every
//! backend reports of its subscribers (`subscriber_drops`), against the subscriptions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use hodei_workers::*;

/// The width of a heartbeat-age bucket: an age is reported at most this much above the
/// truth (1 s in memory, see `HeartbeatAges`).
const AGE_RESOLUTION_MS: u64 = 1_000;

/// Counts the calls of the test as `JobTotals` documents them, and checks the registry's
/// totals (if it keeps them) after each step.
struct Totals<'a> {
    registry: &'a TestRegistry,
    expected: JobTotals,
}

impl Totals<'_> {
    fn check(&self, step: &str) {
        if let Some(got) = self.registry.job_totals().unwrap() {
            assert_eq!(got, self.expected, "after {step}");
        }
    }

    fn assign(&mut self, id: &WorkerId, name: &str) -> Result<Worker> {
        let r = self.registry.assign_to_job(id, job(name));
        self.expected.assigned += u64::from(r.is_ok());
        self.check(&format!("assign {name}: {r:?}"));
        r
    }

    fn claim(&mut self, filter: &WorkerFilter, name: &str) -> Result<Option<Worker>> {
        let r = self.registry.claim(filter, job(name));
        self.expected.assigned += u64::from(matches!(r, Ok(Some(_))));
        self.check(&format!("claim {name}: {r:?}"));
        r
    }

    fn release(&mut self, id: &WorkerId, expected: Option<&str>) -> Result<JobId> {
        let expected = expected.map(job);
        let r = self.registry.release_from_job(id, expected.as_ref());
        self.expected.released += u64::from(r.is_ok());
        self.check(&format!("release {expected:?}: {r:?}"));
        r
    }
}

#[test]
fn job_totals_count_the_successful_assignments_and_releases() {
    let (_clock, registry) = registry();
    let mut t = Totals {
        registry: &registry,
        expected: JobTotals::default(),
    };
    t.check("nothing");
    let a = ready(&registry, spec());
    let b = ready(&registry, spec());
    let starting = register(&registry, spec());

    t.assign(&a, "j1").unwrap();
    // Refused: a worker that is not Ready, a job held elsewhere.
    assert!(t.assign(&a, "j2").is_err());
    assert!(t.assign(&starting, "j2").is_err());
    assert!(t.assign(&b, "j1").is_err());
    // A claim that finds nobody, or whose job is held, assigns nothing.
    let none = WorkerFilter::new().label("pool", "none");
    assert_eq!(t.claim(&none, "j3"), Ok(None));
    assert!(t.claim(&WorkerFilter::new(), "j1").is_err());
    assert!(t.claim(&WorkerFilter::new(), "j3").unwrap().is_some());
    // A stale release (another job) and a release of a worker without a job release nothing.
    assert!(t.release(&a, Some("j3")).is_err());
    assert!(t.release(&starting, None).is_err());
    t.release(&a, Some("j1")).unwrap();
    assert!(t.release(&a, Some("j1")).is_err(), "released already");
    // A draining worker's release counts too.
    t.assign(&a, "j4").unwrap();
    registry.update_state(&a, WorkerState::Draining).unwrap();
    t.release(&a, None).unwrap();
    // Jobs that leave with their worker are lost, not released.
    assert!(t.assign(&b, "j5").is_err(), "b holds j3");
    let c = ready(&registry, spec());
    t.assign(&c, "j6").unwrap();
    registry.update_state(&b, WorkerState::Terminating).unwrap();
    t.check("a busy worker terminated");
    registry
        .unregister(&c, TerminationReason::Requested)
        .unwrap();
    t.check("a busy worker unregistered");
    assert_eq!(
        t.expected,
        JobTotals {
            assigned: 4,
            released: 2
        }
    );
}

/// The ages the records give: each monitored worker's silence since its last heartbeat or the
/// grace floor, whichever is later, ascending.
fn recount_ages(registry: &dyn WorkerRegistry, floor: Timestamp) -> Vec<u64> {
    let now = registry.now();
    let mut ages: Vec<u64> = registry
        .find(&WorkerFilter::new())
        .unwrap()
        .iter()
        .filter(|w| w.state.heartbeat_monitored())
        .map(|w| now.saturating_sub(w.last_heartbeat.max(floor)))
        .collect();
    ages.sort_unstable();
    ages
}

/// The histogram (if the backend keeps one) against the recount: every monitored worker
/// counted once (a small fleet: exact, no sampling), each at its age rounded up to the bucket.
fn check_ages(registry: &dyn WorkerRegistry, floor: Timestamp, at: &str) {
    let Some(ages) = registry.heartbeat_age_histogram().unwrap() else {
        return;
    };
    let want = recount_ages(registry, floor);
    assert!(
        ages.buckets.windows(2).all(|w| w[0].0 < w[1].0),
        "{at}: ascending by age: {:?}",
        ages.buckets
    );
    assert!(ages.buckets.iter().all(|(_, n)| *n > 0), "{at}: {ages:?}");
    assert_eq!(
        ages.total(),
        want.len() as u64,
        "{at}: {ages:?} vs {want:?}"
    );
    assert_eq!(
        ages.sampled,
        ages.total(),
        "{at}: a small fleet is read whole"
    );
    // Bucket ages are upper bounds within a bucket's width; both sides sort alike.
    let got: Vec<u64> = ages
        .buckets
        .iter()
        .flat_map(|(age, n)| std::iter::repeat_n(*age, *n as usize))
        .collect();
    for (g, w) in got.iter().zip(&want) {
        assert!(
            *g >= *w && *g - *w < AGE_RESOLUTION_MS,
            "{at}: reported ages {got:?}, true ages {want:?}"
        );
    }
}

#[test]
fn heartbeat_ages_agree_with_a_recount_of_the_records() {
    use WorkerState::*;
    let (clock, registry) = registry();
    check_ages(&registry, 0, "empty");
    let states = [
        Creating,
        Connecting,
        Ready,
        Busy,
        Draining,
        Terminating,
        Terminated,
    ];
    let mut ids = Vec::new();
    for i in 0..21u64 {
        clock.advance(Duration::from_millis(1_337 + i * 271));
        let state = states[(i % 7) as usize];
        let name = format!("job-{i}");
        let with_job = (state == Busy || (state == Draining && i % 2 == 0)).then_some(&*name);
        ids.push(in_state(&registry, state, with_job));
    }
    check_ages(&registry, 0, "registered");
    let mut beats: BTreeMap<usize, u32> = BTreeMap::new();
    for step in 0..12u64 {
        clock.advance(Duration::from_millis(2_003 + step * 977));
        for (i, id) in ids.iter().enumerate() {
            if (i as u64 + step) % 4 == 0 {
                registry.heartbeat(id).unwrap();
                *beats.entry(i).or_default() += 1;
            }
        }
        check_ages(&registry, 0, &format!("step {step}"));
    }
    assert!(beats.len() > 10);
    // Long silences (and a health check, which must change nothing), then a grace floor that
    // raises every older key to it.
    clock.advance(Duration::from_secs(600));
    check_ages(&registry, 0, "silent");
    registry.find_unhealthy(Duration::from_secs(60)).unwrap();
    check_ages(&registry, 0, "after a health check");
    let floor = clock.now() - 200_500;
    registry.grant_grace(floor).unwrap();
    check_ages(&registry, floor, "grace");
    clock.advance(Duration::from_millis(4_321));
    registry.heartbeat(&ids[2]).unwrap();
    registry.update_state(&ids[9], Terminating).unwrap(); // Ready leaves the watch
    check_ages(&registry, floor, "after grace");
}

/// The id of a subscription labels its event-drop metrics: two subscriptions of one registry
/// never share one.
#[test]
fn subscription_ids_are_unique_per_registry() {
    let (_clock, registry) = registry();
    let subs: Vec<Subscription> = (0..3)
        .map(|_| registry.subscribe(SubscribeOptions::default()).unwrap())
        .collect();
    let mut ids: Vec<u64> = subs.iter().map(Subscription::id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), subs.len(), "ids {ids:?}");
    // Nor is the id of a dropped one handed out again (its counter series would go back).
    drop(subs);
    let next = registry.subscribe(SubscribeOptions::default()).unwrap();
    assert!(
        !ids.contains(&next.id()),
        "{} reused, had {ids:?}",
        next.id()
    );
}

/// The report of `subscription`, found by its id.
fn drops_of(drops: &[SubscriberDrops], subscription: &Subscription) -> Option<SubscriberDrops> {
    drops
        .iter()
        .find(|d| d.subscriber == subscription.id())
        .copied()
}

#[test]
fn subscriber_drops_agree_with_the_subscriptions() {
    let (_clock, registry) = registry();
    let small = registry
        .subscribe(SubscribeOptions::default().capacity(2))
        .unwrap();
    let roomy = registry
        .subscribe(SubscribeOptions::default().capacity(64))
        .unwrap();
    assert_ne!(small.id(), roomy.id(), "subscription ids are unique");
    let drops = registry.subscriber_drops().unwrap();
    assert_eq!(drops.len(), 2, "every live subscriber is listed: {drops:?}");
    let got = drops_of(&drops, &small).expect("the small subscriber is listed");
    assert_eq!((got.dropped, got.queued, got.capacity), (0, 0, 2));
    for _ in 0..5 {
        register(&registry, spec());
    }
    // Neither subscriber has read anything: the report alone shows what the small one lost.
    let drops = registry.subscriber_drops().unwrap();
    let got = drops_of(&drops, &small).expect("the small subscriber is listed");
    assert_eq!(
        (got.dropped, got.queued, got.capacity),
        (3, 2, 2),
        "{drops:?}"
    );
    let got = drops_of(&drops, &roomy).expect("the roomy subscriber is listed");
    assert_eq!((got.dropped, got.queued, got.capacity), (0, 5, 64));
    // The subscriptions agree with the report.
    assert_eq!((small.dropped(), small.len()), (3, 2));
    assert_eq!((roomy.dropped(), roomy.len()), (0, 5));
    // Still not reading: the next events are lost too.
    register(&registry, spec());
    let drops = registry.subscriber_drops().unwrap();
    assert_eq!(drops_of(&drops, &small).map(|d| d.dropped), Some(4));
    assert_eq!(drops_of(&drops, &roomy).map(|d| d.queued), Some(6));
    assert_eq!(
        drops_of(&drops, &small),
        Some(SubscriberDrops {
            subscriber: small.id(),
            dropped: small.dropped(),
            queued: small.len(),
            capacity: 2,
        })
    );
    // Reading makes room; a dropped subscription leaves the list.
    assert_eq!(small.drain().len(), 2);
    assert_eq!(roomy.drain().len(), 6);
    register(&registry, spec());
    let small_id = small.id();
    drop(small);
    let drops = registry.subscriber_drops().unwrap();
    assert!(drops.iter().all(|d| d.subscriber != small_id), "{drops:?}");
    assert_eq!(drops.len(), 1, "{drops:?}");
    let got = drops_of(&drops, &roomy).expect("the roomy subscriber is listed");
    assert_eq!((got.dropped, got.queued), (0, 1));
}

/// The manager's metrics show each live subscriber's drops and queue under its id, from the
/// registry's report.
#[test]
fn the_metrics_show_each_subscribers_drops() {
    let registry = crate::backend::new_registry(Arc::new(ManualClock::new(T0)));
    let manager =
        WorkerLifecycleManager::new(Arc::clone(&registry), WorkerLifecycleConfig::default())
            .unwrap();
    let lazy = registry
        .subscribe(SubscribeOptions::default().capacity(1))
        .unwrap();
    let reader = registry.subscribe(SubscribeOptions::default()).unwrap();
    for _ in 0..4 {
        register(&*registry, spec());
    }
    assert_eq!(reader.drain().len(), 4);
    let text = manager.metrics_text();
    let sample = |name: &str, sub: &Subscription| {
        let key = format!("{name}{{subscriber=\"{}\"}} ", sub.id());
        text.lines()
            .find_map(|l| l.strip_prefix(key.as_str()))
            .unwrap_or_else(|| panic!("no {key:?} in\n{text}"))
            .to_owned()
    };
    assert_eq!(sample("hodei_workers_event_drops_total", &lazy), "3");
    assert_eq!(sample("hodei_workers_event_queue_length", &lazy), "1");
    assert_eq!(sample("hodei_workers_event_drops_total", &reader), "0");
    assert_eq!(sample("hodei_workers_event_queue_length", &reader), "0");
    drop(lazy);
    // Only the live subscriber is left.
    let text = manager.metrics_text();
    let drops: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("hodei_workers_event_drops_total{"))
        .collect();
    let live = format!(
        "hodei_workers_event_drops_total{{subscriber=\"{}\"}} 0",
        reader.id()
    );
    assert_eq!(drops, [live.as_str()], "{text}");
}
