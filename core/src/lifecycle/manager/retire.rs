//! Taking workers out of service: the cleanup (idle, lifetime, drained), drain and terminate.
//! A worker that may hold a job is drained, never terminated, unless the host asks for it.

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::ids::{JobId, WorkerId};
use crate::state::WorkerState;
use crate::worker::{TerminationReason, Worker};

use super::super::report::{CleanupResult, LostJob};
use super::{bump, Budget, WorkerLifecycleManager};

impl WorkerLifecycleManager {
    /// Retires what is due: idle workers (`Ready` past `spec.idle_timeout` since their last
    /// release — heartbeats do not reset it) and workers past `spec.max_lifetime` go
    /// `Terminating` → destroy → unregister; a *busy* worker past its lifetime is moved to
    /// `Draining` instead (its job finishes first); `Draining` workers without a job (drained,
    /// or done with `max_jobs`) are terminated. Destroys due for a retry are retried.
    ///
    /// # Errors
    /// Only when the registry fails to answer what is due.
    pub fn cleanup_workers(&self) -> Result<CleanupResult> {
        self.cleanup_inner(&mut Budget::unlimited())
    }

    pub(super) fn cleanup_inner(&self, budget: &mut Budget) -> Result<CleanupResult> {
        let now = self.registry.now();
        let mut result = CleanupResult::default();
        // Retries first: destroys already under way finish before new work starts, so a
        // capped tick still makes progress.
        let retried = self.destroy_due(None, budget);
        result.terminated.extend(retried.terminated);
        result.failed.extend(retried.failed);
        result.deferred += retried.deferred;
        let due = self.registry.find_for_termination()?;
        let total = due.len();
        for (i, (worker, reason)) in due.into_iter().enumerate() {
            if !budget.take() {
                result.deferred += total - i;
                break;
            }
            if self.retire(&worker, reason, now, &mut result) {
                let destroyed = self.destroy_due(Some(&[worker.id]), budget);
                result.terminated.extend(destroyed.terminated);
                result.failed.extend(destroyed.failed);
            }
        }
        Ok(result)
    }

    /// Takes a worker out of service without losing its job: a worker that may hold (or be
    /// about to get) a job is drained, never terminated.
    pub(super) fn retire(
        &self,
        w: &Worker,
        reason: TerminationReason,
        now: Timestamp,
        out: &mut CleanupResult,
    ) -> bool {
        let terminating = match w.state {
            WorkerState::Creating | WorkerState::Connecting => self
                .registry
                .update_state(&w.id, WorkerState::Terminating)
                .is_ok(),
            WorkerState::Ready => {
                // Ready -> Draining first: a `claim` racing with us either lost (the worker
                // takes no job any more) or won (the worker drains after its job). Going to
                // Terminating directly could kill a job claimed a moment ago.
                match self.registry.update_state(&w.id, WorkerState::Draining) {
                    Ok(drained) if drained.current_job.is_none() => self
                        .registry
                        .update_state(&w.id, WorkerState::Terminating)
                        .is_ok(),
                    Ok(_) => {
                        out.drained.push(w.id);
                        false
                    }
                    Err(_) => false,
                }
            }
            WorkerState::Busy => {
                if self
                    .registry
                    .update_state(&w.id, WorkerState::Draining)
                    .is_ok()
                {
                    out.drained.push(w.id);
                }
                false
            }
            // A draining worker never gains a job, so "no job" seen once stays true.
            WorkerState::Draining => {
                w.current_job.is_none()
                    && self
                        .registry
                        .update_state(&w.id, WorkerState::Terminating)
                        .is_ok()
            }
            WorkerState::Terminating | WorkerState::Terminated => true,
        };
        if terminating {
            self.queue_destroy(w, reason, now);
        }
        terminating
    }

    /// Moves `w` to `Terminating` and says exactly which job it lost, if any.
    ///
    /// A worker that may hold a job goes through `Draining` first: from there it can gain no job
    /// (no claim picks it), only lose one by a release, which counts in `jobs_executed`. So the
    /// job seen on entering `Draining` was lost by the move to `Terminating` unless a release
    /// came in between — exactly the job the registry reports with `JobLost`, with no window
    /// for a claim or a release to slip through unreported. (`Creating`/`Connecting` workers
    /// hold no job and move directly.)
    pub(super) fn take_out_of_service(&self, w: &Worker) -> Result<Option<JobId>> {
        if w.state.is_starting() {
            self.registry
                .update_state(&w.id, WorkerState::Terminating)?;
            return Ok(None);
        }
        let draining = self.registry.update_state(&w.id, WorkerState::Draining)?;
        let terminating = self
            .registry
            .update_state(&w.id, WorkerState::Terminating)?;
        Ok(draining
            .current_job
            .filter(|_| terminating.jobs_executed == draining.jobs_executed))
    }

    /// Moves a worker to `Draining`: it takes no new job, finishes the one it holds, and is
    /// then terminated by the cleanup (reason `Drained`).
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::InvalidTransition`] from `Creating`, `Connecting` or a
    /// terminal state.
    pub fn drain_worker(&self, id: &WorkerId) -> Result<Worker> {
        self.registry.update_state(id, WorkerState::Draining)
    }

    /// Terminates a worker now, whatever it is doing: `Terminating` (a job it holds is
    /// reported lost), provider destroy, unregister with `reason`. A failed destroy leaves it
    /// `Terminating`, retried by later ticks. Use [`drain_worker`](Self::drain_worker) to let
    /// a job finish first.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    pub fn terminate_worker(
        &self,
        id: &WorkerId,
        reason: TerminationReason,
    ) -> Result<CleanupResult> {
        let now = self.registry.now();
        let worker = self.registry.get(id)?.ok_or(Error::NotFound(*id))?;
        let mut result = CleanupResult::default();
        if !worker.state.is_terminal() {
            match self.take_out_of_service(&worker) {
                Ok(Some(job)) => {
                    bump(&self.counters.lost_jobs, 1);
                    result.lost_jobs.push(LostJob {
                        worker_id: *id,
                        job_id: job,
                    });
                }
                Ok(None) | Err(Error::InvalidTransition { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.queue_destroy(&worker, reason, now);
        // Due now, whatever an earlier failure scheduled: the host asked for it.
        self.destroys.lock().expedite(id, now);
        let destroyed = self.destroy_due(Some(&[*id]), &mut Budget::unlimited());
        result.terminated = destroyed.terminated;
        result.failed = destroyed.failed;
        Ok(result)
    }
}
