//! The plan in words: each pool's line ([`explain`]) and the constraint an unschedulable
//! requirement misses ([`why_unschedulable`]).

use std::fmt::Write as _;

use crate::clock::Timestamp;

use super::super::demand::{resource_parts, Requirement};
use super::super::pool::{Pool, POOL_LABEL};
use super::decision::PoolDecision;

pub(super) fn explain(d: &PoolDecision, reqs: &[Requirement], now: Timestamp) -> String {
    let mut line = if d.provision > 0 {
        format!("{} +{}", d.pool, d.provision)
    } else if d.retire > 0 {
        format!("{} -{}", d.pool, d.retire)
    } else {
        format!("{} 0", d.pool)
    };
    let _ = write!(line, ": demand {}", d.demand);
    if !d.serves.is_empty() {
        let parts: Vec<String> = d
            .serves
            .iter()
            .map(|s| {
                format!(
                    "{} {}",
                    s.existing.saturating_add(s.wanted),
                    reqs[s.requirement]
                )
            })
            .collect();
        let _ = write!(line, " ({})", parts.join(" + "));
    }
    let _ = write!(
        line,
        ", ready {}, busy {}, starting {}, in flight {}, total {}",
        d.ready, d.busy, d.starting, d.in_flight, d.total
    );
    if d.max_workers != usize::MAX {
        let _ = write!(line, "/{}", d.max_workers);
    }
    let _ = write!(line, ", min ready {}, wanted {}", d.min_ready, d.wanted);
    if let Some(block) = &d.blocked {
        let _ = write!(line, "; {}", block.describe(now));
    }
    for s in &d.spilled_in {
        let _ = write!(
            line,
            "; {} spilled from {} ({}) to {}",
            s.count, s.source, s.reason, s.target
        );
    }
    for s in &d.spilled_out {
        let _ = write!(line, "; {} spilled to {} ({})", s.count, s.target, s.reason);
    }
    for t in &d.taken_back {
        let _ = write!(
            line,
            "; takes back {} job(s) of {} from {}",
            t.count, reqs[t.requirement], t.source
        );
    }
    for t in &d.given_back {
        let _ = write!(
            line,
            "; gives back {} job(s) of {} to recovered {} once its new workers are up",
            t.count, reqs[t.requirement], t.target
        );
    }
    if !d.limits.is_empty() {
        let _ = write!(line, ", capped by {}", d.limits.join(", "));
    }
    line
}

/// Which constraint of `r` no pool meets; or, when each is met by some pool, that no pool meets
/// them together.
pub(super) fn why_unschedulable(r: &Requirement, pools: &[&Pool]) -> String {
    if pools.is_empty() {
        return "no pools".to_owned();
    }
    let live: Vec<&Pool> = pools
        .iter()
        .copied()
        .filter(|p| p.max_workers > 0)
        .collect();
    // Called only when no pool with room satisfies `r`: a pool that does has max_workers 0.
    let closed: Vec<&str> = pools
        .iter()
        .filter(|p| p.satisfies(r))
        .map(|p| p.name.as_str())
        .collect();
    if !closed.is_empty() {
        return format!(
            "only pools with max_workers 0 satisfy it ({})",
            closed.join(", ")
        );
    }
    if live.is_empty() {
        return "every pool has max_workers 0".to_owned();
    }
    type Check<'a> = Box<dyn Fn(&Pool) -> bool + 'a>;
    let mut constraints: Vec<(String, Check<'_>)> = Vec::new();
    for (k, v) in &r.labels {
        let what = if k == POOL_LABEL {
            format!("pool {v}")
        } else {
            format!("label {k}={v}")
        };
        constraints.push((
            what,
            Box::new(move |p: &Pool| p.satisfies(&Requirement::new(1).label(k.clone(), v.clone()))),
        ));
    }
    for c in &r.capabilities {
        constraints.push((
            format!("capability {c}"),
            Box::new(move |p: &Pool| p.template.capabilities.contains(c)),
        ));
    }
    if let Some(a) = r.architecture {
        constraints.push((
            format!("architecture {a}"),
            Box::new(move |p: &Pool| p.template.architecture == a),
        ));
    }
    let need = &r.resources;
    let largest = |f: &dyn Fn(&Pool) -> f64| live.iter().map(|p| f(p)).fold(0.0, f64::max);
    if need.cpu_cores != 0.0 {
        constraints.push((
            format!(
                "cpu>={} (largest {})",
                need.cpu_cores,
                largest(&|p| p.template.resources.cpu_cores)
            ),
            Box::new(move |p: &Pool| p.template.resources.cpu_cores >= need.cpu_cores),
        ));
    }
    if need.memory_bytes > 0 {
        let parts = resource_parts(&crate::ResourceRequirements {
            memory_bytes: need.memory_bytes,
            ..Default::default()
        });
        constraints.push((
            parts.join(""),
            Box::new(move |p: &Pool| p.template.resources.memory_bytes >= need.memory_bytes),
        ));
    }
    if need.disk_bytes > 0 {
        let parts = resource_parts(&crate::ResourceRequirements {
            disk_bytes: need.disk_bytes,
            ..Default::default()
        });
        constraints.push((
            parts.join(""),
            Box::new(move |p: &Pool| p.template.resources.disk_bytes >= need.disk_bytes),
        ));
    }
    if need.gpu_count > 0 {
        constraints.push((
            format!(
                "gpu>={} (largest {})",
                need.gpu_count,
                largest(&|p| f64::from(p.template.resources.gpu_count))
            ),
            Box::new(move |p: &Pool| p.template.resources.gpu_count >= need.gpu_count),
        ));
    }
    if let Some(t) = &need.gpu_type {
        constraints.push((
            format!("gpu_type={t}"),
            Box::new(move |p: &Pool| p.template.resources.gpu_type.as_ref() == Some(t)),
        ));
    }
    let missing: Vec<&str> = constraints
        .iter()
        .filter(|(_, check)| !live.iter().any(|p| check(p)))
        .map(|(what, _)| what.as_str())
        .collect();
    if !missing.is_empty() {
        return format!("no pool offers {}", missing.join(", "));
    }
    let who: Vec<String> = constraints
        .iter()
        .map(|(what, check)| {
            let names: Vec<&str> = live
                .iter()
                .filter(|p| check(p))
                .map(|p| p.name.as_str())
                .collect();
            format!("{what}: {}", names.join(", "))
        })
        .collect();
    format!("no single pool offers all of it ({})", who.join("; "))
}
