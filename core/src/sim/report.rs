//! [`SimReport`]: what a run measured, printable alone or side by side with another run
//! ([`compare_table`]).

use std::fmt;

use serde::Serialize;

use super::check::Violation;

/// What a simulated run measured.
///
/// Definitions: *wait* is the time from a job's arrival to the start of the attempt that
/// completed it (done jobs only); *worker-seconds* integrates the provider's live instances
/// over time (what the cloud bills, crashed and unregistered instances included); a *cold
/// start* is a job that found no idle worker on the first host pass after its arrival; a
/// *scale flap* is an automatic scaling action in the opposite direction of the previous one
/// within `host.flap_window_secs`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    /// Scenario name.
    pub scenario: String,
    /// Name of the configuration run.
    pub label: String,
    /// Seed.
    pub seed: u64,
    /// Simulated time covered, seconds.
    pub simulated_secs: f64,
    /// Steps run.
    pub steps: u64,
    /// Jobs that arrived.
    pub jobs_arrived: u64,
    /// Jobs completed.
    pub jobs_done: u64,
    /// Jobs running at the end.
    pub jobs_running: u64,
    /// Jobs waiting at the end.
    pub jobs_pending: u64,
    /// Median wait, seconds.
    pub wait_p50_secs: f64,
    /// 95th percentile wait, seconds.
    pub wait_p95_secs: f64,
    /// 99th percentile wait, seconds.
    pub wait_p99_secs: f64,
    /// Longest wait, seconds.
    pub wait_max_secs: f64,
    /// Instance-seconds paid for (the cost).
    pub worker_seconds: u64,
    /// Most workers registered at once.
    pub peak_workers: usize,
    /// Jobs that had to wait for capacity on arrival.
    pub cold_starts: u64,
    /// Scaling direction reversals within the flap window.
    pub scale_flaps: u64,
    /// Workers declared unhealthy (heartbeat or startup deadline).
    pub unhealthy_detections: u64,
    /// Jobs lost with their worker (reported to the host).
    pub lost_jobs: u64,
    /// Lost jobs the host requeued.
    pub requeued_jobs: u64,
    /// Workers provisioned by the autoscaler.
    pub provisioned: u64,
    /// Failed provisions the manager reported.
    pub provision_failures: u64,
    /// Failed destroys the manager reported.
    pub destroy_failures: u64,
    /// Provider calls that panicked (caught by the manager).
    pub provider_panics: u64,
    /// Instances that vanished on their own.
    pub vanished_instances: u64,
    /// Agents that crashed.
    pub agent_crashes: u64,
    /// Ticks that granted a stall grace.
    pub stall_graces: u64,
    /// Health checks held back by the mass-expiry brake.
    pub mass_expiry_holds: u64,
    /// Records `reconcile` removed because their instance vanished.
    pub reconcile_vanished: u64,
    /// Events dropped for the subscriber that never reads.
    pub lazy_subscriber_dropped: u64,
    /// Replicated runs: terms taken (the first leader's included).
    pub leader_changes: u64,
    /// Replicated runs: leader processes killed.
    pub replica_crashes: u64,
    /// Replicated runs: leader processes paused.
    pub replica_pauses: u64,
    /// Replicated runs: leader-only writes the store refused, because another replica had
    /// taken the lease since the writer's own fence let them through.
    pub store_refusals: u64,
    /// Replicated runs: provider calls a cloud refused for their fencing token, because a
    /// call under a newer term had reached it while the caller was paused on its way.
    pub provider_refusals: u64,
    /// Invariant violations (all counted).
    pub violations_total: u64,
    /// The first violations.
    pub violations: Vec<Violation>,
    /// Hash of the whole run (every tick report and per-step counts): equal hashes, equal runs.
    pub trace_hash: String,
}

/// Nearest-rank percentile of sorted millisecond values, in seconds (0 when empty).
pub(crate) fn percentile(sorted_ms: &[u64], p: f64) -> f64 {
    if sorted_ms.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted_ms.len() as f64).ceil() as usize;
    sorted_ms[rank.clamp(1, sorted_ms.len()) - 1] as f64 / 1000.0
}

impl SimReport {
    /// The report's rows: `(metric, value)`, in display order.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let f1 = |x: f64| format!("{x:.1}");
        vec![
            ("jobs arrived", self.jobs_arrived.to_string()),
            ("jobs done", self.jobs_done.to_string()),
            (
                "jobs running / pending at end",
                format!("{} / {}", self.jobs_running, self.jobs_pending),
            ),
            ("wait p50 (s)", f1(self.wait_p50_secs)),
            ("wait p95 (s)", f1(self.wait_p95_secs)),
            ("wait p99 (s)", f1(self.wait_p99_secs)),
            ("wait max (s)", f1(self.wait_max_secs)),
            ("worker-seconds (cost)", self.worker_seconds.to_string()),
            (
                "worker-hours",
                format!("{:.2}", self.worker_seconds as f64 / 3600.0),
            ),
            ("peak workers", self.peak_workers.to_string()),
            ("cold starts", self.cold_starts.to_string()),
            ("scale flaps", self.scale_flaps.to_string()),
            (
                "unhealthy detections",
                self.unhealthy_detections.to_string(),
            ),
            ("lost jobs", self.lost_jobs.to_string()),
            ("requeued jobs", self.requeued_jobs.to_string()),
            ("provisioned", self.provisioned.to_string()),
            ("provision failures", self.provision_failures.to_string()),
            ("destroy failures", self.destroy_failures.to_string()),
            ("provider panics (caught)", self.provider_panics.to_string()),
            ("instances vanished", self.vanished_instances.to_string()),
            ("agent crashes", self.agent_crashes.to_string()),
            ("stall graces", self.stall_graces.to_string()),
            ("mass-expiry holds", self.mass_expiry_holds.to_string()),
            (
                "reconcile: vanished records",
                self.reconcile_vanished.to_string(),
            ),
            (
                "lazy subscriber: events dropped",
                self.lazy_subscriber_dropped.to_string(),
            ),
            (
                "leader changes / crashes / pauses / store refusals / provider refusals",
                format!(
                    "{} / {} / {} / {} / {}",
                    self.leader_changes,
                    self.replica_crashes,
                    self.replica_pauses,
                    self.store_refusals,
                    self.provider_refusals
                ),
            ),
            ("invariant violations", self.violations_total.to_string()),
            ("trace hash", self.trace_hash.clone()),
        ]
    }
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "scenario {} | config {} | seed {} | {:.0} s simulated in {} steps",
            self.scenario, self.label, self.seed, self.simulated_secs, self.steps
        )?;
        for (name, value) in self.rows() {
            writeln!(f, "  {name:<32} {value}")?;
        }
        for v in &self.violations {
            writeln!(f, "  VIOLATION {v}")?;
        }
        if self.violations_total > self.violations.len() as u64 {
            writeln!(
                f,
                "  ... and {} more violations",
                self.violations_total - self.violations.len() as u64
            )?;
        }
        Ok(())
    }
}

/// Two runs side by side (same scenario and seed, two configurations).
pub fn compare_table(a: &SimReport, b: &SimReport) -> String {
    let mut out = format!(
        "scenario {} | seed {} | {:.0} s simulated\n",
        a.scenario, a.seed, a.simulated_secs
    );
    let width = a.label.len().max(b.label.len()).max(12);
    out.push_str(&format!(
        "  {:<32} {:>width$} {:>width$}\n",
        "metric", a.label, b.label
    ));
    for ((name, va), (_, vb)) in a.rows().into_iter().zip(b.rows()) {
        let mark = if va != vb && name != "trace hash" {
            " *"
        } else {
            ""
        };
        out.push_str(&format!("  {name:<32} {va:>width$} {vb:>width$}{mark}\n"));
    }
    for (r, v) in [(a, &a.violations), (b, &b.violations)] {
        for v in v.iter() {
            out.push_str(&format!("  VIOLATION [{}] {v}\n", r.label));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let xs: Vec<u64> = (1..=100).map(|s| s * 1000).collect();
        assert_eq!(percentile(&xs, 0.50), 50.0);
        assert_eq!(percentile(&xs, 0.95), 95.0);
        assert_eq!(percentile(&xs, 0.99), 99.0);
        assert_eq!(percentile(&[7000], 0.99), 7.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
