//! Reading the committed `include/hodei_workers.h` for the ABI guards (`layout`, `surface`).
//!
//! The one reader of the header's declarations in Rust. It reads the shapes cbindgen writes
//! (`#define NAME VALUE` one a line, one `typedef struct NAME {` a line, `enum NAME` then its
//! constants one a line, prototypes in the `extern "C"` block) and panics on a declaration it
//! cannot read, so that a shape it does not know is never skipped unseen.

/// The committed header, which `tests/header.rs` keeps equal to what cbindgen makes of `ffi/src`.
pub(super) fn read() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../include/hodei_workers.h");
    std::fs::read_to_string(path).expect("include/hodei_workers.h is readable")
}

/// Each `typedef struct NAME { … } NAME;` of the header with its member declarations, in
/// order: the lines of the body outside comments, whitespace collapsed, without the `;`.
/// Opaque structs (declared without a body) are not listed.
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
                let member = line.trim_end_matches(';').split_whitespace();
                members.push(member.collect::<Vec<_>>().join(" "));
            }
        }
        structs.push((name.to_string(), members));
    }
    structs
}

/// Each object-like `#define NAME VALUE` of the header, in order, as `(name, value)`, the
/// value's whitespace collapsed: `("HW_MAX_KEY_LEN", "256")`. Left out, as they are no
/// constants: function-like macros (`#define NAME(…) …`, code a host compiles, whose effect
/// on the ABI is through the functions and constants it names) and the include guard (the
/// `#define NAME` without a value that follows `#ifndef NAME`). Panics on any other define
/// without a value and on one continued over lines.
pub(super) fn constants(header: &str) -> Vec<(String, String)> {
    let mut constants = Vec::new();
    let mut previous = "";
    for line in header.lines() {
        if let Some(define) = line.strip_prefix("#define ") {
            let unreadable = || -> ! { panic!("cannot read the define `{line}` in the header") };
            if line.ends_with('\\') {
                unreadable();
            }
            let name_end = define
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(define.len());
            let (name, rest) = define.split_at(name_end);
            if rest.starts_with('(') {
                // Function-like: not a constant.
            } else if rest.trim().is_empty() {
                if previous.strip_prefix("#ifndef ") != Some(name) {
                    unreadable();
                }
            } else if name.is_empty() || !rest.starts_with(' ') {
                unreadable();
            } else {
                let value = rest.split_whitespace().collect::<Vec<_>>().join(" ");
                constants.push((name.to_string(), value));
            }
        }
        if !line.trim().is_empty() {
            previous = line;
        }
    }
    constants
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_leave_out_the_include_guard_and_function_like_macros() {
        let header = "#ifndef GUARD_H\n#define GUARD_H\n\n#define HW_F() (hw_f() >> 16)\n\
                      #define HW_A 37\n#define HW_B  UINT64_MAX\n";
        assert_eq!(
            constants(header),
            [
                ("HW_A".to_string(), "37".to_string()),
                ("HW_B".to_string(), "UINT64_MAX".to_string())
            ]
        );
    }

    #[test]
    #[should_panic(expected = "cannot read the define `#define HW_FLAG`")]
    fn a_define_without_a_value_is_not_skipped_unseen() {
        constants("#define HW_A 1\n#define HW_FLAG\n");
    }
}
