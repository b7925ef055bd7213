//! Interruption notices (DESIGN.md §12): `notify_interruption`, the deadlines a tick reaches,
//! and the notices a pool's plan counts.

use std::collections::{BTreeMap, BTreeSet};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::ids::{ProviderId, WorkerId};
use crate::state::WorkerState;
use crate::worker::{TerminationReason, Worker};

use super::super::pools::{Requirement, POOL_LABEL};
use super::super::report::TickReport;
use super::destroy_queue::{Destroyed, DestroyedInto, Destroys};
use super::pools::Interruption;
use super::{Budget, WorkerLifecycleManager};

/// Jobs of interrupted workers that need a replacement (see `interruptions_due`).
#[derive(Debug, Default)]
pub(super) struct Replacements {
    /// Per pool, for workers of a pool.
    pub(super) pools: BTreeMap<String, usize>,
    /// Per provider, for workers of no pool.
    pub(super) unpooled: BTreeMap<ProviderId, usize>,
    /// The notices whose worker could not be read (their line is in the tick's decisions).
    pub(super) unread: BTreeSet<WorkerId>,
    /// The same jobs again, per pool label, provider and what their workers offered, in
    /// notice order: a pools tick replaces from these the workers that none of its pools owns,
    /// the scaling target (without pools) those it does not own that its spec satisfies.
    pub(super) offered: Vec<Offered>,
}

/// Jobs of interrupted workers of one pool label (`None`: no pool) and provider that offered
/// the same (see [`Replacements::offered`]).
#[derive(Debug)]
pub(super) struct Offered {
    pub(super) pool: Option<String>,
    pub(super) provider_id: ProviderId,
    /// What the workers offered (count 0): their spec without the pool label.
    pub(super) offered: Requirement,
    pub(super) jobs: usize,
}

/// What the pools' plan counts of the interruption notices (see
/// [`interrupted_per_pool`](WorkerLifecycleManager::interrupted_per_pool)).
#[derive(Debug, Default)]
pub(super) struct Interrupted {
    /// Per pool, the workers under a notice that count as still registered.
    pub(super) per_pool: BTreeMap<String, usize>,
    /// The notices whose worker could not be read (counted in `per_pool`), with their pool
    /// and the registry's error.
    pub(super) unread: Vec<(WorkerId, String, Error)>,
}

impl Replacements {
    fn add(&mut self, notice: &Interruption, jobs: usize) {
        if jobs == 0 {
            return;
        }
        let n = match &notice.pool {
            Some(pool) => self.pools.entry(pool.clone()).or_insert(0),
            None => self.unpooled.entry(notice.provider_id.clone()).or_insert(0),
        };
        *n += jobs;
        let same = |o: &&mut Offered| {
            o.pool == notice.pool
                && o.provider_id == notice.provider_id
                && o.offered == notice.offered
        };
        match self.offered.iter_mut().find(same) {
            Some(o) => o.jobs += jobs,
            None => self.offered.push(Offered {
                pool: notice.pool.clone(),
                provider_id: notice.provider_id.clone(),
                offered: notice.offered.clone(),
                jobs,
            }),
        }
    }
}

impl WorkerLifecycleManager {
    // ----- interruptions ---------------------------------------------------------------------

    /// A notice that `worker_id`'s instance goes away at `deadline` (registry clock): a spot
    /// reclaim, a node drain. The worker drains at once (it takes no new job; an idle one is
    /// retired by the next cleanup; a starting one, holding no job, is terminated now — unless
    /// it reports in meanwhile: checked atomically with the move, it then drains). While
    /// it still runs a job, its pool counts one more job of demand — a replacement that its
    /// template's requirement describes (for a worker of no pool, the scaling target on its
    /// provider counts one more pending job; while pools are set, a worker that none of them
    /// owns — its pool removed, or of no pool — is replaced by what it offered, its spec
    /// without the pool label, on the pools that satisfy it; without pools, a worker the
    /// scaling target does not own — of another pool than its spec's, or of no pool on
    /// another provider or beside a target of a pool — is replaced by the target when its
    /// spec offers what the worker did) — so that a worker is
    /// provisioned (or kept) ahead of the deadline, by priority and with fallback like any
    /// demand; it no longer counts against its pool's `max_workers` (it still counts against
    /// the global one). A job still
    /// running at the deadline is reported lost by the tick that reaches it, and still counts
    /// as its pool's demand in that tick (the host requeues it after the tick: its replacement
    /// is not retired as surplus meanwhile) — and in every tick until one terminates the
    /// worker (a termination that fails leaves the job running). A tick that cannot read the
    /// worker's record (a registry error) counts one job for it too: it may still run its job;
    /// the pools' plan then counts the worker as still registered and interrupted (none of
    /// its pool's capacity), and goes on; the tick's decisions say so, once per notice.
    /// A worker taken out by the notice — still alive at
    /// the deadline, or still starting at the notice — is terminated with reason
    /// [`TerminationReason::Interrupted`] (not `Vanished`, which `reconcile` gives a record
    /// whose instance disappeared unannounced).
    ///
    /// A second notice for a worker under one keeps the earlier of the two deadlines.
    ///
    /// Returns the worker as the notice left it: `Draining`, or `Terminating` for one that
    /// was still starting (destroyed and unregistered by the time the call returns, unless its
    /// destroy failed).
    ///
    /// Leader-only: the notice lives in the leading manager's memory, where its ticks act on
    /// it. A replica that does not lead refuses it and changes nothing (the worker is not
    /// drained): send it to the leader ([`leader`](Self::leader) says which replica leads).
    /// A notice is not handed over with the lease: a new leader knows the worker only as
    /// `Draining` (it finishes its job and retires, without a replacement counted ahead). The
    /// replica that stops leading (lease lost, or [`step_down`](Self::step_down)) forgets its
    /// notices: should it lead again later, it does not act on them (a deadline that passed
    /// under another leader does not terminate a worker that kept heartbeating meanwhile).
    ///
    /// # Errors
    /// [`Error::NotLeader`] on a replica that does not lead; [`Error::NotFound`];
    /// [`Error::InvalidTransition`] for a worker already on its way out (`Terminating`,
    /// `Terminated`).
    pub fn notify_interruption(&self, worker_id: &WorkerId, deadline: Timestamp) -> Result<Worker> {
        // Before anything changes: on a follower, the worker drained and the notice kept where
        // no tick acts on it would lose its replacement and its deadline without a word.
        self.fence()?;
        let w = self
            .registry
            .get(worker_id)?
            .ok_or(Error::NotFound(*worker_id))?;
        // A starting worker holds no job: terminated now — if it still has not reported in
        // (atomically with the check). One that did meanwhile, and may have taken a job since,
        // drains below like a running worker, its job reported lost only if still running at
        // the deadline.
        if w.state.is_starting() {
            if let Some(moved) = self.retire_if_starting(
                &w,
                TerminationReason::Interrupted,
                &mut Budget::unlimited(),
                Destroyed::default().destroys(),
            )? {
                // As the notice left it: on its way out (destroyed and unregistered by now,
                // unless the destroy failed and is retried by the ticks).
                return Ok(moved);
            }
        }
        // A leader-only write, fenced right before it (and by the store, where it keeps the
        // lease): the lease may have been lost since the fence above (the look at the worker
        // is a round trip on a shared store), and a replica that no longer leads must not
        // drain the worker for a notice no tick of its acts on.
        // A drain applied whose reply was lost counts as applied: the notice is kept.
        let answer = self.write(|r| r.update_state(worker_id, WorkerState::Draining));
        let drained = self.drain_looked_at(worker_id, answer)?;
        let pool = w.spec.labels.get(POOL_LABEL).cloned();
        // A second notice for the same instance keeps the earlier deadline: the instance goes
        // at the first (a later one, a duplicate or a retry of the cloud's, must not postpone
        // the replacement's count or the job's report past the real reclaim).
        self.pools
            .lock()
            .interruptions
            .entry(*worker_id)
            .and_modify(|known| known.deadline = known.deadline.min(deadline))
            .or_insert(Interruption {
                deadline,
                pool,
                provider_id: w.handle.provider_id.clone(),
                offered: offered_by(&w),
            });
        Ok(drained)
    }

    /// Workers under an interruption notice, with their deadline.
    pub fn interruptions(&self) -> Vec<(WorkerId, Timestamp)> {
        self.pools
            .lock()
            .interruptions
            .iter()
            .map(|(id, i)| (*id, i.deadline))
            .collect()
    }

    /// Terminates interrupted workers whose deadline passed (reporting the jobs they still
    /// held) and forgets notices about workers gone. Returns the jobs that need a
    /// replacement — those still running before their deadline (or past it, not terminated),
    /// those lost now (the host requeues them after this tick), and one for each notice whose
    /// worker could not be read (it may still run its job) — per pool, per provider for
    /// workers of no pool (the scaling target replaces those of its provider), and per pool
    /// label, provider and offer (for the workers that no pool, or not the target, owns).
    pub(super) fn interruptions_due(
        &self,
        now: Timestamp,
        budget: &mut Budget,
        report: &mut TickReport,
    ) -> Replacements {
        let notices: Vec<(WorkerId, Interruption)> = self
            .pools
            .lock()
            .interruptions
            .iter()
            .map(|(id, i)| (*id, i.clone()))
            .collect();
        let mut running = Replacements::default();
        let mut forget = Vec::new();
        for (id, notice) in notices {
            let w = match self.registry.get(&id) {
                Ok(Some(w)) if !w.state.is_terminal() => w,
                Ok(_) => {
                    forget.push(id);
                    continue;
                }
                Err(e) => {
                    // Unread is not gone: the worker may still run its job, so its replacement
                    // stays demand (an extra worker for a tick is cheaper than a job left
                    // without one). Before, an unread notice counted none, and the pool
                    // retired the replacement as surplus while the job it replaces ran on.
                    report.decisions.push(format!(
                        "interruption of {id}: {e} (its replacement still counts as demand)"
                    ));
                    running.add(&notice, 1);
                    running.unread.insert(id);
                    continue;
                }
            };
            // Fenced before the action is taken (`terminate_worker` fences too): a worker
            // left for the lost lease is no action of the tick's.
            if now >= notice.deadline && self.fence().is_ok() && budget.take() {
                // Straight into the report: a panic in the destroy (a host's registry with a
                // bug) must not take the lost job with it.
                let before = report.lost_jobs.len();
                let destroyed = DestroyedInto {
                    terminated: &mut report.terminated,
                    failed: &mut report.failed,
                };
                let terminated = self.terminate_into(
                    &id,
                    TerminationReason::Interrupted,
                    &mut report.lost_jobs,
                    destroyed,
                );
                match terminated {
                    Ok(()) => {
                        // The host requeues the lost job after this tick: its replacement must
                        // not be retired as surplus in the meantime.
                        let lost: Vec<String> = report.lost_jobs[before..]
                            .iter()
                            .map(|lost| lost.job_id.to_string())
                            .collect();
                        running.add(&notice, lost.len());
                        for job in lost {
                            report.decisions.push(format!(
                                "interruption deadline of worker {id} reached: job {job} lost"
                            ));
                        }
                        forget.push(id);
                        continue;
                    }
                    Err(e) => report
                        .decisions
                        .push(format!("interruption of {id}: terminate failed: {e}")),
                }
            }
            // Before its deadline, or past it but not terminated (the move failed, no action
            // left, the lease lost): its job still runs as far as this tick knows, and its
            // replacement is demand. Before, a failed termination counted none, and the pool
            // retired the replacement as surplus while the job it replaces ran on.
            if w.current_job.is_some() {
                running.add(&notice, 1);
            }
        }
        if !forget.is_empty() {
            let mut set = self.pools.lock();
            for id in forget {
                set.interruptions.remove(&id);
            }
        }
        running
    }

    /// Per pool, the workers under an interruption notice that are still registered: one
    /// `get` per notice (O(notices), not the fleet). A notice whose worker cannot be read (the
    /// registry's `get` fails) counts as still registered, as its replacement counts as demand
    /// (`interruptions_due`): the worker may still run its job, and it is then none of its
    /// pool's capacity and not against its max. It is in `unread`, for the tick to say so;
    /// the plan goes on.
    pub(super) fn interrupted_per_pool(&self) -> Interrupted {
        let notices: Vec<(WorkerId, String)> = self
            .pools
            .lock()
            .interruptions
            .iter()
            .filter_map(|(id, i)| i.pool.clone().map(|p| (*id, p)))
            .collect();
        let mut out = Interrupted::default();
        for (id, pool) in notices {
            match self.registry.get(&id) {
                Ok(None) => continue,
                Ok(Some(_)) => {}
                // Unread is not gone (as for its replacement's demand). Before, the error
                // failed every pool's plan, at every tick for as long as that row could not
                // be read.
                Err(e) => out.unread.push((id, pool.clone(), e)),
            }
            *out.per_pool.entry(pool).or_insert(0) += 1;
        }
        out
    }
}

/// What `w` offers a job, as a requirement (count 0): its spec's labels (the pool label left
/// out: its replacement may come from any pool), capabilities, architecture and resources.
fn offered_by(w: &Worker) -> Requirement {
    let mut labels = w.spec.labels.clone();
    labels.remove(POOL_LABEL);
    Requirement {
        labels,
        capabilities: w.spec.capabilities.clone(),
        resources: w.spec.resources.clone(),
        architecture: Some(w.spec.architecture),
        count: 0,
    }
}
