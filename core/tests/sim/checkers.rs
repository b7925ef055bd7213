//! Each invariant of the simulation's checker is shown to catch a bug: a deliberately broken
//! registry, provider or host loop runs through the same scenarios, and the checker must flag
//! the rule it breaks (while the unbroken system passes the same runs).

use std::sync::Arc;
use std::time::Duration;

use hodei_workers::sim::{Hooks, Rule, Scenario, SimReport, Simulation};
use hodei_workers::*;

/// What the broken registry gets wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bug {
    /// `find` shows a busy worker's job on an idle worker too (a double assignment).
    DoubleAssign,
    /// `find` shows an idle worker as `Busy` without a job.
    BusyWithoutJob,
    /// Terminating a worker that holds a job first releases the job (no `JobLost`).
    SilentJobDrop,
    /// `stats().total` is one more than the records.
    StatsOffByOne,
    /// Heartbeats of some workers are acknowledged but never recorded.
    SwallowHeartbeats,
    /// `stats()` and `count()` leave out workers that are on their way out.
    HideTerminating,
    /// `subscribe` ignores the capacity asked for (unbounded in practice).
    IgnoreCapacity,
    /// `claim` ignores its filter: any idle worker gets the job (a GPU job on a CPU worker).
    ClaimIgnoresFilter,
}

#[derive(Debug)]
struct Broken {
    inner: Arc<dyn WorkerRegistry>,
    bug: Bug,
}

impl Broken {
    fn wrap(bug: Bug) -> Hooks {
        Hooks {
            wrap_registry: Some(Box::new(move |inner| Arc::new(Broken { inner, bug }))),
            ..Hooks::default()
        }
    }
}

impl WorkerRegistry for Broken {
    fn now(&self) -> Timestamp {
        self.inner.now()
    }
    fn register(&self, handle: WorkerHandle, spec: Arc<WorkerSpec>) -> Result<Worker> {
        self.inner.register(handle, spec)
    }
    fn unregister(&self, id: &WorkerId, reason: TerminationReason) -> Result<Worker> {
        self.inner.unregister(id, reason)
    }
    fn get(&self, id: &WorkerId) -> Result<Option<Worker>> {
        self.inner.get(id)
    }
    fn find(&self, filter: &WorkerFilter) -> Result<Vec<Worker>> {
        let mut found = self.inner.find(filter)?;
        found.sort_by_key(|w| w.id);
        match self.bug {
            Bug::DoubleAssign => {
                let job = found.iter().find_map(|w| w.current_job.clone());
                if let (Some(job), Some(idle)) = (
                    job,
                    found.iter_mut().find(|w| w.state == WorkerState::Ready),
                ) {
                    idle.state = WorkerState::Busy;
                    idle.current_job = Some(job);
                }
            }
            Bug::BusyWithoutJob => {
                if let Some(idle) = found.iter_mut().find(|w| w.state == WorkerState::Ready) {
                    idle.state = WorkerState::Busy;
                }
            }
            _ => {}
        }
        Ok(found)
    }
    fn update_state(&self, id: &WorkerId, state: WorkerState) -> Result<Worker> {
        if self.bug == Bug::SilentJobDrop && state == WorkerState::Terminating {
            let _ = self.inner.release_from_job(id, None);
        }
        self.inner.update_state(id, state)
    }
    fn heartbeat(&self, id: &WorkerId) -> Result<()> {
        if self.bug == Bug::SwallowHeartbeats && id.as_bytes()[0] % 3 == 0 {
            return match self.inner.get(id)? {
                Some(_) => Ok(()),
                None => Err(Error::NotFound(*id)),
            };
        }
        self.inner.heartbeat(id)
    }
    fn assign_to_job(&self, id: &WorkerId, job: JobId) -> Result<Worker> {
        self.inner.assign_to_job(id, job)
    }
    fn release_from_job(&self, id: &WorkerId, expected_job: Option<&JobId>) -> Result<JobId> {
        self.inner.release_from_job(id, expected_job)
    }
    fn claim(&self, filter: &WorkerFilter, job: JobId) -> Result<Option<Worker>> {
        if self.bug == Bug::ClaimIgnoresFilter {
            return self.inner.claim(&WorkerFilter::new(), job);
        }
        self.inner.claim(filter, job)
    }
    fn heartbeat_many(&self, ids: &[WorkerId]) -> Result<Vec<Result<()>>> {
        // Through `heartbeat`, so that the swallowing bug applies to the bulk form too.
        Ok(ids.iter().map(|id| self.heartbeat(id)).collect())
    }
    fn transition_if(
        &self,
        id: &WorkerId,
        guard: &TransitionGuard,
        to: WorkerState,
    ) -> Result<Option<Transitioned>> {
        if self.bug == Bug::SilentJobDrop && to == WorkerState::Terminating {
            let _ = self.inner.release_from_job(id, None);
        }
        self.inner.transition_if(id, guard, to)
    }
    fn longest_idle(&self, n: usize) -> Result<Vec<Worker>> {
        self.inner.longest_idle(n)
    }
    fn find_unhealthy(&self, heartbeat_timeout: Duration) -> Result<Vec<Worker>> {
        self.inner.find_unhealthy(heartbeat_timeout)
    }
    fn find_startup_expired(&self, startup_timeout: Duration) -> Result<Vec<Worker>> {
        self.inner.find_startup_expired(startup_timeout)
    }
    fn find_for_termination(&self) -> Result<Vec<(Worker, TerminationReason)>> {
        self.inner.find_for_termination()
    }
    fn grant_grace(&self, since: Timestamp) -> Result<()> {
        self.inner.grant_grace(since)
    }
    fn stats(&self) -> Result<WorkerRegistryStats> {
        let mut stats = self.inner.stats()?;
        match self.bug {
            Bug::StatsOffByOne => stats.total += 1,
            Bug::HideTerminating => {
                stats.total -= stats.by_state.terminating;
                stats.by_state.terminating = 0;
            }
            _ => {}
        }
        Ok(stats)
    }
    fn count(&self) -> Result<usize> {
        match self.bug {
            Bug::HideTerminating => self.stats().map(|s| s.total),
            _ => self.inner.count(),
        }
    }
    fn subscribe(&self, options: SubscribeOptions) -> Result<Subscription> {
        match self.bug {
            Bug::IgnoreCapacity => self.inner.subscribe(options.capacity(1 << 20)),
            _ => self.inner.subscribe(options),
        }
    }
    fn publish(&self, kind: EventKind) -> Result<()> {
        self.inner.publish(kind)
    }
    fn snapshot(&self) -> Result<Snapshot> {
        self.inner.snapshot()
    }
    fn restore(&self, snapshot: Snapshot) -> Result<()> {
        self.inner.restore(snapshot)
    }
}

/// What the broken provider gets wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProviderBug {
    /// `destroy_worker` says "destroyed" without destroying anything.
    Forgetful,
    /// `list_workers` leaves out every other instance.
    HalfBlind,
}

struct BrokenProvider {
    inner: Arc<dyn WorkerProvider>,
    bug: ProviderBug,
}

impl BrokenProvider {
    fn wrap(bug: ProviderBug) -> Hooks {
        Hooks {
            wrap_provider: Some(Box::new(move |inner| {
                Arc::new(BrokenProvider { inner, bug })
            })),
            ..Hooks::default()
        }
    }
}

impl WorkerProvider for BrokenProvider {
    fn provider_id(&self) -> ProviderId {
        self.inner.provider_id()
    }
    fn provider_type(&self) -> ProviderType {
        self.inner.provider_type()
    }
    fn create_worker(
        &self,
        id: WorkerId,
        spec: &WorkerSpec,
    ) -> std::result::Result<WorkerHandle, ProviderError> {
        self.inner.create_worker(id, spec)
    }
    fn destroy_worker(&self, handle: &WorkerHandle) -> std::result::Result<(), ProviderError> {
        match self.bug {
            ProviderBug::Forgetful => Ok(()),
            ProviderBug::HalfBlind => self.inner.destroy_worker(handle),
        }
    }
    fn list_workers(&self) -> std::result::Result<Vec<WorkerHandle>, ProviderError> {
        match self.bug {
            // As the forgetful provider always was: it lists nothing (the trait's default).
            ProviderBug::Forgetful => Err(ProviderError::unsupported("list_workers")),
            ProviderBug::HalfBlind => {
                let mut all = self.inner.list_workers()?;
                all.retain(|h| h.resource_id.ends_with(['0', '2', '4', '6', '8']));
                Ok(all)
            }
        }
    }
}

fn scenario(name: &str, seed: u64, secs: f64) -> Scenario {
    let mut s = Scenario::builtin(name, seed).expect("built-in scenario");
    s.duration_secs = secs;
    s
}

/// Runs `scenario` on seeds 1..=5 with the hooks `make` builds, stopping at the first run that
/// flags `rule`; panics if none does. Also checks that the unbroken system passes the same
/// runs, so the flag is the bug's doing.
fn caught(rule: Rule, scenario: impl Fn(u64) -> Scenario, make: impl Fn() -> Hooks) -> SimReport {
    crate::quiet_sim_panics();
    for seed in 1..=5 {
        let s = scenario(seed);
        let clean = Simulation::new(&s, None).expect("valid").run();
        assert_eq!(
            clean.violations_total, 0,
            "the unbroken system must pass: {clean}"
        );
        let broken = Simulation::with_hooks(&s, None, make())
            .expect("valid")
            .run();
        if broken.violations.iter().any(|v| v.rule == rule) {
            return broken;
        }
    }
    panic!("no run flagged {rule}");
}

#[test]
fn double_assignment_is_caught() {
    let r = caught(
        Rule::JobHeldOnce,
        |seed| scenario("provider_outage", seed, 300.0),
        || Broken::wrap(Bug::DoubleAssign),
    );
    assert!(r.violations[0].detail.contains("held by workers"), "{r}");
}

#[test]
fn busy_without_job_is_caught() {
    caught(
        Rule::StateJob,
        |seed| scenario("provider_outage", seed, 300.0),
        || Broken::wrap(Bug::BusyWithoutJob),
    );
}

#[test]
fn a_job_dropped_without_job_lost_is_caught() {
    // Workers holding jobs get terminated in the partition (the minority part).
    caught(
        Rule::JobNotDropped,
        |seed| scenario("partition", seed, 1400.0),
        || Broken::wrap(Bug::SilentJobDrop),
    );
}

#[test]
fn stats_that_disagree_with_the_records_are_caught() {
    caught(
        Rule::StatsRecount,
        |seed| scenario("provider_outage", seed, 60.0),
        || Broken::wrap(Bug::StatsOffByOne),
    );
}

#[test]
fn expiry_before_the_deadline_is_caught() {
    caught(
        Rule::EarlyExpiry,
        |seed| scenario("provider_outage", seed, 600.0),
        || Broken::wrap(Bug::SwallowHeartbeats),
    );
}

#[test]
fn more_workers_than_max_workers_is_caught() {
    // Destroys fail often, so Terminating workers pile up; the broken registry hides them
    // from the counts the manager uses, and the manager provisions past the ceiling.
    caught(
        Rule::MaxWorkers,
        |seed| {
            let mut s = scenario("flaky", seed, 900.0);
            s.provider.destroy_failure_probability = 0.7;
            s
        },
        || Broken::wrap(Bug::HideTerminating),
    );
}

#[test]
fn a_live_instance_expired_as_vanished_is_caught() {
    let r = caught(
        Rule::EarlyExpiry,
        |seed| {
            let mut s = scenario("provider_outage", seed, 600.0);
            s.host.reconcile_interval_secs = 60.0;
            s
        },
        || BrokenProvider::wrap(ProviderBug::HalfBlind),
    );
    assert!(
        r.violations
            .iter()
            .any(|v| v.detail.contains("removed as vanished")),
        "{r}"
    );
}

#[test]
fn a_leaked_instance_is_caught() {
    let r = caught(
        Rule::InstanceLeak,
        |seed| scenario("provider_outage", seed, 900.0),
        || BrokenProvider::wrap(ProviderBug::Forgetful),
    );
    assert!(
        r.violations
            .iter()
            .any(|v| v.detail.contains("neither registered nor queued")),
        "{r}"
    );
}

#[test]
fn a_host_that_drops_lost_jobs_is_caught() {
    let r = caught(
        Rule::JobAccounted,
        |seed| scenario("partition", seed, 1400.0),
        || Hooks {
            drop_lost_jobs: true,
            ..Hooks::default()
        },
    );
    assert!(r.lost_jobs > 0 && r.requeued_jobs == 0, "{r}");
}

#[test]
fn an_unbounded_subscriber_is_caught() {
    caught(
        Rule::EventMemory,
        |seed| scenario("provider_outage", seed, 300.0),
        || Broken::wrap(Bug::IgnoreCapacity),
    );
}

#[test]
fn a_job_on_a_worker_that_does_not_satisfy_it_is_caught() {
    let r = caught(
        Rule::PoolFit,
        |seed| scenario("gpu_burst", seed, 900.0),
        || Broken::wrap(Bug::ClaimIgnoresFilter),
    );
    assert!(
        r.violations
            .iter()
            .any(|v| v.detail.contains("needs gpu=a100")),
        "{r}"
    );
}
