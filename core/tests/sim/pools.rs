//! Multi-pool simulations: a GPU burst, a spot outage with fallback (compared with the same
//! pools without the fallback), an interruption wave — with every checker rule, including
//! the pools' own (a job only on a worker that satisfies it; no pool above its cap).

use hodei_workers::sim::{Scenario, SimReport, Simulation};
use hodei_workers::{WorkerFilter, POOL_LABEL};

fn run(name: &str, seed: u64) -> SimReport {
    let s = Scenario::builtin(name, seed).expect("built-in scenario");
    Simulation::new(&s, None).unwrap().run()
}

#[test]
fn multi_pool_scenarios_keep_every_rule_over_seeds() {
    for name in ["gpu_burst", "spot_outage", "interruption_wave"] {
        for seed in 1..=3 {
            let r = run(name, seed);
            assert_eq!(r.violations_total, 0, "{name} seed {seed}: {r}");
            assert!(r.jobs_done > 0, "{name} seed {seed}: {r}");
        }
    }
}

/// Pool sizes per name at the end of each step of `s`, up to `until_secs`.
fn pool_sizes(s: &Scenario, until_secs: f64) -> Vec<(u64, Vec<usize>)> {
    let mut sim = Simulation::new(s, None).unwrap();
    let mut out = Vec::new();
    while sim.elapsed_ms() < (until_secs * 1000.0) as u64 && sim.step() {
        let sizes = s
            .pools
            .iter()
            .map(|p| {
                sim.registry()
                    .find(&WorkerFilter::new().label(POOL_LABEL, p.name.as_str()))
                    .unwrap()
                    .len()
            })
            .collect();
        out.push((sim.elapsed_ms(), sizes));
    }
    out
}

#[test]
fn a_spot_outage_falls_back_to_on_demand_and_comes_back() {
    let s = Scenario::builtin("spot_outage", 2).unwrap();
    let sizes = pool_sizes(&s, 1800.0);
    let ondemand_before = sizes
        .iter()
        .filter(|(t, _)| *t < 300_000)
        .map(|(_, n)| n[1])
        .max()
        .unwrap();
    let ondemand_during = sizes
        .iter()
        .filter(|(t, _)| (400_000..900_000).contains(t))
        .map(|(_, n)| n[1])
        .max()
        .unwrap();
    assert_eq!(ondemand_before, 0, "spot serves while it has capacity");
    assert!(
        ondemand_during > 0,
        "on-demand takes over during the outage"
    );
    // After the outage, new demand goes back to spot and on-demand idles out.
    let spot_after = sizes
        .iter()
        .filter(|(t, _)| *t > 1_000_000)
        .map(|(_, n)| n[0])
        .max()
        .unwrap();
    assert!(spot_after > 0, "spot is used again after the outage");
    let (_, last) = sizes.last().unwrap();
    assert!(last[1] <= 1, "on-demand shrinks back: {last:?}");

    // The same run without the fallback pool: jobs wait out the outage.
    let with = Simulation::new(&s, None).unwrap().run();
    let without = Simulation::new(&s, s.compare.as_ref()).unwrap().run();
    assert_eq!(with.jobs_arrived, without.jobs_arrived, "same workload");
    assert_eq!(without.violations_total, 0, "{without}");
    assert!(
        without.wait_max_secs > with.wait_max_secs,
        "fallback shortens the worst wait: {} vs {}",
        with.wait_max_secs,
        without.wait_max_secs
    );
    println!("{}", hodei_workers::sim::compare_table(&with, &without));
}

#[test]
fn an_interruption_wave_reclaims_instances_and_requeues_their_jobs() {
    let r = run("interruption_wave", 4);
    assert!(r.vanished_instances > 0, "{r}");
    assert_eq!(r.lost_jobs, r.requeued_jobs, "{r}");
    assert_eq!(r.violations_total, 0, "{r}");
}

#[test]
fn same_seed_same_multi_pool_run() {
    for name in ["gpu_burst", "spot_outage", "interruption_wave"] {
        assert_eq!(run(name, 9), run(name, 9), "{name}");
    }
}

#[test]
fn a_bad_job_class_says_invalid_argument_once() {
    let mut requirement = hodei_workers::Requirement::new(0);
    requirement.resources.cpu_cores = -1.0;
    let s = Scenario {
        job_classes: vec![hodei_workers::sim::JobClass {
            requirement,
            weight: 1.0,
        }],
        ..Default::default()
    };
    let message = s.validate().unwrap_err().to_string();
    assert!(message.contains("job_classes[0]: "), "{message}");
    assert_eq!(message.matches("invalid argument").count(), 1, "{message}");
}

#[test]
fn a_bad_pool_name_says_invalid_argument_once() {
    let s = Scenario {
        pools: vec![hodei_workers::sim::SimPool {
            name: String::new(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let message = s.validate().unwrap_err().to_string();
    assert!(message.contains("pools[0]: "), "{message}");
    assert_eq!(message.matches("invalid argument").count(), 1, "{message}");
}
