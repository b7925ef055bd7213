//! The destroy queue: `Terminating` workers whose instance must still be destroyed, with the
//! retry schedule of failed destroys — and the manager's side of it (provider destroy outside
//! every lock, then unregister).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::clock::{millis, Timestamp};
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::ids::WorkerId;
use crate::worker::{TerminationReason, Worker, WorkerHandle};

use super::super::config::backoff_delay;
use super::super::report::{
    CleanupResult, DestroyFailure, HealthCheckResult, TerminatedWorker, TickReport,
};
use super::{bump, Budget, WorkerLifecycleManager};

/// Releases the entries a [`destroy_due`](WorkerLifecycleManager::destroy_due) picked and did
/// not finish when it unwinds (a host's registry that panics): they would stay "in progress"
/// for ever, never picked again, their records `Terminating` for good — under a ticker or a C
/// or Python host, which survive the panic and go on with the manager. Due again after the
/// initial retry delay, no attempt counted. (No registry call here: a second panic while
/// unwinding would abort the process.)
struct ReleaseOnUnwind<'a> {
    destroys: &'a Mutex<DestroyQueue>,
    /// The picked ids not finished yet, in the order they are destroyed.
    ids: VecDeque<WorkerId>,
    next_at: Timestamp,
}

impl Drop for ReleaseOnUnwind<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut queue = self.destroys.lock();
        for id in &self.ids {
            queue.release_unfinished(id, self.next_at);
        }
    }
}

/// A `Terminating` worker whose instance still has to be destroyed.
#[derive(Debug, Clone)]
pub(super) struct DestroyEntry {
    pub(super) handle: Arc<WorkerHandle>,
    pub(super) reason: TerminationReason,
    /// Failed attempts so far.
    pub(super) attempts: u32,
    pub(super) next_at: Timestamp,
    /// A thread is calling the provider for it right now.
    in_progress: bool,
    /// The provider confirmed the instance gone; only the unregister is left (it failed, or
    /// its answer was lost). Retries unregister without calling the provider again.
    instance_gone: bool,
    /// Kept only for the destroy in progress (the lease was lost meanwhile: the rest of the
    /// queue was forgotten): dropped when that destroy releases it, unless a later term
    /// queued the worker again meanwhile.
    forgotten: bool,
}

/// The workers to destroy, each with its retry schedule; at most one entry per worker, and an
/// entry picked for destruction is not picked again until it is released (by
/// [`fail`](Self::fail), [`postpone`](Self::postpone) or [`remove`](Self::remove)).
///
/// Plain data behind the manager's mutex: every method is a few map operations, no call out.
///
/// Hashed with foldhash: the periodic comparison with the registry's terminal records looks
/// every terminal id up here.
#[derive(Debug, Default)]
pub(super) struct DestroyQueue {
    entries: HashMap<WorkerId, DestroyEntry, foldhash::fast::RandomState>,
}

impl DestroyQueue {
    /// Queued workers (including those being destroyed right now).
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether `id` is queued (being destroyed or not).
    pub(super) fn contains(&self, id: &WorkerId) -> bool {
        self.entries.contains_key(id)
    }

    /// Queues `id` for destruction due `now`, unless it is queued already (then its entry, with
    /// its attempts and schedule, is kept). Returns whether it was newly queued.
    pub(super) fn queue(
        &mut self,
        id: WorkerId,
        handle: &Arc<WorkerHandle>,
        reason: TerminationReason,
        now: Timestamp,
    ) -> bool {
        match self.entries.entry(id) {
            // Being destroyed by a thread of a term that forgot the queue: this term adopts
            // it, but does not destroy it again while that call is in flight.
            std::collections::hash_map::Entry::Occupied(mut slot) if slot.get().forgotten => {
                slot.get_mut().forgotten = false;
                true
            }
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(DestroyEntry {
                    handle: Arc::clone(handle),
                    reason,
                    attempts: 0,
                    next_at: now,
                    in_progress: false,
                    instance_gone: false,
                    forgotten: false,
                });
                true
            }
        }
    }

    /// Makes `id` due at `now`, whatever an earlier failure scheduled.
    pub(super) fn expedite(&mut self, id: &WorkerId, now: Timestamp) {
        if let Some(entry) = self.entries.get_mut(id) {
            entry.next_at = now;
        }
    }

    /// Picks the entries due at `now` (only those in `only`, when given) that nobody is
    /// destroying, earliest first, one budget action each; marks them in progress. Returns them
    /// and how many due ones the budget left out.
    pub(super) fn pick_due(
        &mut self,
        only: Option<&[WorkerId]>,
        now: Timestamp,
        budget: &mut Budget,
    ) -> (Vec<(WorkerId, DestroyEntry)>, usize) {
        let entries = &mut self.entries;
        let mut due: Vec<(WorkerId, Timestamp)> = match only {
            Some(ids) => ids
                .iter()
                .filter_map(|id| entries.get(id).map(|e| (*id, e.next_at)))
                .collect(),
            None => entries.iter().map(|(id, e)| (*id, e.next_at)).collect(),
        };
        due.retain(|(id, next_at)| {
            *next_at <= now && entries.get(id).is_some_and(|e| !e.in_progress)
        });
        due.sort_by_key(|(id, at)| (*at, *id));
        let mut picked = Vec::with_capacity(due.len());
        let mut deferred = 0;
        for (i, (id, _)) in due.iter().enumerate() {
            if !budget.take() {
                deferred = due.len() - i;
                break;
            }
            if let Some(e) = entries.get_mut(id) {
                e.in_progress = true;
                picked.push((*id, e.clone()));
            }
        }
        (picked, deferred)
    }

    /// Records a failed attempt of a picked entry: releases it, due again after the back-off
    /// for its attempts (`initial` doubling up to `max`). Returns `(attempts, next_at)`, or
    /// `None` when the entry left the queue meanwhile.
    pub(super) fn fail(
        &mut self,
        id: &WorkerId,
        now: Timestamp,
        initial: std::time::Duration,
        max: std::time::Duration,
    ) -> Option<(u32, Timestamp)> {
        if self.drop_forgotten(id) {
            return None;
        }
        let live = self.entries.get_mut(id)?;
        live.attempts = live.attempts.saturating_add(1);
        live.next_at = now.saturating_add(millis(backoff_delay(initial, max, live.attempts)));
        live.in_progress = false;
        Some((live.attempts, live.next_at))
    }

    /// Releases a picked entry without counting an attempt: due again at `next_at`.
    pub(super) fn postpone(&mut self, id: &WorkerId, next_at: Timestamp) {
        if self.drop_forgotten(id) {
            return;
        }
        if let Some(entry) = self.entries.get_mut(id) {
            entry.in_progress = false;
            entry.next_at = next_at;
        }
    }

    /// Releases a picked entry its destroy left in progress (it unwound): due again at
    /// `next_at`. An entry the destroy released before it unwound keeps its schedule.
    fn release_unfinished(&mut self, id: &WorkerId, next_at: Timestamp) {
        if self.entries.get(id).is_some_and(|e| e.in_progress) {
            self.postpone(id, next_at);
        }
    }

    /// Releases a picked entry whose instance the provider confirmed gone but whose record
    /// could not be removed: due again at `next_at`, for the unregister alone.
    pub(super) fn unregister_later(&mut self, id: &WorkerId, next_at: Timestamp) {
        if self.drop_forgotten(id) {
            return;
        }
        if let Some(entry) = self.entries.get_mut(id) {
            entry.in_progress = false;
            entry.instance_gone = true;
            entry.next_at = next_at;
        }
    }

    /// Forgets the queue (the lease was lost: the next leader rebuilds it from the registry),
    /// except the entries a thread is destroying right now: until that destroy returns, the
    /// worker is not picked again, should this replica lead again meanwhile and its takeover
    /// queue the `Terminating` record afresh (a second provider call for one worker).
    /// Released by that thread, such an entry leaves the queue.
    pub(super) fn forget(&mut self) {
        self.entries.retain(|_, e| {
            e.forgotten = true;
            e.in_progress
        });
    }

    /// Drops `id` when its entry was forgotten (see [`forget`](Self::forget)); says whether.
    fn drop_forgotten(&mut self, id: &WorkerId) -> bool {
        if self.entries.get(id).is_some_and(|e| e.forgotten) {
            self.entries.remove(id);
            return true;
        }
        false
    }

    /// Takes `id` off the queue.
    pub(super) fn remove(&mut self, id: &WorkerId) -> Option<DestroyEntry> {
        self.entries.remove(id)
    }

    /// Takes `id` off the queue unless a thread is destroying it right now. Returns `false`
    /// (and keeps the entry) only in that case: that destroy decides the worker's fate.
    pub(super) fn withdraw(&mut self, id: &WorkerId) -> bool {
        self.withdraw_entry(id).is_some()
    }

    /// [`withdraw`](Self::withdraw), handing the entry taken off (`Some(None)`: there was
    /// none) to the caller, who may [`put_back`](Self::put_back) it should what it withdrew
    /// it for fail; `None` when a thread is destroying `id` right now (the entry is kept).
    pub(super) fn withdraw_entry(&mut self, id: &WorkerId) -> Option<Option<DestroyEntry>> {
        match self.entries.get(id) {
            Some(e) if e.in_progress => None,
            _ => Some(self.entries.remove(id)),
        }
    }

    /// Puts back an entry [`withdraw_entry`](Self::withdraw_entry) took off, as it was (its
    /// attempts, its schedule, whether its instance is confirmed gone), unless `id` was queued
    /// again meanwhile (that entry is kept).
    pub(super) fn put_back(&mut self, id: WorkerId, entry: DestroyEntry) {
        self.entries.entry(id).or_insert(entry);
    }

    /// Entries that are not `known`, that nobody is destroying right now, and whose instance
    /// is not confirmed gone (those wait for their own retry, which reports the worker
    /// terminated when its record is gone).
    pub(super) fn idle_outside(&self, known: impl Fn(&WorkerId) -> bool) -> Vec<WorkerId> {
        self.entries
            .iter()
            .filter(|(id, e)| !e.in_progress && !e.instance_gone && !known(id))
            .map(|(id, _)| *id)
            .collect()
    }

    /// `(worker, attempts, next_at)` of every entry, earliest first.
    pub(super) fn pending(&self) -> Vec<(WorkerId, u32, Timestamp)> {
        let mut out: Vec<_> = self
            .entries
            .iter()
            .map(|(id, e)| (*id, e.attempts, e.next_at))
            .collect();
        out.sort_by_key(|(id, _, at)| (*at, *id));
        out
    }
}

/// Destroys' outcome kept on its own (a pool drain's, until the tick reports it).
#[derive(Debug, Default)]
pub(super) struct Destroyed {
    pub(super) terminated: Vec<TerminatedWorker>,
    pub(super) failed: Vec<DestroyFailure>,
}

/// Where destroys write what they did — the workers destroyed and unregistered, the destroys
/// that failed — each entry pushed right after its destroy: into a call's result, or straight
/// into the tick's report ([`Destroys`]).
///
/// Why not lists returned at the end of the call: a panic midway (a host's own registry with a
/// bug, in the unregister of the next worker) would take them with it, and the tick, which
/// catches such a panic and returns its report, would not say what was done.
pub(super) struct DestroyedInto<'a> {
    pub(super) terminated: &'a mut Vec<TerminatedWorker>,
    pub(super) failed: &'a mut Vec<DestroyFailure>,
}

/// A result with the two lists of [`DestroyedInto`].
pub(super) trait Destroys {
    /// Its lists, for destroys to write into.
    fn destroys(&mut self) -> DestroyedInto<'_>;
}

macro_rules! destroys_into_fields {
    ($($ty:ty),*) => {$(
        impl Destroys for $ty {
            fn destroys(&mut self) -> DestroyedInto<'_> {
                DestroyedInto {
                    terminated: &mut self.terminated,
                    failed: &mut self.failed,
                }
            }
        }
    )*};
}
destroys_into_fields!(Destroyed, TickReport, HealthCheckResult, CleanupResult);

impl WorkerLifecycleManager {
    /// Queues a `Terminating` worker for destruction (keeps an existing entry and its count).
    pub(super) fn queue_destroy(&self, w: &Worker, reason: TerminationReason, now: Timestamp) {
        self.destroys.lock().queue(w.id, &w.handle, reason, now);
    }

    /// Queues every `Terminating`/`Terminated` record nobody is destroying yet: moved there by
    /// the host, or restored so from a snapshot (reason `Requested`). Returns the workers it
    /// queued.
    ///
    /// Cost: O(1) in the fleet size when the registry's count of terminal records equals the
    /// queue's size — the usual case, none at all. Otherwise the ids of the terminal records
    /// ([`WorkerRegistry::terminal_ids`](crate::WorkerRegistry::terminal_ids): no snapshot)
    /// are compared with the queue; each record not queued is read (`get`) and queued within
    /// this call, and, unless the two sets are equal, each idle entry whose id is not among
    /// them is read too and dropped when its record is gone (unregistered by the host
    /// meanwhile), so that the counts agree again.
    ///
    /// With an empty queue the count is exact. With a non-empty one, one such stale entry could
    /// hide one unqueued record (the counts balance): so while the queue is not empty the ids
    /// are also compared once per `health_check_interval`, which queues a record hidden so
    /// within one interval. That comparison reads O(terminal records) ids and looks each up in
    /// the queue, never a record while the queue holds exactly the terminal records (every
    /// terminal id queued and as many entries as ids: the same set) — the steady state of a
    /// backlog of failing destroys.
    pub(super) fn adopt_terminal(&self, now: Timestamp) -> Result<Vec<WorkerId>> {
        let counts = self.registry.stats()?.by_state;
        let terminal = counts.terminating + counts.terminated;
        let queued = self.destroys.lock().len();
        let periodic = queued > 0 && {
            let last = self.schedule.lock().last_terminal_sweep;
            last.is_none_or(|at| {
                now.saturating_sub(at) >= millis(self.config.health_check_interval)
            })
        };
        if terminal == queued && !periodic {
            return Ok(Vec::new());
        }
        self.schedule.lock().last_terminal_sweep = Some(now);
        let ids = self.registry.terminal_ids()?;
        let (unqueued, same_set) = {
            let queue = self.destroys.lock();
            let unqueued: Vec<WorkerId> = ids
                .iter()
                .filter(|id| !queue.contains(id))
                .copied()
                .collect();
            // Every id queued, as many ids as entries (the ids are distinct): no entry is
            // left over, so none can be stale.
            let same_set = unqueued.is_empty() && ids.len() == queue.len();
            (unqueued, same_set)
        };
        let mut adopted = Vec::new();
        for id in unqueued {
            // Read now: it may have been destroyed (or unregistered) since the ids were.
            let Some(w) = self.registry.get(&id)? else {
                continue;
            };
            if w.state.is_terminal()
                && self
                    .destroys
                    .lock()
                    .queue(w.id, &w.handle, TerminationReason::Requested, now)
            {
                adopted.push(w.id);
            }
        }
        if !same_set {
            let known: std::collections::HashSet<WorkerId, foldhash::fast::RandomState> =
                ids.into_iter().collect();
            let maybe_stale = self.destroys.lock().idle_outside(|id| known.contains(id));
            for id in maybe_stale {
                // Confirmed gone (unregistered by the host), not merely queued after the ids
                // were read.
                if let Ok(None) = self.registry.get(&id) {
                    self.destroys.lock().withdraw(&id);
                }
            }
        }
        Ok(adopted)
    }

    /// Destroys the queued workers that are due (only those in `only`, when given): provider
    /// destroy outside every lock, then unregister; a failure schedules the next attempt. What
    /// each destroy did is written into `out` as it is done; returns how many due destroys
    /// were left for later (the `budget` ran out).
    pub(super) fn destroy_due(
        &self,
        only: Option<&[WorkerId]>,
        budget: &mut Budget,
        mut out: DestroyedInto<'_>,
    ) -> usize {
        let now = self.registry.now();
        // Fenced before anything is picked (each destroy is confirmed by the store too, right
        // before its provider call): a destroy left for the lost lease is no action of the
        // tick's, and stays queued as it was.
        if self.fence().is_err() {
            return 0;
        }
        let (picked, deferred) = self.destroys.lock().pick_due(only, now, budget);
        let mut unwinding = ReleaseOnUnwind {
            destroys: &self.destroys,
            ids: picked.iter().map(|(id, _)| *id).collect(),
            next_at: now.saturating_add(millis(self.config.destroy_retry_initial)),
        };
        for (id, entry) in picked {
            self.destroy_one(id, entry, &mut out);
            unwinding.ids.pop_front();
        }
        deferred
    }

    fn destroy_one(&self, id: WorkerId, entry: DestroyEntry, out: &mut DestroyedInto<'_>) {
        crate::trace::span!(
            "destroy",
            worker_id = %id,
            provider_id = %entry.handle.provider_id,
            resource_id = %entry.handle.resource_id,
            attempt = entry.attempts + 1
        );
        match self.registry.get(&id) {
            Ok(Some(_)) => {}
            // The provider confirmed the instance gone to an earlier attempt, whose unregister
            // failed or answered `Backend` with the registry unable to say more: the record is
            // gone now — that unregister was applied, its reply lost (or the host unregistered
            // it since) — so the worker is terminated, and reported so here, once: dropping
            // the entry without a word left it in no result and out of `terminated_total`.
            Ok(None) if entry.instance_gone => {
                self.destroys.lock().remove(&id);
                self.report_terminated(id, &entry, out);
                return;
            }
            // Explicitly unregistered by the host meanwhile: it took the instance over.
            Ok(None) => {
                self.destroys.lock().remove(&id);
                return;
            }
            // The registry cannot tell (a shared backend failing): try again later rather
            // than forget an instance.
            Err(_) => {
                self.postpone(id);
                return;
            }
        }
        if entry.instance_gone {
            // Destroyed by an earlier attempt whose unregister failed: a second destroy call
            // for one worker is what this avoids (the unregister may even have been applied,
            // its reply lost: then the record is gone and the worker was reported above).
            self.finish_destroy(id, &entry, out);
            return;
        }
        // Fenced, and confirmed by the store: only the leader destroys (a former leader's queue
        // is the new leader's now).
        let Ok(token) = self.confirm() else {
            self.postpone(id);
            return;
        };
        let handle = &entry.handle;
        let outcome = self.destroy_with_provider(token, handle);
        if super::orphans::confirms_destroy(&outcome) {
            // Before the unregister: a `reconcile` whose listing still showed the instance
            // and whose registry read no longer finds the record sees this count move, and
            // does not take the instance for an orphan.
            self.note_destroy_confirmed();
            // The instance may be remembered as an orphan too (a registration whose outcome
            // was unknown, an orphan the host registered since): gone, it is forgotten before
            // the record is unregistered, so that the ticks' orphan retry, which destroys
            // once no record holds the instance, does not destroy it a second time.
            self.orphan_gone(handle);
        }
        match outcome {
            Ok(()) => self.finish_destroy(id, &entry, out),
            Err(e) if e.is_not_found() => self.finish_destroy(id, &entry, out),
            // The provider refused the token: another replica leads, and destroys (the queue
            // is its now). Not a failed attempt; tried again only if this replica leads again.
            Err(e) if e.is_fenced() => self.postpone(id),
            Err(e) => {
                if let Ok(None) = self.registry.get(&id) {
                    // The host unregistered it during the destroy: it took the instance over.
                    // Nothing more is said about a worker after its `Unregistered`.
                    self.destroys.lock().remove(&id);
                    return;
                }
                let now = self.registry.now();
                let (attempts, next_at) = if e.is_interrupted() {
                    // The host cut the call short (`ProviderErrorKind::Interrupted`): not the
                    // provider's failure, as for a create. Reported, but no attempt counted
                    // and no back-off: due again at once (the next tick tries again).
                    self.destroys.lock().postpone(&id, now);
                    (entry.attempts, now)
                } else {
                    self.destroys
                        .lock()
                        .fail(
                            &id,
                            now,
                            self.config.destroy_retry_initial,
                            self.config.destroy_retry_max,
                        )
                        .unwrap_or((entry.attempts + 1, now))
                };
                bump(&self.counters.destroy_failures, 1);
                let _ = self.registry.publish(EventKind::DestroyFailed {
                    worker_id: id,
                    provider_id: handle.provider_id.clone(),
                    error: e.to_string(),
                    attempts,
                });
                out.failed.push(DestroyFailure {
                    worker_id: id,
                    provider_id: handle.provider_id.clone(),
                    resource_id: handle.resource_id.clone(),
                    error: e.to_string(),
                    attempts,
                    next_retry_at: next_at,
                });
            }
        }
    }

    fn finish_destroy(&self, id: WorkerId, entry: &DestroyEntry, out: &mut DestroyedInto<'_>) {
        match self.registry.unregister(&id, entry.reason) {
            Ok(_) => {}
            // Unregistered during the destroy (by the host, or by `reconcile` as vanished):
            // whoever removed the record reported its end; it is not terminated twice.
            Err(Error::NotFound(_)) => {
                self.destroys.lock().remove(&id);
                return;
            }
            // The record could not be removed (a failing backend), or was and the reply was
            // lost (PostgreSQL committed): the registry is asked, as for an ambiguous
            // registration. Gone: this unregister was applied, the worker is terminated and
            // reported below, by the call that did it. Still there, or no answer: keep
            // the entry, so that a later attempt unregisters it — without asking the provider
            // again (its instance is gone) — or finds the record gone and reports it terminated.
            Err(_) if matches!(self.registry.get(&id), Ok(None)) => {}
            Err(_) => {
                let next_at = self
                    .registry
                    .now()
                    .saturating_add(millis(self.config.destroy_retry_initial));
                self.destroys.lock().unregister_later(&id, next_at);
                return;
            }
        }
        self.destroys.lock().remove(&id);
        self.report_terminated(id, entry, out);
    }

    /// Counts and reports worker `id` terminated: its instance confirmed destroyed, its record
    /// gone.
    fn report_terminated(&self, id: WorkerId, entry: &DestroyEntry, out: &mut DestroyedInto<'_>) {
        bump(&self.counters.terminated, 1);
        out.terminated.push(TerminatedWorker {
            worker_id: id,
            provider_id: entry.handle.provider_id.clone(),
            resource_id: entry.handle.resource_id.clone(),
            reason: entry.reason,
        });
    }

    /// Releases an entry picked for destruction without counting a failed attempt: it is due
    /// again after the initial retry delay.
    fn postpone(&self, id: WorkerId) {
        let next_at = self
            .registry
            .now()
            .saturating_add(millis(self.config.destroy_retry_initial));
        self.destroys.lock().postpone(&id, next_at);
    }

    /// Workers `Terminating` whose destroy is queued or being retried, with their failed
    /// attempts and next attempt time: `(worker, attempts, next_at)`. Leader state, as this
    /// replica holds it: empty on a follower; a leader whose trust window closed without a
    /// tick still shows it (its next tick keeps or forgets it), while the
    /// `hodei_workers_destroys_pending` gauge reads 0 (docs/DESIGN.md §11).
    pub fn pending_destroys(&self) -> Vec<(WorkerId, u32, Timestamp)> {
        self.destroys.lock().pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ProviderId;
    use crate::worker::ProviderType;
    use std::time::Duration;

    fn handle(resource: &str) -> Arc<WorkerHandle> {
        Arc::new(WorkerHandle::new(
            ProviderId::new("p").unwrap(),
            ProviderType::BareMetal,
            resource,
        ))
    }

    #[test]
    fn queueing_twice_keeps_the_first_entry_and_its_schedule() {
        let mut q = DestroyQueue::default();
        let id = WorkerId::new();
        assert!(q.queue(id, &handle("a"), TerminationReason::Unhealthy, 10));
        assert_eq!(
            q.fail(&id, 10, Duration::from_secs(1), Duration::from_secs(60)),
            Some((1, 1_010))
        );
        assert!(!q.queue(id, &handle("b"), TerminationReason::Requested, 20));
        assert_eq!(q.len(), 1);
        assert_eq!(q.pending(), vec![(id, 1, 1_010)]);
    }

    #[test]
    fn a_picked_entry_is_not_picked_again_until_released() {
        let mut q = DestroyQueue::default();
        let (a, b) = (WorkerId::new(), WorkerId::new());
        q.queue(a, &handle("a"), TerminationReason::Unhealthy, 5);
        q.queue(b, &handle("b"), TerminationReason::Unhealthy, 7);
        let (picked, deferred) = q.pick_due(None, 10, &mut Budget::unlimited());
        assert_eq!(
            picked.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![a, b],
            "earliest first"
        );
        assert_eq!(deferred, 0);
        assert!(q.pick_due(None, 10, &mut Budget::unlimited()).0.is_empty());
        q.postpone(&a, 12);
        assert!(q.pick_due(None, 11, &mut Budget::unlimited()).0.is_empty());
        assert_eq!(q.pick_due(None, 12, &mut Budget::unlimited()).0.len(), 1);
    }

    #[test]
    fn the_budget_defers_and_only_restricts() {
        let mut q = DestroyQueue::default();
        let ids: Vec<WorkerId> = (0..3).map(|_| WorkerId::new()).collect();
        for (i, id) in ids.iter().enumerate() {
            q.queue(*id, &handle("x"), TerminationReason::Idle, i as Timestamp);
        }
        let mut budget = Budget::new(1);
        let (picked, deferred) = q.pick_due(None, 100, &mut budget);
        assert_eq!((picked.len(), deferred, budget.capped), (1, 2, true));
        let (picked, _) = q.pick_due(Some(&ids[2..]), 100, &mut Budget::unlimited());
        assert_eq!(
            picked.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![ids[2]]
        );
        q.expedite(&ids[1], 0);
        assert!(q.remove(&ids[1]).is_some());
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn an_entry_being_destroyed_cannot_be_withdrawn() {
        let mut q = DestroyQueue::default();
        let (a, b) = (WorkerId::new(), WorkerId::new());
        q.queue(a, &handle("a"), TerminationReason::Unhealthy, 0);
        q.queue(b, &handle("b"), TerminationReason::Unhealthy, 0);
        let (picked, _) = q.pick_due(Some(&[a]), 0, &mut Budget::unlimited());
        assert_eq!(picked.len(), 1);
        assert_eq!(q.idle_outside(|_| false), vec![b], "a is being destroyed");
        assert!(!q.withdraw(&a), "its destroy decides");
        assert!(q.withdraw(&b));
        assert!(q.withdraw(&WorkerId::new()), "not queued: nothing to keep");
        assert_eq!(q.len(), 1);
        q.postpone(&a, 5);
        assert!(q.idle_outside(|id| *id == a).is_empty());
        assert!(q.contains(&a) && !q.contains(&b));
    }

    #[test]
    fn forgetting_keeps_an_entry_being_destroyed_until_its_destroy_releases_it() {
        let mut q = DestroyQueue::default();
        let (a, b, c) = (WorkerId::new(), WorkerId::new(), WorkerId::new());
        for id in [a, b, c] {
            q.queue(id, &handle("x"), TerminationReason::Unhealthy, 0);
        }
        let (picked, _) = q.pick_due(Some(&[a, b]), 0, &mut Budget::unlimited());
        assert_eq!(picked.len(), 2);
        q.forget();
        assert_eq!(q.len(), 2, "the idle entry is forgotten");
        assert!(!q.contains(&c));
        // Queued again by a later term: adopted, but not picked while its destroy runs.
        assert!(q.queue(b, &handle("x"), TerminationReason::Requested, 1));
        assert!(q.pick_due(None, 10, &mut Budget::unlimited()).0.is_empty());
        // Released: a forgotten entry leaves, an adopted one stays for its retry.
        let i = Duration::from_secs(1);
        assert_eq!(q.fail(&a, 10, i, i), None);
        assert!(!q.contains(&a));
        assert_eq!(q.fail(&b, 10, i, i), Some((1, 1_010)));
        assert_eq!(q.pending(), vec![(b, 1, 1_010)]);
    }

    #[test]
    fn failures_back_off_exponentially_up_to_the_max() {
        let mut q = DestroyQueue::default();
        let id = WorkerId::new();
        q.queue(id, &handle("a"), TerminationReason::Unhealthy, 0);
        let (i, m) = (Duration::from_secs(1), Duration::from_secs(4));
        let delays: Vec<_> = (0..4).map(|_| q.fail(&id, 0, i, m).unwrap()).collect();
        assert_eq!(delays, vec![(1, 1_000), (2, 2_000), (3, 4_000), (4, 4_000)]);
        assert_eq!(q.fail(&WorkerId::new(), 0, i, m), None);
    }
}
