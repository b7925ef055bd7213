//! Python bindings of hodei-workers: the module `hodei_workers._native`, re-exported by the
//! pure-Python package `hodei_workers` (DESIGN.md §8).
//!
//! This layer translates and holds no lifecycle logic of its own. These rules shape it:
//! - Every call that takes a core lock or may block runs with the GIL released
//!   (`errors::run`, `py.detach`), so Python threads run meanwhile and no Python code (a
//!   provider, a finalizer run by the garbage collector) can run while a core lock is held.
//! - Every call into the host's Python code made under the module's frames (a provider's
//!   method or attribute, an exception's `str()`, an iterable or mapping argument's items, a
//!   ticker's callback, `sys.unraisablehook`; the standard library's Python code too, e.g.
//!   `json`) and every release of a host's object goes through `calls`, which parks the
//!   thread for good if the interpreter's exit ends it meanwhile (CPython < 3.14 would
//!   unwind the module's frames without the GIL: a crash). Modules the calls need are
//!   imported with the module, never on first use on some other thread.
//! - Every core error becomes the matching exception of the tree rooted at
//!   `HodeiWorkersError`; a wrong type is a `TypeError`; a Rust panic is an `InternalError`
//!   (a `RuntimeError`), never a crash.

mod calls;
mod convert;
mod errors;
mod events;
mod lifecycle;
mod pools;
mod postgres;
mod provider;
mod registry;
mod ticker;
mod types;

use pyo3::prelude::*;

/// The native core of the ``hodei_workers`` package; import from ``hodei_workers`` instead.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::add_exceptions(m)?;
    for (name, class) in convert::enum_classes(py)? {
        m.add(name, class)?;
    }
    m.add_class::<types::PyResources>()?;
    m.add_class::<types::PyWorkerSpec>()?;
    m.add_class::<types::PyWorker>()?;
    m.add_class::<types::PyRegistryStats>()?;
    m.add_class::<types::PyManualClock>()?;
    m.add_class::<registry::PyRegistry>()?;
    m.add_class::<events::PySubscription>()?;
    events::add_event_classes(m)?;
    lifecycle::add_lifecycle_classes(m)?;
    pools::add_pool_classes(m)?;
    ticker::add_ticker_classes(m)?;
    Ok(())
}
