//! Shared by the bench binaries: the naive baseline registry, the [`Subject`] trait both
//! registries are driven through, and the fleet builders (same ids, same spec, same data for
//! both).
//!
//! Each bench binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hodei_workers::{
    Clock, Error, InMemoryWorkerRegistry, JobId, ManualClock, ProviderId, ProviderType, Result,
    TerminationReason, Worker, WorkerFilter, WorkerHandle, WorkerId, WorkerRegistry,
    WorkerRegistryStats, WorkerSpec, WorkerState,
};
use parking_lot::RwLock;

/// Start of the simulated time (2023-11-14).
pub const T0: u64 = 1_700_000_000_000;

/// The heartbeat benches visit the fleet as `k * STRIDE mod n`: a fixed permutation (a large
/// prime, coprime to every fleet size used) that defeats prefetching without a random
/// generator. The C program (`bench/c/heartbeat.c`) uses the same number.
pub const STRIDE: usize = 999_983;

/// The naive design the library replaces: one `RwLock<HashMap<WorkerId, Worker>>` with the std
/// (SipHash) hasher, the write lock for every call, and full scans for everything that is not a
/// lookup by id (claim, find_unhealthy, find_for_termination, stats).
///
/// Semantics follow the library's where the benches exercise them: `claim` picks the most
/// recently idle matching `Ready` worker and refuses a job some worker already holds;
/// `release` moves `Busy -> Ready` and restarts the idle clock; heartbeat deadlines are strict.
/// `parking_lot::RwLock` is used (as in the library) so that the comparison is between designs,
/// not lock implementations.
#[derive(Debug)]
pub struct NaiveRegistry {
    workers: RwLock<HashMap<WorkerId, Worker>>,
    clock: Arc<dyn Clock>,
}

impl NaiveRegistry {
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        NaiveRegistry {
            workers: RwLock::new(HashMap::new()),
            clock,
        }
    }

    pub fn len(&self) -> usize {
        self.workers.write().len()
    }

    pub fn find_for_termination(&self) -> Vec<(Worker, TerminationReason)> {
        let now = self.clock.now();
        let map = self.workers.write();
        map.values()
            .filter_map(|w| {
                let lifetime = w.created_at + w.spec.max_lifetime.as_millis() as u64;
                let reason = if matches!(
                    w.state,
                    WorkerState::Creating
                        | WorkerState::Connecting
                        | WorkerState::Ready
                        | WorkerState::Busy
                ) && lifetime < now
                {
                    TerminationReason::Lifetime
                } else if w.state == WorkerState::Ready
                    && w.idle_since.unwrap_or(0) + (w.spec.idle_timeout.as_millis() as u64) < now
                {
                    TerminationReason::Idle
                } else if w.state == WorkerState::Draining && w.current_job.is_none() {
                    TerminationReason::Drained
                } else {
                    return None;
                };
                Some((w.clone(), reason))
            })
            .collect()
    }
}

/// The operations the benches drive, implemented by the library and by the baseline.
pub trait Subject: Sync {
    fn register(&self, handle: WorkerHandle, spec: Arc<WorkerSpec>) -> Result<Worker>;
    fn unregister(&self, id: &WorkerId) -> Result<Worker>;
    fn get(&self, id: &WorkerId) -> Result<Option<Worker>>;
    fn heartbeat(&self, id: &WorkerId) -> Result<()>;
    fn update_state(&self, id: &WorkerId, state: WorkerState) -> Result<Worker>;
    fn assign(&self, id: &WorkerId, job: JobId) -> Result<Worker>;
    fn claim(&self, filter: &WorkerFilter, job: JobId) -> Result<Option<Worker>>;
    fn release(&self, id: &WorkerId, expected: Option<&JobId>) -> Result<JobId>;
    fn find_unhealthy(&self, timeout: Duration) -> Result<Vec<Worker>>;
    fn stats(&self) -> Result<WorkerRegistryStats>;
    /// Set-up only (untimed): gives `job` to a `Ready` worker by the cheapest correct route.
    fn make_busy(&self, id: &WorkerId, job: JobId) -> Result<()> {
        self.assign(id, job).map(drop)
    }
}

impl Subject for InMemoryWorkerRegistry {
    fn register(&self, handle: WorkerHandle, spec: Arc<WorkerSpec>) -> Result<Worker> {
        WorkerRegistry::register(self, handle, spec)
    }
    fn unregister(&self, id: &WorkerId) -> Result<Worker> {
        WorkerRegistry::unregister(self, id, TerminationReason::Requested)
    }
    fn get(&self, id: &WorkerId) -> Result<Option<Worker>> {
        WorkerRegistry::get(self, id)
    }
    fn heartbeat(&self, id: &WorkerId) -> Result<()> {
        WorkerRegistry::heartbeat(self, id)
    }
    fn update_state(&self, id: &WorkerId, state: WorkerState) -> Result<Worker> {
        WorkerRegistry::update_state(self, id, state)
    }
    fn assign(&self, id: &WorkerId, job: JobId) -> Result<Worker> {
        WorkerRegistry::assign_to_job(self, id, job)
    }
    fn claim(&self, filter: &WorkerFilter, job: JobId) -> Result<Option<Worker>> {
        WorkerRegistry::claim(self, filter, job)
    }
    fn release(&self, id: &WorkerId, expected: Option<&JobId>) -> Result<JobId> {
        WorkerRegistry::release_from_job(self, id, expected)
    }
    fn find_unhealthy(&self, timeout: Duration) -> Result<Vec<Worker>> {
        WorkerRegistry::find_unhealthy(self, timeout)
    }
    fn stats(&self) -> Result<WorkerRegistryStats> {
        WorkerRegistry::stats(self)
    }
}

/// The library behind an `Arc` (so that a manager can share it) is driven the same way.
impl<T: Subject + Send> Subject for Arc<T> {
    fn register(&self, handle: WorkerHandle, spec: Arc<WorkerSpec>) -> Result<Worker> {
        (**self).register(handle, spec)
    }
    fn unregister(&self, id: &WorkerId) -> Result<Worker> {
        (**self).unregister(id)
    }
    fn get(&self, id: &WorkerId) -> Result<Option<Worker>> {
        (**self).get(id)
    }
    fn heartbeat(&self, id: &WorkerId) -> Result<()> {
        (**self).heartbeat(id)
    }
    fn update_state(&self, id: &WorkerId, state: WorkerState) -> Result<Worker> {
        (**self).update_state(id, state)
    }
    fn assign(&self, id: &WorkerId, job: JobId) -> Result<Worker> {
        (**self).assign(id, job)
    }
    fn claim(&self, filter: &WorkerFilter, job: JobId) -> Result<Option<Worker>> {
        (**self).claim(filter, job)
    }
    fn release(&self, id: &WorkerId, expected: Option<&JobId>) -> Result<JobId> {
        (**self).release(id, expected)
    }
    fn find_unhealthy(&self, timeout: Duration) -> Result<Vec<Worker>> {
        (**self).find_unhealthy(timeout)
    }
    fn stats(&self) -> Result<WorkerRegistryStats> {
        (**self).stats()
    }
    fn make_busy(&self, id: &WorkerId, job: JobId) -> Result<()> {
        (**self).make_busy(id, job)
    }
}

impl Subject for NaiveRegistry {
    fn register(&self, handle: WorkerHandle, spec: Arc<WorkerSpec>) -> Result<Worker> {
        let now = self.clock.now();
        let id = handle.worker_id;
        let mut map = self.workers.write();
        if map.contains_key(&id) {
            return Err(Error::AlreadyExists(id));
        }
        let worker = Worker {
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
        map.insert(id, worker.clone());
        Ok(worker)
    }

    fn unregister(&self, id: &WorkerId) -> Result<Worker> {
        self.workers.write().remove(id).ok_or(Error::NotFound(*id))
    }

    fn get(&self, id: &WorkerId) -> Result<Option<Worker>> {
        Ok(self.workers.write().get(id).cloned())
    }

    fn heartbeat(&self, id: &WorkerId) -> Result<()> {
        let now = self.clock.now();
        let mut map = self.workers.write();
        let w = map.get_mut(id).ok_or(Error::NotFound(*id))?;
        w.last_heartbeat = w.last_heartbeat.max(now);
        Ok(())
    }

    fn update_state(&self, id: &WorkerId, to: WorkerState) -> Result<Worker> {
        let now = self.clock.now();
        let mut map = self.workers.write();
        let w = map.get_mut(id).ok_or(Error::NotFound(*id))?;
        if w.state == to {
            return Ok(w.clone());
        }
        if !w.state.can_update_to(to) {
            return Err(Error::InvalidTransition {
                worker_id: *id,
                from: w.state,
                to,
            });
        }
        w.state = to;
        w.updated_at = now;
        w.state_changed_at = now;
        if to == WorkerState::Ready {
            w.idle_since = Some(now);
        }
        Ok(w.clone())
    }

    fn assign(&self, id: &WorkerId, job: JobId) -> Result<Worker> {
        let now = self.clock.now();
        let mut map = self.workers.write();
        // Invariant 2 costs a full scan in this design.
        if let Some(holder) = map.values().find(|w| w.current_job.as_ref() == Some(&job)) {
            return Err(Error::JobAlreadyAssigned {
                job_id: job,
                worker_id: holder.id,
            });
        }
        let w = map.get_mut(id).ok_or(Error::NotFound(*id))?;
        if w.state != WorkerState::Ready || w.current_job.is_some() {
            return Err(Error::NotAvailable {
                worker_id: *id,
                state: w.state,
            });
        }
        busy(w, job, now);
        Ok(w.clone())
    }

    fn claim(&self, filter: &WorkerFilter, job: JobId) -> Result<Option<Worker>> {
        let now = self.clock.now();
        let mut map = self.workers.write();
        // Find (one full scan: the job check and the most recently idle match), then assign.
        let mut best: Option<(u64, WorkerId)> = None;
        for w in map.values() {
            if w.current_job.as_ref() == Some(&job) {
                return Err(Error::JobAlreadyAssigned {
                    job_id: job,
                    worker_id: w.id,
                });
            }
            if w.state == WorkerState::Ready && w.current_job.is_none() && filter.matches(w, now) {
                let key = (w.idle_since.unwrap_or(0), w.id);
                if best.is_none_or(|b| key > b) {
                    best = Some(key);
                }
            }
        }
        let Some((_, id)) = best else {
            return Ok(None);
        };
        let w = map.get_mut(&id).expect("found above under the same lock");
        busy(w, job, now);
        Ok(Some(w.clone()))
    }

    fn release(&self, id: &WorkerId, expected: Option<&JobId>) -> Result<JobId> {
        let now = self.clock.now();
        let mut map = self.workers.write();
        let w = map.get_mut(id).ok_or(Error::NotFound(*id))?;
        let job = match (&w.current_job, expected) {
            (Some(current), Some(exp)) if current != exp => None,
            (current, _) => current.clone(),
        };
        let Some(job) = job else {
            return Err(Error::NotBusy {
                worker_id: *id,
                expected: expected.cloned(),
            });
        };
        w.current_job = None;
        w.jobs_executed += 1;
        w.updated_at = now;
        if w.state == WorkerState::Busy {
            w.state = WorkerState::Ready;
            w.state_changed_at = now;
            w.idle_since = Some(now);
        }
        Ok(job)
    }

    fn find_unhealthy(&self, timeout: Duration) -> Result<Vec<Worker>> {
        let now = self.clock.now();
        let Some(cutoff) = now.checked_sub(timeout.as_millis() as u64) else {
            return Ok(Vec::new());
        };
        let map = self.workers.write();
        Ok(map
            .values()
            .filter(|w| w.state.heartbeat_monitored() && w.last_heartbeat < cutoff)
            .cloned()
            .collect())
    }

    fn stats(&self) -> Result<WorkerRegistryStats> {
        Ok(WorkerRegistryStats::recount(self.workers.write().values()))
    }

    /// The bench set-up gives unique job ids, so the full scan of `assign` (a million scans of
    /// a million workers at 1M) is skipped here; it is never timed.
    fn make_busy(&self, id: &WorkerId, job: JobId) -> Result<()> {
        let now = self.clock.now();
        let mut map = self.workers.write();
        let w = map.get_mut(id).ok_or(Error::NotFound(*id))?;
        busy(w, job, now);
        Ok(())
    }
}

fn busy(w: &mut Worker, job: JobId, now: u64) {
    w.current_job = Some(job);
    w.state = WorkerState::Busy;
    w.updated_at = now;
    w.state_changed_at = now;
}

/// The spec every bench worker shares. Idle and lifetime limits far away: the simulated clock
/// runs for hours of ticks and only heartbeat expiry is being measured.
pub fn shared_spec() -> Arc<WorkerSpec> {
    Arc::new(
        WorkerSpec::new("ghcr.io/acme/ci-runner:2024.11")
            .with_label("pool", "ci")
            .with_idle_timeout(Duration::from_secs(30 * 24 * 3600))
            .with_max_lifetime(Duration::from_secs(365 * 24 * 3600)),
    )
}

pub fn provider() -> ProviderId {
    ProviderId::new("docker-local").expect("valid provider id")
}

/// `n` handles with fresh ids; `resource_id` looks like a short container id, held in a
/// string of its exact length (as a clone of it is: `format!` leaves room to spare).
pub fn handles(n: usize) -> Vec<WorkerHandle> {
    let provider = provider();
    (0..n)
        .map(|i| {
            let mut resource_id = format!("c-{i:08x}");
            resource_id.shrink_to_fit();
            WorkerHandle::new(provider.clone(), ProviderType::Docker, resource_id)
        })
        .collect()
}

/// Registers every handle and moves each worker to `Ready`. Registration times are spread
/// evenly over `spread` of simulated time on `clock` (as in a fleet that grew over time), so
/// that heartbeat deadlines do not all fall on the same tick. The handles are given as a
/// caller gives them, by value: pass `handles.iter().cloned()` to fill two subjects alike.
pub fn fill<S: Subject>(
    subject: &S,
    clock: &ManualClock,
    handles: impl ExactSizeIterator<Item = WorkerHandle>,
    spec: &Arc<WorkerSpec>,
    spread: Duration,
) -> Vec<WorkerId> {
    let start = clock.now();
    let n = handles.len().max(1) as u64;
    let spread = spread.as_millis() as u64;
    // Its own vector, not one collected in place into the handles' (a `Vec`'s `into_iter`
    // can give its buffer to `collect`): the memory bench counts this one apart.
    let mut ids = Vec::with_capacity(handles.len());
    for (i, h) in handles.enumerate() {
        clock.set(start + spread * i as u64 / n);
        let w = subject.register(h, Arc::clone(spec)).expect("register");
        subject
            .update_state(&w.id, WorkerState::Ready)
            .expect("ready");
        ids.push(w.id);
    }
    ids
}

/// Human label of a fleet size: `10k`, `1M`.
pub fn size_label(n: usize) -> String {
    if n >= 1_000_000 && n % 1_000_000 == 0 {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n % 1_000 == 0 {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

/// Fleet sizes from `HODEI_BENCH_SIZES` (e.g. `10k,1M`), default `10k,1M`.
pub fn sizes() -> Vec<usize> {
    let text = std::env::var("HODEI_BENCH_SIZES").unwrap_or_else(|_| "10k,1M".to_owned());
    text.split(',')
        .filter_map(|s| {
            let s = s.trim();
            let (digits, mult) = if let Some(d) = s.strip_suffix(['M', 'm']) {
                (d, 1_000_000)
            } else if let Some(d) = s.strip_suffix(['k', 'K']) {
                (d, 1_000)
            } else {
                (s, 1)
            };
            digits.parse::<usize>().ok().map(|v| v * mult)
        })
        .filter(|&n| n > 0)
        .collect()
}
