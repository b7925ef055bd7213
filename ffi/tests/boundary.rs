//! Every exported function goes through the panic boundary: a source check, because a function
//! that forgot it would only show itself when a bug unwinds into C (and aborts the host).

use std::path::PathBuf;

/// Exported functions that return no `hw_status`: destructors (which use `free_handle` or, for
/// the arrays of the manager's read-outs, `free_array`, both behind `catch_unwind`) and static
/// lookups that cannot fail.
const WITHOUT_STATUS: &[&str] = &[
    "hw_status_str",
    "hw_last_error_message",
    "hw_string_free",
    "hw_worker_state_str",
    "hw_version",
    "hw_abi_version",
];

#[test]
fn every_exported_function_is_wrapped() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut exported = 0;
    for path in rust_files(&src) {
        let text = std::fs::read_to_string(&path).expect("source file");
        let mut rest = text.as_str();
        while let Some(at) = rest.find("pub extern \"C\" fn ") {
            rest = &rest[at + "pub extern \"C\" fn ".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            exported += 1;
            // The body: up to the next exported function (or the end of the file).
            let body = &rest[..rest.find("pub extern \"C\" fn ").unwrap_or(rest.len())];
            let signature = &body[..body.find('{').expect("a body")];
            if name.ends_with("_free") {
                assert!(
                    body.contains("free_handle(")
                        || body.contains("free_array(")
                        || body.contains("run_quiet("),
                    "{name} in {path:?} frees without the panic guard"
                );
            } else if WITHOUT_STATUS.contains(&name.as_str()) {
                assert!(
                    !signature.contains("-> hw_status"),
                    "{name} returns a status"
                );
            } else {
                assert!(
                    signature.contains("-> hw_status"),
                    "{name} in {path:?} returns no hw_status"
                );
                assert!(
                    body.contains(&format!("ffi_boundary!({name},")),
                    "{name} in {path:?} is not wrapped in ffi_boundary!({name}, ...)"
                );
            }
        }
    }
    assert!(exported > 100, "found only {exported} exported functions");
}

/// Every `.rs` file under `dir`, subdirectories included (the manager is a folder of modules).
fn rust_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a source directory") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}
