//! Taking workers out of service: the cleanup (idle, lifetime, drained), drain and terminate.
//! A worker that may hold a job is drained, never terminated, unless the host asks for it.

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::ids::WorkerId;
use crate::registry::{TransitionGuard, Transitioned};
use crate::state::WorkerState;
use crate::worker::{TerminationReason, Worker};

use super::super::report::{CleanupResult, LostJob, TickReport};
use super::destroy_queue::{DestroyedInto, Destroys};
use super::{bump, Budget, WorkerLifecycleManager};

/// The states a worker is in until it is on its way out.
pub(super) const LIVE: [WorkerState; 5] = [
    WorkerState::Creating,
    WorkerState::Connecting,
    WorkerState::Ready,
    WorkerState::Busy,
    WorkerState::Draining,
];

impl WorkerLifecycleManager {
    /// Retires what is due: idle workers (`Ready` past `spec.idle_timeout` since their last
    /// release — heartbeats do not reset it) and workers past `spec.max_lifetime` go
    /// `Terminating` → destroy → unregister; a *busy* worker past its lifetime is moved to
    /// `Draining` instead (its job finishes first); `Draining` workers without a job (drained,
    /// or done with `max_jobs`) are terminated. Destroys due for a retry are retried.
    ///
    /// Every decision is applied atomically against the record as it is *now*
    /// ([`WorkerRegistry::transition_if`](crate::WorkerRegistry::transition_if)), never on the
    /// list read at the start: an idle worker claimed (or claimed and released) meanwhile is
    /// left alone; a worker past its lifetime that took a job meanwhile is drained. So cleanup
    /// never loses a job.
    ///
    /// `Terminating`/`Terminated` records nobody is destroying yet — moved there by the host,
    /// or restored so from a snapshot — are queued and destroyed by the same call (unregistered
    /// with reason `Requested`). Checking for them costs O(1) when there are none.
    ///
    /// # Errors
    /// Only when the registry fails to answer what is due, and no destroy was retried before
    /// (otherwise the result says what they did, and what is due waits for the next call).
    pub fn cleanup_workers(&self) -> Result<CleanupResult> {
        let mut result = CleanupResult::default();
        match self.cleanup_inner(&mut Budget::unlimited(), &mut result) {
            Some(e) if result.terminated.is_empty() && result.failed.is_empty() => Err(e),
            _ => Ok(result),
        }
    }

    /// The cleanup, into `result`, and the error that cut it short, if any: what it did before
    /// is in the result all the same (the destroys it retried). Each worker is written into
    /// `result` right after its action, so that a panic midway leaves in it what was done
    /// before (a tick reports it, see `tick_with`).
    pub(super) fn cleanup_inner(
        &self,
        budget: &mut Budget,
        result: &mut CleanupResult,
    ) -> Option<Error> {
        crate::trace::span!("cleanup");
        if let Err(e) = self.fence() {
            return Some(e);
        }
        let now = self.registry.now();
        // Terminal records nobody destroys yet (moved there by the host, restored so) join the
        // queue first, so that this very call destroys them.
        if let Err(e) = self.adopt_terminal(now) {
            return Some(e);
        }
        // Retries first: destroys already under way finish before new work starts, so a
        // capped tick still makes progress.
        result.deferred += self.destroy_due(None, budget, result.destroys());
        // Failing here must not drop the destroys just retried: they are unregistered now.
        let due = match self.registry.find_for_termination() {
            Ok(due) => due,
            Err(e) => return Some(e),
        };
        let total = due.len();
        for (i, (worker, reason)) in due.into_iter().enumerate() {
            // Fenced before the action is taken: a worker left for the lost lease is no action
            // of the tick's.
            if self.fence().is_err() || !budget.take() {
                result.deferred += total - i;
                break;
            }
            if self.retire(&worker, reason, now, &mut result.drained) {
                self.destroy_due(Some(&[worker.id]), budget, result.destroys());
            }
        }
        None
    }

    /// Retires the idle workers a scale-down planned (`candidates`, longest idle first), each
    /// fenced and within the tick's `budget`, then destroys them, into `report`. Only a worker
    /// still idle since it was planned is retired ([`retire`](Self::retire) checks that
    /// atomically: one claimed, or claimed and released meanwhile, is left alone). A replica
    /// that lost the lease retires nothing, and spends no action (nor a registry call) on the
    /// workers it leaves. `retired_some` runs once, before the destroys, when any worker was
    /// retired (the caller's cooldown stamp). The scaling target's and the pools' scale-down.
    pub(super) fn retire_planned(
        &self,
        candidates: &[Worker],
        now: Timestamp,
        budget: &mut Budget,
        report: &mut TickReport,
        retired_some: impl FnOnce(),
    ) {
        let mut retired = Vec::new();
        for w in candidates {
            // Fenced first: a worker left for the lost lease is no action of the tick's.
            if self.fence().is_err() || !budget.take() {
                break;
            }
            if self.retire(w, TerminationReason::ScaledDown, now, &mut report.drained) {
                retired.push(w.id);
            }
        }
        if retired.is_empty() {
            return;
        }
        retired_some();
        self.destroy_due(Some(&retired), budget, report.destroys());
    }

    /// Applies a retirement decision taken on `w` — a view that may be stale by now — against
    /// the record as it is *now*, atomically (`transition_if`), without losing a job:
    /// - `Idle` / `ScaledDown`: only a worker still `Ready`, idle since the same instant (not
    ///   claimed, nor claimed and released, meanwhile) goes `Terminating`; otherwise it is left
    ///   alone;
    /// - `Drained` / `MaxJobs`: only a worker still `Draining` without a job;
    /// - `Lifetime` (past `max_lifetime`, which stays true): a worker holding a job is drained
    ///   (`Busy` -> `Draining`, pushed to `drained`), one without is terminated; when the
    ///   worker moved between the look and the move (reported in, was claimed, released), it
    ///   is looked at again.
    ///
    /// A move answered `Backend` whose record is found moved all the same (its reply lost) is
    /// taken as applied ([`transition_looked_at`](Self::transition_looked_at)).
    ///
    /// Returns whether the worker is `Terminating` and queued for destruction.
    pub(super) fn retire(
        &self,
        w: &Worker,
        reason: TerminationReason,
        now: Timestamp,
        drained: &mut Vec<WorkerId>,
    ) -> bool {
        let mut seen = w.clone();
        // A few looks at most: each failed guard means the host moved the worker meanwhile.
        for _ in 0..4 {
            let (guard, to) = match (reason, seen.state) {
                (_, WorkerState::Terminating | WorkerState::Terminated) => {
                    self.queue_destroy(&seen, reason, now);
                    return true;
                }
                (TerminationReason::Idle | TerminationReason::ScaledDown, WorkerState::Ready) => {
                    let Some(since) = seen.idle_since else {
                        return false;
                    };
                    (
                        TransitionGuard::new()
                            .in_state(WorkerState::Ready)
                            .idle_since(since)
                            .without_job(),
                        WorkerState::Terminating,
                    )
                }
                (TerminationReason::Idle | TerminationReason::ScaledDown, _) => return false,
                (_, WorkerState::Draining) if seen.current_job.is_none() => (
                    TransitionGuard::new()
                        .in_state(WorkerState::Draining)
                        .without_job(),
                    WorkerState::Terminating,
                ),
                // Draining with its job: the cleanup retires it once the job is done.
                (_, WorkerState::Draining) => return false,
                (TerminationReason::Drained | TerminationReason::MaxJobs, _) => return false,
                (_, WorkerState::Busy) => (
                    TransitionGuard::new().in_state(WorkerState::Busy),
                    WorkerState::Draining,
                ),
                (_, state) => (
                    TransitionGuard::new().in_state(state).without_job(),
                    WorkerState::Terminating,
                ),
            };
            match self.transition_looked_at(&seen, &guard, to) {
                Ok(Some(_)) if to == WorkerState::Draining => {
                    drained.push(w.id);
                    return false;
                }
                Ok(Some(moved)) => {
                    // `without_job` held: nothing was lost by this move.
                    self.queue_destroy(&moved.worker, reason, now);
                    return true;
                }
                Ok(None) if reason == TerminationReason::Lifetime => {
                    // Past its lifetime whatever it does now: look again.
                    match self.registry.get(&w.id) {
                        Ok(Some(fresh)) => seen = fresh,
                        _ => return false,
                    }
                }
                // Idle or drained no more, gone, or a failing backend: nothing to do now.
                _ => return false,
            }
        }
        false
    }

    /// Moves worker `seen` (the record as read before) to `Terminating` if it is still in one
    /// of `states`, atomically with the check, and says exactly which job it lost by the move
    /// (the one the registry reports with `JobLost`). `Ok(None)`: it moved on meanwhile
    /// (reported in, left, or is already on its way out), nothing changed. A move applied
    /// whose reply was lost counts as applied (see
    /// [`transition_looked_at`](Self::transition_looked_at)).
    pub(super) fn take_out_of_service(
        &self,
        seen: &Worker,
        states: &[WorkerState],
    ) -> Result<Option<Transitioned>> {
        let guard = TransitionGuard {
            states: states.to_vec(),
            ..TransitionGuard::default()
        };
        self.transition_looked_at(seen, &guard, WorkerState::Terminating)
    }

    /// The manager's conditional move of `seen` (the record as read before the move) to `to`:
    /// [`transition_if`](crate::WorkerRegistry::transition_if), a leader-only write.
    ///
    /// A `Backend` answer may come from a move that was applied all the same, its reply lost
    /// (PostgreSQL committed, then the connection dropped: DESIGN.md, "Lost replies"): the
    /// registry has then emitted `JobLost` for the job the move took, and taking the answer
    /// for a failure would leave that job in no result and the worker queued for destroy
    /// only by a later look (under reason `Requested`). So the record is looked at once
    /// (`get`), as `provision_worker` does after an ambiguous `register` and the destroy queue
    /// after an ambiguous `unregister`:
    /// - it is in `to` now (for a move to `Terminating`: terminal, or gone — unregistered
    ///   since): the move was applied, and the answer is the `Ok(Some(_))` the call would have
    ///   given — the record as read now (or, gone, `seen` in `to` without a job), `from` =
    ///   `seen.state`;
    /// - it is in any other state, or the look fails too: the error is returned as it came
    ///   (not applied, or not known: a `Terminating` record left so is queued by the next
    ///   cleanup's check of the terminal records, `adopt_terminal`).
    ///
    /// The job the move took (`lost_job`) is not in the record any more (a terminal move
    /// clears it): it is the one `seen` held, which is the one the move took unless the worker
    /// changed jobs in between. A job ends only by its release (which counts it in
    /// `jobs_executed`) or by a terminal move, so `seen`'s job is reported only when the record
    /// read now shows the same `jobs_executed` (or is gone, which leaves nothing to compare):
    /// a job released in between finished, and requeueing it would run it twice. A job
    /// claimed after such a release and lost by the move is then in no result (its `JobLost`
    /// event is the only word of it): the record keeps no trace of it. And a record the host
    /// moved to `Terminating` itself between the look and this move is taken for this move's
    /// (the registry cannot tell them apart): its job is reported by this call too.
    pub(super) fn transition_looked_at(
        &self,
        seen: &Worker,
        guard: &TransitionGuard,
        to: WorkerState,
    ) -> Result<Option<Transitioned>> {
        let error = match self.write(|r| r.transition_if(&seen.id, guard, to)) {
            Err(e @ Error::Backend(_)) => e,
            answer => return answer,
        };
        let Ok(now) = self.registry.get(&seen.id) else {
            return Err(error);
        };
        // Moved since `seen`: a record already where the move leads tells nothing.
        let applied = match &now {
            Some(w) if to.is_terminal() => w.state.is_terminal() && !seen.state.is_terminal(),
            Some(w) => w.state == to && seen.state != to,
            None => to.is_terminal() && !seen.state.is_terminal(),
        };
        if !applied {
            return Err(error);
        }
        let same_jobs = now
            .as_ref()
            .is_none_or(|w| w.jobs_executed == seen.jobs_executed);
        let lost_job = if to.is_terminal() && same_jobs {
            seen.current_job.clone()
        } else {
            None
        };
        let worker = now.unwrap_or_else(|| {
            let mut gone = seen.clone();
            gone.state = to;
            gone.current_job = None;
            gone
        });
        Ok(Some(Transitioned {
            worker,
            from: seen.state,
            lost_job,
        }))
    }

    /// Terminates worker `seen` (as read before) with `reason` if it still has not reported in
    /// (`Creating`/`Connecting`: it holds no job), atomically with the check, then destroys it.
    /// `Ok(Some(worker))`: it was taken out of service (the record as the move left it).
    /// `Ok(None)`: it reported in meanwhile (and may have taken a job since) or is on its way
    /// out already: nothing changed — the caller drains it rather than lose a job, where
    /// [`terminate_worker`](Self::terminate_worker) would take it out of service whatever it
    /// does by now.
    /// What its destroy did is written into `destroyed` (nothing when `budget` ran out: the
    /// cleanup destroys it).
    pub(super) fn retire_if_starting(
        &self,
        seen: &Worker,
        reason: TerminationReason,
        budget: &mut Budget,
        destroyed: DestroyedInto<'_>,
    ) -> Result<Option<Worker>> {
        self.fence()?;
        let starting = [WorkerState::Creating, WorkerState::Connecting];
        let Some(moved) = self.take_out_of_service(seen, &starting)? else {
            return Ok(None);
        };
        let now = self.registry.now();
        self.queue_destroy(&moved.worker, reason, now);
        self.destroy_due(Some(&[seen.id]), budget, destroyed);
        Ok(Some(moved.worker))
    }

    /// Moves a worker to `Draining`: it takes no new job, finishes the one it holds, and is
    /// then terminated by the cleanup (reason `Drained`).
    ///
    /// A `Backend` answer may come from a move applied all the same, its reply lost: the
    /// record is then looked at, and found `Draining` the call answers `Ok` with it (as a drain
    /// of a worker already draining does).
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::InvalidTransition`] from `Creating`, `Connecting` or a
    /// terminal state; the registry's error when the move failed (and, after a `Backend`
    /// answer, the record is not found `Draining`).
    pub fn drain_worker(&self, id: &WorkerId) -> Result<Worker> {
        let answer = self.registry.update_state(id, WorkerState::Draining);
        self.drain_looked_at(id, answer)
    }

    /// `answer` of a move of `id` to `Draining`, unless it is `Backend` and the record, looked
    /// at once, is `Draining`: then the move was applied (its reply lost, DESIGN.md "Lost
    /// replies") and the record is the answer. Otherwise the answer stands.
    pub(super) fn drain_looked_at(&self, id: &WorkerId, answer: Result<Worker>) -> Result<Worker> {
        match answer {
            Err(e @ Error::Backend(_)) => match self.registry.get(id) {
                Ok(Some(w)) if w.state == WorkerState::Draining => Ok(w),
                _ => Err(e),
            },
            answer => answer,
        }
    }

    /// Terminates a worker now, whatever it is doing: `Terminating` (a job it holds is
    /// reported lost), provider destroy, unregister with `reason`. A failed destroy leaves it
    /// `Terminating`, retried by later ticks (one the provider refused for its fencing token
    /// is left to the replica that leads now, and is in neither list of the result). Use
    /// [`drain_worker`](Self::drain_worker) to let a job finish first.
    ///
    /// A move to `Terminating` answered `Backend` may have been applied all the same (its
    /// reply lost): the record is looked at, and found `Terminating` (or gone) the call goes on
    /// as if the move had answered `Ok` — the job the worker held when it was read is in
    /// `lost_jobs` (unless it ran a job to its end in between), and the worker is destroyed.
    ///
    /// # Errors
    /// [`Error::NotFound`]; the registry's error when the move failed (or the look at the
    /// record after a `Backend` answer failed too: a `Terminating` record is then queued by the
    /// next cleanup).
    pub fn terminate_worker(
        &self,
        id: &WorkerId,
        reason: TerminationReason,
    ) -> Result<CleanupResult> {
        let mut result = CleanupResult::default();
        let destroyed = DestroyedInto {
            terminated: &mut result.terminated,
            failed: &mut result.failed,
        };
        self.terminate_into(id, reason, &mut result.lost_jobs, destroyed)?;
        Ok(result)
    }

    /// [`terminate_worker`](Self::terminate_worker), written into the caller's lists as it
    /// goes: the job it took into `lost_jobs` before the destroy (whose calls out may panic),
    /// the destroy's outcome into `destroyed`. A tick's interruption deadlines write straight
    /// into its report.
    pub(super) fn terminate_into(
        &self,
        id: &WorkerId,
        reason: TerminationReason,
        lost_jobs: &mut Vec<LostJob>,
        destroyed: DestroyedInto<'_>,
    ) -> Result<()> {
        self.fence()?;
        let now = self.registry.now();
        let worker = self.registry.get(id)?.ok_or(Error::NotFound(*id))?;
        // Whatever it does by now (the look above may be stale): the job it holds at the move
        // is the one reported.
        // A move applied whose reply was lost counts as applied: its job is reported below.
        match self.take_out_of_service(&worker, &LIVE) {
            Ok(Some(moved)) => {
                if let Some(job) = moved.lost_job {
                    bump(&self.counters.lost_jobs, 1);
                    lost_jobs.push(LostJob {
                        worker_id: *id,
                        job_id: job,
                    });
                }
            }
            // Already Terminating/Terminated: queued below all the same.
            Ok(None) | Err(Error::InvalidTransition { .. }) => {}
            Err(e) => return Err(e),
        }
        self.queue_destroy(&worker, reason, now);
        // Due now, whatever an earlier failure scheduled: the host asked for it.
        self.destroys.lock().expedite(id, now);
        self.destroy_due(Some(&[*id]), &mut Budget::unlimited(), destroyed);
        Ok(())
    }
}
