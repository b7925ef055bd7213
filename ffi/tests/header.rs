//! The committed `include/hodei_workers.h` must be exactly what cbindgen makes of `ffi/src`.
//!
//! `make header` (that is, `HW_UPDATE_HEADER=1 cargo test -p hodei-workers-ffi --test header`)
//! rewrites it instead of comparing.

use std::path::PathBuf;

fn generate() -> String {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("ffi/cbindgen.toml is readable");
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen can read ffi/src");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
}

#[test]
fn committed_header_is_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../include/hodei_workers.h");
    let fresh = generate();
    if std::env::var_os("HW_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &fresh).expect("include/hodei_workers.h is writable");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != fresh {
        let line = committed
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(fresh.lines().count()))
            + 1;
        panic!(
            "include/hodei_workers.h is stale (first difference at line {line}): run `make header` \
             and commit the result"
        );
    }
}

#[test]
fn header_declares_the_whole_api() {
    let header = generate();
    // Functions written by macro would be invisible to cbindgen; these spot checks catch that
    // and a lost [export] include.
    for name in [
        "hw_status hw_registry_claim(",
        "hw_status hw_worker_get_jobs_executed(",
        "hw_status hw_worker_get_timestamps(",
        "hw_status hw_subscription_recv(",
        "const char *hw_last_error_message(void)",
        "HW_OK = 0",
        "HW_ERR_PANIC = 13",
        "HW_WORKER_STATE_READY = 2",
        "HW_EVENT_KIND_JOB_LOST",
        "HW_TERMINATION_REASON_REQUESTED",
        "typedef struct hw_registry hw_registry;",
        "THREAD SAFETY",
        "ABI VERSION",
        "uint32_t hw_abi_version(void)",
        "#define HW_ABI_VERSION_MAJOR ",
        "#define HW_ABI_VERSION_MINOR ",
        "#define HW_ABI_COMPATIBLE() ",
        "OWNERSHIP",
    ] {
        assert!(header.contains(name), "header lacks {name:?}");
    }
}
