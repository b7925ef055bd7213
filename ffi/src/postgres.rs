//! The registry on PostgreSQL (`hodei-workers-postgres`) behind the same opaque `hw_registry`:
//! every `hw_registry_*` function, subscriptions and managers work on it unchanged. Several
//! processes (scheduler replicas) that open the same registry name on one database share one
//! fleet.

use std::ffi::c_char;

use hodei_workers_postgres::PostgresWorkerRegistry;

use crate::boundary::{arg_out, arg_ref, arg_str, ffi_boundary, hw_status, into_handle};
use crate::clock::hw_clock;
use crate::registry::hw_registry;

/// Opens the registry named `name` on the PostgreSQL server at `url` and writes a new handle to
/// `*out`. Deadlines are judged on the database's clock, so replicas with skewed clocks agree.
///
/// `url` is any libpq connection string: a URL (`postgresql://user@host:5432/db`) or
/// `key=value` pairs (`host=/tmp user=postgres dbname=postgres`). `name` (1..=48 bytes of
/// `[a-z0-9_]`, not starting with a digit) is the PostgreSQL schema the registry lives in,
/// created with its tables on first use (safe when several processes start at once).
///
/// Connections are opened on demand (a pool of a few per handle). Free the handle with
/// `hw_registry_free`; the records stay in the database.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for NULL, invalid UTF-8, a malformed `url` or `name`;
/// `HW_ERR_BACKEND` when the server cannot be reached or the schema cannot be set up (the
/// message says why). Later calls on the handle return `HW_ERR_BACKEND` while the server is
/// unreachable, and apply nothing.
#[no_mangle]
pub extern "C" fn hw_registry_new_postgres(
    url: *const c_char,
    name: *const c_char,
    out: *mut *mut hw_registry,
) -> hw_status {
    ffi_boundary!(hw_registry_new_postgres, {
        let url = arg_str!(url);
        let name = arg_str!(name);
        let out = arg_out!(out);
        let registry = PostgresWorkerRegistry::connect(url, name)?;
        out.write(into_handle(hw_registry::postgres(registry)));
        Ok(())
    })
}

/// As `hw_registry_new_postgres`, but every deadline and timestamp is taken from `clock`
/// (a manual clock makes tests deterministic). Replicas sharing a registry must share one time:
/// give them the database clock (`hw_registry_new_postgres`) outside tests. The clock handle
/// may be freed afterwards.
///
/// Errors: as `hw_registry_new_postgres`.
#[no_mangle]
pub extern "C" fn hw_registry_new_postgres_with_clock(
    url: *const c_char,
    name: *const c_char,
    clock: *const hw_clock,
    out: *mut *mut hw_registry,
) -> hw_status {
    ffi_boundary!(hw_registry_new_postgres_with_clock, {
        let url = arg_str!(url);
        let name = arg_str!(name);
        let clock = arg_ref!(clock);
        let out = arg_out!(out);
        let registry = PostgresWorkerRegistry::connect_with_clock(url, name, clock.as_dyn())?;
        out.write(into_handle(hw_registry::postgres(registry)));
        Ok(())
    })
}

/// Drops the registry named `name` from the server at `url`: its schema and every record and
/// event in it (tests clean up with it). Handles still open on it fail afterwards with
/// `HW_ERR_BACKEND`. Dropping a registry that does not exist succeeds.
///
/// Errors: `HW_ERR_INVALID_ARGUMENT` for NULL, invalid UTF-8, a malformed `url` or `name`;
/// `HW_ERR_BACKEND`.
#[no_mangle]
pub extern "C" fn hw_registry_drop_postgres(url: *const c_char, name: *const c_char) -> hw_status {
    ffi_boundary!(hw_registry_drop_postgres, {
        let url = arg_str!(url);
        let name = arg_str!(name);
        PostgresWorkerRegistry::drop_schema(url, name)
    })
}
