//! Pools and demand (DESIGN.md §12): several kinds of worker ([`Pool`]: provider + spec
//! template + bounds + priority + cooldowns) scaled from pending jobs described by what they
//! need ([`Demand`] of [`Requirement`]s), with fallback between pools and unschedulable
//! demand reported, by the pure policy [`plan`](plan::plan) → [`PoolPlan`].

mod demand;
mod plan;
mod pool;

pub use demand::{Demand, Requirement};
pub(crate) use plan::{plan, PlanInputs, PoolFleet};
pub use plan::{
    PoolBlock, PoolDecision, PoolPlan, Replacement, Serving, Spill, UnmetDemand, Unschedulable,
};
#[cfg(feature = "sim")]
pub(crate) use pool::validate_pool_name;
pub use pool::{
    Pool, DEFAULT_POOL_SCALE_DOWN_COOLDOWN, DEFAULT_POOL_SCALE_UP_COOLDOWN, MAX_POOL_NAME_LEN,
    POOL_LABEL,
};
