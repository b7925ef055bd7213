//! The simulation's tests, one binary (it needs the `sim` feature:
//! `cargo test -p hodei-workers --features sim --test sim`; one module: `... --test sim seeds::`).
//!
//! - `checkers`: each invariant of the checker catches a deliberately broken registry, provider
//!   or host loop;
//! - `determinism`: one seed and configuration, one run; scenario files parse; bad scenarios are
//!   errors;
//! - `findings`: what seeded runs showed about the lifecycle manager, replayed;
//! - `plot`: the timeline and its SVG/HTML picture;
//! - `pools`: multi-pool scenarios;
//! - `replicated`: several managers on one lease, the leader paused and killed, many seeds;
//! - `seeds`: many seeds across the fault scenarios, every invariant after every step.
//!
//! A new simulation test goes here as a module.

use hodei_workers::sim::{Scenario, SimReport, Simulation, SIM_PANIC_MESSAGE};

mod checkers;
mod determinism;
mod findings;
mod plot;
mod pools;
mod replicated;
mod seeds;

/// The simulated provider panics on purpose (the manager catches it); without this, every one
/// of those panics would print (and, with RUST_BACKTRACE set, capture) a backtrace. Other
/// panics (a failing assertion) still print.
fn quiet_sim_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let ours = info
                .payload()
                .downcast_ref::<String>()
                .is_some_and(|m| m.starts_with(SIM_PANIC_MESSAGE));
            if !ours {
                default_hook(info);
            }
        }));
    });
}

/// The seeds a sweep of the built-in scenario `name` runs: 1..=`default` (SIM_SEEDS=<count>
/// changes the count), only SIM_SEED=<n> when set, none when SIM_SCENARIO names another one.
fn seeds_for(name: &str, default: u64) -> Vec<u64> {
    if let Ok(only) = std::env::var("SIM_SCENARIO") {
        if only != name {
            return Vec::new();
        }
    }
    if let Ok(seed) = std::env::var("SIM_SEED") {
        return vec![seed.parse().expect("SIM_SEED must be an unsigned integer")];
    }
    let n = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    (1..=n).collect()
}

/// Runs `scenario` and returns its report; panics if any invariant was violated, with the
/// commands that replay the run (`module`: the test module whose sweep ran it). Prints the
/// report when replaying one seed (SIM_SEED set).
fn run_clean(scenario: &Scenario, module: &str) -> SimReport {
    quiet_sim_panics();
    let (name, seed) = (&scenario.name, scenario.seed);
    let report = Simulation::new(scenario, None)
        .expect("valid scenario")
        .run();
    if std::env::var("SIM_SEED").is_ok() {
        println!("{report}");
    }
    if report.violations_total > 0 {
        panic!(
            "scenario {name} seed {seed}: {} invariant violation(s)\n{report}\nreplay with:\n  \
             SIM_SCENARIO={name} SIM_SEED={seed} cargo test -p hodei-workers --features sim --test sim \
             {module}:: -- --nocapture\n  cargo run --release -p hodei-workers --features sim --example \
             simulate -- --builtin {name} --seed {seed}",
            report.violations_total
        );
    }
    report
}
