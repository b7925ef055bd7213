//! What a run measures and checks each step, and its report.

use super::*;

impl Simulation {
    pub(super) fn account(&mut self) {
        let live: usize = self.clouds.iter().map(|c| c.lock().instances.len()).sum();
        self.metrics.worker_ms += live as u128 * u128::from(self.step_ms);
        let registered = self.registry.count().unwrap_or(0);
        self.metrics.peak_workers = self.metrics.peak_workers.max(registered);
        for x in [
            self.t,
            self.clock.now(),
            self.pending.len() as u64,
            self.running.len() as u64,
            registered as u64,
            live as u64,
            self.checker.total(),
        ] {
            self.hash.word(x);
        }
    }

    /// Appends a sample: the registry's O(1) counts, the host's queues, the interval's events.
    pub(super) fn sample(&mut self) {
        let by_state = self
            .registry
            .stats()
            .map(|s| s.by_state)
            .unwrap_or_default();
        let oldest_pending_secs = self
            .pending
            .first()
            .and_then(|seq| self.jobs.get(*seq as usize))
            .map_or(0.0, |j| self.t.saturating_sub(j.arrival) as f64 / 1000.0);
        let mut sample = Sample {
            t_secs: self.t as f64 / 1000.0,
            pending_jobs: self.pending.len(),
            running_jobs: self.running.len(),
            starting: by_state.starting(),
            ready: by_state.ready,
            busy: by_state.busy,
            draining: by_state.draining,
            terminating: by_state.terminating,
            oldest_pending_secs,
            ..Sample::default()
        };
        self.interval.take(&mut sample, self.t, self.wait_window_ms);
        self.timeline.samples.push(sample);
    }

    pub(super) fn check(&mut self) {
        self.check_pools();
        let instances: Vec<_> = self.clouds.iter().flat_map(|c| c.lock().live()).collect();
        let pending_destroys = self.replicas.pending_destroys();
        let in_flight = self.replicas.in_flight();
        for (rule, detail) in self.replicas.take_notes() {
            self.checker.note(rule, detail);
        }
        let view = StepView {
            step: self.step,
            t_ms: self.t,
            now: self.clock.now(),
            in_flight,
            pending_destroys: &pending_destroys,
            instances: &instances,
            pending_jobs: &self.pending_ids,
            lazy_queued: self.lazy.as_ref().map(Subscription::len),
        };
        self.checker.check(&view);
    }

    /// The report of the run so far.
    pub fn report(&self) -> SimReport {
        let mut waits: Vec<u64> = self
            .jobs
            .iter()
            .filter(|j| j.done.is_some())
            .filter_map(|j| j.started)
            .collect();
        waits.sort_unstable();
        let mut cloud = crate::sim::cloud::CloudStats::default();
        for c in &self.clouds {
            let stats = &c.lock().stats;
            cloud.token_refusals += stats.token_refusals;
            cloud.panics += stats.panics;
            cloud.vanished += stats.vanished + stats.reclaimed;
            cloud.crashes += stats.crashes;
        }
        let m = &self.metrics;
        SimReport {
            scenario: self.scenario.name.clone(),
            label: self.label.clone(),
            seed: self.scenario.seed,
            simulated_secs: self.t as f64 / 1000.0,
            steps: self.step,
            jobs_arrived: self.jobs.len() as u64,
            jobs_done: self.jobs.iter().filter(|j| j.done.is_some()).count() as u64,
            jobs_running: self.running.len() as u64,
            jobs_pending: self.pending.len() as u64,
            wait_p50_secs: percentile(&waits, 0.50),
            wait_p95_secs: percentile(&waits, 0.95),
            wait_p99_secs: percentile(&waits, 0.99),
            wait_max_secs: waits.last().map_or(0.0, |w| *w as f64 / 1000.0),
            worker_seconds: (m.worker_ms / 1000) as u64,
            peak_workers: m.peak_workers,
            cold_starts: m.cold_starts,
            scale_flaps: m.scale_flaps,
            unhealthy_detections: m.unhealthy,
            lost_jobs: m.lost_jobs,
            requeued_jobs: m.requeued,
            provisioned: m.provisioned,
            provision_failures: m.provision_failures,
            destroy_failures: m.destroy_failures,
            provider_panics: cloud.panics,
            vanished_instances: cloud.vanished,
            agent_crashes: cloud.crashes,
            stall_graces: m.stall_graces,
            mass_expiry_holds: m.mass_expiry_holds,
            reconcile_vanished: m.reconcile_vanished,
            lazy_subscriber_dropped: self.lazy.as_ref().map_or(0, Subscription::dropped),
            leader_changes: self.replicas.leader_changes,
            replica_crashes: self.replicas.crashes,
            replica_pauses: self.replicas.pauses,
            store_refusals: self.replicas.refusals,
            provider_refusals: cloud.token_refusals,
            violations_total: self.checker.total(),
            violations: self.checker.violations().to_vec(),
            trace_hash: format!("{:016x}", self.hash.0),
        }
    }
}
