//! The size and alignment Rust gives every public struct, for the pin in `ffi/abi/surface.txt`
//! (`abi/surface.rs` writes them there as `struct NAME size S align A` and compares them with
//! each version's pin, under the same rule as every other pinned line).
//!
//! The header declares the structs' members, not their sizes: these numbers come from the
//! `#[repr(C)]` definitions the library is compiled from, so that what the library reads and
//! writes is pinned beside what the header tells hosts, and a change to the one that the other
//! does not show still changes a pinned line. They hold on 64-bit targets, the ones the pin
//! describes.
//!
//! The list names every struct with members that the header declares, and no other (a test
//! checks it): a new public struct is added here, so that its size is pinned with its members.

use std::mem::{align_of, size_of};

use super::header;
use crate::{
    hw_event_fields, hw_interruption, hw_leader_info, hw_leader_state, hw_manager_config,
    hw_mass_expiry_hold, hw_pending_destroy, hw_pending_orphan, hw_provider_backoff,
    hw_provider_callbacks, hw_provider_name, hw_report_summary, hw_scaling_plan,
    hw_ticker_callbacks, hw_ticker_stats, hw_worker_counts, hw_worker_id, hw_worker_timestamps,
};

/// One public struct's layout as this build of the library has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    pub(super) name: &'static str,
    pub(super) size: usize,
    pub(super) align: usize,
}

macro_rules! layouts {
    ($($ty:ident),* $(,)?) => {
        vec![$(Layout { name: stringify!($ty), size: size_of::<$ty>(), align: align_of::<$ty>() }),*]
    };
}

/// Rust's `size_of` and `align_of` of each public struct.
pub(super) fn layouts() -> Vec<Layout> {
    layouts![
        hw_worker_id,
        hw_event_fields,
        hw_leader_info,
        hw_manager_config,
        hw_provider_callbacks,
        hw_mass_expiry_hold,
        hw_report_summary,
        hw_scaling_plan,
        hw_worker_counts,
        hw_ticker_callbacks,
        hw_ticker_stats,
        hw_worker_timestamps,
        hw_provider_name,
        hw_provider_backoff,
        hw_pending_destroy,
        hw_interruption,
        hw_pending_orphan,
        hw_leader_state,
    ]
}

#[test]
fn every_struct_of_the_header_has_its_layout_listed() {
    let mut declared: Vec<String> = header::struct_members(&header::read())
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let mut listed: Vec<&str> = layouts().iter().map(|l| l.name).collect();
    declared.sort_unstable();
    listed.sort_unstable();
    assert_eq!(
        declared, listed,
        "the header's structs with members are not the ones listed in ffi/src/abi/layout.rs: \
         list each public struct there, so that its size is pinned with its members"
    );
}
