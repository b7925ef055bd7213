//! The ABI version of the C library (`hw_abi_version`, `HW_ABI_VERSION_MAJOR`/`_MINOR`) and the
//! guard that keeps the surface from changing without it: `surface` pins the `#define`
//! constants' values, the enum values' numbers, the public structs' members and sizes (the
//! sizes from `layout`) and the functions' signatures in `ffi/abi/surface.txt`, with the version
//! they make up (`make abi-pin` re-pins).
//!
//! The policy (also in the header's top comment, the README's C section and DESIGN.md §7):
//! the major changes whenever a public struct's size or layout, a function's signature, an enum
//! value's number, a constant's value or a documented behaviour a host relies on changes
//! incompatibly; the minor when functions, structs, enum values or constants are only added. A
//! host checks at start-up that the library's major equals its header's
//! (`HW_ABI_COMPATIBLE()`). Builds before 1.0 of the ABI had no number.

mod version;

pub use version::{HW_ABI_VERSION, HW_ABI_VERSION_MAJOR, HW_ABI_VERSION_MINOR};

#[cfg(test)]
mod header;
#[cfg(test)]
mod layout;
#[cfg(test)]
mod surface;

// Each number has 16 bits of the packed version.
const _: () = assert!(HW_ABI_VERSION_MAJOR >> 16 == 0 && HW_ABI_VERSION_MINOR >> 16 == 0);

/// The ABI version of the library this program runs with: `(major << 16) | minor`, to compare
/// with the header's `HW_ABI_VERSION` (`HW_ABI_COMPATIBLE()` does: the majors must be equal).
/// Libraries built before the ABI had a version do not export this function. Never fails,
/// and leaves `hw_last_error_message` as it was.
#[no_mangle]
pub extern "C" fn hw_abi_version() -> u32 {
    HW_ABI_VERSION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_packs_major_and_minor() {
        assert_eq!(hw_abi_version() >> 16, HW_ABI_VERSION_MAJOR);
        assert_eq!(hw_abi_version() & 0xffff, HW_ABI_VERSION_MINOR);
    }
}
