//! The multi-pool scaling policy as a pure function of its inputs, [`plan`], in the style of
//! `scaling::decide`: every rule is tested without a registry or a provider.
//!
//! How a demand becomes a plan:
//! 1. each requirement is matched to the pools whose template satisfies it, in priority order
//!    (higher first, ties by name); a requirement no pool satisfies (or only pools with
//!    `max_workers` 0) is **unschedulable**, with the constraint no pool meets;
//! 2. the most constrained requirements (fewest satisfying pools) go first, so a job that
//!    could run anywhere does not take the only GPU worker from a GPU job;
//! 3. existing capacity serves demand first, each kind in priority order: the idle `Ready`
//!    workers free to serve, then the capacity on its way (`Creating`/`Connecting`,
//!    provisions in flight) free to serve, then what pools keep warm (a pool's `min_ready`
//!    reserve, made of its capacity on its way first, then of its idle workers; idle first)
//!    — a job is placed on a booting worker only when no idle worker is free to run it now,
//!    so no idle worker that could run a waiting job is retired as surplus (7) while the job
//!    waits for a booting one. Nothing is provisioned while a satisfying worker is idle or on
//!    its way (but see the takeback, 8);
//! 4. each pool keeps `min_ready` idle workers warm from what is left;
//! 5. the rest of a requirement goes to the first satisfying pool that **can provide**: a pool
//!    whose provider backs off, that had no capacity, whose provider is not registered, or that
//!    is at its `max_workers` is passed over and its share **spills** to the next satisfying
//!    pool (recorded with the reason); as soon as it can provide again, new demand goes back to
//!    it, and what the lower pools' idle workers serve is taken back (8). A pool in
//!    its scale-up cooldown keeps its demand: a cooldown paces, it is not a failure;
//! 6. caps in priority order: the pool's cooldown, the global `max_workers` (every registered
//!    worker and provision in flight, in every pool or none), `max_provision_per_tick`;
//! 7. a pool that wants nothing retires its idle `Ready` workers beyond what serves demand and
//!    `min_ready`, honouring its scale-down cooldown, lowest priority first — never a busy
//!    worker (the count is at most its idle `Ready` workers; the manager picks them).
//! 8. **takeback**, make before break: a pool that can provide takes back, from
//!    lower-priority pools, the demand their idle `Ready` workers serve: it provisions for it
//!    (`gpu-spot +1: …; takes back 1 job(s) of gpu=a100 from gpu-ondemand`), and the givers
//!    retire nothing for it in that plan (`gpu-ondemand 0: …; gives back 1 job(s) of
//!    gpu=a100 to recovered gpu-spot once its new workers are up`): their idle workers keep
//!    serving until the taker's are up. Then 3 places the demand on the taker's idle workers
//!    (priority order) and the givers' become surplus, retired by 7 (scale-down cooldown
//!    honoured). Without the takeback a fallback that keeps being reused (jobs finish, new
//!    ones claim its idle workers) would keep the demand for good. The taker must be able to
//!    act now: not blocked, out of its scale-up cooldown, **no capacity on its way**
//!    (starting or in flight), nor any on the way in a pool placed before the giver that
//!    could run the jobs (else each plan while the new workers boot, or at the same instant,
//!    would take back again, by the same taker or another), within its, the global and the
//!    per-tick caps; the giver growing nothing, out of its scale-down cooldown, keeping its
//!    `min_ready`; never a busy worker. (Since 2026-12-07; before, the givers retired as
//!    many idle workers in the same plan, and a job one of them could run now waited for the
//!    taker's boot.)

mod decision;
mod explain;

use crate::clock::{millis, Timestamp};

use super::demand::Demand;
use super::pool::Pool;
use decision::secs;
pub use decision::{
    PoolBlock, PoolDecision, PoolPlan, Replacement, Serving, Spill, UnmetDemand, Unschedulable,
};
use explain::{explain, why_unschedulable};

/// A pool's fleet and clocks, as the manager counts them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PoolFleet {
    pub ready: usize,
    pub busy: usize,
    /// `Creating` + `Connecting`.
    pub starting: usize,
    pub in_flight: usize,
    /// Every registered worker of the pool (any state).
    pub registered: usize,
    pub blocked: Option<PoolBlock>,
    pub last_scale_up: Option<Timestamp>,
    pub last_scale_action: Option<Timestamp>,
}

/// Everything [`plan`] looks at. `fleet[i]` belongs to `pools[i]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlanInputs<'a> {
    pub now: Timestamp,
    pub pools: &'a [Pool],
    pub fleet: &'a [PoolFleet],
    pub demand: &'a Demand,
    /// The global cap.
    pub max_workers: usize,
    /// Every registered worker plus provisions in flight.
    pub total: usize,
    /// Most workers provisioned (and, separately, retired) in one plan, over every pool.
    pub max_per_tick: usize,
}

/// The plan. Promises (checked by the property test below):
/// - no pool is provisioned beyond its `max_workers`, nor the fleet beyond the global one
///   (already over: nothing is provisioned);
/// - every new worker serves a requirement its pool's template satisfies (or the pool's warm
///   `min_ready`), and a blocked pool is provisioned nothing;
/// - a pool retires at most its idle `Ready` workers, and only when it provisions nothing;
///   never one that serves demand it gives back (a takeback retires nothing: make before
///   break); nothing is taken back by a pool with capacity on its way, nor while a pool
///   placed before the giver that satisfies the demand has some;
/// - at most `max_per_tick` provisions (and at most `max_per_tick` retirements).
pub(crate) fn plan(i: &PlanInputs<'_>) -> PoolPlan {
    assert_eq!(i.pools.len(), i.fleet.len(), "one fleet view per pool");
    let now = i.now;
    let reqs = &i.demand.requirements;

    // Priority order: higher first, ties by name.
    let mut order: Vec<usize> = (0..i.pools.len()).collect();
    order.sort_by(|&a, &b| {
        let (pa, pb) = (&i.pools[a], &i.pools[b]);
        pb.priority
            .cmp(&pa.priority)
            .then_with(|| pa.name.cmp(&pb.name))
    });
    let pools: Vec<&Pool> = order.iter().map(|&k| &i.pools[k]).collect();
    let fleet: Vec<&PoolFleet> = order.iter().map(|&k| &i.fleet[k]).collect();
    let n = pools.len();

    let satisfying: Vec<Vec<usize>> = reqs
        .iter()
        .map(|r| {
            (0..n)
                .filter(|&p| pools[p].max_workers > 0 && pools[p].satisfies(r))
                .collect()
        })
        .collect();

    let mut out = PoolPlan {
        at: now,
        pending_jobs: i.demand.total(),
        total: i.total,
        max_workers: i.max_workers,
        ..PoolPlan::default()
    };
    for (ri, r) in reqs.iter().enumerate() {
        if r.count > 0 && satisfying[ri].is_empty() {
            out.unschedulable.push(Unschedulable {
                requirement: ri,
                count: r.count,
                description: r.to_string(),
                reason: why_unschedulable(r, &pools),
            });
        }
    }
    let mut req_order: Vec<usize> = (0..reqs.len())
        .filter(|&ri| reqs[ri].count > 0 && !satisfying[ri].is_empty())
        .collect();
    req_order.sort_by_key(|&ri| (satisfying[ri].len(), ri));

    let mut serves: Vec<Vec<Serving>> = vec![Vec::new(); n];
    let serving = |serves: &mut Vec<Vec<Serving>>, p: usize, ri: usize| -> usize {
        if let Some(k) = serves[p].iter().position(|s| s.requirement == ri) {
            return k;
        }
        serves[p].push(Serving {
            requirement: ri,
            existing: 0,
            wanted: 0,
            provisioned: 0,
        });
        serves[p].len() - 1
    };

    // 3. Existing capacity first, each kind in priority order: the idle `Ready` workers free
    //    to serve, then the capacity on its way (starting, in flight) free to serve, then
    //    what pools keep warm (idle first). A pool's warm reserve is its `min_ready`, made of
    //    its capacity on its way first (a booting worker cannot run a job now anyway), then
    //    of its idle workers. So a job waits for a booting worker only when no idle worker is
    //    free to run it now: placed on a higher pool's booting (say warm) worker, it left a
    //    lower pool's idle worker unused, which step 7 retired as surplus while the job
    //    waited (and the warm pool, its warm worker taken, provisioned again). And a job is
    //    placed on a worker a pool keeps warm only when nothing else exists for it: taken for
    //    a job a booting worker is counted for, the warm worker is provisioned again and the
    //    booting one ends up surplus (after a takeback, whose giver keeps its `min_ready`,
    //    the next plan would hand the job back to the giver's warm worker). Every idle or
    //    booting worker serves before any new provision, as before.
    let mut reserve_later: Vec<usize> = (0..n)
        .map(|p| {
            let f = fleet[p];
            pools[p]
                .min_ready
                .min(f.starting.saturating_add(f.in_flight))
        })
        .collect();
    let mut reserve_ready: Vec<usize> = (0..n)
        .map(|p| fleet[p].ready.min(pools[p].min_ready - reserve_later[p]))
        .collect();
    let mut free_ready: Vec<usize> = (0..n).map(|p| fleet[p].ready - reserve_ready[p]).collect();
    let mut free_later: Vec<usize> = (0..n)
        .map(|p| {
            let f = fleet[p];
            f.starting.saturating_add(f.in_flight) - reserve_later[p]
        })
        .collect();
    let mut used = vec![0usize; n];
    let mut rem: Vec<usize> = reqs.iter().map(|r| r.count).collect();
    for supply in [
        &mut free_ready,
        &mut free_later,
        &mut reserve_ready,
        &mut reserve_later,
    ] {
        for &ri in &req_order {
            for &p in &satisfying[ri] {
                let take = rem[ri].min(supply[p]);
                if take > 0 {
                    supply[p] -= take;
                    used[p] = used[p].saturating_add(take);
                    rem[ri] -= take;
                    let k = serving(&mut serves, p, ri);
                    serves[p][k].existing = serves[p][k].existing.saturating_add(take);
                }
            }
        }
    }
    // 4. The warm pool from what is left (idle or on its way).
    let mut warm_needed = vec![0usize; n];
    for p in 0..n {
        let left = free_ready[p]
            .saturating_add(free_later[p])
            .saturating_add(reserve_ready[p])
            .saturating_add(reserve_later[p]);
        let from_supply = pools[p].min_ready.min(left);
        used[p] = used[p].saturating_add(from_supply);
        warm_needed[p] = pools[p].min_ready - from_supply;
    }

    // 5. New workers, by priority, spilling past pools that cannot provide.
    let mut room: Vec<usize> = (0..n)
        .map(|p| {
            pools[p]
                .max_workers
                .saturating_sub(fleet[p].registered.saturating_add(fleet[p].in_flight))
        })
        .collect();
    let full = |p: usize| format!("at max_workers {}", pools[p].max_workers);
    let mut demand_new = vec![0usize; n];
    let mut spills: Vec<Spill> = Vec::new();
    for &ri in &req_order {
        if rem[ri] == 0 {
            continue;
        }
        let mut passed: Vec<(usize, String)> = Vec::new();
        for &p in &satisfying[ri] {
            if let Some(block) = &fleet[p].blocked {
                passed.push((p, block.describe(now)));
                continue;
            }
            if room[p] == 0 {
                passed.push((p, full(p)));
                continue;
            }
            let take = rem[ri].min(room[p]);
            room[p] -= take;
            rem[ri] -= take;
            demand_new[p] = demand_new[p].saturating_add(take);
            let k = serving(&mut serves, p, ri);
            serves[p][k].wanted = serves[p][k].wanted.saturating_add(take);
            for (from, reason) in &passed {
                spills.push(Spill {
                    requirement: ri,
                    source: pools[*from].name.clone(),
                    target: pools[p].name.clone(),
                    count: take,
                    reason: reason.clone(),
                });
            }
            if rem[ri] == 0 {
                break;
            }
            passed.push((p, full(p)));
        }
        if rem[ri] > 0 {
            out.unmet.push(UnmetDemand {
                requirement: ri,
                count: rem[ri],
                reason: passed
                    .iter()
                    .map(|(p, why)| format!("{} {why}", pools[*p].name))
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
    }
    out.unmet.sort_by_key(|u| u.requirement);

    let mut decisions: Vec<PoolDecision> = (0..n)
        .map(|p| {
            let (pool, f) = (pools[p], fleet[p]);
            PoolDecision {
                pool: pool.name.clone(),
                provider_id: Some(pool.provider_id.clone()),
                priority: pool.priority,
                ready: f.ready,
                busy: f.busy,
                starting: f.starting,
                in_flight: f.in_flight,
                total: f.registered.saturating_add(f.in_flight),
                max_workers: pool.max_workers,
                min_ready: pool.min_ready,
                wanted: demand_new[p].saturating_add(warm_needed[p]),
                blocked: f.blocked.clone(),
                ..PoolDecision::default()
            }
        })
        .collect();

    // The warm pool's new workers, where the pool can provide.
    let mut warm_new = vec![0usize; n];
    for p in 0..n {
        if warm_needed[p] == 0 {
            continue;
        }
        if let Some(block) = &fleet[p].blocked {
            decisions[p]
                .limits
                .push(format!("min_ready: {}", block.describe(now)));
            continue;
        }
        warm_new[p] = warm_needed[p].min(room[p]);
        room[p] -= warm_new[p];
        if warm_new[p] < warm_needed[p] {
            decisions[p].limits.push(full(p));
        }
    }

    // 6. Caps, in priority order.
    let mut global_room = i.max_workers.saturating_sub(i.total);
    let mut tick_left = i.max_per_tick;
    for p in 0..n {
        let want = demand_new[p].saturating_add(warm_new[p]);
        if want == 0 {
            continue;
        }
        let d = &mut decisions[p];
        let mut provision = want;
        if let Some(last) = fleet[p].last_scale_up {
            let until = last.saturating_add(millis(pools[p].scale_up_cooldown));
            if now < until {
                provision = 0;
                d.limits
                    .push(format!("scale-up cooldown for {} more", secs(until - now)));
            }
        }
        if provision > global_room {
            provision = global_room;
            d.limits
                .push(format!("global max_workers {}", i.max_workers));
        }
        if provision > tick_left {
            provision = tick_left;
            d.limits
                .push(format!("max_provision_per_tick {}", i.max_per_tick));
        }
        global_room -= provision;
        tick_left -= provision;
        d.provision = provision;
        let mut left = provision;
        for s in &mut serves[p] {
            s.provisioned = s.wanted.min(left);
            left -= s.provisioned;
        }
        d.warm = warm_new[p].min(left);
    }

    // 7. Retire idle surplus, lowest priority first.
    let mut retire_left = i.max_per_tick;
    for p in (0..n).rev() {
        let d = &mut decisions[p];
        if d.wanted > 0 || d.provision > 0 {
            continue;
        }
        let mut retire = fleet[p].ready - used[p].min(fleet[p].ready);
        if retire == 0 {
            continue;
        }
        if let Some(last) = fleet[p].last_scale_action {
            let until = last.saturating_add(millis(pools[p].scale_down_cooldown));
            if now < until {
                d.limits.push(format!(
                    "scale-down cooldown for {} more",
                    secs(until - now)
                ));
                retire = 0;
            }
        }
        if retire > retire_left {
            retire = retire_left;
            d.limits
                .push(format!("max_provision_per_tick {}", i.max_per_tick));
        }
        retire_left -= retire;
        d.retire = retire;
    }

    // 8. Takeback: a pool that can provide (again) takes back from lower-priority pools the
    //    demand their idle workers serve — it provisions for it — so that demand spilled to a
    //    fallback returns to the preferred pool even while the fallback's workers keep being
    //    reused. Make before break: the givers retire nothing for it here; their idle workers
    //    serve until the taker's are up, and are then surplus (3 serves from the taker's idle
    //    workers first, 7 retires the givers'). Only when both sides may act now: the taker
    //    not blocked, out of its scale-up cooldown, with nothing on its way, and no pool
    //    placed before the giver that could run the jobs with anything on its way either
    //    (an earlier takeback's new workers, or anything else booting: a plan while they
    //    boot, or at the same instant, must not take back again), within every cap; the
    //    giver growing nothing, out of its scale-down cooldown, keeping its `min_ready`, and
    //    giving only idle `Ready` workers (never a busy one). Lowest-priority givers first.
    //    One held back by the per-tick cap says so in the taker's limits (the next tick goes
    //    on).
    let mut takebacks: Vec<Spill> = Vec::new();
    let mut given = vec![0usize; n];
    let on_its_way = |p: usize| fleet[p].starting > 0 || fleet[p].in_flight > 0;
    for p in 0..n {
        let cooling = fleet[p]
            .last_scale_up
            .is_some_and(|last| now < last.saturating_add(millis(pools[p].scale_up_cooldown)));
        if fleet[p].blocked.is_some() || cooling || on_its_way(p) || decisions[p].retire > 0 {
            continue;
        }
        for q in (p + 1..n).rev() {
            if pools[q].priority >= pools[p].priority
                || decisions[q].wanted > 0
                || decisions[q].provision > 0
            {
                continue;
            }
            let resting = fleet[q].last_scale_action.is_some_and(|last| {
                now < last.saturating_add(millis(pools[q].scale_down_cooldown))
            });
            if resting {
                continue;
            }
            // The idle workers step 7 kept for demand (it counts idle ones as used first),
            // less the warm pool, less what is already given back.
            let kept = used[q].min(fleet[q].ready);
            let mut givable = (kept - pools[q].min_ready.min(kept)).saturating_sub(given[q]);
            for k in 0..serves[q].len() {
                let ri = serves[q][k].requirement;
                let want = serves[q][k].existing.min(givable);
                // Nor while a pool placed before the giver that could run these jobs has
                // capacity on its way (a taker's workers from an earlier takeback): once up, it
                // takes them from the giver anyway (3), and what another taker provisioned
                // for them now would be surplus.
                let coming = satisfying[ri].iter().any(|&b| b < q && on_its_way(b));
                if want == 0 || coming || !pools[p].satisfies(&reqs[ri]) {
                    continue;
                }
                let take = want.min(room[p]).min(global_room).min(tick_left);
                // The one cap that the next tick, at the same instant, lifts: say so, as for
                // any provision it holds back (the next tick takes back the rest).
                if take < want.min(room[p]).min(global_room) {
                    let cap = format!("max_provision_per_tick {}", i.max_per_tick);
                    if !decisions[p].limits.contains(&cap) {
                        decisions[p].limits.push(cap);
                    }
                }
                if take == 0 {
                    continue;
                }
                serves[q][k].existing -= take;
                let kp = serving(&mut serves, p, ri);
                let (sp, d) = (&mut serves[p][kp], &mut decisions[p]);
                sp.wanted = sp.wanted.saturating_add(take);
                sp.provisioned = sp.provisioned.saturating_add(take);
                d.wanted = d.wanted.saturating_add(take);
                d.provision = d.provision.saturating_add(take);
                given[q] = given[q].saturating_add(take);
                givable -= take;
                room[p] -= take;
                global_room -= take;
                tick_left -= take;
                takebacks.push(Spill {
                    requirement: ri,
                    source: pools[q].name.clone(),
                    target: pools[p].name.clone(),
                    count: take,
                    reason: format!("{} can provide", pools[p].name),
                });
            }
            serves[q].retain(|s| s.existing > 0 || s.wanted > 0);
        }
    }
    for t in takebacks {
        let (from, to) = (
            pools.iter().position(|p| p.name == t.source),
            pools.iter().position(|p| p.name == t.target),
        );
        if let Some(to) = to {
            decisions[to].taken_back.push(t.clone());
        }
        if let Some(from) = from {
            decisions[from].given_back.push(t);
        }
    }

    for s in spills {
        let (from, to) = (
            pools.iter().position(|p| p.name == s.source),
            pools.iter().position(|p| p.name == s.target),
        );
        if let Some(from) = from {
            decisions[from].spilled_out.push(s.clone());
        }
        if let Some(to) = to {
            decisions[to].spilled_in.push(s);
        }
    }
    for (p, d) in decisions.iter_mut().enumerate() {
        d.serves = std::mem::take(&mut serves[p]);
        d.serves.sort_by_key(|s| s.requirement);
        d.demand = d.serves.iter().fold(0usize, |acc, s| {
            acc.saturating_add(s.existing).saturating_add(s.wanted)
        });
        d.explanation = explain(d, reqs, now);
    }
    out.explanation = decisions.iter().map(|d| d.explanation.clone()).collect();
    for u in &out.unschedulable {
        out.explanation.push(format!(
            "unschedulable: {} job(s) needing {}: {}",
            u.count, u.description, u.reason
        ));
    }
    for u in &out.unmet {
        out.explanation.push(format!(
            "waiting: {} job(s) needing {}: {}",
            u.count, reqs[u.requirement], u.reason
        ));
    }
    out.pools = decisions;
    out
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
