//! The built-in scenarios.

use super::*;

impl Scenario {
    /// The names of the built-in scenarios: `default` (steady load) and the small fault
    /// scenarios the tests run over many seeds — among them the multi-pool ones: `gpu_burst`
    /// (CPU and GPU pools, 30 % of the jobs need a GPU), `spot_outage` (a spot GPU pool without
    /// capacity for ten minutes falls back to an on-demand pool; compared with "spot only"),
    /// `interruption_wave` (half, then all, of a spot pool reclaimed with short notice) — and
    /// the replicated ones (two or three managers on one registry, see [`Replication`]):
    /// `leader_pause` (the leader stops past its lease, between ticks and inside a create and
    /// a destroy), `leader_crash` (the leader is killed between ticks, inside a create and
    /// inside a destroy, and restarts), `failover_flaky` (three replicas, a flaky provider,
    /// pauses and crashes), `failover_random` (two or three replicas, a somewhat flaky
    /// provider, and six leader faults whose kind, place, time and length are drawn from the
    /// seed: every seed another schedule).
    pub fn builtin_names() -> &'static [&'static str] {
        &[
            "default",
            "provider_outage",
            "host_stall",
            "partition",
            "clock_stall",
            "flaky",
            "gpu_burst",
            "spot_outage",
            "interruption_wave",
            "leader_pause",
            "leader_crash",
            "failover_flaky",
            "failover_random",
        ]
    }

    /// The fault scenarios (small fleets, 30 simulated minutes): what the tests run over many
    /// seeds.
    pub fn fault_names() -> &'static [&'static str] {
        &Self::builtin_names()[1..]
    }

    /// A built-in scenario by name (see [`builtin_names`](Self::builtin_names)), with `seed`.
    pub fn builtin(name: &str, seed: u64) -> Option<Scenario> {
        let mut s = match name {
            "default" => Scenario::default(),
            "provider_outage" => {
                let mut s = Self::small(name);
                s.faults.provider_outages = vec![Window {
                    start_secs: 300.0,
                    end_secs: 900.0,
                }];
                s.provider.destroy_failure_probability = 0.05;
                s
            }
            "host_stall" => {
                let mut s = Self::small(name);
                s.faults.host_stalls = vec![
                    Window {
                        start_secs: 400.0,
                        end_secs: 580.0,
                    },
                    Window {
                        start_secs: 1200.0,
                        end_secs: 1230.0,
                    },
                ];
                s
            }
            "partition" => {
                let mut s = Self::small(name);
                s.faults.partitions = vec![
                    // Most of the fleet: the brake must hold.
                    Partition {
                        start_secs: 400.0,
                        end_secs: 560.0,
                        fraction: 0.8,
                    },
                    // A minority: those may be declared unhealthy, their jobs requeued.
                    Partition {
                        start_secs: 1100.0,
                        end_secs: 1250.0,
                        fraction: 0.3,
                    },
                ];
                s
            }
            "clock_stall" => {
                let mut s = Self::small(name);
                s.faults.clock_stalls = vec![
                    Window {
                        start_secs: 300.0,
                        end_secs: 450.0,
                    },
                    Window {
                        start_secs: 1000.0,
                        end_secs: 1030.0,
                    },
                ];
                s
            }
            "flaky" => {
                let mut s = Self::small(name);
                s.provider.create_failure_probability = 0.15;
                s.provider.destroy_failure_probability = 0.2;
                s.provider.panic_probability = 0.05;
                s.provider.vanish_per_hour = 0.5;
                s.provider.slow_boot_probability = 0.1;
                s.agents.crash_per_hour = 0.5;
                s.agents.heartbeat_loss_probability = 0.1;
                s.host.reconcile_interval_secs = 120.0;
                s
            }
            "gpu_burst" => {
                let mut s = Self::small(name);
                s.lifecycle.max_workers = 10;
                s.pools = vec![
                    SimPool {
                        name: "cpu".into(),
                        min_ready: 1,
                        max_workers: 6,
                        scale_up_cooldown_secs: 5.0,
                        ..SimPool::default()
                    },
                    gpu_pool("gpu", 0, 4),
                ];
                s.job_classes = vec![
                    JobClass {
                        requirement: Requirement::new(0),
                        weight: 0.7,
                    },
                    JobClass {
                        requirement: Requirement::new(0).label("gpu", "a100"),
                        weight: 0.3,
                    },
                ];
                s
            }
            "spot_outage" => {
                let mut s = Self::small(name);
                s.lifecycle.max_workers = 12;
                let mut spot = gpu_pool("gpu-spot", 10, 9);
                spot.no_capacity = vec![Window {
                    start_secs: 300.0,
                    end_secs: 900.0,
                }];
                s.pools = vec![spot.clone(), gpu_pool("gpu-ondemand", 0, 3)];
                s.job_classes = vec![JobClass {
                    requirement: Requirement::new(0).label("gpu", "a100"),
                    weight: 1.0,
                }];
                s.compare = Some(Variant {
                    label: "spot only".into(),
                    lifecycle: s.lifecycle.clone(),
                    worker: None,
                    pools: Some(vec![spot]),
                });
                s
            }
            "interruption_wave" => {
                let mut s = Self::small(name);
                s.lifecycle.max_workers = 10;
                let mut spot = gpu_pool("spot", 10, 6);
                spot.labels.clear();
                spot.interruptions = vec![
                    InterruptionWave {
                        at_secs: 700.0,
                        fraction: 0.5,
                        notice_secs: 60.0,
                    },
                    InterruptionWave {
                        at_secs: 1300.0,
                        fraction: 1.0,
                        notice_secs: 30.0,
                    },
                ];
                let mut ondemand = gpu_pool("ondemand", 0, 4);
                ondemand.labels.clear();
                s.pools = vec![spot, ondemand];
                s
            }
            "leader_pause" => {
                let mut s = Self::replicated(name, 2);
                let pause = |start_secs, pause_secs, during| LeaderPause {
                    start_secs,
                    pause_secs,
                    during,
                    clock_missed: false,
                };
                s.replication.leader_pauses = vec![
                    // Past the lease: the other replica takes over; the old leader wakes up.
                    pause(300.0, 40.0, FaultPoint::BetweenTicks),
                    // Inside a create (before the burst scales up), then inside a destroy.
                    pause(560.0, 30.0, FaultPoint::Create),
                    pause(1000.0, 30.0, FaultPoint::Destroy),
                    // Inside a registry write, after the manager's own fence, and unseen by
                    // its own clock: the other replica takes over, the store refuses the
                    // write when it resumes, and the refusal (not its clock) stops the rest of
                    // its tick.
                    LeaderPause {
                        clock_missed: true,
                        ..pause(1150.0, 30.0, FaultPoint::Write)
                    },
                    // Inside a destroy, unseen by its clock: before its next provider call it
                    // asks the store, which says another replica took over.
                    LeaderPause {
                        clock_missed: true,
                        ..pause(1250.0, 30.0, FaultPoint::Destroy)
                    },
                    // Shorter than the trust window: nothing changes hands.
                    pause(1400.0, 6.0, FaultPoint::BetweenTicks),
                ];
                s
            }
            "leader_crash" => {
                let mut s = Self::replicated(name, 2);
                let crash = |at_secs, restart_after_secs, during| LeaderCrash {
                    at_secs,
                    restart_after_secs,
                    during,
                };
                s.provider.destroy_failure_probability = 0.1;
                s.replication.leader_crashes = vec![
                    crash(300.0, 30.0, FaultPoint::BetweenTicks),
                    crash(560.0, 20.0, FaultPoint::Create),
                    crash(1000.0, 60.0, FaultPoint::Destroy),
                    // Inside a registry write: it never reaches the store.
                    crash(1150.0, 20.0, FaultPoint::Write),
                    crash(1300.0, 5.0, FaultPoint::BetweenTicks),
                ];
                s
            }
            "failover_flaky" => {
                let mut s = Self::replicated(name, 3);
                s.provider.create_failure_probability = 0.1;
                s.provider.destroy_failure_probability = 0.15;
                s.provider.panic_probability = 0.03;
                s.provider.vanish_per_hour = 0.3;
                s.agents.crash_per_hour = 0.3;
                s.agents.heartbeat_loss_probability = 0.05;
                s.replication.leader_pauses = vec![
                    LeaderPause {
                        start_secs: 450.0,
                        pause_secs: 25.0,
                        during: FaultPoint::Create,
                        clock_missed: false,
                    },
                    LeaderPause {
                        start_secs: 1200.0,
                        pause_secs: 20.0,
                        during: FaultPoint::Destroy,
                        clock_missed: false,
                    },
                ];
                s.replication.leader_crashes = vec![
                    LeaderCrash {
                        at_secs: 580.0,
                        restart_after_secs: 10.0,
                        during: FaultPoint::Create,
                    },
                    LeaderCrash {
                        at_secs: 900.0,
                        restart_after_secs: 40.0,
                        during: FaultPoint::Destroy,
                    },
                    LeaderCrash {
                        at_secs: 1500.0,
                        restart_after_secs: 0.0,
                        during: FaultPoint::BetweenTicks,
                    },
                ];
                s
            }
            "failover_random" => {
                let mut s = Self::replicated(name, 2);
                let mut rng = crate::sim::rng::SimRng::keyed(seed, 0xFA11_0FE2, 0);
                s.replication.replicas = 2 + rng.below(2) as usize;
                s.provider.create_failure_probability = 0.05;
                s.provider.destroy_failure_probability = 0.1;
                s.provider.vanish_per_hour = 0.2;
                s.agents.crash_per_hour = 0.2;
                for _ in 0..6 {
                    let at = rng.range(60.0, 1700.0);
                    let during = match rng.below(3) {
                        0 => FaultPoint::BetweenTicks,
                        1 => FaultPoint::Create,
                        _ => FaultPoint::Destroy,
                    };
                    if rng.bernoulli(0.5) {
                        s.replication.leader_pauses.push(LeaderPause {
                            start_secs: at,
                            pause_secs: rng.range(2.0, 60.0),
                            during,
                            clock_missed: false,
                        });
                    } else {
                        s.replication.leader_crashes.push(LeaderCrash {
                            at_secs: at,
                            restart_after_secs: rng.range(0.0, 90.0),
                            during,
                        });
                    }
                }
                s
            }
            _ => return None,
        };
        s.seed = seed;
        Some(s)
    }

    /// The base of the replicated scenarios: the small one with `replicas` managers on one
    /// lease (15 s ttl), and a host that reconciles every minute.
    fn replicated(name: &str, replicas: usize) -> Scenario {
        let mut s = Self::small(name);
        s.replication.replicas = replicas;
        s.replication.lease_ttl_secs = 15.0;
        s.host.reconcile_interval_secs = 60.0;
        s
    }

    /// The common base of the fault scenarios: 30 minutes, up to 6 workers, short timeouts so
    /// that every mechanism (startup and heartbeat expiry, idle retirement, scale up and down)
    /// happens several times.
    fn small(name: &str) -> Scenario {
        Scenario {
            name: name.into(),
            duration_secs: 1800.0,
            // Two-second steps: fine enough for 10 s heartbeats and 45 s deadlines, and half
            // the cost of the many seeds the tests run in a debug build.
            step_secs: 2.0,
            host: HostModel {
                tick_interval_secs: 2.0,
                ..HostModel::default()
            },
            lifecycle: WorkerLifecycleConfig {
                heartbeat_timeout: Duration::from_secs(45),
                health_check_interval: Duration::from_secs(10),
                startup_timeout: Duration::from_secs(120),
                min_ready_workers: 1,
                max_workers: 6,
                scale_up_cooldown: Duration::from_secs(5),
                scale_down_cooldown: Duration::from_secs(60),
                max_provision_per_tick: 3,
                ..WorkerLifecycleConfig::default()
            },
            worker: WorkerSpec::new("sim-worker")
                .with_idle_timeout(Duration::from_secs(90))
                .with_max_lifetime(Duration::from_secs(900)),
            workload: Workload::Poisson {
                rate_per_minute: 5.0,
                duration: Dist::LogNormal {
                    median: 30.0,
                    sigma: 0.7,
                },
                bursts: vec![Burst {
                    start_secs: 600.0,
                    end_secs: 780.0,
                    rate_per_minute: 20.0,
                }],
            },
            ..Scenario::default()
        }
    }
}

/// A GPU pool for the built-in multi-pool scenarios: workers labelled `gpu=a100` with one GPU.
fn gpu_pool(name: &str, priority: i32, max_workers: usize) -> SimPool {
    SimPool {
        name: name.into(),
        priority,
        max_workers,
        scale_up_cooldown_secs: 5.0,
        labels: [("gpu".to_owned(), "a100".to_owned())].into(),
        resources: ResourceRequirements {
            cpu_cores: 16.0,
            gpu_count: 1,
            gpu_type: Some("a100".into()),
            ..ResourceRequirements::default()
        },
        provider: Some(ProviderModel {
            boot: Dist::LogNormal {
                median: 40.0,
                sigma: 0.3,
            },
            ..ProviderModel::default()
        }),
        ..SimPool::default()
    }
}
