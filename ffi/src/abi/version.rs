// The ABI version of the C library: the one place its number is written. `abi/mod.rs` exports
// it to C (cbindgen makes each constant a `#define` of the header), and `ffi/build.rs`
// `include!`s this file to give the shared library its soname, `libhodei_workers.so.<MAJOR>`
// (mk/c.mk reads MAJOR and MINOR from here too, for the installed file names). Items only, no
// inner attributes or `//!` docs: the file is included as it is.

/// The ABI's major version. It changes whenever a host built against the previous header could
/// misbehave with this library: a public struct's size or layout, a function's signature, an
/// enum value's number, a constant's value (a buffer sized from the old one could be too
/// small), or a documented behaviour a host relies on changed incompatibly. The shared
/// library's soname carries it (`libhodei_workers.so.1`). Check it at start-up with
/// `HW_ABI_COMPATIBLE()`.
pub const HW_ABI_VERSION_MAJOR: u32 = 1;

/// The ABI's minor version. It changes when functions, structs, enum values or constants are
/// only added (back to 0 when the major changes). A host built against minor N may use what N
/// added only with a library of minor N or later.
pub const HW_ABI_VERSION_MINOR: u32 = 4;

/// The ABI version this header describes, as `hw_abi_version()` returns the library's:
/// `(HW_ABI_VERSION_MAJOR << 16) | HW_ABI_VERSION_MINOR`.
pub const HW_ABI_VERSION: u32 = (HW_ABI_VERSION_MAJOR << 16) | HW_ABI_VERSION_MINOR;
