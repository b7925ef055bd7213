//! The lifecycle engine from Python: `LifecycleConfig` (`config`), `LifecycleManager`
//! (`manager`) and the report classes its operations return (`reports`).

mod config;
mod manager;
mod reports;

use pyo3::prelude::*;

pub(crate) use config::PyLifecycleConfig;
pub(crate) use manager::PyLifecycleManager;
pub(crate) use reports::*;

/// Adds the lifecycle classes to the module.
pub(crate) fn add_lifecycle_classes(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLifecycleConfig>()?;
    m.add_class::<PyLifecycleManager>()?;
    m.add_class::<crate::provider::PyWorkerHandle>()?;
    m.add_class::<LostJob>()?;
    m.add_class::<UnhealthyWorker>()?;
    m.add_class::<TerminatedWorker>()?;
    m.add_class::<DestroyFailure>()?;
    m.add_class::<ProvisionedWorker>()?;
    m.add_class::<ProvisionFailure>()?;
    m.add_class::<ProviderBackoff>()?;
    m.add_class::<ReconcileHold>()?;
    m.add_class::<MassExpiryHold>()?;
    m.add_class::<MassExpiryGiveUp>()?;
    m.add_class::<HealthCheckResult>()?;
    m.add_class::<CleanupResult>()?;
    m.add_class::<ScalingPlan>()?;
    m.add_class::<TickReport>()?;
    m.add_class::<OrphanInstance>()?;
    m.add_class::<LeaderInfo>()?;
    m.add_class::<ReconcileReport>()?;
    m.add_class::<LifecycleStats>()?;
    Ok(())
}
