//! Gives the shared library an soname on ELF platforms, `libhodei_workers.so.<ABI major>`, so
//! that programs linked against it record the ABI they were built for: a library of another
//! major is not picked up in its place, and one of the same major (any minor) is.
//!
//! The major is `HW_ABI_VERSION_MAJOR` of `src/abi/version.rs`, included here as source so
//! that the header, `hw_abi_version()` and the soname have one number.

#[allow(dead_code)]
mod abi {
    include!("src/abi/version.rs");
}

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if matches!(
        os.as_str(),
        "linux" | "freebsd" | "netbsd" | "openbsd" | "dragonfly"
    ) {
        println!(
            "cargo:rustc-cdylib-link-arg=-Wl,-soname,libhodei_workers.so.{}",
            abi::HW_ABI_VERSION_MAJOR
        );
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/abi/version.rs");
}
