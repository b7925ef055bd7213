//! The simulated world each step: arrivals, instances and their agents.

use super::*;

impl Simulation {
    pub(super) fn arrive(&mut self) {
        while let Some(&(at, duration)) = self.arrivals.get(self.next_arrival) {
            if at > self.t {
                break;
            }
            self.next_arrival += 1;
            let seq = self.jobs.len() as u64;
            let id = job_id(seq);
            let class = self.draw_class(seq);
            self.jobs.push(JobRecord {
                id: id.clone(),
                arrival: at,
                duration,
                done: None,
                started: None,
                seen: false,
                class,
            });
            self.checker.job_arrived(id.clone());
            self.pending.insert(seq);
            self.pending_ids.insert(id);
        }
    }

    /// Instances vanish, agents crash, boot, report in, heartbeat, finish jobs.
    pub(super) fn run_agents(&mut self) {
        let t = self.t;
        let step_hours = self.step_ms as f64 / 3_600_000.0;
        let host_down = self.host_down();
        let cut_off = self.partition_fraction();
        let now = self.clock.now();
        let mut finished_jobs = Vec::new();
        for cloud in self.clouds.clone() {
            let mut guard = cloud.lock();
            self.run_cloud(
                &mut guard,
                t,
                now,
                step_hours,
                host_down,
                cut_off,
                &mut finished_jobs,
            );
        }
        for (seq, worker) in finished_jobs {
            if self.running.get(&seq) == Some(&worker) {
                self.running.remove(&seq);
            }
            if let Some(job) = self.jobs.get_mut(seq as usize) {
                job.done = Some(t);
            }
        }
    }

    /// One cloud's part of [`run_agents`](Self::run_agents).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_cloud(
        &mut self,
        cloud: &mut Cloud,
        t: u64,
        now: Timestamp,
        step_hours: f64,
        host_down: bool,
        cut_off: f64,
        finished_jobs: &mut Vec<(u64, WorkerId)>,
    ) {
        cloud.t = t;
        let vanish_p = cloud.model.vanish_per_hour * step_hours;
        let crash_p = cloud.agents.crash_per_hour * step_hours;
        let agents = cloud.agents.clone();
        let keys: Vec<String> = cloud.instances.keys().cloned().collect();
        for key in keys {
            let (vanished, reclaimed) = match cloud.instances.get_mut(&key) {
                Some(inst) => (
                    inst.rng.bernoulli(vanish_p),
                    inst.reclaim_at.is_some_and(|at| t >= at),
                ),
                None => continue,
            };
            if reclaimed {
                cloud.remove(&key);
                cloud.stats.reclaimed += 1;
                continue;
            }
            if vanished {
                cloud.remove(&key);
                cloud.stats.vanished += 1;
                continue;
            }
            let Some(inst) = cloud.instances.get_mut(&key) else {
                continue;
            };
            if !inst.crashed && inst.rng.bernoulli(crash_p) {
                inst.crashed = true;
                cloud.stats.crashes += 1;
                continue;
            }
            if inst.crashed || inst.agent_gone {
                continue;
            }
            let id = inst.worker_id;
            let reachable = !host_down && inst.partition_key >= cut_off;
            if inst.told == Told::Nothing && t >= inst.boot_at && reachable {
                match self.registry.update_state(&id, WorkerState::Connecting) {
                    Ok(_) => {
                        inst.told = Told::Connecting;
                        inst.ready_at = inst.ready_at.max(t);
                        inst.next_heartbeat = t;
                    }
                    Err(_) => inst.agent_gone = true,
                }
            }
            if inst.told == Told::Connecting && t >= inst.ready_at && reachable {
                match self.registry.update_state(&id, WorkerState::Ready) {
                    Ok(_) => inst.told = Told::Ready,
                    Err(_) => inst.agent_gone = true,
                }
            }
            if inst.told != Told::Nothing && !inst.agent_gone && t >= inst.next_heartbeat {
                inst.next_heartbeat = Cloud::next_heartbeat(&agents, &mut inst.rng, t);
                let lost = inst.rng.bernoulli(agents.heartbeat_loss_probability);
                if reachable && !lost {
                    match self.registry.heartbeat(&id) {
                        Ok(()) => self.checker.heartbeat_delivered(id, now),
                        Err(_) => inst.agent_gone = true,
                    }
                }
            }
            if inst.job.as_ref().is_some_and(|j| t >= j.ends_at) {
                inst.finished = inst.job.take();
            }
            if reachable {
                if let Some(done) = inst.finished.take() {
                    self.checker.agent_finished(id, done.job.clone());
                    match self.registry.release_from_job(&id, Some(&done.job)) {
                        Ok(_) => finished_jobs.push((done.seq, id)),
                        Err(_) => self.checker.agent_release_refused(id, done.job),
                    }
                }
            }
        }
    }
}
