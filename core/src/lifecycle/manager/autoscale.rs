//! Autoscaling: the scaling target, the plan (the pure policy is `scaling::decide`) and its
//! execution by `tick`.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::ids::ProviderId;
use crate::registry::{pool_of, StateCounts, WorkerRegistryStats};
use crate::state::WorkerState;
use crate::worker::{Worker, WorkerSpec};

use super::super::provider::ProviderErrorKind;
use super::super::report::{ProvisionedWorker, ScalingPlan, TickReport};
use super::super::scaling::{decide, ScalingInputs};
use super::{Budget, WorkerLifecycleManager};

/// What `tick` provisions: workers of `provider_id` made from `spec`.
#[derive(Debug, Clone)]
pub(super) struct ScalingTarget {
    pub(super) provider_id: ProviderId,
    pub(super) spec: Arc<WorkerSpec>,
}

impl WorkerLifecycleManager {
    /// The seed's predicate: no `Ready` worker of the target's own and jobs pending, or more
    /// than `scale_up_threshold` jobs pending and room under `max_workers`.
    ///
    /// It counts what [`plan_scaling`](Self::plan_scaling) counts: the ready workers are the
    /// scaling target's own (see [`set_scaling_target`](Self::set_scaling_target); without a
    /// target, the workers of no pool), never those of other pools; the room under
    /// `max_workers` counts every registered worker, the pools' included, and every provision
    /// in flight, whatever its pool. False when the registry fails to answer.
    pub fn should_scale_up(&self, pending_jobs: usize) -> bool {
        let Ok((ready, total)) = self.seed_counts() else {
            return false;
        };
        (ready == 0 && pending_jobs > 0)
            || (pending_jobs > self.config.scale_up_threshold && total < self.config.max_workers)
    }

    /// The seed's predicate: more than `scale_down_threshold` idle `Ready` workers of the
    /// target's own (without a target, of no pool; never those of other pools, as in
    /// [`plan_scaling`](Self::plan_scaling)), and more than `min_ready_workers`. False when
    /// the registry fails to answer.
    pub fn should_scale_down(&self) -> bool {
        let Ok((ready, _)) = self.seed_counts() else {
            return false;
        };
        ready > self.config.scale_down_threshold && ready > self.config.min_ready_workers
    }

    /// For the seed's predicates: the target's own `Ready` workers (as `plan_inner` counts
    /// them), and every registered worker plus every provision in flight.
    fn seed_counts(&self) -> Result<(usize, usize)> {
        let own_pool = self
            .target
            .lock()
            .as_ref()
            .and_then(|t| pool_of(&t.spec).map(str::to_owned));
        // In flight first, then the registry (see `plan_inner`).
        let in_flight = self.ledger.lock().in_flight.len();
        let stats = self.registry.stats()?;
        let (own, _, _) = split_by_pool(&stats, own_pool.as_deref());
        Ok((own.ready, stats.total + in_flight))
    }

    /// Sets what the autoscaler provisions in `tick`: workers of `provider_id` made from
    /// `spec`. Without a target `tick` neither provisions nor scales down (it still checks
    /// health and cleans up).
    ///
    /// The target's workers are the registered workers of no pool (without the label
    /// [`POOL_LABEL`](crate::POOL_LABEL)), or those of its spec's pool if `spec` carries that
    /// label: the workers of pools belong to the replica whose pools say so
    /// ([`set_pools`](Self::set_pools)); the target neither counts them as its capacity nor
    /// retires them, and they count against `max_workers` all the same.
    ///
    /// # Errors
    /// [`Error::ProviderNotFound`]; [`Error::InvalidArgument`] for an invalid spec.
    pub fn set_scaling_target(
        &self,
        provider_id: &ProviderId,
        spec: Arc<WorkerSpec>,
    ) -> Result<()> {
        spec.validate()?;
        // Written under the providers' lock (order: providers, then target, as in
        // `unregister_provider`): an unregister cannot slip between the check and the write
        // and leave a target on a provider no longer registered.
        let providers = self.providers.read();
        if !providers.contains_key(provider_id) {
            return Err(Error::ProviderNotFound(provider_id.clone()));
        }
        *self.target.lock() = Some(ScalingTarget {
            provider_id: provider_id.clone(),
            spec,
        });
        drop(providers);
        Ok(())
    }

    /// Removes the scaling target: `tick` stops provisioning and scaling down.
    pub fn clear_scaling_target(&self) {
        *self.target.lock() = None;
    }

    /// The scaling target, if one is set: `(provider, spec)`.
    pub fn scaling_target(&self) -> Option<(ProviderId, Arc<WorkerSpec>)> {
        self.target
            .lock()
            .as_ref()
            .map(|t| (t.provider_id.clone(), Arc::clone(&t.spec)))
    }

    /// The full scaling policy for `pending_jobs`, without acting on it:
    /// - wanted = `pending + min_ready_workers − ready − starting − in flight` (workers still
    ///   `Creating`/`Connecting` and provisions in flight are capacity on its way: a slow
    ///   provider is not asked twice); ready, starting and in flight count the target's
    ///   workers only (see [`set_scaling_target`](Self::set_scaling_target): not the workers
    ///   of pools, nor the provisions in flight of a pool's spec, whoever asked for them — a
    ///   pool's tick or the host's own [`provision_worker`](Self::provision_worker));
    /// - provision = wanted, capped by the room under `max_workers` (every registered worker,
    ///   the pools' included, and every provision in flight counts), by
    ///   `max_provision_per_tick`, and zero during the scale-up cooldown, while the target
    ///   provider backs off, or without a target;
    /// - when nothing is wanted, the target's idle `Ready` workers beyond the pending jobs and
    ///   `min_ready_workers` are retired, longest idle first, never a busy one nor a worker of
    ///   a pool, honouring the scale-down cooldown (counted from the last automatic scaling
    ///   action).
    ///
    /// [`ScalingPlan::explanation`] says it in one line with its inputs.
    ///
    /// # Errors
    /// Only when the registry fails to answer.
    pub fn plan_scaling(&self, pending_jobs: usize) -> Result<ScalingPlan> {
        let target = self.target.lock().clone();
        Ok(self.plan_inner(pending_jobs, target.as_ref())?.0)
    }

    /// The plan, and the workers it retires as they were seen (longest idle first).
    pub(super) fn plan_inner(
        &self,
        pending: usize,
        target: Option<&ScalingTarget>,
    ) -> Result<(ScalingPlan, Vec<Worker>)> {
        let now = self.registry.now();
        // The target's workers are those of its spec's pool: of no pool, unless the host gave
        // the target a spec with the pool label. The workers of pools belong to the replica
        // whose pools say so (set on another replica, or not yet on this one in a rolling
        // deploy): they are not the target's capacity, and it never retires them; they count
        // against `max_workers` all the same. So do the provisions in flight: those of its
        // pool's spec are its capacity on its way, every one takes room under `max_workers`
        // (a pool's tick's, or the host's own `provision_worker` of a pool's spec, is not the
        // target's: counted as its own, the target came one worker short per such create).
        let own_pool = target.and_then(|t| pool_of(&t.spec));
        // The provisions in flight first, the registry's counts second: a provision registers
        // its worker before it leaves the ledger, so a worker whose provision ends between the
        // two reads is counted twice at worst (one provision fewer this tick), never nowhere
        // (a second worker provisioned for one need, room under `max_workers` that is not).
        let (in_flight, in_flight_total) = {
            let ledger = self.ledger.lock();
            (ledger.in_flight_of_pool(own_pool), ledger.in_flight.len())
        };
        let stats = self.registry.stats()?;
        let (last_scale_up, last_scale_action) = {
            let s = self.schedule.lock();
            (s.last_scale_up, s.last_scale_action)
        };
        let backoff = target.and_then(|t| {
            self.backoff
                .lock()
                .get(&t.provider_id)
                .filter(|b| b.until > now)
                .map(|b| (t.provider_id.clone(), b.failures, b.until))
        });
        let (own, pooled, unpooled) = split_by_pool(&stats, own_pool);
        let inputs = ScalingInputs {
            now,
            pending,
            ready: own.ready,
            busy: own.busy,
            starting: own.starting(),
            in_flight,
            in_flight_total,
            registered: stats.total,
            pooled,
            unpooled,
            last_scale_up,
            last_scale_action,
            backoff,
            has_target: target.is_some(),
        };
        let (mut plan, retire) = decide(&self.config, &inputs);
        let mut candidates = Vec::new();
        if retire > 0 {
            // From the ready index, skipping the pools' workers (see `longest_idle_of`).
            candidates = self.longest_idle_of(own_pool, retire)?;
            plan.scale_down = candidates.iter().map(|w| w.id).collect();
        }
        Ok((plan, candidates))
    }

    /// Carries `plan` out: provisions, and retires the `candidates` (the plan's `scale_down`,
    /// as seen when planning).
    pub(super) fn execute_plan(
        &self,
        plan: &ScalingPlan,
        candidates: &[Worker],
        target: &ScalingTarget,
        budget: &mut Budget,
        report: &mut TickReport,
    ) {
        let now = plan.at;
        // Planned with the target as it was: cleared (its provider unregistered) or replaced
        // meanwhile, it is acted on no more — its idle workers retired with no provider to
        // destroy them, or workers of a spec no longer wanted. The next tick plans anew.
        let current = self
            .target
            .lock()
            .as_ref()
            .is_some_and(|t| t.provider_id == target.provider_id && t.spec == target.spec);
        if !current {
            report.decisions.push(format!(
                "scaling target on {} cleared or changed meanwhile: nothing provisioned or \
                 retired in this tick",
                target.provider_id
            ));
            return;
        }
        let mut provisioned = 0;
        for _ in 0..plan.provision {
            // Fenced before the action is taken: a provision left for the lost lease is no
            // action of the tick's (`provision_inner` fences too, for its other callers).
            if let Err(e) = self.fence() {
                report.decisions.push(format!("provisioning stopped: {e}"));
                break;
            }
            if !budget.take() {
                break;
            }
            match self.provision_inner(&target.provider_id, Arc::clone(&target.spec)) {
                Ok(w) => {
                    provisioned += 1;
                    report.provisioned.push(ProvisionedWorker {
                        worker_id: w.id,
                        provider_id: target.provider_id.clone(),
                        resource_id: w.handle.resource_id.clone(),
                    });
                }
                Err((e, failure)) => {
                    match failure {
                        Some(f) if f.kind == ProviderErrorKind::Interrupted => {
                            report.decisions.push(format!(
                                "provider {}: a create was interrupted: {}; not counted as a \
                                 failure of the provider (no back-off)",
                                f.provider_id, f.error
                            ));
                            report.provision_failures.push(f);
                        }
                        Some(f) => {
                            report.decisions.push(format!(
                                "provider {} failed to create a worker ({} in a row): {}; backing \
                                 off until {}",
                                f.provider_id, f.consecutive_failures, f.error, f.backoff_until
                            ));
                            report.provision_failures.push(f);
                        }
                        None => report.decisions.push(format!("provisioning stopped: {e}")),
                    }
                    // A failing provider is not asked again in the same tick.
                    break;
                }
            }
        }
        if provisioned > 0 {
            let mut s = self.schedule.lock();
            s.last_scale_up = Some(now);
            s.last_scale_action = Some(now);
        }

        // A replica that lost the lease retires nothing, and keeps no cooldown.
        self.retire_planned(candidates, now, budget, report, || {
            self.schedule.lock().last_scale_action = Some(now);
        });
    }
}

/// The registered workers of pool `own` (of no pool with `None`) per state, how many workers
/// of other pools are registered, and how many of no pool when `own` is a pool (from the
/// registry's maintained counts: O(pools)).
fn split_by_pool(stats: &WorkerRegistryStats, own: Option<&str>) -> (StateCounts, usize, usize) {
    let pooled: usize = stats.by_pool.values().map(StateCounts::total).sum();
    match own {
        Some(own) => {
            let counts = stats.by_pool.get(own).copied().unwrap_or_default();
            (
                counts,
                pooled.saturating_sub(counts.total()),
                stats.total.saturating_sub(pooled),
            )
        }
        None => {
            let mut counts = stats.by_state;
            for c in stats.by_pool.values() {
                for state in WorkerState::ALL {
                    let n = counts.slot(state);
                    *n = n.saturating_sub(c.get(state));
                }
            }
            (counts, pooled, 0)
        }
    }
}
