//! The workload: job ids and the pre-drawn arrivals.

use super::*;

pub(super) fn job_id(seq: u64) -> JobId {
    // Always valid: short, no NUL.
    JobId::new(format!("job-{seq:06}")).unwrap_or_else(|_| unreachable!("job ids are valid"))
}

pub(super) fn job_seq(id: &JobId) -> Option<u64> {
    id.as_str().strip_prefix("job-")?.parse().ok()
}

/// The workload as `(arrival_ms, duration_ms)`, sorted by arrival, up to `end_ms`. Drawn from
/// its own stream: the same for every configuration compared on one seed.
pub(super) fn arrivals(scenario: &Scenario, end_ms: u64) -> Result<Vec<(u64, u64)>> {
    let mut out = match &scenario.workload {
        Workload::Poisson {
            rate_per_minute,
            duration,
            bursts,
        } => {
            let mut rng = SimRng::keyed(scenario.seed, STREAM_WORKLOAD, 0);
            let rate_at = |t: u64| -> f64 {
                bursts
                    .iter()
                    .rev()
                    .find(|b| t >= secs_to_ms(b.start_secs) && t < secs_to_ms(b.end_secs))
                    .map_or(*rate_per_minute, |b| b.rate_per_minute)
            };
            // Thinning (Lewis & Shedler): candidates at the peak rate, each kept with
            // probability rate(t) / peak.
            let peak = bursts
                .iter()
                .map(|b| b.rate_per_minute)
                .fold(*rate_per_minute, f64::max);
            let mut out = Vec::new();
            if peak > 0.0 {
                let mean_gap_secs = 60.0 / peak;
                let mut t = 0.0f64;
                loop {
                    t += rng.exponential(mean_gap_secs);
                    let at = secs_to_ms(t);
                    if at >= end_ms {
                        break;
                    }
                    let keep = rng.uniform() * peak < rate_at(at);
                    let dur = duration.sample_ms(&mut rng);
                    if keep {
                        out.push((at, dur));
                    }
                    if out.len() > MAX_JOBS {
                        return Err(Error::invalid(format!(
                            "workload: more than {MAX_JOBS} jobs; shorten duration_secs or lower the rate"
                        )));
                    }
                }
            }
            out
        }
        Workload::Trace { jobs } => jobs
            .iter()
            .map(|[a, d]| (secs_to_ms(*a), secs_to_ms(*d)))
            .filter(|(a, _)| *a < end_ms)
            .collect(),
        Workload::TraceFile { path } => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::invalid(format!(
                    "workload: cannot read trace file {}: {e}",
                    crate::error::quote_input(path)
                ))
            })?;
            parse_trace(&text)?
                .iter()
                .map(|[a, d]| (secs_to_ms(*a), secs_to_ms(*d)))
                .filter(|(a, _)| *a < end_ms)
                .collect()
        }
    };
    out.sort_by_key(|(a, _)| *a);
    Ok(out)
}
