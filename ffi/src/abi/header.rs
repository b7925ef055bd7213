//! Reading the committed `include/hodei_workers.h` for the ABI guards (`layout`, `surface`).
//!
//! The one reader of the header's declarations in Rust. It reads the shapes cbindgen writes
//! (one `typedef struct NAME {` a line, `enum NAME` then its constants one a line, prototypes in
//! the `extern "C"` block) and panics on a declaration it cannot read, so that a shape it does
//! not know is never skipped unseen.

/// The committed header, which `tests/header.rs` keeps equal to what cbindgen makes of `ffi/src`.
pub(super) fn read() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../include/hodei_workers.h");
    std::fs::read_to_string(path).expect("include/hodei_workers.h is readable")
}

/// Each `typedef struct NAME { … } NAME;` of the header with its member declarations, in
/// order: the lines of the body outside comments, without the `;`. Opaque structs (declared
/// without a body) are not listed.
pub(super) fn struct_members(header: &str) -> Vec<(String, Vec<String>)> {
    let mut structs = Vec::new();
    let mut lines = header.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .strip_prefix("typedef struct ")
            .and_then(|rest| rest.strip_suffix(" {"))
        else {
            continue;
        };
        let mut members = Vec::new();
        let mut in_comment = false;
        for line in lines.by_ref() {
            let line = line.trim();
            if line.starts_with('}') && !in_comment {
                break;
            }
            if in_comment || line.starts_with("/*") {
                in_comment = !line.ends_with("*/");
            } else if !line.is_empty() {
                members.push(line.trim_end_matches(';').to_string());
            }
        }
        structs.push((name.to_string(), members));
    }
    structs
}

/// Each constant of each `enum NAME` of the header, in order, as `(enum, constant, value)`:
/// `("hw_status", "HW_OK", "0")`.
pub(super) fn enum_constants(header: &str) -> Vec<(String, String, String)> {
    let mut constants = Vec::new();
    let mut lines = header.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.strip_prefix("enum ") else {
            continue;
        };
        let mut in_body = false;
        let mut in_comment = false;
        for line in lines.by_ref() {
            let line = line.trim();
            if in_comment || line.starts_with("/*") {
                in_comment = !line.ends_with("*/");
            } else if line == "{" {
                in_body = true;
            } else if line == "};" {
                break;
            } else if in_body && !line.is_empty() {
                let Some((constant, value)) = line.trim_end_matches(',').split_once(" = ") else {
                    panic!("cannot read the constant `{line}` of enum {name} in the header");
                };
                constants.push((name.to_string(), constant.to_string(), value.to_string()));
            }
        }
    }
    constants
}

/// Each function prototype of the header's `extern "C"` block, in order, whitespace collapsed
/// and without the `;`, as `(name, prototype)`.
pub(super) fn prototypes(header: &str) -> Vec<(String, String)> {
    let start = header
        .find("extern \"C\" {\n")
        .expect("the header has an extern \"C\" block");
    let end = header[start..]
        .find("}  // extern \"C\"")
        .map(|end| start + end)
        .expect("the header's extern \"C\" block ends");
    let body = strip_comments(&header[start + "extern \"C\" {\n".len()..end]);
    let code: String = body
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    code.split(';')
        .map(|decl| decl.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|decl| !decl.is_empty())
        .map(|decl| {
            let name = decl
                .split_once('(')
                .filter(|_| decl.ends_with(')'))
                .and_then(|(before, _)| before.rsplit([' ', '*']).next())
                .filter(|name| name.starts_with("hw_"))
                .unwrap_or_else(|| panic!("cannot read the declaration `{decl}` in the header"));
            (name.to_string(), decl.clone())
        })
        .collect()
}

/// `text` without its `/* … */` comments.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("/*") {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find("*/")
            .expect("every comment of the header is closed");
        rest = &rest[open + close + 2..];
    }
    out.push_str(rest);
    out
}
