//! The C ABI, pinned in `ffi/abi/surface.txt` with the ABI version it makes up, so that the
//! surface and `abi/version.rs` cannot drift apart: one pinned file, one version rule.
//!
//! The pinned file's first line is the version it describes (`hodei_workers C ABI 1.0`); then,
//! in the header's order, one line per:
//! - `#define` constant with its value (`define HW_WORKER_ID_STRING_SIZE 37`): hosts size
//!   buffers and bound strings with them. Not pinned: `HW_ABI_VERSION_MAJOR`, `_MINOR` and
//!   `HW_ABI_VERSION` (the version is the first line; as a pinned value every bump would be a
//!   change), the include guard and function-like macros such as `HW_ABI_COMPATIBLE()` (no
//!   constants: code a host compiles, whose effect goes through the functions and constants
//!   it names; `abi/header.rs` reads them);
//! - enum constant with its number (`enum hw_status HW_ERR_NOT_FOUND = 1`);
//! - public struct: its size and alignment (`struct hw_ticker_stats size 40 align 8`, Rust's
//!   `size_of`/`align_of` on 64-bit targets, the targets these numbers hold on, listed in
//!   `abi/layout.rs`; elsewhere the size lines are not compared), then each member in order
//!   as the header declares it (`struct hw_ticker_stats member 0: uint64_t ticks`), whitespace
//!   collapsed, a function pointer's parameter names left out (the member's own name is kept:
//!   hosts' code reads and writes the member by it);
//! - exported function as the header declares it, whitespace collapsed and parameter names
//!   left out (`hw_status hw_clock_now(const struct hw_clock *, uint64_t *)`): a parameter's
//!   name is no part of the ABI, its type is.
//!
//! Lines starting with `#` are comments.
//!
//! The test compares the pin with the committed header (which `tests/header.rs` keeps equal to
//! what cbindgen makes of `ffi/src`), with the structs' sizes in Rust and with
//! `abi/version.rs`, and fails when:
//! - a pinned line is gone or changed (a signature, a number, a constant's value, a struct's
//!   member or size, a removal): that breaks the ABI, bump `HW_ABI_VERSION_MAJOR`, set the
//!   minor to 0, and re-pin;
//! - a struct the pin has gained a member, even at its end or in its padding: a change of that
//!   struct, so the same major bump. No struct carries its size: the library fills structs the
//!   host allocated (`hw_ticker_stats`, `hw_report_summary`, …), where it would write past an
//!   old host's struct, and reads structs the host filled (`hw_manager_config`,
//!   `hw_provider_callbacks`, `hw_ticker_callbacks`), where it would read past one;
//! - the header has another line that is not pinned (a new function, enum value, constant or
//!   struct with its members): that extends the ABI, bump `HW_ABI_VERSION_MINOR` and re-pin;
//! - the pinned version is not `abi/version.rs`'s: a bump without a re-pin, or a re-pin without
//!   a bump.
//!
//! Re-pin with `make abi-pin` (`make header`, then
//! `HW_ABI_REPIN=1 cargo test -p hodei-workers-ffi --lib abi::surface`). It rewrites the file only
//! when `abi/version.rs` has the bump the change needs (a pinned line changed or gone, or a
//! pinned struct grown: a higher major and minor 0; additions only: a higher minor of the same
//! major, or a new major), and otherwise fails with the same message as the test: a re-pin
//! cannot hide a missing bump. A bump alone (a behaviour changed, the surface did not) is
//! re-pinned the same way.
//!
//! The constants and structs joined the pin of 1.0 after its functions and enum values, with
//! the version unchanged: the surface was the same, only more of it was pinned. That was done
//! once, by writing the file afresh (the first pin), checked to keep every line pinned before
//! and to hold the same struct sizes and members as the table `abi/layout.rs` kept by hand
//! until then. A later kind of line would be added the same way, in the commit that teaches
//! this module to read it, never together with a change of the surface.

use std::collections::BTreeSet;
use std::fmt;

use super::{header, layout};
use super::{HW_ABI_VERSION_MAJOR, HW_ABI_VERSION_MINOR};

const PIN_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/abi/surface.txt");
const VERSION_PREFIX: &str = "hodei_workers C ABI ";
const REPIN: &str = "`make abi-pin`";
/// The version itself: the pin's first line holds it, and as a pinned constant every bump
/// would be a changed value, so a major.
const UNPINNED_DEFINES: [&str; 3] = [
    "HW_ABI_VERSION_MAJOR",
    "HW_ABI_VERSION_MINOR",
    "HW_ABI_VERSION",
];
/// Whether this target is one the pinned sizes describe.
const SIZES_HOLD: bool = cfg!(target_pointer_width = "64");

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Version {
    major: u32,
    minor: u32,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

const CURRENT: Version = Version {
    major: HW_ABI_VERSION_MAJOR,
    minor: HW_ABI_VERSION_MINOR,
};

/// The surface of the header, as the pin writes it, in the header's order: constants, enum
/// constants, structs (each its size line, then its members), functions.
fn surface(header: &str) -> Vec<String> {
    let defines = header::constants(header)
        .into_iter()
        .filter(|(name, _)| !UNPINNED_DEFINES.contains(&name.as_str()))
        .map(|(name, value)| format!("define {name} {value}"));
    let enums = header::enum_constants(header)
        .into_iter()
        .map(|(name, constant, value)| format!("enum {name} {constant} = {value}"));
    let layouts = layout::layouts();
    let structs = header::struct_members(header)
        .into_iter()
        .flat_map(|(name, members)| {
            let layout = layouts
                .iter()
                .find(|l| l.name == name)
                .unwrap_or_else(|| panic!("list struct {name} in ffi/src/abi/layout.rs"));
            let size = format!("struct {name} size {} align {}", layout.size, layout.align);
            let members = members.iter().enumerate().map(move |(i, member)| {
                format!(
                    "struct {name} member {i}: {}",
                    member_without_parameter_names(member)
                )
            });
            std::iter::once(size).chain(members).collect::<Vec<_>>()
        });
    let functions = header::prototypes(header)
        .into_iter()
        .map(|(_, prototype)| without_parameter_names(&prototype));
    defines
        .chain(enums)
        .chain(structs)
        .chain(functions)
        .collect()
}

/// `prototype` with each parameter's name dropped, its type kept.
fn without_parameter_names(prototype: &str) -> String {
    let (head, params) = prototype
        .split_once('(')
        .unwrap_or_else(|| panic!("cannot read the parameters of `{prototype}` in the header"));
    format!("{head}({}", parameter_types(params, prototype))
}

/// A struct member as pinned: a function pointer's parameters without their names (as a
/// prototype's), any other member as declared. A member's own name is kept: hosts' code
/// reads and writes the member by it.
fn member_without_parameter_names(member: &str) -> String {
    if !member.contains("(*") {
        return member.to_string();
    }
    let (head, params) = member
        .split_once(")(")
        .unwrap_or_else(|| panic!("cannot read the member `{member}` in the header"));
    format!("{head})({}", parameter_types(params, member))
}

/// The types of `params`, a parameter list and its closing `)` (of `declaration`), comma
/// separated, with that `)`.
fn parameter_types(params: &str, declaration: &str) -> String {
    let unreadable =
        || -> ! { panic!("cannot read the parameters of `{declaration}` in the header") };
    let params = params.strip_suffix(')').unwrap_or_else(|| unreadable());
    // A function-pointer or array parameter: its name is not the last word.
    if params.contains(['(', '[']) {
        unreadable();
    }
    let types: Vec<&str> = params
        .split(',')
        .map(str::trim)
        .map(|param| {
            if param == "void" {
                return param;
            }
            let ty = param
                .trim_end_matches(|c: char| c.is_ascii_alphanumeric() || c == '_')
                .trim_end();
            if ty.is_empty() || ty.len() == param.len() {
                unreadable();
            }
            ty
        })
        .collect();
    format!("{})", types.join(", "))
}

/// The first `n` words of `line`.
fn first_words(line: &str, n: usize) -> &str {
    match line.match_indices(' ').nth(n - 1) {
        Some((end, _)) => &line[..end],
        None => line,
    }
}

/// What identifies a pinned line across a change: the constant's or the function's name, a
/// struct's size line or its member at a position.
fn key(line: &str) -> &str {
    if let Some(define) = line.strip_prefix("define ") {
        first_words(define, 1)
    } else if let Some(constant) = line.strip_prefix("enum ") {
        constant.split(' ').nth(1).unwrap_or(line)
    } else if line.starts_with("struct ") {
        match line.split(' ').nth(2) {
            Some("member") => first_words(line, 4),
            _ => first_words(line, 3),
        }
    } else {
        line.split_once('(')
            .and_then(|(head, _)| head.rsplit([' ', '*']).next())
            .unwrap_or(line)
    }
}

/// The struct a size or member line belongs to.
fn struct_of(line: &str) -> Option<&str> {
    line.strip_prefix("struct ")?.split(' ').next()
}

/// A size line: it holds on 64-bit targets only.
fn is_size_line(line: &str) -> bool {
    struct_of(line).is_some() && line.split(' ').nth(2) == Some("size")
}

struct Pin {
    version: Version,
    lines: Vec<String>,
}

fn parse_pin(text: &str) -> Pin {
    let mut lines = text.lines();
    let version = lines
        .next()
        .and_then(|line| line.strip_prefix(VERSION_PREFIX))
        .and_then(|v| v.split_once('.'))
        .and_then(|(major, minor)| {
            Some(Version {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
            })
        })
        .unwrap_or_else(|| {
            panic!("ffi/abi/surface.txt does not start with `{VERSION_PREFIX}MAJOR.MINOR`")
        });
    let lines = lines
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect();
    Pin { version, lines }
}

fn render(version: Version, lines: &[String]) -> String {
    let mut out = format!(
        "{VERSION_PREFIX}{version}\n\
         # The C ABI {version} as include/hodei_workers.h declares it: its #define constants,\n\
         # enum values, structs (size and alignment on 64-bit targets, then each member in\n\
         # order) and functions (parameter names left out). Do not edit: re-pin with\n\
         # `make abi-pin`, which needs the version bump the change calls for\n\
         # (ffi/src/abi/surface.rs).\n"
    );
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// How the header's surface differs from the pinned one.
struct Drift {
    /// Pinned lines the header no longer has (removed or changed).
    gone: Vec<String>,
    /// Header lines that are not pinned (new, or the new form of a changed one).
    added: Vec<String>,
    /// The added lines that are new members of a pinned struct (not the new form of a gone
    /// line): a change of that struct, as no struct carries its size.
    grown: Vec<String>,
}

impl Drift {
    fn between(pinned: &[String], now: &[String]) -> Drift {
        let pinned_set: BTreeSet<&String> = pinned.iter().collect();
        let now_set: BTreeSet<&String> = now.iter().collect();
        let gone: Vec<String> = pinned
            .iter()
            .filter(|l| !now_set.contains(l))
            .cloned()
            .collect();
        let added: Vec<String> = now
            .iter()
            .filter(|l| !pinned_set.contains(l))
            .cloned()
            .collect();
        let pinned_structs: BTreeSet<&str> = pinned.iter().filter_map(|l| struct_of(l)).collect();
        let gone_keys: BTreeSet<&str> = gone.iter().map(|l| key(l)).collect();
        let grown = added
            .iter()
            .filter(|l| struct_of(l).is_some_and(|s| pinned_structs.contains(s)))
            .filter(|l| !gone_keys.contains(key(l)))
            .cloned()
            .collect();
        Drift { gone, added, grown }
    }

    /// Whether this drift breaks the ABI: a pinned line gone or changed, or a pinned struct
    /// grown.
    fn breaks(&self) -> bool {
        !self.gone.is_empty() || !self.grown.is_empty()
    }

    /// Whether `to` is a version this drift may be pinned as, after `from`.
    fn allows(&self, from: Version, to: Version) -> bool {
        let new_major = to.major > from.major && to.minor == 0;
        let new_minor = to.major == from.major && to.minor > from.minor;
        if self.breaks() {
            new_major
        } else if !self.added.is_empty() {
            new_major || new_minor
        } else {
            to == from || new_major || new_minor
        }
    }

    /// What is wrong when the surface pinned as `pinned` is now this drift with version.rs at
    /// `current`, and what to do; `None` when the pin is current.
    fn complaint(&self, pinned: Version, current: Version) -> Option<String> {
        let list =
            |lines: &[String]| -> String { lines.iter().map(|l| format!("\n  {l}")).collect() };
        let bumped = if self.allows(pinned, current) {
            format!("ffi/src/abi/version.rs already says {current}: re-pin with {REPIN}")
        } else {
            format!("ffi/src/abi/version.rs says {current}")
        };
        if self.breaks() {
            let gone = self.gone.iter().map(|gone| {
                let now = self.added.iter().find(|l| key(l) == key(gone));
                match now {
                    Some(now) => format!("{gone}\n    now: {now}"),
                    None => format!("{gone}\n    now: (gone)"),
                }
            });
            let grown = self.grown.iter().map(|grown| {
                format!(
                    "{grown}\n    added to a struct the C ABI {pinned} pins: no struct carries \
                     its size, so a host's copy would be too small"
                )
            });
            let now: Vec<String> = gone.chain(grown).collect();
            Some(format!(
                "the C ABI {pinned} pinned in ffi/abi/surface.txt changed (in \
                 include/hodei_workers.h, or a struct's size in ffi/src):{}\n\
                 this breaks the ABI: bump HW_ABI_VERSION_MAJOR (to {}), reset the minor (to 0) \
                 in ffi/src/abi/version.rs, and re-pin with {REPIN} ({bumped})",
                list(&now),
                pinned.major + 1,
            ))
        } else if !self.added.is_empty() {
            Some(format!(
                "include/hodei_workers.h has lines the C ABI {pinned} does not pin:{}\n\
                 this extends the ABI: bump HW_ABI_VERSION_MINOR (to {}) in \
                 ffi/src/abi/version.rs and pin it with {REPIN} ({bumped})",
                list(&self.added),
                pinned.minor + 1,
            ))
        } else if current != pinned {
            Some(format!(
                "ffi/abi/surface.txt pins the C ABI {pinned}, but ffi/src/abi/version.rs says \
                 {current}: a bump is re-pinned with {REPIN}, and a re-pin needs its bump"
            ))
        } else {
            None
        }
    }
}

#[test]
fn the_pinned_surface_is_the_headers_and_has_its_version() {
    let mut now = surface(&header::read());
    let repin = std::env::var_os("HW_ABI_REPIN").is_some();
    let Ok(text) = std::fs::read_to_string(PIN_PATH) else {
        // The first pin: there is nothing it could hide.
        assert!(
            repin && SIZES_HOLD,
            "ffi/abi/surface.txt is missing: pin the C ABI {CURRENT} with {REPIN}"
        );
        std::fs::create_dir_all(std::path::Path::new(PIN_PATH).parent().unwrap()).unwrap();
        std::fs::write(PIN_PATH, render(CURRENT, &now)).expect("ffi/abi/surface.txt is writable");
        return;
    };
    let mut pin = parse_pin(&text);
    if !SIZES_HOLD {
        // The sizes pinned are those of 64-bit targets: compare the rest.
        assert!(
            !repin,
            "re-pin on a 64-bit target: the sizes pinned are theirs"
        );
        pin.lines.retain(|l| !is_size_line(l));
        now.retain(|l| !is_size_line(l));
    }
    let drift = Drift::between(&pin.lines, &now);
    if repin {
        if !drift.allows(pin.version, CURRENT) {
            panic!(
                "refusing to re-pin: {}",
                drift.complaint(pin.version, CURRENT).unwrap_or_default()
            );
        }
        std::fs::write(PIN_PATH, render(CURRENT, &now)).expect("ffi/abi/surface.txt is writable");
        return;
    }
    if let Some(complaint) = drift.complaint(pin.version, CURRENT) {
        panic!("{complaint}");
    }
}

mod tests {
    use super::*;

    fn v(major: u32, minor: u32) -> Version {
        Version { major, minor }
    }

    fn lines(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn parameter_names_are_left_out() {
        assert_eq!(
            without_parameter_names(
                "hw_status hw_clock_advance(const struct hw_clock *clock, uint64_t by_ms, uint64_t *out_now_ms)"
            ),
            "hw_status hw_clock_advance(const struct hw_clock *, uint64_t, uint64_t *)"
        );
        assert_eq!(
            without_parameter_names("uint32_t hw_abi_version(void)"),
            "uint32_t hw_abi_version(void)"
        );
    }

    #[test]
    fn function_pointer_members_lose_their_parameter_names_only() {
        assert_eq!(
            member_without_parameter_names(
                "void (*on_report)(void *user_data, const struct hw_report *report)"
            ),
            "void (*on_report)(void *, const struct hw_report *)"
        );
        assert_eq!(
            member_without_parameter_names("uint8_t bytes[16]"),
            "uint8_t bytes[16]"
        );
    }

    #[test]
    fn keys_name_the_function_or_the_constant() {
        assert_eq!(key("define HW_MAX_KEY_LEN 256"), "HW_MAX_KEY_LEN");
        assert_eq!(key("struct hw_s size 40 align 8"), "struct hw_s size");
        assert_eq!(
            key("struct hw_s member 3: uint64_t ticks"),
            "struct hw_s member 3:"
        );
        assert_eq!(
            key("enum hw_status HW_ERR_NOT_FOUND = 1"),
            "HW_ERR_NOT_FOUND"
        );
        assert_eq!(
            key("const char *hw_last_error_message(void)"),
            "hw_last_error_message"
        );
    }

    #[test]
    fn a_change_needs_a_new_major_an_addition_a_new_minor() {
        let pinned = lines(&["enum e A = 0", "void hw_f(int)"]);
        let changed = Drift::between(&pinned, &lines(&["enum e A = 1", "void hw_f(int)"]));
        let added = Drift::between(
            &pinned,
            &lines(&["enum e A = 0", "void hw_f(int)", "void hw_g(void)"]),
        );
        let same = Drift::between(&pinned, &pinned);
        assert!(changed.allows(v(1, 3), v(2, 0)));
        assert!(!changed.allows(v(1, 3), v(1, 4)));
        assert!(!changed.allows(v(1, 3), v(2, 1)));
        assert!(added.allows(v(1, 3), v(1, 4)));
        assert!(added.allows(v(1, 3), v(2, 0)));
        assert!(!added.allows(v(1, 3), v(1, 3)));
        assert!(same.allows(v(1, 3), v(1, 3)));
        assert!(!same.allows(v(1, 3), v(1, 2)));
        assert!(same.complaint(v(1, 3), v(1, 3)).is_none());
        assert!(same.complaint(v(1, 3), v(2, 0)).is_some());
        let message = changed.complaint(v(1, 3), v(1, 3)).unwrap();
        assert!(
            message.contains("enum e A = 0\n    now: enum e A = 1"),
            "{message}"
        );
        assert!(message.contains("this breaks the ABI"), "{message}");
        let message = added.complaint(v(1, 3), v(1, 3)).unwrap();
        assert!(
            message.contains("this extends the ABI: bump HW_ABI_VERSION_MINOR (to 4)"),
            "{message}"
        );
    }

    #[test]
    fn a_grown_struct_needs_a_new_major_a_new_struct_a_new_minor() {
        let pinned = lines(&[
            "define HW_N 16",
            "struct hw_s size 16 align 8",
            "struct hw_s member 0: uint64_t a",
            "struct hw_s member 1: bool b",
        ]);
        let mut grown = pinned.clone();
        grown.push("struct hw_s member 2: bool c".to_string());
        let grown = Drift::between(&pinned, &grown);
        assert!(grown.breaks());
        assert!(!grown.allows(v(1, 0), v(1, 1)));
        assert!(grown.allows(v(1, 0), v(2, 0)));
        let message = grown.complaint(v(1, 0), v(1, 0)).unwrap();
        assert!(
            message.contains("struct hw_s member 2: bool c\n    added to a struct"),
            "{message}"
        );
        assert!(message.contains("this breaks the ABI"), "{message}");

        let mut resized = pinned.clone();
        resized[1] = "struct hw_s size 24 align 8".to_string();
        let resized = Drift::between(&pinned, &resized);
        assert!(!resized.allows(v(1, 0), v(1, 1)));
        let message = resized.complaint(v(1, 0), v(1, 0)).unwrap();
        assert!(
            message.contains("struct hw_s size 16 align 8\n    now: struct hw_s size 24 align 8"),
            "{message}"
        );

        let mut revalued = pinned.clone();
        revalued[0] = "define HW_N 8".to_string();
        assert!(!Drift::between(&pinned, &revalued).allows(v(1, 0), v(1, 1)));

        let mut added = pinned.clone();
        added.extend(lines(&[
            "define HW_M 1",
            "struct hw_t size 8 align 8",
            "struct hw_t member 0: uint64_t a",
        ]));
        let added = Drift::between(&pinned, &added);
        assert!(!added.breaks());
        assert!(added.allows(v(1, 0), v(1, 1)));
        assert!(!added.allows(v(1, 0), v(1, 0)));
    }

    #[test]
    fn the_pin_reads_back_what_it_wrote() {
        let written = lines(&["enum e A = 0", "void hw_f(int)"]);
        let pin = parse_pin(&render(v(1, 2), &written));
        assert_eq!(pin.version, v(1, 2));
        assert_eq!(pin.lines, written);
    }
}
