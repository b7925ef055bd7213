//! `make demo`: the lifecycle manager driving **real OS processes** as workers.
//!
//! The demo binary runs in two roles:
//! - **host** (default): a registry, a [`WorkerLifecycleManager`] and a `ProcessProvider` that
//!   spawns this same binary with `--agent`, its worker id (made by the manager before the
//!   provider is called) in `HODEI_WORKER_ID`. The host feeds a queue of jobs through
//!   `claim`/`release`, calls `tick` every 150 ms, kills one worker mid-job to show detection
//!   and requeueing, and lets the fleet scale back down when the queue is empty.
//! - **agent** (`--agent`, `HODEI_WORKER_ID=<id>`): reports in (`hello <id>`) and heartbeats
//!   (`hb <id>`) with that id over its stdout pipe, runs the jobs it reads on stdin (`sleep` or
//!   `sh -c`), and exits when stdin closes.
//!
//! Run `cargo run --release -p hodei-workers --example demo` (add `--quick`, or set
//! `HODEI_DEMO_QUICK=1`, for the short CI variant). The demo checks its own outcome and exits
//! non-zero if a job was lost for good, if the killed worker's job was not requeued and
//! finished elsewhere, if the fleet did not scale down, or if a process was leaked.

// Beside this file, in `demo/` (no `main.rs` there, so Cargo does not take them for examples).
#[cfg(unix)]
#[path = "demo/agent.rs"]
mod agent;
#[cfg(unix)]
#[path = "demo/host.rs"]
mod host;
#[cfg(unix)]
#[path = "demo/process_provider.rs"]
mod process_provider;

#[cfg(unix)]
fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--agent") => agent::run(&std::env::var(agent::WORKER_ID_VAR).unwrap_or_default()),
        _ => {
            let quick = args.iter().any(|a| a == "--quick")
                || std::env::var("HODEI_DEMO_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
            host::run(quick)
        }
    }
}

#[cfg(not(unix))]
fn main() {
    eprintln!("the demo spawns and kills Unix processes; it runs on Unix only");
}
