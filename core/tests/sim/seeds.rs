//! Many seeds across the fault scenarios, every invariant checked after every step.
//!
//! A failure prints the scenario, the seed, the violations and the commands that replay it:
//! `SIM_SCENARIO=<name> SIM_SEED=<n> cargo test -p hodei-workers --features sim --test sim seeds:: -- --nocapture`
//! runs that one seed only (SIM_SEEDS=<count> changes how many seeds each scenario runs).

use hodei_workers::sim::{Scenario, SimReport};

/// Seeds per fault scenario: 5 scenarios x 45 = 225 runs in the default `cargo test`.
const SEEDS: u64 = 45;

fn run(name: &str, seed: u64) -> SimReport {
    let scenario = Scenario::builtin(name, seed).expect("a built-in fault scenario");
    crate::run_clean(&scenario, "seeds")
}

/// Runs every seed of `name` and returns the reports (panics on the first violating seed).
fn sweep(name: &str) -> Vec<SimReport> {
    crate::seeds_for(name, SEEDS)
        .into_iter()
        .map(|s| run(name, s))
        .collect()
}

fn replaying() -> bool {
    std::env::var("SIM_SEED").is_ok()
}

fn total(reports: &[SimReport], f: impl Fn(&SimReport) -> u64) -> u64 {
    reports.iter().map(f).sum()
}

#[test]
fn provider_outage_seeds() {
    let reports = sweep("provider_outage");
    if reports.is_empty() || replaying() {
        return;
    }
    // The outage really bit: creates failed, the manager backed off, and the fleet recovered
    // (jobs still got done).
    assert!(total(&reports, |r| r.provision_failures) > 0);
    assert!(reports.iter().all(|r| r.jobs_done > r.jobs_arrived / 2));
    // The provider backs off instead of being hammered: a 600 s outage ticked every 2 s
    // would be ~300 failed creates; exponential back-off (5 s doubling) makes it a handful.
    for r in &reports {
        assert!(
            r.provision_failures <= 12,
            "seed {}: {} failed creates during one outage: no back-off?\n{r}",
            r.seed,
            r.provision_failures
        );
    }
    // Nothing in this scenario silences an agent: nobody is declared unhealthy.
    assert_eq!(total(&reports, |r| r.unhealthy_detections), 0);
}

#[test]
fn host_stall_seeds() {
    let reports = sweep("host_stall");
    if reports.is_empty() || replaying() {
        return;
    }
    // Every run stalled longer than heartbeat_timeout once: a grace was granted each time and
    // the fleet was not expired wholesale.
    assert!(
        reports.iter().all(|r| r.stall_graces >= 1),
        "a stall went unnoticed"
    );
    assert!(reports.iter().all(|r| r.jobs_done > 0));
}

#[test]
fn partition_seeds() {
    let reports = sweep("partition");
    if reports.is_empty() || replaying() {
        return;
    }
    // Heartbeats were lost en masse: some runs lost workers (and requeued their jobs), some
    // runs had the brake hold.
    assert!(total(&reports, |r| r.unhealthy_detections) > 0);
    assert!(total(&reports, |r| r.requeued_jobs) > 0);
    assert!(total(&reports, |r| r.mass_expiry_holds) > 0);
    assert_eq!(
        total(&reports, |r| r.lost_jobs),
        total(&reports, |r| r.requeued_jobs),
        "every lost job was requeued"
    );
}

#[test]
fn clock_stall_seeds() {
    let reports = sweep("clock_stall");
    if reports.is_empty() || replaying() {
        return;
    }
    // The 150 s clock stall ends in a jump past heartbeat_timeout: treated as a stall, and
    // nobody is expired for it.
    assert!(reports.iter().all(|r| r.stall_graces >= 1));
    for r in &reports {
        assert_eq!(
            r.unhealthy_detections, 0,
            "seed {}: clock jump expired workers\n{r}",
            r.seed
        );
    }
}

#[test]
fn flaky_provider_and_agents_seeds() {
    let reports = sweep("flaky");
    if reports.is_empty() || replaying() {
        return;
    }
    for (what, n) in [
        (
            "provision failures",
            total(&reports, |r| r.provision_failures),
        ),
        ("destroy failures", total(&reports, |r| r.destroy_failures)),
        ("provider panics", total(&reports, |r| r.provider_panics)),
        (
            "vanished instances",
            total(&reports, |r| r.vanished_instances),
        ),
        ("agent crashes", total(&reports, |r| r.agent_crashes)),
        (
            "unhealthy detections",
            total(&reports, |r| r.unhealthy_detections),
        ),
        ("requeued jobs", total(&reports, |r| r.requeued_jobs)),
        (
            "lazy subscriber drops",
            total(&reports, |r| r.lazy_subscriber_dropped),
        ),
    ] {
        assert!(n > 0, "the flaky scenario never produced {what}");
    }
}
