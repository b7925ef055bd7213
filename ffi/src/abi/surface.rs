//! The functions and enum values of the C ABI, pinned in `ffi/abi/surface.txt` with the ABI
//! version they make up, so that the surface and `abi/version.rs` cannot drift apart.
//!
//! The pinned file's first line is the version it describes (`hodei_workers C ABI 1.0`); then
//! one line per enum constant with its number (`enum hw_status HW_ERR_NOT_FOUND = 1`) and one
//! per exported function as the header declares it, whitespace collapsed and parameter names
//! left out (`hw_status hw_clock_now(const struct hw_clock *, uint64_t *)`): a parameter's name
//! is no part of the ABI, its type is. Lines starting with `#` are comments. The structs are
//! pinned in `abi/layout.rs`.
//!
//! The test compares the pin with the committed header (which `tests/header.rs` keeps equal to
//! what cbindgen makes of `ffi/src`) and with `abi/version.rs`, and fails when:
//! - a pinned line is gone or changed (a signature, a number, a removal): that breaks the ABI,
//!   bump `HW_ABI_VERSION_MAJOR`, set the minor to 0, and re-pin;
//! - the header has a line that is not pinned (a new function or enum value): that extends the
//!   ABI, bump `HW_ABI_VERSION_MINOR` and re-pin;
//! - the pinned version is not `abi/version.rs`'s: a bump without a re-pin, or a re-pin without
//!   a bump.
//!
//! Re-pin with `make abi-pin` (`make header`, then
//! `HW_ABI_REPIN=1 cargo test -p hodei-workers-ffi --lib abi::surface`). It rewrites the file only
//! when `abi/version.rs` has the bump the change needs (any change of a pinned line: a higher
//! major and minor 0; additions only: a higher minor of the same major, or a new major), and
//! otherwise fails with the same message as the test: a re-pin cannot hide a missing bump. A
//! bump alone (a behaviour changed, the surface did not) is re-pinned the same way.

use std::collections::BTreeSet;
use std::fmt;

use super::header;
use super::{HW_ABI_VERSION_MAJOR, HW_ABI_VERSION_MINOR};

const PIN_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/abi/surface.txt");
const VERSION_PREFIX: &str = "hodei_workers C ABI ";
const REPIN: &str = "`make abi-pin`";

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

/// The surface of the header, as the pin writes it: enum constants, then functions, each in
/// the header's order.
fn surface(header: &str) -> Vec<String> {
    let enums = header::enum_constants(header)
        .into_iter()
        .map(|(name, constant, value)| format!("enum {name} {constant} = {value}"));
    let functions = header::prototypes(header)
        .into_iter()
        .map(|(_, prototype)| without_parameter_names(&prototype));
    enums.chain(functions).collect()
}

/// `prototype` with each parameter's name dropped, its type kept.
fn without_parameter_names(prototype: &str) -> String {
    let unreadable =
        || -> ! { panic!("cannot read the parameters of `{prototype}` in the header") };
    let (head, params) = prototype.split_once('(').unwrap_or_else(|| unreadable());
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
    format!("{head}({})", types.join(", "))
}

/// What identifies a pinned line across a change: the function's or the constant's name.
fn key(line: &str) -> &str {
    match line.strip_prefix("enum ") {
        Some(constant) => constant.split(' ').nth(1).unwrap_or(line),
        None => line
            .split_once('(')
            .and_then(|(head, _)| head.rsplit([' ', '*']).next())
            .unwrap_or(line),
    }
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
         # The functions and enum values of the C ABI {version}, as include/hodei_workers.h\n\
         # declares them (parameter names left out). Do not edit: re-pin with `make abi-pin`,\n\
         # which needs the version bump the change calls for (ffi/src/abi/surface.rs).\n"
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
}

impl Drift {
    fn between(pinned: &[String], now: &[String]) -> Drift {
        let pinned_set: BTreeSet<&String> = pinned.iter().collect();
        let now_set: BTreeSet<&String> = now.iter().collect();
        Drift {
            gone: pinned
                .iter()
                .filter(|l| !now_set.contains(l))
                .cloned()
                .collect(),
            added: now
                .iter()
                .filter(|l| !pinned_set.contains(l))
                .cloned()
                .collect(),
        }
    }

    /// Whether `to` is a version this drift may be pinned as, after `from`.
    fn allows(&self, from: Version, to: Version) -> bool {
        let new_major = to.major > from.major && to.minor == 0;
        let new_minor = to.major == from.major && to.minor > from.minor;
        if !self.gone.is_empty() {
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
        if !self.gone.is_empty() {
            let now: Vec<String> = self
                .gone
                .iter()
                .map(|gone| {
                    let now = self.added.iter().find(|l| key(l) == key(gone));
                    match now {
                        Some(now) => format!("{gone}\n    now: {now}"),
                        None => format!("{gone}\n    now: (gone)"),
                    }
                })
                .collect();
            Some(format!(
                "pinned lines of the C ABI {pinned} are gone or changed in include/hodei_workers.h:{}\n\
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
    let now = surface(&header::read());
    let repin = std::env::var_os("HW_ABI_REPIN").is_some();
    let Ok(text) = std::fs::read_to_string(PIN_PATH) else {
        // The first pin: there is nothing it could hide.
        assert!(
            repin,
            "ffi/abi/surface.txt is missing: pin the C ABI {CURRENT} with {REPIN}"
        );
        std::fs::create_dir_all(std::path::Path::new(PIN_PATH).parent().unwrap()).unwrap();
        std::fs::write(PIN_PATH, render(CURRENT, &now)).expect("ffi/abi/surface.txt is writable");
        return;
    };
    let pin = parse_pin(&text);
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
    fn keys_name_the_function_or_the_constant() {
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
    fn the_pin_reads_back_what_it_wrote() {
        let written = lines(&["enum e A = 0", "void hw_f(int)"]);
        let pin = parse_pin(&render(v(1, 2), &written));
        assert_eq!(pin.version, v(1, 2));
        assert_eq!(pin.lines, written);
    }
}
