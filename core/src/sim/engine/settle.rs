//! The end of a replicated run: the fleet settles under one leader, then the end-state rule.

use super::*;

/// How long a replicated run may take to settle after its end, ms.
pub(super) const SETTLE_MS: u64 = 15 * 60 * 1000;

impl Simulation {
    /// A replicated run, at its end, goes on (no new jobs, every replica back) until the
    /// fleet is settled — no record `Terminating`, every instance registered, every record's
    /// instance alive — or for at most 15 simulated minutes, then checks that it is
    /// ([`Rule::Settled`]). A single-manager run does nothing here.
    pub fn settle(&mut self) {
        if self.replicas.world.is_none() || self.settling {
            return;
        }
        self.settling = true;
        self.end_ms = self.t + SETTLE_MS;
        while self.unsettled().is_some() && self.step() {}
        if let Some(wrong) = self.unsettled() {
            self.checker
                .note(Rule::Settled, format!("not settled after the run: {wrong}"));
            self.end_ms = self.t;
            self.check();
        }
        self.end_ms = self.t;
    }

    /// What keeps the fleet from being settled, if anything.
    fn unsettled(&self) -> Option<String> {
        if !self.replicas.all_running() {
            return Some("a replica has not restarted yet".into());
        }
        let records = match self.registry.find(&WorkerFilter::new()) {
            Ok(r) => r,
            Err(e) => return Some(format!("find() failed: {e}")),
        };
        let mut wrong = Vec::new();
        let instances: HashSet<WorkerId> = self
            .clouds
            .iter()
            .flat_map(|c| c.lock().live())
            .map(|(_, w, _)| w)
            .collect();
        let registered: HashSet<WorkerId> = records.iter().map(|w| w.id).collect();
        for w in &records {
            if w.state.is_terminal() {
                wrong.push(format!("worker {} is {}", w.id, w.state));
            } else if !instances.contains(&w.id) {
                wrong.push(format!("worker {} has no instance", w.id));
            }
        }
        let mut leaked: Vec<_> = instances.difference(&registered).collect();
        leaked.sort();
        for w in leaked {
            wrong.push(format!("the instance of worker {w} has no record"));
        }
        (!wrong.is_empty()).then(|| wrong.join("; "))
    }
}
