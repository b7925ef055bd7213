//! Two replicated managers on one PostgreSQL registry (two registry handles: two "processes"),
//! each with its own manual clock, the lease and the registry on a shared manual clock: the
//! leader pauses past the ttl, the follower takes over (grace, reconcile adopting the
//! `Terminating` record), the old leader wakes up and ticks: it reports the lost lease, its
//! fenced writes are refused, and no provider call is made twice for one worker.

#[path = "support/backend.rs"]
mod backend;
mod common;
#[path = "../../core/tests/lifecycle/common.rs"]
mod lifecycle_common;
#[path = "../../core/tests/support/test_registry.rs"]
mod test_registry;

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::{support, url, SchemaGuard, T0};
use hodei_workers::*;
use hodei_workers_postgres::{PostgresLeadership, PostgresWorkerRegistry};
use lifecycle_common::{config, spec, CreateStep, DestroyStep, TestProvider};

const TTL: Duration = Duration::from_secs(15);

struct Replica {
    registry: Arc<dyn WorkerRegistry>,
    manager: Arc<WorkerLifecycleManager>,
    local: Arc<ManualClock>,
}

struct Cluster {
    store: Arc<ManualClock>,
    provider: Arc<TestProvider>,
    a: Replica,
    b: Replica,
    _schema: SchemaGuard,
}

fn replica(
    name: &str,
    holder: &str,
    store: &Arc<ManualClock>,
    provider: &Arc<TestProvider>,
) -> Replica {
    let pg = PostgresWorkerRegistry::connect_with_clock(&url(), name, store.clone()).unwrap();
    let lease = Arc::new(pg.leadership(holder, TTL).unwrap());
    replica_on(pg, lease, provider)
}

/// A replica on registry handle `pg` competing for `lease`, with a clock of its own at 0.
fn replica_on(
    pg: PostgresWorkerRegistry,
    lease: Arc<dyn Leadership>,
    provider: &Arc<TestProvider>,
) -> Replica {
    let registry: Arc<dyn WorkerRegistry> = Arc::new(pg);
    let local = Arc::new(ManualClock::new(0));
    let manager = WorkerLifecycleManager::with_leadership(
        registry.clone(),
        WorkerLifecycleConfig {
            min_ready_workers: 0,
            ..config()
        },
        lease,
        local.clone(),
    )
    .unwrap();
    manager.register_provider(provider.clone()).unwrap();
    manager.set_scaling_target(&provider.id, spec()).unwrap();
    Replica {
        registry,
        manager: Arc::new(manager),
        local,
    }
}

fn cluster(test: &str) -> Cluster {
    let schema = SchemaGuard::new(test);
    let name = schema.name.clone();
    let store = Arc::new(ManualClock::new(T0));
    let provider = TestProvider::new("test");
    let a = replica(&name, "a", &store, &provider);
    let b = replica(&name, "b", &store, &provider);
    Cluster {
        store,
        provider,
        a,
        b,
        _schema: schema,
    }
}

impl Cluster {
    /// a provisions on a thread of its own; its create stalls inside the provider (until
    /// `release_stalled`). Returns once the create is inside.
    fn a_provisions_into_a_stalled_create(&self) -> std::thread::JoinHandle<Result<Worker>> {
        self.provider.script_creates([CreateStep::Stall]);
        let a = Arc::clone(&self.a.manager);
        let pid = self.provider.id.clone();
        let provisioning = std::thread::spawn(move || a.provision_worker(&pid, spec()));
        while self.provider.creating_now.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        provisioning
    }

    fn advance(&self, by: Duration) {
        self.store.advance(by);
        self.a.local.advance(by);
        self.b.local.advance(by);
    }

    fn calls(&self, prefix: &str) -> Vec<String> {
        self.provider
            .calls()
            .into_iter()
            .filter(|c| c.starts_with(prefix))
            .collect()
    }
}

#[test]
fn a_paused_leader_wakes_up_to_a_lost_lease_and_changes_nothing() {
    let c = cluster("failover_pause");
    let ra = c.a.manager.tick(3);
    assert!(ra.leading, "{:?}", ra.decisions);
    assert_eq!(ra.provisioned.len(), 3);
    let ids: Vec<WorkerId> = ra.provisioned.iter().map(|p| p.worker_id).collect();
    for id in &ids {
        c.a.registry.update_state(id, WorkerState::Ready).unwrap();
    }
    let rb = c.b.manager.tick(3);
    assert!(!rb.leading);
    assert_eq!(rb.leader.as_ref().unwrap().holder, "a");
    assert!(rb.provisioned.is_empty());

    // a terminates a worker; the destroy fails: Terminating, in a's retry queue.
    c.provider
        .script_destroys([DestroyStep::Fail("cloud API down")]);
    let t =
        c.a.manager
            .terminate_worker(&ids[0], TerminationReason::Requested)
            .unwrap();
    assert_eq!(t.failed.len(), 1);

    // a pauses past the ttl; the workers keep heartbeating (through b's process).
    c.advance(TTL + Duration::from_secs(1));
    c.b.registry.heartbeat_many(&ids[1..]).unwrap();
    let rb = c.b.manager.tick(3);
    assert!(rb.leading, "{:?}", rb.decisions);
    let leader = rb.leader.clone().unwrap();
    assert_eq!(
        (leader.holder.as_str(), leader.term, leader.since),
        ("b", 2, T0 + 16_000)
    );
    assert!(
        c.b.registry.get(&ids[0]).unwrap().is_none(),
        "{:?}",
        rb.decisions
    );
    assert!(rb.unhealthy.is_empty());
    let calls = c.provider.calls();

    // a wakes up and ticks.
    let ra = c.a.manager.tick(10);
    assert!(!ra.leading);
    assert!(
        ra.decisions[0]
            .starts_with("lost the lease: a no longer holds term 1; b leads under term 2"),
        "{:?}",
        ra.decisions
    );
    assert!(ra.provisioned.is_empty() && ra.terminated.is_empty() && ra.actions == 0);
    for err in [
        c.a.manager
            .provision_worker(&c.provider.id, spec())
            .unwrap_err(),
        c.a.manager
            .terminate_worker(&ids[1], TerminationReason::Requested)
            .unwrap_err(),
        c.a.manager.reconcile().unwrap_err(),
    ] {
        assert!(matches!(err, Error::NotLeader(_)), "{err}");
    }
    assert_eq!(
        c.provider.calls(),
        calls,
        "the old leader made no provider call"
    );

    // No provider call twice for one worker: one create per instance, and each instance
    // destroyed successfully once (the one failed attempt was a's, before the takeover).
    // (b's takeover tick provisioned for the demand of 3 with 2 left: new workers, not
    // second creates of a's.)
    let by_b = rb.provisioned.len();
    assert_eq!(c.calls("create").len(), 3 + by_b);
    let destroys = c.calls("destroy");
    assert_eq!(destroys.len(), 2, "{destroys:?}");
    assert_eq!(destroys[0], destroys[1], "a's failed attempt, then b's");
    assert_eq!(c.provider.instance_ids().len(), 2 + by_b);
    assert_eq!(c.b.registry.count().unwrap(), 2 + by_b);
}

/// a's create stalls while b takes the lease over (the store and b's clock move past the ttl,
/// and a's clock too when `a_sees_the_pause`), then returns. a registers nothing and destroys
/// nothing; b's reconcile destroys the instance, once. Returns a's error.
fn create_across_a_takeover(test: &str, a_sees_the_pause: bool) -> Error {
    let c = cluster(test);
    assert!(c.a.manager.tick(0).leading);
    let provisioning = c.a_provisions_into_a_stalled_create();
    let pause = TTL + Duration::from_secs(1);
    if a_sees_the_pause {
        c.advance(pause);
    } else {
        c.store.advance(pause);
        c.b.local.advance(pause);
    }
    assert!(c.b.manager.tick(0).leading);
    c.provider.release_stalled(1);
    let err = provisioning.join().unwrap().unwrap_err();
    assert_eq!(c.b.registry.count().unwrap(), 0, "not registered");
    assert!(c.calls("destroy").is_empty(), "and not destroyed by a");
    let r = c.b.manager.reconcile().unwrap();
    assert_eq!(r.orphans.len(), 1, "{r:?}");
    assert_eq!(c.calls("destroy").len(), 1, "destroyed once, by the leader");
    assert!(c.provider.instance_ids().is_empty());
    err
}

#[test]
fn a_leader_paused_inside_a_create_leaves_the_instance_to_the_new_leader() {
    let err = create_across_a_takeover("failover_create", true);
    assert!(matches!(err, Error::NotLeader(_)), "{err}");
}

/// The same pause with a provider that checks fencing tokens: b's create reaches it under
/// PostgreSQL's next term first, so a's late create, under the term before, is refused. No
/// instance is made for a, none is orphaned, and b's reconcile has nothing to destroy.
#[test]
fn a_provider_that_checks_fencing_tokens_refuses_the_late_create_of_a_leader_paused_in_it() {
    let c = cluster("failover_tokens");
    c.provider.fencing.store(true, Ordering::SeqCst);
    assert!(c.a.manager.tick(0).leading);
    let term_a = c.a.manager.leader().unwrap().term;
    let provisioning = c.a_provisions_into_a_stalled_create();
    c.advance(TTL + Duration::from_secs(1));
    assert!(c.b.manager.tick(0).leading);
    let term_b = c.b.manager.leader().unwrap().term;
    assert!(term_b > term_a, "{term_b} > {term_a}");
    let made =
        c.b.manager
            .provision_worker(&c.provider.id, spec())
            .unwrap();
    c.provider.release_stalled(1);
    let err = provisioning.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::NotLeader(_)), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("token {term_a} is below {term_b}")),
        "{err}"
    );
    assert_eq!(
        *c.provider.tokens.lock(),
        [("create".to_owned(), term_a), ("create".to_owned(), term_b)]
    );
    assert_eq!(c.provider.instance_ids().len(), 1, "b's alone");
    assert_eq!(c.b.registry.count().unwrap(), 1);
    assert!(c.b.registry.get(&made.id).unwrap().is_some());
    let r = c.b.manager.reconcile().unwrap();
    assert!(r.orphans.is_empty(), "{r:?}");
    assert!(c.calls("destroy").is_empty());
}

#[test]
fn replicated_managers_take_the_registrys_own_lease() {
    let _schema = SchemaGuard::new("failover_replicated");
    let name = _schema.name.clone();
    let store = Arc::new(ManualClock::new(T0));
    let manager = |holder: &str| {
        let pg = PostgresWorkerRegistry::connect_with_clock(&url(), &name, store.clone()).unwrap();
        WorkerLifecycleManager::replicated(Arc::new(pg), config(), holder, TTL).unwrap()
    };
    let (a, b) = (manager("a"), manager("b"));
    assert!(
        !a.is_leader() && !b.is_leader(),
        "nobody leads before ticking"
    );
    assert!(a.tick(0).leading);
    let rb = b.tick(0);
    assert!(!rb.leading);
    assert_eq!(rb.leader.unwrap().holder, "a");
    assert_eq!(a.leadership().holder(), "a");
    // A bad holder is the lease's InvalidArgument.
    let pg = PostgresWorkerRegistry::connect_with_clock(&url(), &name, store.clone()).unwrap();
    let err = WorkerLifecycleManager::replicated(Arc::new(pg), config(), "", TTL).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

/// The store fences what the old leader's own clock cannot: a leader whose clock did not see
/// the pause (its trust window still open) finds its next registry write refused by the store,
/// in the write's transaction, and stops trusting its lease at once.
#[test]
fn a_leader_whose_clock_missed_the_pause_is_fenced_by_the_store() {
    let c = cluster("failover_store_fence");
    let ra = c.a.manager.tick(1);
    assert!(ra.leading);
    let id = ra.provisioned[0].worker_id;
    c.a.registry.update_state(&id, WorkerState::Ready).unwrap();
    // The store and b move past the ttl; a's clock does not.
    c.store.advance(TTL + Duration::from_secs(1));
    c.b.local.advance(TTL + Duration::from_secs(1));
    c.b.registry.heartbeat(&id).unwrap();
    assert!(c.b.manager.tick(1).leading);
    assert!(c.a.manager.is_leader(), "a's own window is still open");
    let calls = c.provider.calls();

    let err =
        c.a.manager
            .terminate_worker(&id, TerminationReason::Requested)
            .unwrap_err();
    assert!(
        matches!(err, Error::NotLeader(ref m) if m.contains("store refused")),
        "{err}"
    );
    assert_eq!(
        c.a.registry.get(&id).unwrap().unwrap().state,
        WorkerState::Ready,
        "nothing changed"
    );
    assert!(
        !c.a.manager.is_leader(),
        "the refusal closed a's trust window"
    );
    // So the rest of a's acts stop at its own fence, before any provider call.
    let err =
        c.a.manager
            .provision_worker(&c.provider.id, spec())
            .unwrap_err();
    assert!(matches!(err, Error::NotLeader(_)), "{err}");
    assert_eq!(c.provider.calls(), calls, "a made no provider call");
    // a's next tick learns who leads.
    let ra = c.a.manager.tick(1);
    assert!(!ra.leading);
    assert_eq!(ra.leader.unwrap().holder, "b");
}

/// As above, inside a create: the instance a created after b took over is not registered
/// (the store refuses), nor destroyed by a; b's reconcile destroys it, once.
#[test]
fn a_create_finished_after_a_takeover_the_old_leader_missed_is_not_registered() {
    let err = create_across_a_takeover("failover_store_create", false);
    assert!(
        matches!(err, Error::NotLeader(ref m) if m.contains("store refused")),
        "{err}"
    );
}

/// Found by review (a renewal held by a frozen backend): the host steps down while the
/// ticker's renewal is on its way. The renewal came back `Held`, the manager took it for a new
/// term (its own was cleared by the step-down) and led, took over and trusted it, while the
/// step-down had expired the row: b acquired at once and both led. The renewal is held on its
/// way for real: a's lease connection's server backend is frozen (SIGSTOP) for a moment.
#[test]
fn a_step_down_during_a_renewal_never_leaves_two_leaders() {
    let _schema = SchemaGuard::new("stepdown_race");
    let name = _schema.name.clone();
    let store = Arc::new(ManualClock::new(T0));
    let provider = TestProvider::new("test");
    let a = replica(&name, "a", &store, &provider);
    assert!(a.manager.tick(0).leading);
    // a's lease connection is the only one so named until b exists.
    let backend = support::lease_backend(&name);
    let b = replica(&name, "b", &store, &provider);
    assert!(!b.manager.tick(0).leading);

    let signal = |sig: &str| support::signal(backend, sig);
    signal("-STOP");
    let ticking = {
        let a = Arc::clone(&a.manager);
        std::thread::spawn(move || a.tick(0))
    };
    std::thread::sleep(Duration::from_millis(300));
    // The host shuts down cleanly while the tick's renewal is on its way.
    let stepping = {
        let a = Arc::clone(&a.manager);
        std::thread::spawn(move || a.step_down())
    };
    std::thread::sleep(Duration::from_millis(300));
    signal("-CONT");
    let ra = ticking.join().unwrap();
    stepping.join().unwrap().unwrap();
    // (Had the renewal not started before the step-down, a would have acquired again, and b
    // followed: legitimate. What must never be is both leading.)
    let rb = b.manager.tick(0);
    assert!(
        !(a.manager.is_leader() && b.manager.is_leader()),
        "two leaders: a {:?} (its tick: {:?}), b {:?}",
        a.manager.leader(),
        ra.decisions,
        rb.decisions
    );
    let ra = a.manager.tick(0);
    assert!(
        !(ra.leading && b.manager.is_leader()),
        "two leaders after a's next tick: {:?}",
        ra.decisions
    );
}

/// A PostgreSQL lease that tells the test when its next read of the row (`current`, the
/// store's word right before a provider call) starts: after the local fence that precedes it.
#[derive(Debug)]
struct SaysWhenItReads {
    inner: PostgresLeadership,
    reading: Mutex<Option<mpsc::Sender<()>>>,
}

impl Leadership for SaysWhenItReads {
    fn holder(&self) -> &str {
        self.inner.holder()
    }
    fn ttl(&self) -> Duration {
        self.inner.ttl()
    }
    fn acquire_or_renew(&self, held: Option<Term>) -> Result<LeaseStatus> {
        self.inner.acquire_or_renew(held)
    }
    fn step_down(&self, term: Term) -> Result<()> {
        self.inner.step_down(term)
    }
    fn current(&self) -> Result<Option<LeaderInfo>> {
        if let Some(reading) = self.reading.lock().unwrap().take() {
            let _ = reading.send(());
        }
        self.inner.current()
    }
    fn fence_key(&self) -> Option<&str> {
        self.inner.fence_key()
    }
}

/// Resumes a stopped server backend when dropped (also when the test fails).
struct Resume(i32);

impl Drop for Resume {
    fn drop(&mut self) {
        support::signal(self.0, "-CONT");
    }
}

/// a leads on a lease of `a_ttl` (b on one of [`TTL`]); a provisions while its lease
/// connection's server backend is stopped (SIGSTOP), so the store's word before the create
/// hangs; once that read started (a's own fence passed), every clock moves `pause` on, and,
/// when `b_takes_over`, b takes the lease. With `answer`, the backend is resumed at once (the
/// read answers late), else only after a's provision returned (the read gets no answer, and
/// gives up after half of `a_ttl`). Returns a's provision's outcome and the cluster's create
/// calls.
fn provision_across_a_hung_lease_read(
    test: &str,
    a_ttl: Duration,
    pause: Duration,
    b_takes_over: bool,
    answer: bool,
) -> (Result<Worker>, Vec<String>) {
    let schema = SchemaGuard::new(test);
    let name = schema.name.clone();
    let store = Arc::new(ManualClock::new(T0));
    let provider = TestProvider::new("test");
    let pg = PostgresWorkerRegistry::connect_with_clock(&url(), &name, store.clone()).unwrap();
    let lease = Arc::new(SaysWhenItReads {
        inner: pg.leadership("a", a_ttl).unwrap(),
        reading: Mutex::new(None),
    });
    let a = replica_on(pg, lease.clone(), &provider);
    assert!(a.manager.tick(0).leading);
    // a's lease connection is the only one so named until b's first tick.
    let backend = support::lease_backend(&name);
    let b = replica(&name, "b", &store, &provider);
    assert!(!b.manager.tick(0).leading);

    let (reading, read_started) = mpsc::channel();
    *lease.reading.lock().unwrap() = Some(reading);
    support::signal(backend, "-STOP");
    let mut resume = Some(Resume(backend));
    let provisioning = {
        let a = Arc::clone(&a.manager);
        let pid = provider.id.clone();
        std::thread::spawn(move || a.provision_worker(&pid, spec()))
    };
    read_started
        .recv_timeout(Duration::from_secs(60))
        .expect("a's provision never read the lease");
    store.advance(pause);
    a.local.advance(pause);
    b.local.advance(pause);
    if b_takes_over {
        let rb = b.manager.tick(0);
        assert!(rb.leading, "{:?}", rb.decisions);
    }
    if answer {
        resume = None;
    }
    let outcome = provisioning.join().unwrap();
    drop(resume);
    (outcome, provider.calls())
}

/// Found by the HA hunt: right before a create, the manager asks the store whether the lease
/// row still names it; a store that does not answer "leaves the local verdict". That verdict
/// was the one taken before the read, which on PostgreSQL may take half the ttl to give up:
/// meanwhile a's trust window closed, its lease expired and b took it over, and a still
/// called create_worker (an instance for a deposed leader, made after the new one took over).
#[test]
fn a_leader_whose_lease_read_gets_no_answer_creates_nothing_once_its_window_closed() {
    // A 2 s lease: the read gives up after 1 s; its trust window (1.5 s) is long closed 3 s on.
    let (outcome, calls) = provision_across_a_hung_lease_read(
        "failover_mute_read",
        Duration::from_secs(2),
        Duration::from_secs(3),
        true,
        false,
    );
    refused_without_a_create(outcome, &calls, "after b took over");
}

/// The same read answering late, the row still naming a (nobody took the lease yet): a's
/// trust window closed during the read, and the lease, expired, may be taken at any moment.
#[test]
fn a_leader_whose_lease_read_answers_after_its_window_closed_creates_nothing() {
    // A 20 s lease (trusted for 15 s): the read answers long before it would give up (10 s).
    let (outcome, calls) = provision_across_a_hung_lease_read(
        "failover_slow_read",
        Duration::from_secs(20),
        Duration::from_secs(21),
        false,
        true,
    );
    refused_without_a_create(outcome, &calls, "after its trust window closed");
}

/// The provision was refused as `NotLeader`, and the provider was asked for no create.
fn refused_without_a_create<T: std::fmt::Debug>(outcome: Result<T>, calls: &[String], when: &str) {
    let err = outcome.unwrap_err();
    assert!(matches!(err, Error::NotLeader(_)), "{err}");
    let creates: Vec<&String> = calls.iter().filter(|c| c.starts_with("create")).collect();
    assert!(creates.is_empty(), "a created {when}: {creates:?}");
}

/// `name{labels}` -> value of every sample of an OpenMetrics text.
fn samples(text: &str) -> std::collections::BTreeMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "no EOF:\n{text}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap();
            (key.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// A follower's `run_health_check`, refused with `NotLeader` on the PostgreSQL lease, checked
/// nothing: it is neither observed in the health-check histogram nor counted in
/// `hodei_workers_health_checks_total`, while its ticks count in `hodei_workers_ticks_total`.
#[test]
fn a_followers_refused_health_checks_are_neither_observed_nor_counted() {
    let c = cluster("failover_refused_checks");
    assert!(c.a.manager.tick(0).leading);
    assert!(!c.b.manager.tick(0).leading);
    for _ in 0..3 {
        let refused = c.b.manager.run_health_check();
        assert!(matches!(refused, Err(Error::NotLeader(_))), "{refused:?}");
    }
    let b = samples(&c.b.manager.metrics_text());
    assert_eq!(
        (
            b["hodei_workers_health_check_duration_seconds_count"],
            b["hodei_workers_health_checks_total"],
        ),
        (0.0, 0.0),
        "the follower's refused calls"
    );
    assert_eq!(b["hodei_workers_ticks_total"], 1.0);
    c.a.manager.run_health_check().unwrap();
    let a = samples(&c.a.manager.metrics_text());
    assert_eq!(
        a["hodei_workers_health_checks_total"],
        a["hodei_workers_health_check_duration_seconds_count"]
    );
    assert!(a["hodei_workers_health_checks_total"] >= 1.0, "{a:?}");
}

/// The metrics of two replicas (two registry handles) across a failover, as the docs promise
/// them: the registry's counts are the same on both and equal a recount of the records; the
/// leader's state (`hodei_workers_leader`, the destroy queue) shows on one replica only, so a
/// sum over the replicas counts it once, before and after the takeover; each replica's
/// counters are its own and never go back (the old leader keeps its totals, the new one counts
/// from its own); the event drops are those of each handle's own subscriptions.
#[test]
fn two_replicas_metrics_agree_on_the_registry_and_show_the_leaders_state_once() {
    let c = cluster("failover_metrics");
    let lazy =
        c.b.registry
            .subscribe(SubscribeOptions::default().capacity(1))
            .unwrap();
    let ra = c.a.manager.tick(3);
    assert!(
        ra.leading && ra.provisioned.len() == 3,
        "{:?}",
        ra.decisions
    );
    let ids: Vec<WorkerId> = ra.provisioned.iter().map(|p| p.worker_id).collect();
    for id in &ids {
        c.b.registry.update_state(id, WorkerState::Ready).unwrap();
    }
    c.b.registry
        .claim(&WorkerFilter::new(), lifecycle_common::job("j"))
        .unwrap()
        .unwrap();
    assert!(!c.b.manager.tick(3).leading);
    // a's destroy of a worker fails: Terminating, in a's queue.
    c.provider
        .script_destroys([DestroyStep::Fail("cloud API down")]);
    let t =
        c.a.manager
            .terminate_worker(&ids[0], TerminationReason::Requested)
            .unwrap();
    assert_eq!(t.failed.len(), 1);

    let agree = |when: &str| {
        let (a, b) = (
            samples(&c.a.manager.metrics_text()),
            samples(&c.b.manager.metrics_text()),
        );
        let records = c.a.registry.find(&WorkerFilter::new()).unwrap();
        for state in WorkerState::ALL {
            let key = format!("hodei_workers_workers{{state=\"{}\"}}", state.as_str());
            let n = records.iter().filter(|w| w.state == state).count() as f64;
            assert_eq!((a[&key], b[&key]), (n, n), "{when}: {key}");
        }
        let key = "hodei_workers_workers_by_provider{provider=\"test\"}";
        let n = records.len() as f64;
        assert_eq!((a[key], b[key]), (n, n), "{when}");
        assert_eq!(
            a["hodei_workers_leader"] + b["hodei_workers_leader"],
            1.0,
            "{when}: one leader"
        );
        let follower = if a["hodei_workers_leader"] == 1.0 {
            &b
        } else {
            &a
        };
        assert_eq!(follower["hodei_workers_destroys_pending"], 0.0, "{when}");
        (a, b)
    };
    let (a1, b1) = agree("a leads");
    assert_eq!(a1["hodei_workers_leader"], 1.0);
    assert_eq!(a1["hodei_workers_destroys_pending"], 1.0);
    assert_eq!(a1["hodei_workers_provisions_succeeded_total"], 3.0);
    assert_eq!(a1["hodei_workers_destroy_failures_total"], 1.0);
    assert_eq!(b1["hodei_workers_provisions_succeeded_total"], 0.0);
    assert_eq!(b1["hodei_workers_leader_term"], 1.0, "b saw a's term");
    // The lazy subscriber is b's handle's: only b's scrape lists it, with its losses.
    let drops = format!(
        "hodei_workers_event_drops_total{{subscriber=\"{}\"}}",
        lazy.id()
    );
    assert!(b1[&drops] > 0.0, "{b1:?}");
    assert!(!a1
        .keys()
        .any(|k| k.starts_with("hodei_workers_event_drops_total")));

    // a pauses past the ttl; b takes over and finishes the destroy a left.
    c.advance(TTL + Duration::from_secs(1));
    c.b.registry.heartbeat_many(&ids[1..]).unwrap();
    let rb = c.b.manager.tick(3);
    assert!(rb.leading, "{:?}", rb.decisions);
    let (a2, b2) = agree("b took over, a has not ticked since");
    assert_eq!(
        (a2["hodei_workers_leader"], b2["hodei_workers_leader"]),
        (0.0, 1.0)
    );
    assert_eq!(b2["hodei_workers_leader_term"], 2.0);
    let ra = c.a.manager.tick(3);
    assert!(!ra.leading);
    let (a3, b3) = agree("a ticked as a follower");
    assert_eq!(a3["hodei_workers_leader_term"], 2.0);
    for (before, after) in [(&a1, &a2), (&a2, &a3), (&b1, &b2), (&b2, &b3)] {
        for (key, v) in before.iter().filter(|(k, _)| k.contains("_total")) {
            let now = after.get(key).copied().unwrap_or(0.0);
            assert!(now >= *v, "{key} went back from {v} to {now}");
        }
    }
    // Each replica's totals are its own: a's three provisions stay a's.
    assert_eq!(a3["hodei_workers_provisions_succeeded_total"], 3.0);
    assert_eq!(
        b3["hodei_workers_provisions_succeeded_total"],
        rb.provisioned.len() as f64
    );
}
