//! # hodei-workers C ABI
//!
//! The C face of [`hodei-workers`](engine): `libhodei_workers.{so,a}` and the header
//! `include/hodei_workers.h`, generated from this crate by cbindgen (`make header`).
//!
//! This crate only translates: C strings and ids to core types, core errors to `hw_status`,
//! snapshots to opaque handles with accessors. It holds no lifecycle logic of its own.
//!
//! Conventions (the header repeats them for C readers):
//! - every fallible function returns `hw_status` (`HW_OK` = 0) and writes its results through
//!   trailing out-params, only on success;
//! - `hw_last_error_message()` is the text of this thread's last failure;
//! - NULL pointers, invalid UTF-8, out-of-range enum values and malformed ids are
//!   `HW_ERR_INVALID_ARGUMENT`, never a crash; a panic is caught and becomes `HW_ERR_PANIC`;
//! - everything the library allocates has a NULL-safe `_free`.
//!
//! Only C-visible items are exported; Rust users should depend on `hodei-workers` directly.

// The C ABI is raw pointers by nature: dereferencing what C hands us and handing out
// `Box::into_raw` handles needs `unsafe`. It is confined to `boundary.rs` (argument checks,
// out-params, handle allocation), the calls of C callbacks in `manager/provider.rs` and
// `ticker.rs`, and the string/id helpers in `types.rs`, each with its SAFETY comment; every
// other function goes through the `boundary.rs` helpers.
#![allow(unsafe_code)]
// C names (`hw_registry`, `hw_status`) are the point of this crate.
#![allow(non_camel_case_types)]
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod abi;
mod boundary;
mod clock;
mod events;
mod filter;
#[cfg(test)]
mod json_fuzz;
mod leader;
mod limits;
mod manager;
mod metrics;
mod mirror;
mod pools;
mod postgres;
mod registry;
mod spec;
mod ticker;
mod types;
mod worker;

pub use abi::{HW_ABI_VERSION, HW_ABI_VERSION_MAJOR, HW_ABI_VERSION_MINOR};
pub use boundary::hw_status;
pub use clock::hw_clock;
pub use events::{
    hw_event, hw_event_fields, hw_event_kind, hw_subscription, HW_DEFAULT_SUBSCRIPTION_CAPACITY,
};
pub use filter::hw_worker_filter;
pub use leader::{hw_leader_info, hw_leader_state, HW_LEASE_HOLDER_SIZE};
pub use limits::{
    HW_DEFAULT_RETIRED_ID_LIMIT, HW_MAX_DURATION_MS, HW_MAX_ENTRIES, HW_MAX_IMAGE_LEN,
    HW_MAX_JOB_ID_LEN, HW_MAX_KEY_LEN, HW_MAX_PROVIDER_ID_LEN, HW_MAX_PROVIDER_MESSAGE_LEN,
    HW_MAX_RESOURCE_ID_LEN, HW_MAX_VALUE_LEN,
};
pub use manager::{
    hw_interruption, hw_manager, hw_manager_config, hw_mass_expiry_hold, hw_pending_destroy,
    hw_pending_orphan, hw_provider_backoff, hw_provider_call, hw_provider_callbacks,
    hw_provider_name, hw_provider_result, hw_report, hw_report_kind, hw_report_summary,
    hw_scaling_plan, HW_PROVIDER_ID_SIZE,
};
pub use registry::{hw_registry, hw_worker_counts};
pub use spec::{hw_architecture, hw_worker_spec};
pub use ticker::{hw_ticker, hw_ticker_callbacks, hw_ticker_stats};
pub use types::{
    hw_termination_reason, hw_worker_id, hw_worker_state, HW_WAIT_FOREVER, HW_WORKER_ID_STRING_SIZE,
};
pub use worker::{hw_worker, hw_worker_list, hw_worker_timestamps};
