//! The layout of every public struct, pinned: a host compiled against one header allocates,
//! fills and reads these structs with the sizes and members that header gave them, so a
//! change here that the ABI version does not announce overwrites or misreads a host's memory.
//!
//! **When this table must change, the ABI changed: bump `HW_ABI_VERSION_MAJOR` (and set
//! `HW_ABI_VERSION_MINOR` back to 0) in `abi/version.rs`, in the same commit.** That holds for
//! a field appended at the end too, never a minor change: no struct carries its own size, and
//! the library both fills structs the host allocated (`hw_ticker_stats`, `hw_report_summary`,
//! `hw_worker_counts`, …), where it would write past an old host's struct, and reads structs
//! the host filled (`hw_manager_config`, `hw_provider_callbacks`, `hw_ticker_callbacks`), where
//! it would read past one. The one minor change is a new row: a struct that did not exist,
//! added with the functions that use it (bump `HW_ABI_VERSION_MINOR`).
//!
//! Two checks: the size and alignment Rust gives each struct (on 64-bit targets, where these
//! numbers hold), and the members, in order, that the committed header declares (a field put
//! into padding or a callback's changed signature keeps the size). The header is what cbindgen
//! makes of this crate (`tests/header.rs` keeps it so).
//!
//! Only the structs are guarded here: the functions' signatures and the enum values' numbers
//! are pinned in `ffi/abi/surface.txt` (`abi/surface.rs`).

use std::mem::{align_of, size_of};

use super::header;
use crate::{
    hw_leader_info, hw_manager_config, hw_mass_expiry_hold, hw_provider_callbacks,
    hw_report_summary, hw_scaling_plan, hw_ticker_callbacks, hw_ticker_stats, hw_worker_counts,
    hw_worker_id, hw_worker_timestamps,
};

/// One public struct as hosts of this ABI major know it.
struct Pinned {
    name: &'static str,
    size: usize,
    align: usize,
    /// Rust's `(size_of, align_of)` of the struct today.
    actual: (usize, usize),
    /// The member declarations of the header, in order, without the `;`.
    members: &'static [&'static str],
}

macro_rules! pinned {
    ($ty:ident, $size:expr, $align:expr, [$($member:expr),* $(,)?]) => {
        Pinned {
            name: stringify!($ty),
            size: $size,
            align: $align,
            actual: (size_of::<$ty>(), align_of::<$ty>()),
            members: &[$($member),*],
        }
    };
}

/// `(struct, size_of, align_of, members)` of the current ABI major. Read the module's docs
/// before changing it.
fn pinned() -> [Pinned; 11] {
    [
        pinned!(hw_worker_id, 16, 1, [
            "uint8_t bytes[16]",
        ]),
        pinned!(hw_leader_info, 32, 8, [
            "const char *holder",
            "uint64_t term",
            "uint64_t since_ms",
            "uint64_t expires_at_ms",
        ]),
        pinned!(hw_manager_config, 152, 8, [
            "uint64_t heartbeat_timeout_ms",
            "uint64_t health_check_interval_ms",
            "uint64_t startup_timeout_ms",
            "size_t min_ready_workers",
            "size_t max_workers",
            "size_t scale_up_threshold",
            "size_t scale_down_threshold",
            "uint64_t scale_up_cooldown_ms",
            "uint64_t scale_down_cooldown_ms",
            "size_t max_provision_per_tick",
            "size_t max_actions_per_tick",
            "uint64_t destroy_retry_initial_ms",
            "uint64_t destroy_retry_max_ms",
            "uint64_t provider_backoff_initial_ms",
            "uint64_t provider_backoff_max_ms",
            "double max_unhealthy_fraction",
            "size_t unhealthy_floor",
            "uint64_t max_mass_expiry_hold_ms",
            "uint64_t reconcile_interval_ms",
        ]),
        pinned!(hw_provider_callbacks, 40, 8, [
            "void *user_data",
            "uint32_t (*create_worker)(void *user_data, struct hw_worker_id worker_id, const struct hw_worker_spec *spec, struct hw_provider_call *call)",
            "uint32_t (*destroy_worker)(void *user_data, struct hw_worker_id worker_id, const char *resource_id, struct hw_provider_call *call)",
            "uint32_t (*list_workers)(void *user_data, struct hw_provider_call *call)",
            "void (*release)(void *user_data)",
        ]),
        pinned!(hw_mass_expiry_hold, 32, 8, [
            "size_t would_expire",
            "size_t suspect",
            "size_t live",
            "size_t allowed",
        ]),
        pinned!(hw_report_summary, 176, 8, [
            "hw_report_kind kind",
            "uint64_t at_ms",
            "size_t pending_jobs",
            "uint64_t stall_grace_ms",
            "size_t unhealthy",
            "size_t lost_jobs",
            "size_t terminated",
            "size_t failed",
            "size_t drained",
            "size_t provisioned",
            "size_t provision_failures",
            "size_t provider_backoffs",
            "size_t decisions",
            "size_t unschedulable",
            "size_t actions",
            "size_t deferred",
            "struct hw_mass_expiry_hold hold",
            "uint64_t brake_held_for_ms",
            "bool health_checked",
            "bool mass_expiry_held",
            "bool brake_released",
            "bool brake_gave_up",
            "bool scaled",
            "bool capped",
            "bool skipped",
            "bool leading",
        ]),
        pinned!(hw_scaling_plan, 72, 8, [
            "size_t pending_jobs",
            "size_t ready",
            "size_t busy",
            "size_t starting",
            "size_t in_flight",
            "size_t total",
            "size_t wanted",
            "size_t provision",
            "size_t scale_down",
        ]),
        pinned!(hw_worker_counts, 64, 8, [
            "size_t total",
            "size_t creating",
            "size_t connecting",
            "size_t ready",
            "size_t busy",
            "size_t draining",
            "size_t terminating",
            "size_t terminated",
        ]),
        pinned!(hw_ticker_callbacks, 32, 8, [
            "void *user_data",
            "size_t (*demand)(void *user_data)",
            "void (*on_report)(void *user_data, const struct hw_report *report)",
            "void (*release)(void *user_data)",
        ]),
        pinned!(hw_ticker_stats, 40, 8, [
            "uint64_t ticks",
            "uint64_t overruns",
            "uint64_t missed_slots",
            "uint64_t report_panics",
            "uint64_t tick_panics",
        ]),
        pinned!(hw_worker_timestamps, 48, 8, [
            "uint64_t created_at_ms",
            "uint64_t updated_at_ms",
            "uint64_t state_changed_at_ms",
            "uint64_t last_heartbeat_ms",
            "uint64_t idle_since_ms",
            "bool has_idle_since",
        ]),
    ]
}

#[test]
#[cfg(target_pointer_width = "64")]
fn public_structs_keep_their_size_and_alignment() {
    let changed: Vec<String> = pinned()
        .iter()
        .filter(|p| p.actual != (p.size, p.align))
        .map(|p| {
            format!(
                "{}: pinned size {} align {}, now size {} align {}",
                p.name, p.size, p.align, p.actual.0, p.actual.1
            )
        })
        .collect();
    assert!(
        changed.is_empty(),
        "the C ABI changed: {changed:#?}\nbump HW_ABI_VERSION_MAJOR in ffi/src/abi/version.rs \
         and update the table in ffi/src/abi/layout.rs (see its docs)"
    );
}

#[test]
fn public_structs_keep_their_members() {
    let declared = header::struct_members(&header::read());
    let pinned = pinned();
    let mut declared_names: Vec<&str> = declared.iter().map(|(name, _)| name.as_str()).collect();
    let mut pinned_names: Vec<&str> = pinned.iter().map(|p| p.name).collect();
    declared_names.sort_unstable();
    pinned_names.sort_unstable();
    assert_eq!(
        declared_names, pinned_names,
        "the header's structs with members are not the pinned ones: a new struct gets a row \
         (a minor change: bump HW_ABI_VERSION_MINOR); a removed one is a major change"
    );
    for p in &pinned {
        let (_, members) = declared.iter().find(|(name, _)| name == p.name).unwrap();
        assert_eq!(
            members, p.members,
            "the members of {} changed: bump HW_ABI_VERSION_MAJOR in ffi/src/abi/version.rs \
             and update the table in ffi/src/abi/layout.rs (see its docs)",
            p.name
        );
    }
}
