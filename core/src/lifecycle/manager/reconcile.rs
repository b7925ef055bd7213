//! Reconcile: the registry against what the providers really have (orphans, vanished
//! instances, `Terminating` records nobody is destroying).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock::millis;
use crate::error::{Error, Result};
use crate::filter::WorkerFilter;
use crate::ids::{ProviderId, WorkerId};
use crate::state::WorkerState;
use crate::worker::{TerminationReason, Worker, WorkerHandle};

use super::super::provider::{guarded, ProviderError};
use super::super::report::{
    LostJob, OrphanInstance, ReconcileHold, ReconcileHoldKind, ReconcileReport,
};
use super::brake::assess;
use super::destroy_queue::{DestroyEntry, DestroyQueue};
use super::providers::ProviderEntry;
use super::{bump, Budget, WorkerLifecycleManager};

/// Puts back the destroy entry of a vanished record that `reconcile_within` withdrew, when
/// the unregister after it unwinds (a host's registry that panics; a tick catches it and the
/// manager goes on): the record stays, and so must its entry as it was (its attempts, and
/// whether its instance is confirmed gone), as when the unregister fails. Dropped, the record
/// would be adopted again as a fresh `Terminating` one and its instance destroyed a second
/// time. (No registry call here: a second panic while unwinding would abort the process.)
struct PutBackOnUnwind<'a> {
    destroys: &'a Mutex<DestroyQueue>,
    id: WorkerId,
    /// The entry withdrawn, if any, until it is put back or no longer needed.
    entry: Option<DestroyEntry>,
}

impl Drop for PutBackOnUnwind<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        if let Some(entry) = self.entry.take() {
            self.destroys.lock().put_back(self.id, entry);
        }
    }
}

impl WorkerLifecycleManager {
    /// Compares the registry with what each provider that supports
    /// [`list_workers`](crate::WorkerProvider::list_workers) really has:
    /// - instances the registry does not know (orphans of a host crash) are destroyed — unless
    ///   a provision for that provider was in flight meanwhile (its new instance cannot be told
    ///   from an orphan), or a destroy was confirmed since the listing began (the listing may
    ///   show an instance whose record was destroyed and unregistered meanwhile): checked
    ///   again next time. An orphan another thread is destroying right now (a tick's retry)
    ///   is left to it: no instance is destroyed twice. This call destroys them however many
    ///   there are — the host asked (after losing its registry, say); the ticks' own
    ///   reconciles are braked: a listing that shows more instances no record knows than the
    ///   brake allows against the provider's records (`max_unhealthy_fraction`,
    ///   `unhealthy_floor`: another tenant's or region's instances, a misconfigured listing)
    ///   destroys none of them there (see [`tick`](Self::tick));
    /// - records whose instance vanished are unregistered with reason `Vanished` (a job they
    ///   held is reported lost; an unregister answered `Backend` whose record is gone when
    ///   looked at was applied, its reply lost, and is reported so too; one that failed, the
    ///   record still there, is in [`errors`](ReconcileReport::errors): `N vanished workers
    ///   not unregistered (the first: …)`, and the run is incomplete). This call expires
    ///   them however many there are — the host asked; the ticks' own reconciles are braked:
    ///   a listing that would expire more of a provider's records (`Terminating` ones
    ///   included) than the health check's brake allows (`max_unhealthy_fraction`,
    ///   `unhealthy_floor`) expires none of them there (see [`tick`](Self::tick));
    /// - `Terminating` records the manager was not destroying yet (e.g. after a restore) are
    ///   queued for destruction.
    ///
    /// A listed instance is a record's when it carries the record's resource id; failing that,
    /// when it carries the worker id of a record whose own resource id the listing does not
    /// show, and then only the first such instance in listing order that was not taken for an
    /// orphan already (remembered for the ticks' retries, or being destroyed): one record, one
    /// instance, whatever order the next listing shows them in.
    /// Every other instance is one no record knows — a second one carrying a record's worker
    /// id under another resource id too (a provider that created twice for one worker: a
    /// retried create, a duplicated request), destroyed, deferred, retried and braked as any
    /// orphan. A record is listed (not vanished) when its resource id or its worker id is.
    ///
    /// A complete reconcile (no listing failed, no orphan check skipped) also sets when the
    /// ticks run the next one by themselves: `reconcile_interval` later (see
    /// [`tick`](Self::tick)).
    ///
    /// This call is not capped: it destroys every orphan it finds, however many
    /// (`max_actions_per_tick` caps the ticks' own reconciles, whose orphans over the cap are
    /// destroyed by the next ticks).
    ///
    /// The registry failing on one provider's records is reported in
    /// [`errors`](ReconcileReport::errors) for that provider, and the others are reconciled
    /// all the same: the report keeps what was done (the jobs of vanished records above all).
    ///
    /// Each provider's listing is preceded by a look at the lease (the store's word): when this
    /// replica stops leading midway, the providers not listed yet are in
    /// [`errors`](ReconcileReport::errors) (`not listed: …`), none is asked. So is each orphan
    /// destroy: when the lease is lost among a provider's orphans, the rest are not destroyed
    /// and that provider is in `errors` too (`N orphan instances not destroyed: …`).
    ///
    /// # Errors
    /// [`Error::NotLeader`](crate::Error::NotLeader) when another replica leads; a registry
    /// error when it fails on the final look for `Terminating` records and nothing was done
    /// before (no orphan, no vanished record).
    pub fn reconcile(&self) -> Result<ReconcileReport> {
        let mut lost_jobs = Vec::new();
        let (report, _, _) = self.reconcile_within(
            Duration::ZERO,
            false,
            &mut Budget::unlimited(),
            &mut lost_jobs,
        )?;
        Ok(ReconcileReport {
            lost_jobs,
            ..report
        })
    }

    /// [`reconcile`](Self::reconcile), judging no record registered less than `young` before
    /// its provider's listing began as vanished (every run of the ticks spares those younger
    /// than `startup_timeout`), and destroying orphans one `budget` action each (a tick's
    /// reconcile spends the tick's; listings and registry reads are not actions). The orphans
    /// over the budget are remembered, due now, for the ticks' orphan retries (which spend
    /// their tick's budget too); how many is returned beside the report. They count as looked
    /// at: they do not make the reconcile incomplete. When `braked` (the ticks' runs), a
    /// provider whose listing misses more of its records old enough to be judged
    /// (`Terminating` ones included: unregistered as vanished, they would leave without a
    /// confirmed destroy; braked, the destroy queue's retries confirm them) than the brake
    /// allows (`max_unhealthy_fraction`, `unhealthy_floor`) has none of them expired: it is in
    /// [`errors`](ReconcileReport::errors) (`listing of P would expire N of M workers: held
    /// by the brake`), and the run is incomplete. Likewise a provider
    /// whose listing shows more instances no record knows than the brake allows against its
    /// M records (all of them, whatever their state or age) has none of them destroyed or
    /// deferred (`listing of P shows N instances no record knows (of M records): held by the
    /// brake`). The orphans remembered already (deferred, failed destroys) were judged by the
    /// run that found them: their retries are not braked again. Each such hold is also
    /// returned as data (third), and counted per provider and side
    /// (`hodei_workers_reconcile_holds_total`). The jobs of the vanished records go into
    /// `lost_jobs` (not the returned report's), each as soon as its record is gone: a tick
    /// passes its report's, so that a panic later in the run does not take them with it.
    pub(super) fn reconcile_within(
        &self,
        young: Duration,
        braked: bool,
        budget: &mut Budget,
        lost_jobs: &mut Vec<LostJob>,
    ) -> Result<(ReconcileReport, usize, Vec<ReconcileHold>)> {
        let mut deferred = 0;
        // The listings the brake held (braked runs only), as data for the tick's report.
        let mut held: Vec<ReconcileHold> = Vec::new();
        // Confirmed by the store: the provider is asked for its instances next.
        self.confirm()?;
        let now = self.registry.now();
        let mut report = ReconcileReport {
            at: now,
            ..ReconcileReport::default()
        };
        let providers: Vec<(ProviderId, ProviderEntry)> = self
            .providers
            .read()
            .iter()
            .map(|(id, e)| (id.clone(), e.clone()))
            .collect();
        for (i, (pid, entry)) in providers.into_iter().enumerate() {
            // Each listing is a provider call: confirmed right before it (the first by the
            // confirmation above), so that a replica that lost its lease while it reconciled
            // one provider lists no other. Those left are said, and what was done is kept
            // (the jobs of vanished records above all).
            if i > 0 {
                if let Err(e) = self.confirm() {
                    report.errors.push((pid, format!("not listed: {e}")));
                    continue;
                }
            }
            let (in_flight_before, started_before) = {
                let l = self.ledger.lock();
                (
                    l.in_flight_for(&pid),
                    l.started.get(&pid).copied().unwrap_or(0),
                )
            };
            let destroys_before = self.destroys_confirmed();
            let listed_at = self.registry.now();
            let listed = match guarded("list_workers", || entry.provider.list_workers()) {
                Ok(listed) => listed,
                Err(e) if e.is_unsupported() => {
                    report.unsupported.push(pid);
                    continue;
                }
                Err(e) => {
                    report.errors.push((pid, format!("could not list: {e}")));
                    continue;
                }
            };
            let records = match self.registry.find_by_provider(&pid) {
                Ok(records) => records,
                // Reported for this provider, and the others go on: returning the error would
                // drop what this call did already (the jobs of vanished records above all).
                Err(e) => {
                    report
                        .errors
                        .push((pid, format!("the registry could not list its records: {e}")));
                    continue;
                }
            };
            report.checked.push(pid.clone());
            let started_after = self.ledger.lock().started.get(&pid).copied().unwrap_or(0);

            let known_resources: HashSet<&str> = records
                .iter()
                .map(|w| w.handle.resource_id.as_str())
                .collect();
            let listed_resources: HashSet<&str> =
                listed.iter().map(|h| h.resource_id.as_str()).collect();
            let listed_ids: HashSet<WorkerId> = listed.iter().map(|h| h.worker_id).collect();
            // The records the listing may show under their worker id only: those whose own
            // resource id it does not show (a provider whose listing names an instance
            // otherwise than its create did).
            let unlisted_by_resource: HashSet<WorkerId> = records
                .iter()
                .filter(|w| !listed_resources.contains(w.handle.resource_id.as_str()))
                .map(|w| w.id)
                .collect();
            // The instance taken for each of them: the first in listing order that carries its
            // worker id. One instance per record: a second one carrying the same worker id
            // under another resource id (a provider that created twice for one worker: a
            // retried create, a duplicated request) is no record's, and an orphan like any
            // other. Not one taken for an orphan already (its destroy failed or was deferred,
            // and the ticks retry it; or a thread destroys it now): a listing in another order
            // than the last (a cloud API's order is not stable) would have the other instance
            // destroyed too, and the record left with none.
            let mut taken: HashMap<WorkerId, &str> = HashMap::new();
            let judged_orphans = if unlisted_by_resource.is_empty() {
                HashSet::new()
            } else {
                self.orphan_resources_of(&pid)
            };

            // Each instance once, however many times the listing shows it (a paginated API
            // whose pages shifted while it was read): destroyed once, counted once. And the
            // instance of this provider, whatever provider id its handle carries (a provider
            // wrapping another, passing its handles through): the ticks' retries of a failed
            // or deferred destroy go to the provider the handle names.
            // An invalid one (an empty resource id: a listing that yields the empty last line
            // of a command's output) is nobody's: no record can hold it, and a destroy of ""
            // may mean anything to a cloud API. Not destroyed, and said (the run is
            // incomplete); it still counts as listed for the records (by their id).
            let mut invalid: Vec<Error> = Vec::new();
            let mut seen: HashSet<&str> = HashSet::new();
            let mut orphans: Vec<WorkerHandle> = Vec::new();
            for h in &listed {
                let resource = h.resource_id.as_str();
                // A record's instance, by its resource id first.
                if known_resources.contains(resource) {
                    continue;
                }
                if unlisted_by_resource.contains(&h.worker_id)
                    && !judged_orphans.contains(resource)
                    && *taken.entry(h.worker_id).or_insert(resource) == resource
                {
                    continue;
                }
                if !seen.insert(resource) {
                    continue;
                }
                if let Err(e) = h.validate() {
                    invalid.push(e);
                    continue;
                }
                orphans.push(WorkerHandle {
                    provider_id: pid.clone(),
                    ..h.clone()
                });
            }
            let orphans: Vec<&WorkerHandle> = orphans.iter().collect();
            if let Some(first) = invalid.first() {
                report.errors.push((
                    pid.clone(),
                    format!(
                        "listing of {pid} shows {} invalid instances, not destroyed (the \
                         first: {first})",
                        invalid.len()
                    ),
                ));
            }
            if !orphans.is_empty() {
                if in_flight_before != 0 || started_after != started_before {
                    report.orphan_check_skipped.push(pid.clone());
                } else if let Some(hold) = braked
                    // A fraction of 1 disables the brake: the orphans, unlike the silent or the
                    // vanished, are not among the records it is a fraction of.
                    .then_some(())
                    .filter(|()| self.config.max_unhealthy_fraction < 1.0)
                    .and_then(|()| {
                        assess(&self.config, orphans.len(), orphans.len(), records.len())
                    })
                {
                    // The brake, on the other side of the listing: one that shows more
                    // instances no record knows than the brake allows against the provider's
                    // records is taken for the observer's fault (another tenant's or another
                    // region's instances: a misconfigured listing), not for orphans of ours,
                    // and none is destroyed or deferred; the run is incomplete (runs again
                    // after the back-off). The host's `reconcile()` destroys them if they are
                    // ours (after losing a registry, say).
                    report.errors.push((
                        pid.clone(),
                        format!(
                            "listing of {pid} shows {} instances no record knows (of {} \
                             records): held by the brake",
                            orphans.len(),
                            records.len()
                        ),
                    ));
                    held.push(self.reconcile_held(
                        &pid,
                        ReconcileHoldKind::Orphans,
                        orphans.len(),
                        records.len(),
                        hold.allowed,
                    ));
                } else {
                    // This pass's own confirmed destroys (they move the count too).
                    let mut own = 0;
                    // The orphans left once the budget ran out.
                    let mut over_budget: &[&WorkerHandle] = &[];
                    for (i, &handle) in orphans.iter().enumerate() {
                        if budget.exhausted() {
                            over_budget = &orphans[i..];
                            break;
                        }
                        let token = match self.confirm() {
                            Ok(token) => token,
                            // The lease is no longer trusted: the orphans left are not
                            // destroyed, and the pass is incomplete (a tick's runs again
                            // after its back-off, should this replica keep its term).
                            Err(e) => {
                                report.errors.push((
                                    pid.clone(),
                                    format!(
                                        "{} orphan instances not destroyed: {e}",
                                        orphans.len() - i
                                    ),
                                ));
                                break;
                            }
                        };
                        // Not while another thread destroys it (a tick's retry, another
                        // reconcile).
                        let Some(_claim) = self.claim_orphan(handle, false) else {
                            continue;
                        };
                        // Checked under the claim: a destroy confirmed since the listing began
                        // may have been this instance's, its record unregistered before the
                        // registry was read (or an orphan destroyed by another thread, whose
                        // claim is released only after the count moved).
                        if self.destroys_confirmed() != destroys_before + own {
                            report.orphan_check_skipped.push(pid.clone());
                            break;
                        }
                        // Not exhausted above; no other thread spends this budget.
                        budget.take();
                        crate::trace::orphan_destroy_span!(handle);
                        let destroyed = self.provider_call(token, "destroy_worker", || {
                            entry.provider.destroy_worker_fenced(token, handle)
                        });
                        if super::orphans::confirms_destroy(&destroyed) {
                            own += 1;
                            self.note_destroy_confirmed();
                        }
                        if matches!(&destroyed, Err(e) if e.is_fenced()) {
                            // Another replica leads: its reconcile owns the orphans now.
                            break;
                        }
                        let failure = destroyed.err().filter(|e| !e.is_not_found());
                        let error = failure.as_ref().map(ProviderError::to_string);
                        // A failed one is destroyed again by the ticks (after a back-off).
                        match &failure {
                            Some(e) => {
                                self.orphan_destroy_failed(handle, self.registry.now(), e);
                                // A failed attempt, counted as the ticks' retries of it are.
                                bump(&self.counters.destroy_failures, 1);
                            }
                            None => self.orphan_gone(handle),
                        }
                        report.orphans.push(OrphanInstance {
                            provider_id: pid.clone(),
                            resource_id: handle.resource_id.clone(),
                            error,
                        });
                    }
                    if !over_budget.is_empty() {
                        // Kept for the next ticks, under the same check as a destroy: no
                        // destroy confirmed since the listing began but this pass's own.
                        if self.defer_orphans(over_budget, destroys_before + own, now) {
                            deferred += over_budget.len();
                        } else {
                            report.orphan_check_skipped.push(pid.clone());
                        }
                    }
                }
            }

            // Registered after the listing began (or less than `young` before): the list may
            // not show it yet, and it is not judged.
            let judged: Vec<&Worker> = records
                .iter()
                .filter(|w| w.created_at.saturating_add(millis(young)) < listed_at)
                .collect();
            let vanished: Vec<&Worker> = judged
                .iter()
                .copied()
                .filter(|w| {
                    !(listed_resources.contains(w.handle.resource_id.as_str())
                        || listed_ids.contains(&w.id))
                })
                .collect();
            if braked {
                // The health check's brake, on one listing: a listing that misses most of a
                // fleet at once is taken for the observer's fault (a pagination bug, an API
                // answering [] in an outage, a wrong region), not for a mass death. None of
                // this provider's records is expired by it; the run is incomplete (runs again
                // after the back-off). Workers that really died meet their heartbeat or
                // startup deadline. Counted among the records the listing judges: young ones
                // (a scale-up under way) must not dilute the fraction. `Terminating` ones
                // count too: one unregistered as vanished leaves without a confirmed destroy
                // (an outage's `[]` with failing destroys), and braked it only waits for the
                // destroy queue's retries, which confirm it (`NotFound` does).
                let judged_count = judged.len();
                let missing = vanished.len();
                if let Some(hold) = assess(&self.config, missing, missing, judged_count) {
                    report.errors.push((
                        pid.clone(),
                        format!(
                            "listing of {pid} would expire {missing} of {judged_count} \
                             workers: held by the brake"
                        ),
                    ));
                    held.push(self.reconcile_held(
                        &pid,
                        ReconcileHoldKind::Expire,
                        missing,
                        judged_count,
                        hold.allowed,
                    ));
                    continue;
                }
            }
            // The vanished records whose unregister failed: how many, and the first (with its
            // error), said in `errors` for this provider.
            let mut not_unregistered: Option<(WorkerId, Error)> = None;
            let mut not_unregistered_count = 0usize;
            for w in vanished {
                // A Terminating one too: its instance is gone, so its destroy is moot — unless a
                // destroy of it is under way right now: that destroy ends it (once).
                let Some(withdrawn) = self.destroys.lock().withdraw_entry(&w.id) else {
                    continue;
                };
                let mut withdrawn = PutBackOnUnwind {
                    destroys: &self.destroys,
                    id: w.id,
                    entry: withdrawn,
                };
                let unregistered =
                    match self.write(|r| r.unregister(&w.id, TerminationReason::Vanished)) {
                        Ok(last) => Some(last.current_job),
                        // Applied and answered `Backend` (its reply lost, PostgreSQL committed)?
                        // The registry is asked, as after an ambiguous unregister in the destroy
                        // queue: gone, it was unregistered (its `JobLost` emitted) and is reported
                        // as if the call had answered `Ok`, with the job of the record as read
                        // above (a vanished instance's agent runs no job to its end in between).
                        // Still there, or no answer: not expired; said in `errors` (the run is
                        // incomplete: the ticks look again after their back-off).
                        Err(Error::Backend(_)) if matches!(self.registry.get(&w.id), Ok(None)) => {
                            Some(w.current_job.clone())
                        }
                        // Gone meanwhile by another's hand (its destroy ended, the host): not
                        // this call's, and nothing left to do.
                        Err(Error::NotFound(_)) => None,
                        Err(e) => {
                            not_unregistered_count += 1;
                            if not_unregistered.is_none() {
                                not_unregistered = Some((w.id, e));
                            }
                            None
                        }
                    };
                if unregistered.is_none() {
                    // The record stays: so does its destroy entry, as it was. Dropped, the
                    // record would be adopted again below as a fresh `Terminating` one, and
                    // an instance the provider already confirmed destroyed (only its
                    // unregister left) destroyed a second time.
                    if let Some(entry) = withdrawn.entry.take() {
                        self.destroys.lock().put_back(w.id, entry);
                    }
                }
                if let Some(lost) = unregistered {
                    if let Some(job) = lost {
                        bump(&self.counters.lost_jobs, 1);
                        lost_jobs.push(LostJob {
                            worker_id: w.id,
                            job_id: job,
                        });
                    }
                    report.vanished.push(w.id);
                }
            }
            if let Some((id, e)) = not_unregistered {
                report.errors.push((
                    pid.clone(),
                    format!(
                        "{not_unregistered_count} vanished workers not unregistered (the first: \
                         worker {id}: {e})"
                    ),
                ));
            }
        }

        let terminating = match self
            .registry
            .find(&WorkerFilter::new().states([WorkerState::Terminating, WorkerState::Terminated]))
        {
            Ok(terminating) => terminating,
            // Nothing done yet would be dropped only if nothing was done: otherwise the report
            // is kept (the ticks' check of the terminal records queues them all the same).
            Err(e) if report.vanished.is_empty() && report.orphans.is_empty() && deferred == 0 => {
                return Err(e)
            }
            Err(_) => Vec::new(),
        };
        for w in terminating {
            if self
                .destroys
                .lock()
                .queue(w.id, &w.handle, TerminationReason::Requested, now)
            {
                report.adopted_terminating.push(w.id);
            }
        }
        if report.is_complete() {
            // Whoever called it (a tick, the host): the next periodic one counts from here.
            self.reconcile_completed(now);
        }
        Ok((report, deferred, held))
    }

    /// A listing of `provider_id` the brake held on its `kind` side: counted (per provider and
    /// kind, for `hodei_workers_reconcile_holds_total`) and returned as data.
    fn reconcile_held(
        &self,
        provider_id: &ProviderId,
        kind: ReconcileHoldKind,
        held: usize,
        records: usize,
        allowed: usize,
    ) -> ReconcileHold {
        *self
            .counters
            .reconcile_holds
            .lock()
            .entry((provider_id.clone(), kind))
            .or_default() += 1;
        ReconcileHold {
            provider_id: provider_id.clone(),
            kind,
            held,
            records,
            allowed,
        }
    }
}
