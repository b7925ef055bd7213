//! Same seed and configuration ⇒ the identical run; the scenario files parse and run; two
//! configurations compared on one seed see the same workload; bad scenarios are errors.

use std::path::PathBuf;

use hodei_workers::sim::{parse_trace, Scenario, Simulation, Variant, Workload};
use hodei_workers::{Error, WorkerLifecycleConfig};

fn short(name: &str, seed: u64, secs: f64) -> Scenario {
    let mut s = Scenario::builtin(name, seed).expect("built-in scenario");
    s.duration_secs = secs;
    s
}

#[test]
fn same_seed_same_run_different_seed_different_run() {
    for name in Scenario::fault_names() {
        let s = short(name, 7, 900.0);
        let a = Simulation::new(&s, None).unwrap().run();
        let b = Simulation::new(&s, None).unwrap().run();
        assert_eq!(a, b, "{name}: two runs of one seed differ");
        assert_eq!(a.violations_total, 0, "{a}");
        let c = Simulation::new(&short(name, 8, 900.0), None).unwrap().run();
        assert_ne!(
            a.trace_hash, c.trace_hash,
            "{name}: seeds 7 and 8 gave one run"
        );
    }
}

#[test]
fn step_by_step_equals_run() {
    let s = short("flaky", 3, 600.0);
    let mut sim = Simulation::new(&s, None).unwrap();
    let mut steps = 0;
    while sim.step() {
        steps += 1;
    }
    assert!(!sim.step(), "a finished run stays finished");
    let stepped = sim.report();
    assert_eq!(stepped.steps, steps + 1);
    assert_eq!(stepped, Simulation::new(&s, None).unwrap().run());
}

#[test]
fn compared_configurations_share_the_workload() {
    let s = short("provider_outage", 5, 1200.0);
    let warm = Variant {
        label: "warm".into(),
        lifecycle: WorkerLifecycleConfig {
            min_ready_workers: 4,
            ..s.lifecycle.clone()
        },
        worker: None,
        pools: None,
    };
    let a = Simulation::new(&s, None).unwrap().run();
    let b = Simulation::new(&s, Some(&warm)).unwrap().run();
    assert_eq!(a.jobs_arrived, b.jobs_arrived);
    assert_eq!(b.label, "warm");
    // A warmer pool costs more and makes fewer jobs wait for a boot.
    assert!(b.worker_seconds > a.worker_seconds, "{a}\n{b}");
    assert!(b.cold_starts <= a.cold_starts, "{a}\n{b}");
    let table = hodei_workers::sim::compare_table(&a, &b);
    assert!(
        table.contains("wait p95 (s)") && table.contains("warm"),
        "{table}"
    );
}

fn scenarios_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/scenarios")
}

#[test]
fn scenario_files_parse_and_run_clean() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(scenarios_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            names.push(path);
        }
    }
    names.sort();
    assert!(names.len() >= 4, "{names:?}");
    for path in names {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut s =
            Scenario::from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Workload::TraceFile { path: trace } = &mut s.workload {
            *trace = scenarios_dir().join(&*trace).to_string_lossy().into_owned();
        }
        // A short slice of each: the files are sized for the release CLI.
        s.duration_secs = s.duration_secs.min(900.0);
        let variants: Vec<Option<Variant>> = std::iter::once(None)
            .chain(s.compare.clone().map(Some))
            .collect();
        for v in variants {
            let r = Simulation::new(&s, v.as_ref()).unwrap().run();
            assert_eq!(r.violations_total, 0, "{}: {r}", path.display());
            assert!(r.jobs_arrived > 0, "{}: no job arrived", path.display());
        }
    }
}

#[test]
fn trace_workloads_replay_exactly() {
    let mut s = short("provider_outage", 1, 400.0);
    s.workload = Workload::Trace {
        jobs: vec![
            [0.0, 30.0],
            [5.0, 10.0],
            [5.0, 20.0],
            [399.0, 1.0],
            [401.0, 1.0],
        ],
    };
    let r = Simulation::new(&s, None).unwrap().run();
    assert_eq!(r.jobs_arrived, 4, "the job after the end never arrives");
    assert!(r.jobs_done >= 3, "{r}");
    assert_eq!(
        parse_trace("# arrival,duration\n0,30\n\n5.5, 10\n").unwrap(),
        vec![[0.0, 30.0], [5.5, 10.0]]
    );
    for bad in ["1", "1,2,3", "a,b", "-1,2", "1,NaN"] {
        assert!(
            matches!(parse_trace(bad), Err(Error::InvalidArgument(_))),
            "{bad:?}"
        );
    }
    s.workload = Workload::TraceFile {
        path: "/nonexistent/trace.csv".into(),
    };
    assert!(matches!(
        Simulation::new(&s, None),
        Err(Error::InvalidArgument(msg)) if msg.contains("trace")
    ));
}

#[test]
fn nonsense_scenarios_are_invalid_argument() {
    let bad = [
        r#"{"step_secs": 0}"#,
        r#"{"duration_secs": -5}"#,
        r#"{"provider": {"create_failure_probability": 1.5}}"#,
        r#"{"agents": {"heartbeat_interval_secs": 0}}"#,
        r#"{"faults": {"host_stalls": [{"start_secs": 10, "end_secs": 5}]}}"#,
        r#"{"faults": {"partitions": [{"start_secs": 1, "end_secs": 5, "fraction": 2}]}}"#,
        r#"{"lifecycle": {"max_workers": 0}}"#,
        r#"{"lifecycle": {"heartbeat_timout": 5}}"#,
        r#"{"workload": {"kind": "poisson", "rate_per_minute": -1, "duration": {"dist": "fixed", "secs": 1}}}"#,
        r#"{"workload": {"kind": "poisson", "rate_per_minute": 1, "duration": {"dist": "uniform", "min": 5, "max": 1}}}"#,
        r#"{"workload": {"kind": "teleport"}}"#,
        r#"{"replication": {"replicas": 2, "leader_pauses": [{"start_secs": 5, "pause_secs": 5, "clock_missed": true}]}}"#,
        r#"{"replication": {"replicas": 2, "leader_pauses": [{"start_secs": 5, "pause_secs": 5, "during": "commit"}]}}"#,
        r#"{"no_such_field": 1}"#,
        r#"not json"#,
        // serde's positional form (a struct as the array of its values), at any depth.
        r#"[]"#,
        r#"{"faults": {"provider_outages": [[9000, 9600]]}}"#,
        r#"{"faults": []}"#,
        r#"{"workload": ["poisson", 1]}"#,
        r#"{"replication": {"replicas": 2, "leader_crashes": [[5]]}}"#,
    ];
    for text in bad {
        assert!(
            matches!(Scenario::from_json(text), Err(Error::InvalidArgument(_))),
            "{text} should be refused"
        );
    }
    assert!(Scenario::from_json("{}").is_ok());
    let write = r#"{"replication": {"replicas": 2, "leader_pauses":
        [{"start_secs": 5, "pause_secs": 5, "during": "write", "clock_missed": true}]}}"#;
    assert!(Scenario::from_json(write).is_ok());
    assert!(Scenario::builtin("nope", 1).is_none());
    for name in Scenario::builtin_names() {
        Scenario::builtin(name, 1).unwrap().validate().unwrap();
    }
}
