//! Model-based property test: random sequences of registry operations run against
//! the backend under test and against a plain `HashMap` reference model that states
//! DESIGN.md §3–§4 directly. After every step the results, errors, events and every record must
//! match the model, the invariants of §3 must hold, `stats()` must equal a recount, and the
//! deadline indexes must agree with a brute-force recomputation.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use hodei_workers::*;
use proptest::prelude::*;

/// Operations, with workers and jobs named by small indexes resolved at run time.
#[derive(Debug, Clone)]
enum Op {
    Register {
        spec: usize,
        provider: usize,
    },
    /// Registers a handle with the id of a known worker (live or removed).
    Reregister {
        worker: usize,
    },
    UpdateState {
        worker: usize,
        to: WorkerState,
    },
    Heartbeat {
        worker: usize,
    },
    Assign {
        worker: usize,
        job: usize,
    },
    Claim {
        filter: usize,
        job: usize,
    },
    Release {
        worker: usize,
        expected: Option<usize>,
    },
    Unregister {
        worker: usize,
        reason: usize,
    },
    Advance {
        ms: u64,
    },
    GrantGrace {
        back_ms: u64,
    },
    FindUnhealthy {
        timeout_ms: u64,
    },
    FindStartupExpired {
        timeout_ms: u64,
    },
    FindForTermination,
    /// Snapshot to JSON, restore into a fresh registry on the same clock, and carry on with
    /// the copy: its indexes must behave as the original's did.
    Reload,
}

const JOBS: usize = 6;
/// The timeouts the deadline indexes are checked with after every step.
const CHECK_HEARTBEAT: Duration = Duration::from_millis(1_000);
const CHECK_STARTUP: Duration = Duration::from_millis(1_500);
const PROVIDERS: [(&str, ProviderType); 2] = [
    ("p1", ProviderType::Docker),
    ("p2", ProviderType::Kubernetes),
];

/// Specs with short limits so that idle, lifetime and max-jobs retirements happen inside a
/// sequence.
fn specs() -> Vec<Arc<WorkerSpec>> {
    let s = |idle: u64, life: u64| {
        WorkerSpec::new("img")
            .with_idle_timeout(Duration::from_millis(idle))
            .with_max_lifetime(Duration::from_millis(life))
    };
    vec![
        Arc::new(s(1_000, 6_000).with_label(POOL_LABEL, "a")),
        Arc::new(
            s(500, 9_000)
                .with_label(POOL_LABEL, "b")
                .with_capability("gpu"),
        ),
        Arc::new(s(1_500, 4_000).with_max_jobs(1)),
        Arc::new(s(250, 5_000).with_max_jobs(2).with_label(POOL_LABEL, "a")),
    ]
}

fn filters() -> Vec<WorkerFilter> {
    vec![
        WorkerFilter::new(),
        WorkerFilter::new().label(POOL_LABEL, "a"),
        WorkerFilter::new().capability("gpu"),
        WorkerFilter::new().provider_id(ProviderId::new("p2").unwrap()),
        WorkerFilter::new().provider_type(ProviderType::Docker),
        WorkerFilter::new().idle_for(Duration::from_millis(750)),
        WorkerFilter::new().unhealthy_for(Duration::from_millis(1_500)),
        WorkerFilter::new()
            .state(WorkerState::Ready)
            .accepting_jobs(true),
        WorkerFilter::new().state(WorkerState::Busy),
        WorkerFilter::new().accepting_jobs(false),
        WorkerFilter::new().limit(0),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    use WorkerState::*;
    // Mostly the moves that bring workers into service, so that claims, idling and retirement
    // happen often; every state is asked for now and then.
    let state = prop_oneof![
        4 => Just(Ready),
        2 => Just(Connecting),
        1 => Just(Draining),
        1 => Just(Terminating),
        1 => Just(Terminated),
        1 => Just(Creating),
        1 => Just(Busy),
    ];
    prop_oneof![
        4 => (0..4usize, 0..2usize).prop_map(|(spec, provider)| Op::Register { spec, provider }),
        1 => (0..64usize).prop_map(|worker| Op::Reregister { worker }),
        6 => (0..64usize, state).prop_map(|(worker, to)| Op::UpdateState { worker, to }),
        3 => (0..64usize).prop_map(|worker| Op::Heartbeat { worker }),
        3 => (0..64usize, 0..JOBS).prop_map(|(worker, job)| Op::Assign { worker, job }),
        4 => (0..filters().len(), 0..JOBS).prop_map(|(filter, job)| Op::Claim { filter, job }),
        4 => (0..64usize, prop::option::of(0..JOBS))
            .prop_map(|(worker, expected)| Op::Release { worker, expected }),
        2 => (0..64usize, 0..TerminationReason::ALL.len())
            .prop_map(|(worker, reason)| Op::Unregister { worker, reason }),
        4 => time_step().prop_map(|ms| Op::Advance { ms }),
        1 => time_step().prop_map(|back_ms| Op::GrantGrace { back_ms }),
        2 => time_step().prop_map(|timeout_ms| Op::FindUnhealthy { timeout_ms }),
        1 => time_step().prop_map(|timeout_ms| Op::FindStartupExpired { timeout_ms }),
        2 => Just(Op::FindForTermination),
        1 => Just(Op::Reload),
    ]
}

/// A duration in milliseconds, mostly a multiple of 250 ms like every timeout of the specs and
/// filters: deadlines then fall exactly on the clock often, and a 1 ms step lands just past
/// them, so that an off-by-one in any deadline shows.
fn time_step() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => (0..8u64).prop_map(|k| k * 250),
        2 => Just(1u64),
        1 => (0..8u64).prop_map(|k| k * 250 - u64::from(k > 0)),
        1 => 0..2_000u64,
    ]
}

/// A starting fleet: a few registrations, most of them brought to `Ready` (the workers are
/// the first known, so selector `i` is the `i`-th of them), then the random operations.
fn ops() -> impl Strategy<Value = Vec<Op>> {
    let fleet = prop::collection::vec((0..4usize, 0..2usize, any::<bool>()), 1..=5);
    (fleet, prop::collection::vec(op(), 30..=50)).prop_map(|(fleet, rest)| {
        let mut ops: Vec<Op> = fleet
            .iter()
            .map(|&(spec, provider, _)| Op::Register { spec, provider })
            .collect();
        for (i, &(_, _, ready)) in fleet.iter().enumerate() {
            if ready {
                ops.push(Op::UpdateState {
                    worker: i,
                    to: WorkerState::Ready,
                });
            }
        }
        ops.extend(rest);
        ops
    })
}

/// DESIGN.md §3 for `update_state`: the table minus the two job moves.
fn update_allowed(from: WorkerState, to: WorkerState) -> bool {
    use WorkerState::*;
    match from {
        Creating => matches!(to, Connecting | Ready | Terminating | Terminated),
        Connecting => matches!(to, Ready | Terminating | Terminated),
        Ready | Busy => matches!(to, Draining | Terminating | Terminated),
        Draining => matches!(to, Ready | Terminating | Terminated),
        Terminating => matches!(to, Terminated),
        Terminated => false,
    }
}

/// The reference: every record in a map, every rule spelled out.
#[derive(Debug, Default)]
struct Model {
    now: Timestamp,
    floor: Timestamp,
    workers: HashMap<WorkerId, Worker>,
    /// Unregistered ids: never registered again (issue 10 item 20).
    retired: std::collections::HashSet<WorkerId>,
}

impl Model {
    fn holder(&self, job: &JobId) -> Option<WorkerId> {
        self.workers
            .values()
            .find(|w| w.current_job.as_ref() == Some(job))
            .map(|w| w.id)
    }

    fn register(
        &mut self,
        handle: WorkerHandle,
        spec: Arc<WorkerSpec>,
        ev: &mut Vec<EventKind>,
    ) -> Result<Worker> {
        let id = handle.worker_id;
        if self.workers.contains_key(&id) || self.retired.contains(&id) {
            return Err(Error::AlreadyExists(id));
        }
        let now = self.now;
        ev.push(EventKind::Registered {
            worker_id: id,
            provider_id: handle.provider_id.clone(),
            provider_type: handle.provider_type.clone(),
        });
        let w = Worker {
            id,
            handle: Arc::new(handle),
            spec,
            state: WorkerState::Creating,
            current_job: None,
            jobs_executed: 0,
            created_at: now,
            updated_at: now,
            state_changed_at: now,
            last_heartbeat: now,
            idle_since: None,
        };
        self.workers.insert(id, w.clone());
        Ok(w)
    }

    /// Moves `w` to `to` as every operation does: timestamps, idle clock, event.
    fn set_state(w: &mut Worker, to: WorkerState, now: Timestamp, ev: &mut Vec<EventKind>) {
        if w.state != to {
            ev.push(EventKind::StateChanged {
                worker_id: w.id,
                from: w.state,
                to,
            });
            w.state = to;
            w.state_changed_at = now;
            if to == WorkerState::Ready {
                w.idle_since = Some(now);
            }
        }
        w.updated_at = now;
    }

    fn update_state(
        &mut self,
        id: WorkerId,
        to: WorkerState,
        ev: &mut Vec<EventKind>,
    ) -> Result<Worker> {
        let now = self.now;
        let w = self.workers.get_mut(&id).ok_or(Error::NotFound(id))?;
        let from = w.state;
        if from == to {
            return Ok(w.clone());
        }
        let exhausted = w
            .spec
            .max_jobs
            .is_some_and(|max| w.jobs_executed >= u64::from(max));
        // Back to Ready only without a job and below max_jobs (issue 10 item 4).
        if !update_allowed(from, to)
            || (to == WorkerState::Ready && (w.current_job.is_some() || exhausted))
        {
            return Err(Error::InvalidTransition {
                worker_id: id,
                from,
                to,
            });
        }
        if from.is_starting() && !to.is_terminal() {
            // Reporting in counts as a heartbeat.
            w.last_heartbeat = w.last_heartbeat.max(now);
        }
        Self::set_state(w, to, now, ev);
        if to.is_terminal() {
            if let Some(job_id) = w.current_job.take() {
                ev.push(EventKind::JobLost {
                    worker_id: id,
                    job_id,
                });
            }
        }
        Ok(w.clone())
    }

    fn heartbeat(&mut self, id: WorkerId, ev: &mut Vec<EventKind>) -> Result<()> {
        let w = self.workers.get_mut(&id).ok_or(Error::NotFound(id))?;
        w.last_heartbeat = w.last_heartbeat.max(self.now);
        ev.push(EventKind::HeartbeatReceived { worker_id: id });
        Ok(())
    }

    fn give(&mut self, id: WorkerId, job: JobId, ev: &mut Vec<EventKind>) -> Worker {
        let now = self.now;
        let w = self.workers.get_mut(&id).unwrap();
        Self::set_state(w, WorkerState::Busy, now, ev);
        w.current_job = Some(job.clone());
        ev.push(EventKind::AssignedToJob {
            worker_id: id,
            job_id: job,
        });
        w.clone()
    }

    fn assign(&mut self, id: WorkerId, job: JobId, ev: &mut Vec<EventKind>) -> Result<Worker> {
        let w = self.workers.get(&id).ok_or(Error::NotFound(id))?;
        if w.state != WorkerState::Ready || w.current_job.is_some() {
            return Err(Error::NotAvailable {
                worker_id: id,
                state: w.state,
            });
        }
        if let Some(holder) = self.holder(&job) {
            return Err(Error::JobAlreadyAssigned {
                job_id: job,
                worker_id: holder,
            });
        }
        Ok(self.give(id, job, ev))
    }

    fn claim(
        &mut self,
        filter: &WorkerFilter,
        job: JobId,
        ev: &mut Vec<EventKind>,
    ) -> Result<Option<Worker>> {
        if let Some(holder) = self.holder(&job) {
            return Err(Error::JobAlreadyAssigned {
                job_id: job,
                worker_id: holder,
            });
        }
        if filter.limit == Some(0) {
            return Ok(None);
        }
        // The most recently idle matching Ready worker; ties by the greater id.
        let pick = self
            .workers
            .values()
            .filter(|w| w.state == WorkerState::Ready && filter.matches(w, self.now))
            .max_by_key(|w| (w.idle_since, w.id))
            .map(|w| w.id);
        Ok(pick.map(|id| self.give(id, job, ev)))
    }

    fn release(
        &mut self,
        id: WorkerId,
        expected: Option<&JobId>,
        ev: &mut Vec<EventKind>,
    ) -> Result<JobId> {
        let now = self.now;
        let w = self.workers.get_mut(&id).ok_or(Error::NotFound(id))?;
        let job = match (&w.current_job, expected) {
            (Some(held), Some(e)) if held == e => held.clone(),
            (Some(held), None) => held.clone(),
            _ => {
                return Err(Error::NotBusy {
                    worker_id: id,
                    expected: expected.cloned(),
                })
            }
        };
        ev.push(EventKind::ReleasedFromJob {
            worker_id: id,
            job_id: job.clone(),
        });
        w.current_job = None;
        w.jobs_executed += 1;
        let to = match w.state {
            WorkerState::Busy
                if w.spec
                    .max_jobs
                    .is_some_and(|m| w.jobs_executed >= u64::from(m)) =>
            {
                WorkerState::Draining
            }
            WorkerState::Busy => WorkerState::Ready,
            other => other,
        };
        Self::set_state(w, to, now, ev);
        Ok(job)
    }

    fn unregister(
        &mut self,
        id: WorkerId,
        reason: TerminationReason,
        ev: &mut Vec<EventKind>,
    ) -> Result<Worker> {
        let w = self.workers.remove(&id).ok_or(Error::NotFound(id))?;
        self.retired.insert(id);
        if let Some(job_id) = w.current_job.clone() {
            ev.push(EventKind::JobLost {
                worker_id: id,
                job_id,
            });
        }
        ev.push(EventKind::Unregistered {
            worker_id: id,
            reason,
        });
        Ok(w)
    }

    fn sorted(&self) -> Vec<Worker> {
        let mut v: Vec<Worker> = self.workers.values().cloned().collect();
        v.sort_by_key(|w| w.id);
        v
    }
}

/// Runs `ops` against both and checks everything after every step.
fn run(ops: &[Op]) -> std::result::Result<(), TestCaseError> {
    let (clock, registry) = registry();
    let mut registry = registry;
    // `keen` wants every event, heartbeats included; `plain` leaves heartbeats out.
    let subscribe = |r: &dyn WorkerRegistry| {
        let keen = r
            .subscribe(
                SubscribeOptions::default()
                    .capacity(1 << 16)
                    .heartbeats(true),
            )
            .unwrap();
        let plain = r
            .subscribe(SubscribeOptions::default().capacity(1 << 16))
            .unwrap();
        (keen, plain)
    };
    let (mut keen, mut plain) = subscribe(&registry);
    let mut model = Model {
        now: T0,
        ..Model::default()
    };
    let specs = specs();
    let filters = filters();
    let jobs: Vec<JobId> = (0..JOBS).map(|i| job(&format!("job-{i}"))).collect();
    let never_registered = WorkerId::new();
    let mut known: Vec<WorkerId> = Vec::new();
    let mut last_seq = 0;
    let pick = |known: &Vec<WorkerId>, selector: &usize| -> WorkerId {
        // One slot past the known ids: a worker that never existed.
        let n = selector % (known.len() + 1);
        known.get(n).copied().unwrap_or(never_registered)
    };

    for (step, op) in ops.iter().enumerate() {
        let mut ev = Vec::new();
        let ctx = || format!("step {step}: {op:?}");
        match op {
            Op::Register { spec, provider } => {
                let (p, t) = &PROVIDERS[*provider];
                let handle = WorkerHandle::new(ProviderId::new(p).unwrap(), t.clone(), "r");
                known.push(handle.worker_id);
                let got = registry.register(handle.clone(), specs[*spec].clone());
                prop_assert_eq!(
                    got,
                    model.register(handle, specs[*spec].clone(), &mut ev),
                    "{}",
                    ctx()
                );
            }
            Op::Reregister { worker } => {
                let Some(&id) = known.get(worker % known.len().max(1)) else {
                    continue;
                };
                let handle = WorkerHandle {
                    worker_id: id,
                    ..WorkerHandle::new(
                        ProviderId::new("p1").unwrap(),
                        ProviderType::Docker,
                        "again",
                    )
                };
                let got = registry.register(handle.clone(), specs[0].clone());
                prop_assert_eq!(
                    got,
                    model.register(handle, specs[0].clone(), &mut ev),
                    "{}",
                    ctx()
                );
            }
            Op::UpdateState { worker, to } => {
                let id = pick(&known, worker);
                prop_assert_eq!(
                    registry.update_state(&id, *to),
                    model.update_state(id, *to, &mut ev),
                    "{}",
                    ctx()
                );
            }
            Op::Heartbeat { worker } => {
                let id = pick(&known, worker);
                prop_assert_eq!(
                    registry.heartbeat(&id),
                    model.heartbeat(id, &mut ev),
                    "{}",
                    ctx()
                );
            }
            Op::Assign { worker, job } => {
                let id = pick(&known, worker);
                let j = jobs[*job].clone();
                prop_assert_eq!(
                    registry.assign_to_job(&id, j.clone()),
                    model.assign(id, j, &mut ev),
                    "{}",
                    ctx()
                );
            }
            Op::Claim { filter, job } => {
                let j = jobs[*job].clone();
                let f = &filters[*filter];
                prop_assert_eq!(
                    registry.claim(f, j.clone()),
                    model.claim(f, j, &mut ev),
                    "{}",
                    ctx()
                );
            }
            Op::Release { worker, expected } => {
                let id = pick(&known, worker);
                let e = expected.map(|i| jobs[i].clone());
                prop_assert_eq!(
                    registry.release_from_job(&id, e.as_ref()),
                    model.release(id, e.as_ref(), &mut ev),
                    "{}",
                    ctx()
                );
            }
            Op::Unregister { worker, reason } => {
                let id = pick(&known, worker);
                let r = TerminationReason::ALL[*reason];
                prop_assert_eq!(
                    registry.unregister(&id, r),
                    model.unregister(id, r, &mut ev),
                    "{}",
                    ctx()
                );
            }
            Op::Advance { ms } => {
                model.now = clock.advance(Duration::from_millis(*ms));
                prop_assert_eq!(model.now, registry.now());
            }
            Op::GrantGrace { back_ms } => {
                let since = model.now.saturating_sub(*back_ms);
                registry.grant_grace(since).unwrap();
                model.floor = model.floor.max(since);
            }
            Op::FindUnhealthy { timeout_ms } => {
                let timeout = Duration::from_millis(*timeout_ms);
                let found = registry.find_unhealthy(timeout).unwrap();
                let expected = expected_unhealthy(&model.sorted(), model.now, timeout, model.floor);
                prop_assert_eq!(id_set(&found), expected, "{}", ctx());
                for w in &found {
                    prop_assert_eq!(Some(w), model.workers.get(&w.id));
                }
            }
            Op::FindStartupExpired { timeout_ms } => {
                let timeout = Duration::from_millis(*timeout_ms);
                let found = registry.find_startup_expired(timeout).unwrap();
                let expected =
                    expected_startup_expired(&model.sorted(), model.now, timeout, model.floor);
                prop_assert_eq!(id_set(&found), expected, "{}", ctx());
                for w in &found {
                    prop_assert_eq!(Some(w), model.workers.get(&w.id));
                }
            }
            Op::Reload => {
                let json = registry.snapshot().unwrap().to_json().unwrap();
                let copy = registry_on(clock.clone());
                copy.restore(Snapshot::from_json(&json).unwrap()).unwrap();
                registry = copy;
                (keen, plain) = subscribe(&registry);
                // Restoring grants grace from now (issue 10 item 6); the snapshot carries the
                // retired ids, so the model's stay.
                model.floor = model.now;
            }
            Op::FindForTermination => {
                let found = termination_map(&registry);
                prop_assert_eq!(
                    found,
                    expected_termination(&model.sorted(), model.now),
                    "{}",
                    ctx()
                );
            }
        }

        // Events: exactly the model's, numbered without gaps for the subscriber that takes
        // them all; the same without heartbeats, in the same order and numbers, for the other.
        let got = keen.drain();
        let got_plain = plain.drain();
        prop_assert_eq!((keen.dropped(), plain.dropped()), (0, 0));
        for e in &got {
            prop_assert_eq!(e.seq, last_seq + 1, "{}", ctx());
            prop_assert_eq!(e.at, model.now);
            last_seq = e.seq;
        }
        let without_heartbeats: Vec<WorkerLifecycleEvent> = got
            .iter()
            .filter(|e| !matches!(e.kind, EventKind::HeartbeatReceived { .. }))
            .cloned()
            .collect();
        prop_assert_eq!(got_plain, without_heartbeats, "{}", ctx());
        let got: Vec<EventKind> = got.into_iter().map(|e| e.kind).collect();
        prop_assert_eq!(got, ev, "{}", ctx());

        // The deadline indexes agree with a brute-force recomputation after every step.
        let everyone = model.sorted();
        prop_assert_eq!(
            termination_map(&registry),
            expected_termination(&everyone, model.now),
            "{}",
            ctx()
        );
        prop_assert_eq!(
            id_set(&registry.find_unhealthy(CHECK_HEARTBEAT).unwrap()),
            expected_unhealthy(&everyone, model.now, CHECK_HEARTBEAT, model.floor),
            "{}",
            ctx()
        );
        prop_assert_eq!(
            id_set(&registry.find_startup_expired(CHECK_STARTUP).unwrap()),
            expected_startup_expired(&everyone, model.now, CHECK_STARTUP, model.floor),
            "{}",
            ctx()
        );

        // Every record equals the model's; the invariants and the counters hold.
        let all = assert_invariants(&registry);
        let mut all_sorted = all.clone();
        all_sorted.sort_by_key(|w| w.id);
        prop_assert_eq!(&all_sorted, &model.sorted(), "{}", ctx());
        prop_assert_eq!(
            registry.stats().unwrap(),
            WorkerRegistryStats::recount(&all)
        );
        // The terminal ids: each terminal record once, no other.
        let mut terminal_ids = registry.terminal_ids().unwrap();
        terminal_ids.sort();
        let expected_terminal: Vec<WorkerId> = all_sorted
            .iter()
            .filter(|w| w.state.is_terminal())
            .map(|w| w.id)
            .collect();
        prop_assert_eq!(terminal_ids, expected_terminal, "{}", ctx());
        let by_job: BTreeMap<&JobId, WorkerId> = all
            .iter()
            .filter_map(|w| w.current_job.as_ref().map(|j| (j, w.id)))
            .collect();
        prop_assert_eq!(
            by_job.len(),
            all.iter().filter(|w| w.current_job.is_some()).count()
        );
    }
    // The deadline indexes at the end of the sequence, whatever the last step was.
    prop_assert_eq!(
        termination_map(&registry),
        expected_termination(&model.sorted(), model.now)
    );
    for timeout_ms in [0, 750, 2_500] {
        let timeout = Duration::from_millis(timeout_ms);
        prop_assert_eq!(
            id_set(&registry.find_unhealthy(timeout).unwrap()),
            expected_unhealthy(&model.sorted(), model.now, timeout, model.floor)
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(proptest_cases()))]

    #[test]
    fn registry_matches_the_model(ops in ops()) {
        run(&ops)?;
    }
}

/// A fixed sequence through the rarer paths, so that they run even if the random ones miss
/// them: re-registration, un-drain, max_jobs, grace, retirement by every reason.
#[test]
fn model_walks_the_rare_paths() {
    // Workers are picked by `selector % (known + 1)`: with two known, 0 and 1 are them.
    let idx = |i: usize| i;
    let ops = vec![
        Op::Register {
            spec: 2,
            provider: 0,
        },
        Op::Register {
            spec: 3,
            provider: 1,
        },
        Op::UpdateState {
            worker: idx(0),
            to: WorkerState::Ready,
        },
        Op::UpdateState {
            worker: idx(1),
            to: WorkerState::Ready,
        },
        Op::Claim { filter: 0, job: 0 },
        Op::Claim { filter: 0, job: 1 },
        Op::Claim { filter: 0, job: 1 },
        Op::Advance { ms: 600 },
        Op::Release {
            worker: idx(0),
            expected: Some(0),
        },
        Op::Release {
            worker: idx(1),
            expected: None,
        },
        Op::FindForTermination,
        Op::Advance { ms: 6_000 },
        Op::FindForTermination,
        Op::GrantGrace { back_ms: 0 },
        Op::FindUnhealthy { timeout_ms: 10 },
        Op::Advance { ms: 11 },
        Op::FindUnhealthy { timeout_ms: 10 },
        Op::Reregister { worker: idx(2) },
        Op::Unregister {
            worker: idx(0),
            reason: 3,
        },
        Op::Reregister { worker: idx(0) },
    ];
    run(&ops).unwrap();
}
