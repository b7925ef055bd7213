//! A seeded, deterministic fleet simulation: fault injection for the tests, policy what-if
//! for the users.
//!
//! A [`Simulation`] drives the real [`InMemoryWorkerRegistry`](crate::InMemoryWorkerRegistry)
//! and [`WorkerLifecycleManager`](crate::WorkerLifecycleManager) on a
//! [`ManualClock`](crate::ManualClock) through a [`Scenario`]:
//!
//! - a simulated provider ([`SimProvider`] on a [`Cloud`]): boot latency distribution, slow
//!   boots, create and destroy failures, panics, instances that vanish, outage windows;
//! - simulated agents: heartbeats with jitter, lost heartbeats, crashes mid-job;
//! - a workload: Poisson arrivals with bursts and a duration distribution, or a trace of
//!   `(arrival, duration)`;
//! - a host loop that claims jobs, releases them when their agent finishes, requeues lost
//!   jobs, reconciles and ticks;
//! - faults on a schedule: provider outage, host stall, partition (mass heartbeat loss),
//!   clock stall, a subscriber that never reads.
//!
//! After every step a [`Checker`] verifies the contract ([`Rule`]): the registry invariants of
//! DESIGN.md §3, no early expiry, no leaked instance, no lost job, never above `max_workers`,
//! bounded event memory. The same scenario and seed give the same run ([`SimReport`]'s
//! `trace_hash`).
//!
//! ```
//! use hodei_workers::sim::{Scenario, Simulation, Variant};
//!
//! let mut scenario = Scenario::builtin("flaky", 11).unwrap();
//! scenario.duration_secs = 600.0;
//! let base = Simulation::new(&scenario, None)?.run();
//! let warm = Variant {
//!     label: "warm-pool-3".into(),
//!     lifecycle: hodei_workers::WorkerLifecycleConfig {
//!         min_ready_workers: 3,
//!         ..scenario.lifecycle.clone()
//!     },
//!     worker: None,
//!     pools: None,
//! };
//! let other = Simulation::new(&scenario, Some(&warm))?.run();
//! assert_eq!(base.jobs_arrived, other.jobs_arrived, "same workload");
//! assert_eq!(base.violations_total + other.violations_total, 0);
//! println!("{}", hodei_workers::sim::compare_table(&base, &other));
//! # Ok::<(), hodei_workers::Error>(())
//! ```

mod check;
mod cloud;
mod engine;
mod plot;
mod replica;
mod report;
mod rng;
mod scenario;
mod timeline;

pub use check::{Checker, Rule, StepView, Violation, MAX_KEPT_VIOLATIONS};
pub use cloud::{Cloud, CloudStats, Instance, SimProvider, SIM_PANIC_MESSAGE};
pub use engine::{Hooks, Simulation, MAX_JOBS, SIM_EPOCH_MS};
pub use plot::{plot_html, plot_svg};
pub use report::{compare_table, SimReport};
pub use rng::{mix, splitmix64, SimRng};
pub use scenario::{
    parse_trace, AgentModel, Burst, Dist, FaultPoint, Faults, HostModel, InterruptionWave,
    JobClass, LeaderCrash, LeaderPause, Partition, ProviderModel, Replication, Scenario, SimPool,
    Variant, Window, Workload, ARMED_FOR_SECS, MAX_REPLICAS,
};
pub use timeline::{FaultBand, Sample, Timeline, MAX_SAMPLES};
