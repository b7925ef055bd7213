//! Seeded fleet simulation: what would this autoscaling policy do on this workload?
//!
//! ```text
//! cargo run --release -p hodei-workers --features sim --example simulate -- \
//!     [SCENARIO.json] [options]
//!
//!   SCENARIO.json       a scenario file (see core/examples/scenarios/); without one, the
//!                       built-in `default` scenario (steady load, 4 simulated hours)
//!   --builtin NAME      a built-in scenario instead: default, provider_outage, host_stall,
//!                       partition, clock_stall, flaky, and the multi-pool gpu_burst,
//!                       spot_outage (compared with "spot only"), interruption_wave, and
//!                       the replicated leader_pause, leader_crash, failover_flaky
//!   --replicas N        run N managers on one registry and one lease (replicated mode; see
//!                       the scenario's `replication` section for leader pauses and crashes)
//!   --seed N            override the scenario's seed
//!   --duration SECS     override the simulated length
//!   --compare FILE      run FILE's `lifecycle` (and `worker`, `label`, `pools`: another pool
//!                       policy) on the same workload, faults and seed, and print both side
//!                       by side
//!   --json              print the report(s) as JSON
//!   --plot FILE         draw the run(s) over simulated time: pending jobs, workers by
//!                       state, provisions/terminations, faults as shaded bands, job wait
//!                       percentiles (both configurations on shared axes with --compare);
//!                       an SVG file, or an HTML page with the reports when FILE ends in .html
//! ```
//!
//! A scenario file that holds a `compare` section is compared without `--compare`. Exit
//! status: 0, or 1 when an invariant was violated, 2 on bad input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use hodei_workers::sim::{
    compare_table, plot_html, plot_svg, Scenario, SimReport, Simulation, Timeline, Variant,
    Workload,
};

struct Args {
    scenario: Option<PathBuf>,
    builtin: Option<String>,
    seed: Option<u64>,
    duration: Option<f64>,
    replicas: Option<usize>,
    compare: Option<PathBuf>,
    json: bool,
    plot: Option<PathBuf>,
}

fn usage() -> &'static str {
    "usage: simulate [SCENARIO.json] [--builtin NAME] [--seed N] [--duration SECS] \
     [--replicas N] [--compare OTHER.json] [--json] [--plot OUT.svg|OUT.html]"
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        scenario: None,
        builtin: None,
        seed: None,
        duration: None,
        replicas: None,
        compare: None,
        json: false,
        plot: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--builtin" => args.builtin = Some(value("--builtin")?),
            "--seed" => {
                let v = value("--seed")?;
                args.seed = Some(v.parse().map_err(|_| format!("bad --seed {v:?}"))?);
            }
            "--replicas" => {
                let v = value("--replicas")?;
                args.replicas = Some(v.parse().map_err(|_| format!("bad --replicas {v:?}"))?);
            }
            "--duration" => {
                let v = value("--duration")?;
                args.duration = Some(v.parse().map_err(|_| format!("bad --duration {v:?}"))?);
            }
            "--compare" => args.compare = Some(PathBuf::from(value("--compare")?)),
            "--json" => args.json = true,
            "--plot" => args.plot = Some(PathBuf::from(value("--plot")?)),
            "-h" | "--help" => return Err(usage().to_owned()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}\n{}", usage())),
            path if args.scenario.is_none() => args.scenario = Some(PathBuf::from(path)),
            extra => return Err(format!("unexpected argument {extra:?}\n{}", usage())),
        }
    }
    Ok(args)
}

/// Reads a scenario file; a relative trace file path is taken relative to the file.
fn load(path: &Path) -> Result<Scenario, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut scenario =
        Scenario::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Workload::TraceFile { path: trace } = &mut scenario.workload {
        let p = Path::new(trace.as_str());
        if p.is_relative() {
            if let Some(dir) = path.parent() {
                *trace = dir.join(p).to_string_lossy().into_owned();
            }
        }
    }
    Ok(scenario)
}

fn main() -> ExitCode {
    // The simulated provider panics on purpose (the manager catches it): keep those quiet,
    // report any other panic as usual.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let quiet = info
            .payload()
            .downcast_ref::<String>()
            .is_some_and(|m| m.starts_with(hodei_workers::sim::SIM_PANIC_MESSAGE));
        if !quiet {
            default_hook(info);
        }
    }));

    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let loaded = match (&args.scenario, &args.builtin) {
        (Some(_), Some(_)) => Err("give a scenario file or --builtin, not both".to_owned()),
        (Some(path), None) => load(path),
        (None, name) => {
            let name = name.as_deref().unwrap_or("default");
            Scenario::builtin(name, args.seed.unwrap_or(1)).ok_or_else(|| {
                format!(
                    "unknown built-in scenario {name:?}; known: {}",
                    Scenario::builtin_names().join(", ")
                )
            })
        }
    };
    let mut scenario = match loaded {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    if let Some(d) = args.duration {
        scenario.duration_secs = d;
    }
    if let Some(n) = args.replicas {
        scenario.replication.replicas = n;
    }
    if let Some(path) = &args.compare {
        match load(path) {
            Ok(other) => {
                scenario.compare = Some(Variant {
                    label: if other.label == scenario.label {
                        format!("{} ({})", other.label, path.display())
                    } else {
                        other.label
                    },
                    lifecycle: other.lifecycle,
                    worker: Some(other.worker),
                    pools: (!other.pools.is_empty()).then_some(other.pools),
                })
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    }

    let started = Instant::now();
    let mut reports: Vec<SimReport> = Vec::new();
    let mut timelines: Vec<Timeline> = Vec::new();
    let variants: Vec<Option<Variant>> = match scenario.compare.clone() {
        Some(v) => vec![None, Some(v)],
        None => vec![None],
    };
    for variant in &variants {
        match Simulation::new(&scenario, variant.as_ref()) {
            Ok(sim) => {
                let (report, timeline) = sim.run_recorded();
                reports.push(report);
                timelines.push(timeline);
            }
            Err(e) => {
                eprintln!("invalid scenario: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let elapsed = started.elapsed();

    if let Some(path) = &args.plot {
        let html = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
        let doc = if html {
            let runs: Vec<_> = reports.iter().zip(&timelines).collect();
            plot_html(&runs)
        } else {
            plot_svg(&timelines.iter().collect::<Vec<_>>())
        };
        if let Err(e) = std::fs::write(path, doc) {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
        eprintln!("picture written to {}", path.display());
    }

    if args.json {
        match serde_json::to_string_pretty(&reports) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("cannot write JSON: {e}");
                return ExitCode::from(2);
            }
        }
    } else if let [a, b] = reports.as_slice() {
        print!("{}", compare_table(a, b));
    } else {
        print!("{}", reports[0]);
    }
    eprintln!(
        "simulated {:.1} h x {} config(s) in {:.2} s; replay: --seed {}",
        scenario.duration_secs / 3600.0,
        reports.len(),
        elapsed.as_secs_f64(),
        scenario.seed
    );
    if reports.iter().any(|r| r.violations_total > 0) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
