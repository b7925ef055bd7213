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

use hodei_workers::sim::SIM_PANIC_MESSAGE;

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
