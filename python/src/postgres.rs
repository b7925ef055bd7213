//! `Registry.postgres(...)`: the registry on PostgreSQL (`hodei-workers-postgres`) behind the
//! same `Registry` class, so every method, subscriptions and `LifecycleManager` work on it
//! unchanged. (pyo3 allows one `#[pymethods]` block per class: `registry.rs` holds the two
//! static methods, which call these.)

use std::sync::Arc;

use hodei_workers_postgres::PostgresWorkerRegistry;
use pyo3::prelude::*;

use crate::errors::run;
use crate::registry::PyRegistry;
use crate::types::PyManualClock;

/// Opens (creating on first use) the registry `name` on the server at `url`, remembering
/// `retired_id_limit` retired ids (`None`: the default).
pub(crate) fn open(
    py: Python<'_>,
    url: &str,
    name: &str,
    clock: Option<Bound<'_, PyManualClock>>,
    retired_id_limit: Option<usize>,
) -> PyResult<PyRegistry> {
    let manual = clock.as_ref().map(|c| c.get().inner.clone());
    let registry = run(py, || match manual {
        Some(clock) => PostgresWorkerRegistry::connect_with_clock(url, name, clock),
        None => PostgresWorkerRegistry::connect(url, name),
    })?;
    if let Some(limit) = retired_id_limit {
        registry.set_retired_id_limit(limit);
    }
    Ok(PyRegistry {
        inner: Arc::new(registry),
        clock: clock.map(Bound::unbind),
        in_memory: false,
    })
}

/// Drops the registry `name` (its schema, records and events) from the server at `url`.
pub(crate) fn drop(py: Python<'_>, url: &str, name: &str) -> PyResult<()> {
    run(py, || PostgresWorkerRegistry::drop_schema(url, name))
}
