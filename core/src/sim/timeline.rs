//! [`Timeline`]: what a simulated run looked like over time, sampled at a fixed interval, for
//! pictures ([`plot_svg`](super::plot_svg)) and for anyone who wants the series as data.

use std::collections::VecDeque;

use serde::Serialize;

use super::report::percentile;
use super::scenario::Scenario;

/// Most samples one run keeps: the interval grows with the run's length so that a timeline
/// stays a few hundred kilobytes at most, whatever the duration.
pub const MAX_SAMPLES: usize = 1000;

/// One sample of a run: the fleet at the end of the interval, and what happened during it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sample {
    /// End of the interval, seconds since the run began.
    pub t_secs: f64,
    /// Jobs waiting for a worker at the end of the interval.
    pub pending_jobs: usize,
    /// Jobs running at the end of the interval.
    pub running_jobs: usize,
    /// Workers `Creating` or `Connecting`.
    pub starting: usize,
    /// Workers `Ready` (idle).
    pub ready: usize,
    /// Workers `Busy`.
    pub busy: usize,
    /// Workers `Draining`.
    pub draining: usize,
    /// Workers `Terminating` (destroy queued or being retried).
    pub terminating: usize,
    /// Workers provisioned during the interval.
    pub provisioned: u64,
    /// Workers destroyed and unregistered during the interval.
    pub terminated: u64,
    /// Workers declared unhealthy during the interval.
    pub unhealthy: u64,
    /// Failed creates during the interval.
    pub provision_failures: u64,
    /// Median wait of the jobs that started in the last [`Timeline::wait_window_secs`],
    /// seconds (`None`: none started).
    pub wait_p50_secs: Option<f64>,
    /// 95th percentile wait of the jobs that started in the last
    /// [`Timeline::wait_window_secs`], seconds.
    pub wait_p95_secs: Option<f64>,
    /// Age of the oldest job still waiting at the end of the interval, seconds (0: none).
    pub oldest_pending_secs: f64,
}

/// A fault of the scenario, as a time band.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultBand {
    /// `provider outage`, `host stall`, `partition NN%` or `clock stall`.
    pub kind: String,
    /// Start, seconds since the run began.
    pub start_secs: f64,
    /// End, seconds since the run began.
    pub end_secs: f64,
}

/// A run over time: [`MAX_SAMPLES`] samples at most, one per `interval_secs` (a multiple of
/// the scenario's step), plus the scenario's faults as bands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    /// Scenario name.
    pub scenario: String,
    /// Name of the configuration run.
    pub label: String,
    /// Seed.
    pub seed: u64,
    /// Simulated length, seconds.
    pub duration_secs: f64,
    /// Time between samples, seconds.
    pub interval_secs: f64,
    /// The wait percentiles of a sample cover the jobs that started this long before it,
    /// seconds (a rolling window: a single interval often starts too few jobs for a
    /// percentile to mean anything).
    pub wait_window_secs: f64,
    /// The samples, in time order.
    pub samples: Vec<Sample>,
    /// The scenario's faults (the same for every configuration of one scenario).
    pub faults: Vec<FaultBand>,
}

impl Timeline {
    pub(crate) fn new(scenario: &Scenario, label: &str, step_ms: u64, end_ms: u64) -> Self {
        let mut faults = Vec::new();
        let f = &scenario.faults;
        for w in &f.provider_outages {
            faults.push(("provider outage".to_owned(), w.start_secs, w.end_secs));
        }
        for w in &f.host_stalls {
            faults.push(("host stall".to_owned(), w.start_secs, w.end_secs));
        }
        for p in &f.partitions {
            let kind = format!("partition {:.0}%", p.fraction * 100.0);
            faults.push((kind, p.start_secs, p.end_secs));
        }
        for w in &f.clock_stalls {
            faults.push(("clock stall".to_owned(), w.start_secs, w.end_secs));
        }
        // As scheduled: one aimed at a call strikes at the leader's next such call.
        let r = &scenario.replication;
        for p in &r.leader_pauses {
            let end = p.start_secs + p.pause_secs;
            faults.push(("leader pause".to_owned(), p.start_secs, end));
        }
        for c in &r.leader_crashes {
            let end = c.at_secs + c.restart_after_secs.max(1.0);
            faults.push(("leader crash".to_owned(), c.at_secs, end));
        }
        let duration_secs = end_ms as f64 / 1000.0;
        Timeline {
            scenario: scenario.name.clone(),
            label: label.to_owned(),
            seed: scenario.seed,
            duration_secs,
            interval_secs: sample_interval_ms(step_ms, end_ms) as f64 / 1000.0,
            wait_window_secs: wait_window_ms(step_ms, end_ms) as f64 / 1000.0,
            samples: Vec::new(),
            faults: faults
                .into_iter()
                .map(|(kind, start, end)| FaultBand {
                    kind,
                    start_secs: start.min(duration_secs),
                    end_secs: end.min(duration_secs),
                })
                .filter(|b| b.end_secs > b.start_secs)
                .collect(),
        }
    }
}

/// The sampling interval: a whole number of steps, at most [`MAX_SAMPLES`] samples a run.
pub(crate) fn sample_interval_ms(step_ms: u64, end_ms: u64) -> u64 {
    let step_ms = step_ms.max(1);
    let steps = end_ms.div_ceil(step_ms).max(1);
    let per_sample = steps.div_ceil(MAX_SAMPLES as u64).max(1);
    per_sample * step_ms
}

/// The rolling window of the wait percentiles: ten sampling intervals, at least a minute.
pub(crate) fn wait_window_ms(step_ms: u64, end_ms: u64) -> u64 {
    (10 * sample_interval_ms(step_ms, end_ms)).max(60_000)
}

/// What happened since the last sample (the engine adds to it, [`take`](Self::take) resets).
#[derive(Debug, Default, Clone)]
pub(crate) struct Interval {
    pub(crate) provisioned: u64,
    pub(crate) terminated: u64,
    pub(crate) unhealthy: u64,
    pub(crate) provision_failures: u64,
    /// `(start, wait)` (ms) of the jobs that started within the wait window.
    pub(crate) recent: VecDeque<(u64, u64)>,
    /// Scratch space for the percentiles.
    scratch: Vec<u64>,
}

impl Interval {
    /// Fills the interval's part of `sample` (at `now_ms`, waits over the last `window_ms`)
    /// and starts a new interval.
    pub(crate) fn take(&mut self, sample: &mut Sample, now_ms: u64, window_ms: u64) {
        while self
            .recent
            .front()
            .is_some_and(|(at, _)| *at + window_ms <= now_ms)
        {
            self.recent.pop_front();
        }
        self.scratch.clear();
        self.scratch.extend(self.recent.iter().map(|(_, w)| *w));
        self.scratch.sort_unstable();
        let waits = &self.scratch;
        sample.provisioned = std::mem::take(&mut self.provisioned);
        sample.terminated = std::mem::take(&mut self.terminated);
        sample.unhealthy = std::mem::take(&mut self.unhealthy);
        sample.provision_failures = std::mem::take(&mut self.provision_failures);
        sample.wait_p50_secs = (!waits.is_empty()).then(|| percentile(waits, 0.50));
        sample.wait_p95_secs = (!waits.is_empty()).then(|| percentile(waits, 0.95));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_is_whole_steps_and_bounds_the_samples() {
        assert_eq!(sample_interval_ms(1000, 600_000), 1000);
        let i = sample_interval_ms(1000, 4 * 3_600_000);
        assert_eq!(i % 1000, 0);
        assert!(4 * 3_600_000 / i <= MAX_SAMPLES as u64);
        assert_eq!(sample_interval_ms(0, 0), 1);
    }
}
