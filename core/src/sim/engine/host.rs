//! The host loop: claims, lost jobs, reconcile, ticks, demand and interruptions.

use super::*;

impl Simulation {
    /// The host: requeue lost jobs, hand out pending ones, reconcile when due, tick.
    pub(super) fn host_pass(&mut self) {
        self.read_host_events();
        self.claim_pending();
        if self.reconcile_ms > 0 && self.t >= self.next_reconcile {
            self.next_reconcile = self.t + self.reconcile_ms;
            let (result, nested) = self.replicas.reconcile(self.t);
            for (k, report) in nested {
                self.absorb_replica(k, &report);
            }
            if let Some(r) = result {
                self.metrics.reconcile_vanished += r.vanished.len() as u64;
                self.metrics.reconcile_orphans += r.orphans.len() as u64;
                let mut lost: Vec<_> = r
                    .lost_jobs
                    .into_iter()
                    .map(|l| (l.worker_id, l.job_id))
                    .collect();
                lost.sort();
                for (w, j) in lost {
                    self.job_lost(w, &j);
                }
            }
        }
        for (k, report) in self.replicas.tick(self.demand(), self.t) {
            self.absorb_replica(k, &report);
        }
        self.read_host_events();
    }

    /// A tick report of replica slot `k`: a takeover grants the fleet a grace (the checker
    /// holds the new leader to it), a term going backwards is a violation.
    fn absorb_replica(&mut self, k: usize, report: &TickReport) {
        let (took_over, problem) = self.replicas.observe(k, report);
        if took_over {
            self.checker.grace_granted(report.at);
        }
        if let Some(problem) = problem {
            self.checker.note(Rule::OneLeader, problem);
        }
        if self.replicas.world.is_some() {
            self.hash.word(k as u64);
        }
        self.absorb_tick(report);
    }

    pub(super) fn read_host_events(&mut self) {
        let mut lost: Vec<(WorkerId, JobId)> = self
            .host_events
            .drain()
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::JobLost { worker_id, job_id } => Some((worker_id, job_id)),
                _ => None,
            })
            .collect();
        // Events of one call may come in registry-internal order: sort, so that requeue order
        // (and so the whole run) depends on the seed only.
        lost.sort();
        for (w, j) in lost {
            self.job_lost(w, &j);
        }
    }

    /// A job held by `worker` was lost: requeue it (the pending queue is ordered by arrival,
    /// so it goes back near the front). Reported twice (event and tick report): handled once.
    pub(super) fn job_lost(&mut self, worker: WorkerId, job: &JobId) {
        let Some(seq) = job_seq(job) else { return };
        if self.running.get(&seq) != Some(&worker) {
            return;
        }
        self.running.remove(&seq);
        self.metrics.lost_jobs += 1;
        if self.drop_lost_jobs {
            return;
        }
        self.metrics.requeued += 1;
        self.pending.insert(seq);
        self.pending_ids.insert(job.clone());
        // The agent, if it still runs, works for nothing now.
        for cloud in &self.clouds {
            let mut cloud = cloud.lock();
            if let Some(inst) = cloud.instance_of(&worker) {
                if inst.job.as_ref().is_some_and(|j| j.seq == seq) {
                    inst.job = None;
                }
            }
        }
    }

    pub(super) fn claim_pending(&mut self) {
        let filters: Vec<WorkerFilter> = if self.classes.is_empty() {
            vec![WorkerFilter::new()]
        } else {
            self.classes
                .iter()
                .map(|c| c.requirement.filter())
                .collect()
        };
        // Classes that found no idle worker in this pass: their later jobs wait too.
        let mut exhausted = vec![false; filters.len()];
        let queue: Vec<u64> = self.pending.iter().copied().collect();
        for seq in queue {
            let class = self.jobs[seq as usize].class;
            if exhausted[class] {
                self.cold_start(seq);
                continue;
            }
            let id = self.jobs[seq as usize].id.clone();
            match self.registry.claim(&filters[class], id.clone()) {
                Ok(Some(worker)) => {
                    if !self.classes.is_empty()
                        && !filters[class].matches_static(&worker.handle, &worker.spec)
                    {
                        self.checker.note(
                            Rule::PoolFit,
                            format!(
                                "job {id} (needs {}) was handed worker {} of pool {:?}",
                                self.classes[class].requirement,
                                worker.id,
                                worker.spec.labels.get(POOL_LABEL)
                            ),
                        );
                    }
                    self.pending.remove(&seq);
                    self.pending_ids.remove(&id);
                    self.running.insert(seq, worker.id);
                    let job = &mut self.jobs[seq as usize];
                    job.seen = true;
                    let wait = self.t.saturating_sub(job.arrival);
                    job.started = Some(wait);
                    self.interval.recent.push_back((self.t, wait));
                    let ends_at = self.t + job.duration;
                    for cloud in &self.clouds {
                        let mut cloud = cloud.lock();
                        if let Some(inst) = cloud.instance_of(&worker.id) {
                            inst.job = Some(AgentJob {
                                seq,
                                job: id.clone(),
                                ends_at,
                            });
                        }
                    }
                }
                Ok(None) | Err(_) => {
                    // No idle worker for this class: its jobs wait; those never tried before
                    // are cold starts (they wait for capacity to boot).
                    exhausted[class] = true;
                    self.cold_start(seq);
                }
            }
        }
    }

    pub(super) fn cold_start(&mut self, seq: u64) {
        let job = &mut self.jobs[seq as usize];
        if !job.seen {
            job.seen = true;
            self.metrics.cold_starts += 1;
        }
    }

    /// The job class of arrival `seq`: a weighted draw from its own stream (the same for every
    /// configuration compared on one seed).
    pub(super) fn draw_class(&self, seq: u64) -> usize {
        if self.classes.len() <= 1 {
            return 0;
        }
        let total: f64 = self.classes.iter().map(|c| c.weight).sum();
        let mut x = SimRng::keyed(self.scenario.seed, STREAM_CLASS, seq).uniform() * total;
        for (k, c) in self.classes.iter().enumerate() {
            if x < c.weight {
                return k;
            }
            x -= c.weight;
        }
        self.classes.len() - 1
    }

    /// The pending jobs as the manager's demand: by class (a plain count without classes).
    pub(super) fn demand(&self) -> Demand {
        if self.classes.is_empty() {
            return Demand::from(self.pending.len());
        }
        let mut counts = vec![0usize; self.classes.len()];
        for seq in &self.pending {
            counts[self.jobs[*seq as usize].class] += 1;
        }
        let mut demand = Demand::new();
        for (class, n) in self.classes.iter().zip(counts) {
            if n > 0 {
                let mut r = class.requirement.clone();
                r.count = n;
                demand.push(r);
            }
        }
        demand
    }

    /// Sends the interruption waves that are due: the chosen instances' workers get a notice
    /// from the manager, and the instances disappear when it runs out.
    pub(super) fn interrupt(&mut self) {
        for k in 0..self.pools.len() {
            for (w, wave) in self.pools[k].interruptions.clone().into_iter().enumerate() {
                if self.t < secs_to_ms(wave.at_secs) || !self.waves_sent.insert((k, w)) {
                    continue;
                }
                let notice = secs_to_ms(wave.notice_secs);
                // A seeded choice: the instances with the lowest keys of this wave.
                let mut candidates: Vec<(u64, String, WorkerId)> = self.clouds[k]
                    .lock()
                    .instances
                    .values()
                    .filter(|i| i.reclaim_at.is_none())
                    .map(|i| {
                        let key = crate::sim::rng::mix(self.scenario.seed, w as u64, i.index);
                        (key, i.resource_id.clone(), i.worker_id)
                    })
                    .collect();
                candidates.sort();
                let n = (wave.fraction * candidates.len() as f64).ceil() as usize;
                for (_, rid, worker) in candidates.into_iter().take(n) {
                    let deadline = self.clock.now() + notice;
                    // Without the cloud's lock: the manager may call the provider.
                    let notified = self
                        .replicas
                        .acting()
                        .is_some_and(|m| m.notify_interruption(&worker, deadline).is_ok());
                    if notified {
                        if let Some(inst) = self.clouds[k].lock().instances.get_mut(&rid) {
                            inst.reclaim_at = Some(self.t + notice);
                        }
                        self.hash.word(u64::from_le_bytes(
                            worker.as_bytes()[..8].try_into().unwrap_or_default(),
                        ));
                    }
                }
            }
        }
    }

    /// Multi-pool runs: no pool above its `max_workers` (workers under a notice aside).
    pub(super) fn check_pools(&mut self) {
        if self.pools.is_empty() {
            return;
        }
        let interrupted = self.replicas.interruptions();
        for p in &self.pools {
            let n = self
                .registry
                .find(&WorkerFilter::new().label(POOL_LABEL, p.name.as_str()))
                .map(|ws| ws.iter().filter(|w| !interrupted.contains(&w.id)).count())
                .unwrap_or(0);
            if n > p.max_workers {
                self.checker.note(
                    Rule::PoolMax,
                    format!(
                        "pool {} has {n} workers, above its max_workers {}",
                        p.name, p.max_workers
                    ),
                );
            }
        }
    }

    pub(super) fn absorb_tick(&mut self, report: &TickReport) {
        let i = &mut self.interval;
        i.provisioned += report.provisioned.len() as u64;
        i.terminated += report.terminated.len() as u64;
        i.unhealthy += report.unhealthy.len() as u64;
        i.provision_failures += report.provision_failures.len() as u64;
        let m = &mut self.metrics;
        m.ticks += 1;
        m.unhealthy += report.unhealthy.len() as u64;
        m.provisioned += report.provisioned.len() as u64;
        m.provision_failures += report.provision_failures.len() as u64;
        m.destroy_failures += report.failed.len() as u64;
        if report.mass_expiry_held.is_some() {
            m.mass_expiry_holds += 1;
        }
        if report.stall_grace.is_some() {
            m.stall_graces += 1;
            self.checker.grace_granted(report.at);
        }
        let up = !report.provisioned.is_empty();
        let down = report
            .terminated
            .iter()
            .any(|t| t.reason == TerminationReason::ScaledDown)
            || report
                .scaling
                .as_ref()
                .is_some_and(|p| !p.scale_down.is_empty());
        for (is_up, happened) in [(true, up), (false, down)] {
            if !happened {
                continue;
            }
            if let Some((last_up, at)) = m.last_scale {
                if last_up != is_up && self.t.saturating_sub(at) <= self.flap_ms {
                    m.scale_flaps += 1;
                }
            }
            m.last_scale = Some((is_up, self.t));
        }
        let mut lost: Vec<_> = report
            .lost_jobs
            .iter()
            .map(|l| (l.worker_id, l.job_id.clone()))
            .collect();
        lost.sort();
        for (w, j) in lost {
            self.job_lost(w, &j);
        }
        self.hash.tick(report);
    }
}
