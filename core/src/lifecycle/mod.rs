//! The lifecycle engine: [`WorkerLifecycleManager`], its [`WorkerLifecycleConfig`], the
//! [`WorkerProvider`] trait, and the plain-data reports its operations return.
//!
//! The manager is synchronous and tick-driven (DESIGN.md §5): the host calls
//! [`WorkerLifecycleManager::tick`] regularly and everything due happens inside it, on the
//! registry's clock.

mod config;
mod lease;
mod manager;
mod pools;
mod provider;
mod report;
mod scaling;
mod ticker;

pub use config::{WorkerLifecycleConfig, MAX_CONFIG_DURATION};
pub use lease::{
    validate_lease, AlwaysLeader, InMemoryLease, LeaderInfo, Leadership, LeaseStatus, Term,
    MAX_LEASE_HOLDER_LEN, MIN_LEASE_TTL,
};
// `publish` holds a `LeaderChanged`'s names to the lease holder's rule.
pub(crate) use lease::is_lease_holder;
pub use manager::WorkerLifecycleManager;
// The simulation's scenarios check their pool names with the same rule.
#[cfg(feature = "sim")]
pub(crate) use pools::validate_pool_name;
pub use pools::{
    Demand, Pool, PoolBlock, PoolDecision, PoolPlan, Replacement, Requirement, Serving, Spill,
    UnmetDemand, Unschedulable, DEFAULT_POOL_SCALE_DOWN_COOLDOWN, DEFAULT_POOL_SCALE_UP_COOLDOWN,
    MAX_POOL_NAME_LEN, POOL_LABEL,
};
pub use provider::{
    cut_provider_message, ProviderError, ProviderErrorKind, ProviderResult, WorkerProvider,
    MAX_PROVIDER_MESSAGE_LEN,
};
pub use report::{
    CleanupResult, DestroyFailure, HealthCheckResult, LifecycleStats, LostJob, MassExpiryGiveUp,
    MassExpiryHold, OrphanInstance, PendingOrphan, ProviderBackoff, ProvisionFailure,
    ProvisionedWorker, ReconcileHold, ReconcileHoldKind, ReconcileReport, ScalingPlan,
    TerminatedWorker, TickReport, UnhealthyWorker,
};
pub use ticker::{Ticker, TickerStats, TICKER_REPORTS_CAPACITY};

/// The text of a caught panic's payload: the message of `panic!("...")` (a `&str` or a
/// `String`), or `"non-text panic payload"`; cut to [`MAX_PROVIDER_MESSAGE_LEN`] bytes as a
/// provider's message is ([`cut_provider_message`]: only the head is copied). What a
/// provider's caught panic says in its [`ProviderError`], what the ticker says of a failed
/// demand callback, and what a tick that panicked reports in [`TickReport::panicked`] (a
/// host's code that panics with a megabyte of text would otherwise have it copied into each
/// report, log line and binding's copy of them).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        cut_provider_message(*s)
    } else if let Some(s) = payload.downcast_ref::<String>() {
        cut_provider_message(s.as_str())
    } else {
        "non-text panic payload".to_owned()
    }
}
