//! [`Checker`]: the invariants a simulation verifies after every step, and the
//! [`Violation`]s it reports.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::clock::{millis, Timestamp};
use crate::events::{EventKind, SubscribeOptions, Subscription};
use crate::filter::WorkerFilter;
use crate::ids::{JobId, WorkerId};
use crate::lifecycle::WorkerLifecycleConfig;
use crate::registry::{StateCounts, WorkerRegistry};
use crate::state::WorkerState;
use crate::worker::{TerminationReason, Worker, WorkerSpec};

/// The rule a [`Violation`] breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// §3 invariant 1: `Busy` ⇔ holds a job (a job holder is `Busy` or `Draining`).
    StateJob,
    /// §3 invariant 2: a job is held by at most one worker.
    JobHeldOnce,
    /// §3 invariant 3: a job leaves its worker only by a release after its agent finished it,
    /// or with a `JobLost` event.
    JobNotDropped,
    /// §3 invariant 4: `stats()` equals a recount of the records.
    StatsRecount,
    /// No worker is expired (or retired) before its deadline: heartbeat, startup, idle and
    /// lifetime deadlines (after any stall grace), never a scale-down of a worker holding a
    /// job, never "vanished" while its instance is alive.
    EarlyExpiry,
    /// Every provider instance is registered, in flight within `startup_timeout`, or queued
    /// for destruction.
    InstanceLeak,
    /// Every job that arrived is done, running (held by a worker) or pending.
    JobAccounted,
    /// Registered workers plus provisions in flight never exceed `max_workers`.
    MaxWorkers,
    /// The event stream's memory stays bounded: a subscriber never holds more than its
    /// capacity, and the checker's own subscriber misses nothing.
    EventMemory,
    /// Multi-pool runs: a job is handed only to a worker that satisfies its requirement.
    PoolFit,
    /// Multi-pool runs: a pool's registered workers (those under an interruption notice
    /// aside) never exceed its `max_workers`.
    PoolMax,
    /// A job is finished (released after its agent finished it) at most once.
    JobDoneOnce,
    /// Replicated runs: no replica calls a provider or writes to the registry without holding
    /// the lease at the store (a paused leader's calls after it lost the lease change nothing).
    LeaderOnly,
    /// Replicated runs: at most one replica leads at any moment, and terms never go backwards.
    OneLeader,
    /// Replicated runs: no worker is created twice, no instance destroyed again after a
    /// destroy was confirmed.
    ProviderOnce,
    /// Replicated runs, at the end (after settling): every instance registered, every record's
    /// instance alive, no record left `Terminating`.
    Settled,
}

impl Rule {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::StateJob => "state_job",
            Rule::JobHeldOnce => "job_held_once",
            Rule::JobNotDropped => "job_not_dropped",
            Rule::StatsRecount => "stats_recount",
            Rule::EarlyExpiry => "early_expiry",
            Rule::InstanceLeak => "instance_leak",
            Rule::JobAccounted => "job_accounted",
            Rule::MaxWorkers => "max_workers",
            Rule::EventMemory => "event_memory",
            Rule::PoolFit => "pool_fit",
            Rule::PoolMax => "pool_max",
            Rule::JobDoneOnce => "job_done_once",
            Rule::LeaderOnly => "leader_only",
            Rule::OneLeader => "one_leader",
            Rule::ProviderOnce => "provider_once",
            Rule::Settled => "settled",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One broken rule, when and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Step number (1-based).
    pub step: u64,
    /// Simulated time since the run began, milliseconds.
    pub t_ms: u64,
    /// The rule.
    pub rule: Rule,
    /// What was seen, naming workers, jobs and instances.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step {} (t = {:.1} s) [{}] {}",
            self.step,
            self.t_ms as f64 / 1000.0,
            self.rule,
            self.detail
        )
    }
}

/// What the simulation shows the checker after a step, besides the registry itself.
#[derive(Debug)]
pub struct StepView<'a> {
    /// Step number (1-based).
    pub step: u64,
    /// Simulated time since the run began, ms.
    pub t_ms: u64,
    /// The registry clock now.
    pub now: Timestamp,
    /// Provisions in flight (manager ledger).
    pub in_flight: usize,
    /// Workers queued for destruction by the manager.
    pub pending_destroys: &'a HashSet<WorkerId>,
    /// The provider's live instances: `(resource_id, worker_id, created_at)`.
    pub instances: &'a [(String, WorkerId, Timestamp)],
    /// Jobs waiting in the host's queue.
    pub pending_jobs: &'a HashSet<JobId>,
    /// Events queued at the subscriber that never reads.
    pub lazy_queued: Option<usize>,
}

/// Verifies the contract after every step, from the outside: it reads the registry through
/// the [`WorkerRegistry`] trait and the event stream, and is told by the simulation only what
/// the outside world knows (a heartbeat was delivered, an agent finished a job, a job
/// arrived, a stall grace was granted).
///
/// Violations are collected (the first 100 kept, all counted), never panicked on.
#[derive(Debug)]
pub struct Checker {
    registry: Arc<dyn WorkerRegistry>,
    events: Subscription,
    heartbeat_timeout: u64,
    startup_timeout: u64,
    max_workers: usize,
    idle_timeout: u64,
    max_lifetime: u64,
    lazy_capacity: usize,
    /// Last heartbeat the registry accepted per worker (registration counts), as the agents
    /// saw it.
    last_heartbeat: HashMap<WorkerId, Timestamp>,
    created: HashMap<WorkerId, Timestamp>,
    ready_since: HashMap<WorkerId, Timestamp>,
    terminating_at: HashMap<WorkerId, Timestamp>,
    /// The last delivered heartbeat when the worker entered `Terminating` (an agent may keep
    /// heartbeating a worker already on its way out).
    heartbeat_at_decision: HashMap<WorkerId, Timestamp>,
    /// Jobs that agents finished and are about to release.
    finishing: HashSet<(WorkerId, JobId)>,
    /// Jobs that arrived and were not released yet.
    outstanding: HashSet<JobId>,
    /// Jobs released after their agent finished them.
    done: HashSet<JobId>,
    /// Stall graces granted: registry-clock times.
    graces: Vec<Timestamp>,
    /// Who held which job after the previous step.
    held: BTreeMap<WorkerId, JobId>,
    /// Workers whose job was reported lost (ever): a scale-down must never be one.
    lost_from: HashSet<WorkerId>,
    violations: Vec<Violation>,
    total: u64,
    /// Violations the simulation saw itself (fit of a claim, a pool's cap), flagged at the
    /// next check.
    noted: Vec<(Rule, String)>,
}

/// The checker keeps this many violations (it counts them all).
pub const MAX_KEPT_VIOLATIONS: usize = 100;

impl Checker {
    /// A checker on `registry` for the given manager configuration and worker spec.
    /// `lazy_capacity` is the capacity the never-reading subscriber asked for.
    ///
    /// # Errors
    /// When the registry refuses a subscription.
    pub fn new(
        registry: Arc<dyn WorkerRegistry>,
        config: &WorkerLifecycleConfig,
        spec: &WorkerSpec,
        lazy_capacity: usize,
    ) -> crate::Result<Self> {
        // Drained after every step: large enough for every event of a step of a large fleet;
        // a drop is reported (EventMemory), never ignored.
        let capacity = 4096.max(config.max_workers.saturating_mul(16));
        let events = registry.subscribe(SubscribeOptions::default().capacity(capacity))?;
        Ok(Checker {
            registry,
            events,
            heartbeat_timeout: millis(config.heartbeat_timeout),
            startup_timeout: millis(config.startup_timeout),
            max_workers: config.max_workers,
            idle_timeout: millis(spec.idle_timeout),
            max_lifetime: millis(spec.max_lifetime),
            lazy_capacity,
            last_heartbeat: HashMap::new(),
            created: HashMap::new(),
            ready_since: HashMap::new(),
            terminating_at: HashMap::new(),
            heartbeat_at_decision: HashMap::new(),
            finishing: HashSet::new(),
            outstanding: HashSet::new(),
            done: HashSet::new(),
            graces: Vec::new(),
            held: BTreeMap::new(),
            lost_from: HashSet::new(),
            violations: Vec::new(),
            total: 0,
            noted: Vec::new(),
        })
    }

    /// A job arrived at the host.
    pub fn job_arrived(&mut self, job: JobId) {
        self.outstanding.insert(job);
    }

    /// The registry accepted a heartbeat of `worker` at `at` (the agent got `Ok`).
    pub fn heartbeat_delivered(&mut self, worker: WorkerId, at: Timestamp) {
        let e = self.last_heartbeat.entry(worker).or_insert(at);
        *e = (*e).max(at);
    }

    /// The agent of `worker` finished `job` and is about to release it.
    pub fn agent_finished(&mut self, worker: WorkerId, job: JobId) {
        self.finishing.insert((worker, job));
    }

    /// The release of a finished job failed (the job had been taken back meanwhile).
    pub fn agent_release_refused(&mut self, worker: WorkerId, job: JobId) {
        self.finishing.remove(&(worker, job));
    }

    /// The manager granted a stall grace at `at` (`TickReport::stall_grace`).
    pub fn grace_granted(&mut self, at: Timestamp) {
        self.graces.push(at);
    }

    /// Violations kept so far (the first [`MAX_KEPT_VIOLATIONS`]).
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Violations seen so far, all counted.
    pub fn total(&self) -> u64 {
        self.total
    }

    fn flag(&mut self, view: &StepView<'_>, rule: Rule, detail: String) {
        self.total += 1;
        if self.violations.len() < MAX_KEPT_VIOLATIONS {
            self.violations.push(Violation {
                step: view.step,
                t_ms: view.t_ms,
                rule,
                detail,
            });
        }
    }

    fn grace_before(&self, at: Timestamp) -> Timestamp {
        self.graces
            .iter()
            .copied()
            .filter(|g| *g <= at)
            .max()
            .unwrap_or(0)
    }

    /// A rule the simulation saw broken itself (it knows what the registry does not: which
    /// job needed what, which pool a cap belongs to); flagged by the next [`check`](Self::check).
    pub fn note(&mut self, rule: Rule, detail: String) {
        self.noted.push((rule, detail));
    }

    /// Checks every rule against the registry's state now. Returns how many violations this
    /// step added.
    pub fn check(&mut self, view: &StepView<'_>) -> u64 {
        let before = self.total;
        for (rule, detail) in std::mem::take(&mut self.noted) {
            self.flag(view, rule, detail);
        }
        let (released, lost) = self.read_events(view);
        let mut workers = match self.registry.find(&WorkerFilter::new()) {
            Ok(w) => w,
            Err(e) => {
                self.flag(view, Rule::StatsRecount, format!("find() failed: {e}"));
                return self.total - before;
            }
        };
        workers.sort_by_key(|w| w.id);
        let by_id: HashMap<WorkerId, &Worker> = workers.iter().map(|w| (w.id, w)).collect();

        // §3 invariants 1 and 2.
        let mut holder: HashMap<&JobId, WorkerId> = HashMap::new();
        let mut found = Vec::new();
        for w in &workers {
            let ok = match &w.current_job {
                Some(_) => matches!(w.state, WorkerState::Busy | WorkerState::Draining),
                None => w.state != WorkerState::Busy,
            };
            if !ok {
                found.push((
                    Rule::StateJob,
                    format!("worker {} is {} holding {:?}", w.id, w.state, w.current_job),
                ));
            }
            if let Some(job) = &w.current_job {
                if let Some(other) = holder.insert(job, w.id) {
                    found.push((
                        Rule::JobHeldOnce,
                        format!("job {job} is held by workers {other} and {}", w.id),
                    ));
                }
            }
        }

        // §3 invariant 3: a job held after the last step is still held, released after its
        // agent finished it, or reported lost.
        for (wid, job) in &self.held {
            let still = by_id
                .get(wid)
                .is_some_and(|w| w.current_job.as_ref() == Some(job));
            if !still
                && !released.contains(&(*wid, job.clone()))
                && !lost.contains(&(*wid, job.clone()))
            {
                found.push((
                    Rule::JobNotDropped,
                    format!(
                        "job {job} left worker {wid} ({}) without a release or a JobLost event",
                        by_id
                            .get(wid)
                            .map(|w| w.state.to_string())
                            .unwrap_or_else(|| "unregistered".into())
                    ),
                ));
            }
        }

        // §3 invariant 4.
        match self.registry.stats() {
            Ok(stats) => {
                let mut counts = StateCounts::default();
                let mut by_provider: BTreeMap<_, usize> = BTreeMap::new();
                for w in &workers {
                    *counts.slot(w.state) += 1;
                    *by_provider.entry(w.provider_id().clone()).or_default() += 1;
                }
                let stats_by_provider: BTreeMap<_, usize> = stats
                    .by_provider
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(p, n)| (p.clone(), *n))
                    .collect();
                if stats.total != workers.len()
                    || stats.by_state != counts
                    || stats_by_provider != by_provider
                {
                    found.push((
                        Rule::StatsRecount,
                        format!(
                            "stats() says {} workers {:?}, a recount finds {} {:?}",
                            stats.total,
                            stats.by_state,
                            workers.len(),
                            counts
                        ),
                    ));
                }
            }
            Err(e) => found.push((Rule::StatsRecount, format!("stats() failed: {e}"))),
        }

        // No worker above max_workers.
        if workers.len() + view.in_flight > self.max_workers {
            found.push((
                Rule::MaxWorkers,
                format!(
                    "{} registered + {} in flight > max_workers {}",
                    workers.len(),
                    view.in_flight,
                    self.max_workers
                ),
            ));
        }

        // No leaked instance.
        for (rid, wid, created_at) in view.instances {
            let registered = by_id.contains_key(wid);
            let queued = view.pending_destroys.contains(wid);
            let young = view.now.saturating_sub(*created_at) <= self.startup_timeout;
            if !registered && !queued && !young {
                found.push((
                    Rule::InstanceLeak,
                    format!(
                        "instance {rid} (worker {wid}) is alive {:.1} s after its creation, \
                         neither registered nor queued for destruction",
                        view.now.saturating_sub(*created_at) as f64 / 1000.0
                    ),
                ));
            }
        }

        // No job lost: every job not released is pending or held.
        let mut unaccounted: Vec<&JobId> = self
            .outstanding
            .iter()
            .filter(|j| !view.pending_jobs.contains(*j) && !holder.contains_key(*j))
            .collect();
        unaccounted.sort();
        for job in unaccounted {
            found.push((
                Rule::JobAccounted,
                format!("job {job} is neither done, running nor pending"),
            ));
        }

        // Event memory.
        if let Some(queued) = view.lazy_queued {
            if queued > self.lazy_capacity {
                found.push((
                    Rule::EventMemory,
                    format!(
                        "a subscriber that never reads holds {queued} events, above its \
                         capacity {}",
                        self.lazy_capacity
                    ),
                ));
            }
        }
        if self.events.dropped() > 0 {
            found.push((
                Rule::EventMemory,
                format!(
                    "the checker's subscriber missed {} events",
                    self.events.dropped()
                ),
            ));
        }

        self.held = workers
            .iter()
            .filter_map(|w| w.current_job.clone().map(|j| (w.id, j)))
            .collect();
        for (rule, detail) in found {
            self.flag(view, rule, detail);
        }
        self.total - before
    }

    /// Reads this step's events: bookkeeping, the early-expiry rule, and the jobs released
    /// and lost (for invariant 3).
    #[allow(clippy::type_complexity)]
    fn read_events(
        &mut self,
        view: &StepView<'_>,
    ) -> (HashSet<(WorkerId, JobId)>, HashSet<(WorkerId, JobId)>) {
        let mut released = HashSet::new();
        let mut lost = HashSet::new();
        let mut found = Vec::new();
        for event in self.events.drain() {
            let at = event.at;
            match event.kind {
                EventKind::Registered { worker_id, .. } => {
                    self.created.insert(worker_id, at);
                    self.heartbeat_delivered(worker_id, at);
                }
                EventKind::StateChanged { worker_id, to, .. } => match to {
                    WorkerState::Ready => {
                        self.ready_since.insert(worker_id, at);
                    }
                    WorkerState::Terminating | WorkerState::Terminated => {
                        self.terminating_at.entry(worker_id).or_insert(at);
                        // Events are read after the step's agents and host pass, so every
                        // heartbeat recorded now was delivered before the decision.
                        let hb = self.last_heartbeat.get(&worker_id).copied().unwrap_or(0);
                        self.heartbeat_at_decision.entry(worker_id).or_insert(hb);
                    }
                    _ => {}
                },
                EventKind::ReleasedFromJob { worker_id, job_id } => {
                    if !self.finishing.remove(&(worker_id, job_id.clone())) {
                        found.push((
                            Rule::JobNotDropped,
                            format!(
                                "job {job_id} was released from worker {worker_id} although its \
                                 agent never finished it"
                            ),
                        ));
                    }
                    self.outstanding.remove(&job_id);
                    if !self.done.insert(job_id.clone()) {
                        found.push((
                            Rule::JobDoneOnce,
                            format!(
                                "job {job_id} was finished a second time (by worker {worker_id})"
                            ),
                        ));
                    }
                    released.insert((worker_id, job_id));
                }
                EventKind::JobLost { worker_id, job_id } => {
                    self.lost_from.insert(worker_id);
                    lost.insert((worker_id, job_id));
                }
                EventKind::Unregistered { worker_id, reason } => {
                    if let Some(problem) = self.expired_early(worker_id, reason, at) {
                        found.push((Rule::EarlyExpiry, problem));
                    }
                    if reason == TerminationReason::Vanished {
                        if let Some((rid, _, _)) =
                            view.instances.iter().find(|(_, w, _)| *w == worker_id)
                        {
                            found.push((
                                Rule::EarlyExpiry,
                                format!(
                                    "worker {worker_id} was removed as vanished but its instance \
                                     {rid} is alive"
                                ),
                            ));
                        }
                    }
                    self.last_heartbeat.remove(&worker_id);
                    self.created.remove(&worker_id);
                    self.ready_since.remove(&worker_id);
                    self.terminating_at.remove(&worker_id);
                    self.heartbeat_at_decision.remove(&worker_id);
                    self.lost_from.remove(&worker_id);
                }
                _ => {}
            }
        }
        for (rule, detail) in found {
            self.flag(view, rule, detail);
        }
        (released, lost)
    }

    /// Whether `worker`, unregistered with `reason` at `at`, was taken out of service before
    /// its deadline. The decision time is when it entered `Terminating` (the destroy may have
    /// been retried long after).
    fn expired_early(
        &self,
        worker: WorkerId,
        reason: TerminationReason,
        at: Timestamp,
    ) -> Option<String> {
        let decided = self.terminating_at.get(&worker).copied().unwrap_or(at);
        let grace = self.grace_before(decided);
        let created = self.created.get(&worker).copied();
        let secs = |ms: u64| ms as f64 / 1000.0;
        match reason {
            TerminationReason::Unhealthy => {
                let last = self
                    .heartbeat_at_decision
                    .get(&worker)
                    .or_else(|| self.last_heartbeat.get(&worker))
                    .copied()
                    .unwrap_or(0)
                    .max(grace);
                let silent = decided.saturating_sub(last);
                (silent <= self.heartbeat_timeout).then(|| {
                    format!(
                        "worker {worker} declared unhealthy after {:.1} s of silence (last \
                         heartbeat delivered at {last}, grace {grace}); heartbeat_timeout is {:.1} s",
                        secs(silent),
                        secs(self.heartbeat_timeout)
                    )
                })
            }
            TerminationReason::StartupTimeout => {
                let start = created?.max(grace);
                let age = decided.saturating_sub(start);
                (age <= self.startup_timeout).then(|| {
                    format!(
                        "worker {worker} expired for startup {:.1} s after registration \
                         (grace {grace}); startup_timeout is {:.1} s",
                        secs(age),
                        secs(self.startup_timeout)
                    )
                })
            }
            TerminationReason::Idle => {
                let since = self.ready_since.get(&worker).copied()?;
                let idle = decided.saturating_sub(since);
                (idle <= self.idle_timeout).then(|| {
                    format!(
                        "worker {worker} retired as idle after {:.1} s; idle_timeout is {:.1} s",
                        secs(idle),
                        secs(self.idle_timeout)
                    )
                })
            }
            TerminationReason::Lifetime => {
                let age = decided.saturating_sub(created?);
                (age <= self.max_lifetime).then(|| {
                    format!(
                        "worker {worker} retired for lifetime at age {:.1} s; max_lifetime is \
                         {:.1} s",
                        secs(age),
                        secs(self.max_lifetime)
                    )
                })
            }
            TerminationReason::ScaledDown => self.lost_from.contains(&worker).then(|| {
                format!("worker {worker} was scaled down while it held a job (the job was lost)")
            }),
            _ => None,
        }
    }
}
