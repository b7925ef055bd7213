//! Gives the shared library an soname on ELF platforms, so that programs linked against it
//! record `libhodei_workers.so.<abi>` and keep working when a compatible version is installed
//! over it. Before 1.0 every minor version may break the ABI, so the soname carries it.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if matches!(
        os.as_str(),
        "linux" | "freebsd" | "netbsd" | "openbsd" | "dragonfly"
    ) {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_default();
        let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_default();
        let abi = if major == "0" {
            format!("0.{minor}")
        } else {
            major
        };
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libhodei_workers.so.{abi}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
