//! Claim by fit: `WorkerFilter::fits` (worker's resources ≥ the job's) and `architecture`,
//! answered by `claim` from the ready index and by `find`.

use std::sync::Arc;

use crate::common::*;
use hodei_workers::*;

fn sized(cpu: f64, gpus: u32, gpu_type: Option<&str>, arch: Architecture) -> Arc<WorkerSpec> {
    Arc::new(WorkerSpec {
        resources: ResourceRequirements {
            cpu_cores: cpu,
            memory_bytes: 8 << 30,
            gpu_count: gpus,
            gpu_type: gpu_type.map(str::to_owned),
            ..Default::default()
        },
        architecture: arch,
        ..WorkerSpec::new("img")
    })
}

#[test]
fn claim_by_fit_takes_a_worker_that_covers_the_job_and_leaves_the_others() {
    let (clock, registry) = registry();
    let small = ready(&registry, sized(2.0, 0, None, Architecture::Amd64));
    clock.advance(std::time::Duration::from_secs(1));
    let gpu = ready(&registry, sized(16.0, 1, Some("a100"), Architecture::Amd64));
    clock.advance(std::time::Duration::from_secs(1));
    // The most recently idle worker: a claim without fit takes it first.
    let arm = ready(&registry, sized(8.0, 0, None, Architecture::Arm64));

    let needs_gpu = ResourceRequirements {
        cpu_cores: 4.0,
        gpu_count: 1,
        gpu_type: Some("a100".into()),
        ..Default::default()
    };
    let filter = WorkerFilter::new().fits(needs_gpu.clone());
    let w = registry.claim(&filter, job("train")).unwrap().unwrap();
    assert_eq!(w.id, gpu);
    // Nothing else fits a GPU job now.
    assert_eq!(registry.claim(&filter, job("train-2")).unwrap(), None);
    assert_eq!(
        registry
            .find(&filter.clone().state(WorkerState::Ready))
            .unwrap(),
        vec![]
    );

    // Architecture and size together: 4 cores on amd64 is nobody (the arm64 one is bigger).
    let amd_4 = WorkerFilter::new()
        .architecture(Architecture::Amd64)
        .fits(ResourceRequirements {
            cpu_cores: 4.0,
            ..Default::default()
        });
    assert_eq!(registry.claim(&amd_4, job("build")).unwrap(), None);
    let w = registry
        .claim(
            &WorkerFilter::new().fits(ResourceRequirements {
                cpu_cores: 4.0,
                ..Default::default()
            }),
            job("build"),
        )
        .unwrap()
        .unwrap();
    assert_eq!(w.id, arm);
    let w = registry
        .claim(
            &WorkerFilter::new().architecture(Architecture::Amd64),
            job("lint"),
        )
        .unwrap()
        .unwrap();
    assert_eq!(w.id, small);
}
