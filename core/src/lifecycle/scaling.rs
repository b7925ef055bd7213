//! The autoscaling policy as a pure function of its inputs, so that every rule can be tested
//! without a registry: [`decide`].

use std::fmt::Write as _;

use crate::clock::{millis, Timestamp};
use crate::ids::ProviderId;

use super::config::WorkerLifecycleConfig;
use super::report::ScalingPlan;

/// What the policy looks at.
#[derive(Debug, Clone, Default)]
pub(crate) struct ScalingInputs {
    pub now: Timestamp,
    pub pending: usize,
    pub ready: usize,
    pub busy: usize,
    /// `Creating` + `Connecting`.
    pub starting: usize,
    /// Provider calls in flight of the target's own (of its spec's pool, usually none):
    /// capacity on its way.
    pub in_flight: usize,
    /// Every provider call in flight, whatever its pool (`in_flight` among them): what
    /// `max_workers` caps.
    pub in_flight_total: usize,
    /// Registered workers (every state), the pools' included: what `max_workers` caps.
    pub registered: usize,
    /// Of `registered`, the workers of pools (not the target's: left out of `ready`, `busy`
    /// and `starting`).
    pub pooled: usize,
    /// Of `registered`, the workers of no pool when the target's spec names a pool (not its
    /// own either: left out as `pooled` are).
    pub unpooled: usize,
    pub last_scale_up: Option<Timestamp>,
    pub last_scale_action: Option<Timestamp>,
    /// `Some((provider, failures, until))` when the target provider is backing off.
    pub backoff: Option<(ProviderId, u32, Timestamp)>,
    /// Whether a scaling target is set (without one nothing is provisioned).
    pub has_target: bool,
}

/// The decision: how many to provision and how many idle workers to retire. The caller picks
/// which workers (longest idle first) and fills `ScalingPlan::scale_down`.
pub(crate) fn decide(config: &WorkerLifecycleConfig, i: &ScalingInputs) -> (ScalingPlan, usize) {
    // Saturating: the counts are the registry's, but `pending` and the limits are the host's
    // (`usize::MAX` is a valid "no limit").
    let on_the_way = i.starting.saturating_add(i.in_flight);
    let total = i.registered.saturating_add(i.in_flight_total);
    let demand = i.pending.saturating_add(config.min_ready_workers);
    let wanted = demand.saturating_sub(i.ready.saturating_add(on_the_way));
    let mut limits = Vec::new();

    let mut provision = wanted;
    if provision > 0 {
        let headroom = config.max_workers.saturating_sub(total);
        if provision > headroom {
            provision = headroom;
            limits.push(format!("max_workers {}", config.max_workers));
        }
        if provision > config.max_provision_per_tick {
            provision = config.max_provision_per_tick;
            limits.push(format!(
                "max_provision_per_tick {}",
                config.max_provision_per_tick
            ));
        }
    }
    if provision > 0 {
        if let Some(last) = i.last_scale_up {
            let until = last.saturating_add(millis(config.scale_up_cooldown));
            if i.now < until {
                provision = 0;
                limits.push(format!("scale-up cooldown until {until}"));
            }
        }
    }
    if provision > 0 {
        if let Some((provider, failures, until)) = &i.backoff {
            provision = 0;
            limits.push(format!(
                "provider {provider} backing off after {failures} failures until {until}"
            ));
        }
    }
    if provision > 0 && !i.has_target {
        provision = 0;
        limits.push("no scaling target".to_owned());
    }

    // Surplus: ready workers beyond the pending jobs and the warm pool. Capacity still on
    // its way does not count here: until it reports in, it keeps nobody warm.
    let mut retire = 0;
    if wanted == 0 {
        retire = i.ready.saturating_sub(demand);
        if retire > 0 {
            if let Some(last) = i.last_scale_action {
                let until = last.saturating_add(millis(config.scale_down_cooldown));
                if i.now < until {
                    retire = 0;
                    limits.push(format!("scale-down cooldown until {until}"));
                }
            }
        }
        if retire > config.max_provision_per_tick {
            retire = config.max_provision_per_tick;
            limits.push(format!(
                "max_provision_per_tick {}",
                config.max_provision_per_tick
            ));
        }
        if retire > 0 && !i.has_target {
            retire = 0;
            limits.push("no scaling target".to_owned());
        }
    }

    let mut explanation = if provision > 0 {
        format!("+{provision}")
    } else if retire > 0 {
        format!("-{retire}")
    } else {
        "0".to_owned()
    };
    let _ = write!(
        explanation,
        ": pending {}, ready {}, busy {}, starting {}, in flight {}, total {}/{}, min ready {}, wanted {}",
        i.pending,
        i.ready,
        i.busy,
        i.starting,
        i.in_flight,
        total,
        config.max_workers,
        config.min_ready_workers,
        wanted,
    );
    if i.pooled > 0 {
        let _ = write!(explanation, ", {} worker(s) of pools not counted", i.pooled);
    }
    if i.unpooled > 0 {
        let _ = write!(
            explanation,
            ", {} worker(s) of no pool not counted",
            i.unpooled
        );
    }
    let others_in_flight = i.in_flight_total.saturating_sub(i.in_flight);
    if others_in_flight > 0 {
        let _ = write!(
            explanation,
            ", {others_in_flight} other provision(s) in flight not counted"
        );
    }
    if !limits.is_empty() {
        let _ = write!(explanation, ", capped by {}", limits.join(", "));
    }

    let plan = ScalingPlan {
        at: i.now,
        pending_jobs: i.pending,
        ready: i.ready,
        busy: i.busy,
        starting: i.starting,
        in_flight: i.in_flight,
        total,
        wanted,
        provision,
        scale_down: Vec::new(),
        limits,
        explanation,
    };
    (plan, retire)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config() -> WorkerLifecycleConfig {
        WorkerLifecycleConfig::default()
    }

    fn inputs() -> ScalingInputs {
        ScalingInputs {
            now: 1_000_000,
            has_target: true,
            ..ScalingInputs::default()
        }
    }

    #[test]
    fn pending_jobs_are_met_with_room_for_the_warm_pool() {
        let (plan, retire) = decide(
            &config(),
            &ScalingInputs {
                pending: 3,
                ..inputs()
            },
        );
        assert_eq!((plan.wanted, plan.provision, retire), (4, 4, 0));
        assert!(
            plan.explanation.starts_with("+4: pending 3"),
            "{}",
            plan.explanation
        );
        assert!(plan.limits.is_empty());
    }

    #[test]
    fn capacity_on_its_way_counts_and_max_workers_caps() {
        let c = config();
        let (plan, _) = decide(
            &c,
            &ScalingInputs {
                pending: 7,
                ready: 1,
                in_flight: 2,
                in_flight_total: 2,
                registered: 7,
                ..inputs()
            },
        );
        // wanted = 7 + 1 - 1 - 2 = 5; headroom = 10 - 9 = 1.
        assert_eq!((plan.wanted, plan.provision, plan.total), (5, 1, 9));
        assert_eq!(plan.limits, vec!["max_workers 10".to_owned()]);
        assert!(
            plan.explanation.ends_with("capped by max_workers 10"),
            "{}",
            plan.explanation
        );
    }

    #[test]
    fn provisions_in_flight_of_others_take_room_but_are_not_capacity() {
        let (plan, _) = decide(
            &config(),
            &ScalingInputs {
                pending: 7,
                ready: 1,
                in_flight: 1,
                in_flight_total: 3,
                registered: 6,
                ..inputs()
            },
        );
        // wanted = 7 + 1 - 1 - 1 = 6; headroom = 10 - 6 - 3 = 1.
        assert_eq!(
            (plan.in_flight, plan.wanted, plan.provision, plan.total),
            (1, 6, 1, 9)
        );
        assert!(
            plan.explanation.ends_with(
                "in flight 1, total 9/10, min ready 1, wanted 6, 2 other provision(s) in \
                 flight not counted, capped by max_workers 10"
            ),
            "{}",
            plan.explanation
        );
    }

    #[test]
    fn per_tick_cap_cooldown_and_backoff() {
        let c = config();
        let (plan, _) = decide(
            &c,
            &ScalingInputs {
                pending: 9,
                ..inputs()
            },
        );
        assert_eq!(plan.provision, 5);
        let recent = ScalingInputs {
            pending: 9,
            last_scale_up: Some(1_000_000 - 1),
            ..inputs()
        };
        let (plan, _) = decide(&c, &recent);
        assert_eq!(plan.provision, 0);
        assert!(plan.limits[1].starts_with("scale-up cooldown until 1009999"));
        let long_ago = ScalingInputs {
            last_scale_up: Some(1_000_000 - millis(Duration::from_secs(10))),
            ..recent
        };
        assert_eq!(decide(&c, &long_ago).0.provision, 5);
        let p = ProviderId::new("p").unwrap();
        let (plan, _) = decide(
            &c,
            &ScalingInputs {
                pending: 2,
                backoff: Some((p, 3, 2_000_000)),
                ..inputs()
            },
        );
        assert_eq!(plan.provision, 0);
        assert!(plan
            .explanation
            .contains("provider p backing off after 3 failures"));
    }

    #[test]
    fn surplus_idle_workers_are_retired_down_to_the_warm_pool() {
        let c = config();
        let base = ScalingInputs {
            ready: 4,
            busy: 2,
            registered: 6,
            ..inputs()
        };
        let (plan, retire) = decide(&c, &base);
        assert_eq!((plan.provision, retire), (0, 3));
        assert!(plan.explanation.starts_with("-3: "), "{}", plan.explanation);
        // A starting worker keeps nobody warm yet: the same three go.
        let (_, retire) = decide(
            &c,
            &ScalingInputs {
                starting: 1,
                registered: 7,
                ..base.clone()
            },
        );
        assert_eq!(retire, 3);
        // Pending jobs keep ready workers.
        let (_, retire) = decide(
            &c,
            &ScalingInputs {
                pending: 2,
                ..base.clone()
            },
        );
        assert_eq!(retire, 1);
        // Cooldown after the last action.
        let (plan, retire) = decide(
            &c,
            &ScalingInputs {
                last_scale_action: Some(999_000),
                ..base
            },
        );
        assert_eq!(retire, 0);
        assert!(plan.limits[0].starts_with("scale-down cooldown"));
    }

    #[test]
    fn without_a_target_nothing_happens_but_the_plan_explains() {
        let (plan, retire) = decide(
            &config(),
            &ScalingInputs {
                pending: 2,
                has_target: false,
                ..inputs()
            },
        );
        assert_eq!((plan.wanted, plan.provision, retire), (3, 0, 0));
        assert_eq!(plan.limits, vec!["no scaling target".to_owned()]);
    }
}
