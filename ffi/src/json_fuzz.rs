//! Robustness of every C entry point that reads JSON, driven through the exported functions
//! themselves: `hw_worker_spec_from_json`, `hw_manager_new_from_json`,
//! `hw_manager_set_pools_json`, `hw_manager_plan_pools_json`, `hw_manager_tick_demand` and
//! `hw_registry_restore`.
//!
//! Each is fed (a) arbitrary bytes, invalid UTF-8 and NULs included (passed NUL-terminated,
//! as C would: the text ends at the first NUL), and (b) mutations of a valid document of its
//! kind: tokens dropped, duplicated, swapped or replaced; a node changed to another JSON type
//! (an object to the array of its values — serde's positional form —, a string, a number, a
//! huge or negative number, null), very long strings, deep nesting. Every call must answer a
//! documented status (never `HW_ERR_PANIC`); a refusal leaves the out-param and the target
//! untouched and sets a message; a success round-trips (written back to JSON and read again,
//! it gives an equal value) and is freed.

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

use crate::boundary::hw_status;
use crate::clock::{hw_clock, hw_clock_free, hw_clock_new_manual};
use crate::manager::{
    hw_manager, hw_manager_free, hw_manager_new_from_json, hw_provider_call, hw_provider_callbacks,
    hw_report,
};
use crate::pools::{
    hw_manager_get_pools_json, hw_manager_plan_pools_json, hw_manager_set_pools_json,
    hw_manager_tick_demand,
};
use crate::registry::{
    hw_registry, hw_registry_free, hw_registry_new_with_clock, hw_registry_restore,
    hw_registry_snapshot,
};
use crate::spec::{
    hw_worker_spec, hw_worker_spec_free, hw_worker_spec_from_json, hw_worker_spec_to_json,
};
use crate::types::{hw_last_error_message, hw_string_free, hw_worker_id};

// Exported from modules private to `manager`: called by their C names, as C does. The
// handles are opaque to C (only pointers cross), as cbindgen declares them.
#[allow(improper_ctypes)]
extern "C" {
    fn hw_manager_register_provider(
        manager: *const hw_manager,
        provider: *const c_char,
        provider_type_name: *const c_char,
        callbacks: *const hw_provider_callbacks,
    ) -> hw_status;
    fn hw_report_free(report: *mut hw_report);
}

type Check = Result<(), TestCaseError>;

thread_local! {
    /// The message of the last refusal an entry point answered (read right after the call:
    /// the checks after it make calls of their own, which clear `hw_last_error_message`).
    static REFUSAL: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

thread_local! {
    /// How many inputs the entry points accepted (so that the round trips are not vacuous).
    static ACCEPTED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn last_refusal() -> String {
    REFUSAL.with(|r| r.borrow().clone())
}

/// A provider whose every create fails (ticks toward a demand stay cheap and change nothing).
unsafe extern "C" fn create_fails(
    _: *mut c_void,
    _: hw_worker_id,
    _: *const hw_worker_spec,
    _: *mut hw_provider_call,
) -> u32 {
    1 // HW_PROVIDER_RESULT_FAILED
}

unsafe extern "C" fn destroy_ok(
    _: *mut c_void,
    _: hw_worker_id,
    _: *const c_char,
    _: *mut hw_provider_call,
) -> u32 {
    0
}

const SPEC: &str = r#"{"image": "img:1", "resources": {"cpu_cores": 2.5,
    "memory_bytes": 1073741824, "disk_bytes": 0, "gpu_count": 1, "gpu_type": "a100"},
    "labels": {"team": "ci"}, "environment": {"A": "1"}, "capabilities": ["docker"],
    "architecture": "arm64", "idle_timeout": 300, "max_lifetime": 3600.5, "max_jobs": 3}"#;

fn pools_doc() -> String {
    format!(
        r#"[{{"name": "spot", "provider_id": "docker-local", "template": {SPEC},
            "min_ready": 0, "max_workers": 4, "priority": 10, "scale_up_cooldown": 10,
            "scale_down_cooldown": 60}},
           {{"name": "od", "provider_id": "docker-local", "template": {{"image": "x"}}}}]"#
    )
}

const DEMAND: &str = r#"[{"labels": {"team": "ci"}, "capabilities": ["docker"],
    "resources": {"gpu_count": 1, "cpu_cores": 1}, "architecture": "arm64", "count": 3},
    {"count": 1}]"#;

const START_MS: u64 = 1_700_000_000_000;

/// What the entry points act on: a clock, a registry for managers, a manager with a provider
/// and the base pools, a manager without pools (for ticks).
struct Fixture {
    clock: *mut hw_clock,
    registry: *mut hw_registry,
    pools: *mut hw_manager,
    ticks: *mut hw_manager,
    snapshot: String,
}

impl Fixture {
    fn new() -> Fixture {
        let mut clock = ptr::null_mut();
        assert_eq!(hw_clock_new_manual(START_MS, &mut clock), hw_status::HwOk);
        let registry = new_registry(clock);
        let pools = new_manager(registry, "{}");
        let ticks = new_manager(registry, "{}");
        for manager in [pools, ticks] {
            let callbacks = hw_provider_callbacks {
                user_data: ptr::null_mut(),
                create_worker: Some(create_fails),
                destroy_worker: Some(destroy_ok),
                list_workers: None,
                release: None,
            };
            // SAFETY: valid handles and strings; the callbacks live for the program.
            let status = unsafe {
                hw_manager_register_provider(
                    manager,
                    c"docker-local".as_ptr(),
                    c"docker".as_ptr(),
                    &callbacks,
                )
            };
            assert_eq!(status, hw_status::HwOk, "{}", last_error());
        }
        let text = CString::new(pools_doc()).unwrap();
        let mut drained = 0;
        let status = hw_manager_set_pools_json(pools, text.as_ptr(), &mut drained);
        assert_eq!(status, hw_status::HwOk, "{}", last_error());
        Fixture {
            clock,
            registry,
            pools,
            ticks,
            snapshot: snapshot_doc(clock),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        hw_manager_free(self.pools);
        hw_manager_free(self.ticks);
        hw_registry_free(self.registry);
        hw_clock_free(self.clock);
    }
}

fn new_registry(clock: *const hw_clock) -> *mut hw_registry {
    let mut registry = ptr::null_mut();
    assert_eq!(
        hw_registry_new_with_clock(clock, &mut registry),
        hw_status::HwOk
    );
    registry
}

fn new_manager(registry: *const hw_registry, config: &str) -> *mut hw_manager {
    let config = CString::new(config).unwrap();
    let mut manager = ptr::null_mut();
    let status = hw_manager_new_from_json(registry, config.as_ptr(), &mut manager);
    assert_eq!(status, hw_status::HwOk, "{}", last_error());
    manager
}

/// A snapshot with a busy worker, a ready one, a creating one and a retired id.
fn snapshot_doc(clock: *const hw_clock) -> String {
    use engine::{JobId, ProviderId, ProviderType, WorkerHandle, WorkerSpec, WorkerState};
    let registry = new_registry(clock);
    // SAFETY: made above, freed below.
    let inner = unsafe { &(*registry).inner };
    let spec: WorkerSpec = serde_json::from_str(SPEC).unwrap();
    let spec = std::sync::Arc::new(spec);
    let provider = ProviderId::new("docker-local").unwrap();
    let mut ids = Vec::new();
    for i in 0..4 {
        let handle = WorkerHandle::new(provider.clone(), ProviderType::Docker, format!("c-{i}"));
        ids.push(inner.register(handle, spec.clone()).unwrap().id);
    }
    inner.update_state(&ids[0], WorkerState::Ready).unwrap();
    inner.update_state(&ids[1], WorkerState::Ready).unwrap();
    inner
        .assign_to_job(&ids[1], JobId::new("job-1").unwrap())
        .unwrap();
    inner
        .unregister(&ids[3], engine::TerminationReason::Requested)
        .unwrap();
    let text = snapshot_of(registry);
    hw_registry_free(registry);
    text
}

fn snapshot_of(registry: *const hw_registry) -> String {
    let mut out = ptr::null_mut();
    assert_eq!(hw_registry_snapshot(registry, &mut out), hw_status::HwOk);
    take_string(out)
}

fn take_string(text: *mut c_char) -> String {
    // SAFETY: a string the library returned, freed right after the copy.
    let copy = unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned();
    hw_string_free(text);
    copy
}

fn last_error() -> String {
    // SAFETY: valid until the next call on this thread.
    unsafe { CStr::from_ptr(hw_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

/// `input` as C passes it: NUL-terminated (the text ends at its first NUL, if any).
fn c_text(input: &[u8]) -> Vec<u8> {
    let mut bytes = input.to_vec();
    bytes.push(0);
    bytes
}

/// A sentinel an untouched out-param keeps.
fn sentinel<T>() -> *mut T {
    std::ptr::NonNull::dangling().as_ptr()
}

/// The status is one of `allowed`; a refusal set a message naming the function.
fn expect_status(name: &str, status: hw_status, allowed: &[hw_status], input: &[u8]) -> Check {
    prop_assert!(
        allowed.contains(&status),
        "{name}: {status:?} ({}) for {:?}",
        last_error(),
        String::from_utf8_lossy(&input[..input.len().min(300)])
    );
    if status == hw_status::HwOk {
        REFUSAL.with(|r| r.borrow_mut().clear());
        ACCEPTED.with(|a| a.set(a.get() + 1));
    } else {
        let message = last_error();
        REFUSAL.with(|r| *r.borrow_mut() = message.clone());
        prop_assert!(message.starts_with(name), "{name}: message {message:?}");
    }
    Ok(())
}

/// For an entry point that reads or refuses (`HW_OK` or `HW_ERR_INVALID_ARGUMENT`) and writes
/// `out` only on success: the status ([`expect_status`]) and, on a refusal, `out` untouched
/// (still the [`sentinel`]). Whether the input was read.
fn read_or_refused<T>(
    name: &str,
    status: hw_status,
    out: *mut T,
    input: &[u8],
) -> Result<bool, TestCaseError> {
    expect_status(
        name,
        status,
        &[hw_status::HwOk, hw_status::HwErrInvalidArgument],
        input,
    )?;
    if status != hw_status::HwOk {
        prop_assert_eq!(out, sentinel());
        return Ok(false);
    }
    Ok(true)
}

fn spec_from_json(fx: &Fixture, input: &[u8]) -> Check {
    let _ = fx;
    let text = c_text(input);
    let mut out: *mut hw_worker_spec = sentinel();
    let status = hw_worker_spec_from_json(text.as_ptr().cast(), &mut out);
    if !read_or_refused("hw_worker_spec_from_json", status, out, &text)? {
        return Ok(());
    }
    let mut json = ptr::null_mut();
    prop_assert_eq!(hw_worker_spec_to_json(out, &mut json), hw_status::HwOk);
    let mut again: *mut hw_worker_spec = ptr::null_mut();
    let status = hw_worker_spec_from_json(json, &mut again);
    hw_string_free(json);
    prop_assert_eq!(status, hw_status::HwOk, "{}", last_error());
    // SAFETY: both made by the library above, freed below.
    let equal = unsafe { (*out).spec == (*again).spec };
    hw_worker_spec_free(out);
    hw_worker_spec_free(again);
    prop_assert!(equal, "the spec does not read back equal");
    Ok(())
}

fn manager_from_json(fx: &Fixture, input: &[u8]) -> Check {
    let text = c_text(input);
    let mut out: *mut hw_manager = sentinel();
    let status = hw_manager_new_from_json(fx.registry, text.as_ptr().cast(), &mut out);
    if !read_or_refused("hw_manager_new_from_json", status, out, &text)? {
        return Ok(());
    }
    // SAFETY: made by the library above, freed below.
    let config = unsafe { (*out).inner.config().clone() };
    hw_manager_free(out);
    let json = CString::new(serde_json::to_string(&config).unwrap()).unwrap();
    let mut again: *mut hw_manager = ptr::null_mut();
    let status = hw_manager_new_from_json(fx.registry, json.as_ptr(), &mut again);
    prop_assert_eq!(status, hw_status::HwOk, "{}", last_error());
    // SAFETY: as above.
    let equal = unsafe { *(*again).inner.config() == config };
    hw_manager_free(again);
    prop_assert!(equal, "the config does not read back equal");
    Ok(())
}

fn pools_of(manager: *const hw_manager) -> String {
    let mut out = ptr::null_mut();
    assert_eq!(
        hw_manager_get_pools_json(manager, &mut out),
        hw_status::HwOk
    );
    take_string(out)
}

fn set_pools(fx: &Fixture, input: &[u8]) -> Check {
    let text = c_text(input);
    let before = pools_of(fx.pools);
    let mut drained = usize::MAX - 7;
    let status = hw_manager_set_pools_json(fx.pools, text.as_ptr().cast(), &mut drained);
    let name = "hw_manager_set_pools_json";
    let allowed = [
        hw_status::HwOk,
        hw_status::HwErrInvalidArgument,
        hw_status::HwErrProviderNotFound,
    ];
    expect_status(name, status, &allowed, &text)?;
    if status != hw_status::HwOk {
        prop_assert_eq!(drained, usize::MAX - 7);
        prop_assert_eq!(
            pools_of(fx.pools),
            before,
            "a refused set changed the pools"
        );
        return Ok(());
    }
    let after = pools_of(fx.pools);
    let again = CString::new(after.clone()).unwrap();
    let status = hw_manager_set_pools_json(fx.pools, again.as_ptr(), &mut drained);
    prop_assert_eq!(status, hw_status::HwOk, "{}", last_error());
    prop_assert_eq!(
        pools_of(fx.pools),
        after,
        "the pools do not read back equal"
    );
    // Back to the base pools, so that every case starts from them.
    let base = CString::new(pools_doc()).unwrap();
    let status = hw_manager_set_pools_json(fx.pools, base.as_ptr(), &mut drained);
    prop_assert_eq!(status, hw_status::HwOk);
    Ok(())
}

fn plan_pools(fx: &Fixture, input: &[u8]) -> Check {
    let text = c_text(input);
    let mut out: *mut c_char = sentinel();
    let status = hw_manager_plan_pools_json(fx.pools, text.as_ptr().cast(), &mut out);
    if !read_or_refused("hw_manager_plan_pools_json", status, out, &text)? {
        return Ok(());
    }
    let plan = take_string(out);
    // The demand read back from its serde form plans the same.
    let accepted = CStr::from_bytes_until_nul(&text).unwrap().to_str().unwrap();
    let demand: engine::Demand = serde_json::from_str(accepted).unwrap();
    let again = CString::new(serde_json::to_string(&demand).unwrap()).unwrap();
    let mut out = ptr::null_mut();
    let status = hw_manager_plan_pools_json(fx.pools, again.as_ptr(), &mut out);
    prop_assert_eq!(status, hw_status::HwOk, "{}", last_error());
    prop_assert_eq!(
        take_string(out),
        plan,
        "the demand does not read back equal"
    );
    Ok(())
}

fn tick_demand(fx: &Fixture, input: &[u8]) -> Check {
    let text = c_text(input);
    let mut out: *mut hw_report = sentinel();
    let status = hw_manager_tick_demand(fx.ticks, text.as_ptr().cast(), &mut out);
    if !read_or_refused("hw_manager_tick_demand", status, out, &text)? {
        return Ok(());
    }
    // SAFETY: a report the library made.
    unsafe { hw_report_free(out) };
    Ok(())
}

fn restore(fx: &Fixture, input: &[u8]) -> Check {
    let text = c_text(input);
    let registry = new_registry(fx.clock);
    let status = hw_registry_restore(registry, text.as_ptr().cast());
    let name = "hw_registry_restore";
    let allowed = [
        hw_status::HwOk,
        hw_status::HwErrSnapshot,
        hw_status::HwErrInvalidArgument,
    ];
    let checked = expect_status(name, status, &allowed, &text);
    // SAFETY: made above, freed below.
    let count = unsafe { (*registry).inner.count().unwrap() };
    if status != hw_status::HwOk || checked.is_err() {
        hw_registry_free(registry);
        checked?;
        prop_assert_eq!(count, 0, "a refused restore changed the registry");
        return Ok(());
    }
    let first = snapshot_of(registry);
    hw_registry_free(registry);
    let copy = new_registry(fx.clock);
    let again = CString::new(first.clone()).unwrap();
    let status = hw_registry_restore(copy, again.as_ptr());
    let second = (status == hw_status::HwOk).then(|| snapshot_of(copy));
    hw_registry_free(copy);
    prop_assert_eq!(status, hw_status::HwOk, "{}", last_error());
    prop_assert_eq!(
        second.unwrap(),
        first,
        "the snapshot does not read back equal"
    );
    Ok(())
}

type Entry = fn(&Fixture, &[u8]) -> Check;

/// Every entry point with its valid document.
fn entries(fx: &Fixture) -> Vec<(&'static str, Entry, String)> {
    vec![
        ("spec", spec_from_json as Entry, SPEC.to_owned()),
        (
            "config",
            manager_from_json,
            serde_json::to_string(&engine::WorkerLifecycleConfig::default()).unwrap(),
        ),
        ("pools", set_pools, pools_doc()),
        ("plan", plan_pools, DEMAND.to_owned()),
        ("tick", tick_demand, DEMAND.to_owned()),
        ("restore", restore, fx.snapshot.clone()),
    ]
}

// ---- mutations -------------------------------------------------------------------------

/// Values that break types, ranges and sizes.
fn odd_value(pick: usize, node: &Value) -> Value {
    match pick % 16 {
        // serde's positional form: an object as the array of its values (and back).
        0 => match node {
            Value::Object(map) => Value::Array(map.values().cloned().collect()),
            Value::Array(items) => Value::Object(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (i.to_string(), v.clone()))
                    .collect(),
            ),
            other => Value::Array(vec![other.clone()]),
        },
        1 => Value::String(node.to_string()),
        2 => Value::Null,
        3 => Value::Bool(true),
        4 => Value::from(-1),
        5 => Value::from(-0.5),
        6 => Value::from(u64::MAX),
        7 => Value::from(i64::MIN),
        8 => Value::from(1e300),
        9 => Value::from(0),
        10 => Value::String("x".repeat(70_000)),
        11 => Value::String("\u{0}nul".into()),
        12 => Value::Object(serde_json::Map::new()),
        13 => Value::Array(Vec::new()),
        14 => Value::from(4.0e-324),
        _ => Value::from(3_153_600_001_u64), // just past 100 years of seconds
    }
}

/// The nodes of `value` in pre-order, as paths.
fn paths(value: &Value, here: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(here.clone());
    let children: Vec<(String, &Value)> = match value {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => return,
    };
    for (key, child) in children {
        here.push(key);
        paths(child, here, out);
        here.pop();
    }
}

fn node_mut<'a>(value: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(value, |node, key| match node {
        Value::Object(map) => map.get_mut(key).unwrap(),
        Value::Array(items) => &mut items[key.parse::<usize>().unwrap()],
        _ => unreachable!(),
    })
}

/// Replaces node `at` (pre-order, modulo their number) by an odd value, or removes it from
/// its object or array.
fn mutate_value(doc: &mut Value, at: usize, pick: usize) {
    let mut all = Vec::new();
    paths(doc, &mut Vec::new(), &mut all);
    let path = &all[at % all.len()];
    if pick % 20 >= 18 && matches!(node_mut(doc, path), Value::Number(_)) {
        // A plausible number: many fields take it, so that mutants are also accepted.
        *node_mut(doc, path) = Value::from(pick % 7 + 1);
        return;
    }
    if pick % 20 >= 16 && !path.is_empty() {
        let (last, parent) = path.split_last().unwrap();
        match node_mut(doc, parent) {
            Value::Object(map) => {
                map.remove(last);
            }
            Value::Array(items) => {
                items.remove(last.parse::<usize>().unwrap());
            }
            _ => unreachable!(),
        }
        return;
    }
    let node = node_mut(doc, path);
    *node = odd_value(pick, node);
}

/// JSON text as tokens (punctuation, strings, everything else between them).
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '{' | '}' | '[' | ']' | ':' | ',' => out.push(c.to_string()),
            '"' => {
                let mut s = String::from('"');
                while let Some(c) = chars.next() {
                    s.push(c);
                    if c == '\\' {
                        s.extend(chars.next());
                    } else if c == '"' {
                        break;
                    }
                }
                out.push(s);
            }
            c => {
                let mut s = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || "{}[]:,\"".contains(n) {
                        break;
                    }
                    s.push(n);
                    chars.next();
                }
                out.push(s);
            }
        }
    }
    out
}

fn odd_token(pick: usize) -> String {
    match pick % 12 {
        0 => "[".repeat(100_000),
        1 => "{\"a\":".repeat(200),
        2 => "1e309".into(),
        3 => "-1e309".into(),
        4 => "18446744073709551616".into(),
        5 => "-0".into(),
        6 => "\"\\ud800\"".into(), // a lone surrogate
        7 => "\"\\u0000\"".into(),
        8 => "NaN".into(),
        9 => "{".into(),
        10 => "]".into(),
        _ => format!("\"{}\"", "y".repeat(100_000)),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Value {
        at: usize,
        pick: usize,
    },
    Drop(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Insert(usize, usize),
    /// Nests node `at` in `depth` arrays.
    Nest {
        at: usize,
        depth: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<usize>(), any::<usize>()).prop_map(|(at, pick)| Op::Value { at, pick }),
        1 => any::<usize>().prop_map(Op::Drop),
        1 => any::<usize>().prop_map(Op::Duplicate),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Op::Swap(a, b)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Op::Insert(a, b)),
        1 => (any::<usize>(), prop_oneof![1..140_usize, Just(20_000_usize)])
            .prop_map(|(at, depth)| Op::Nest { at, depth }),
    ]
}

/// `base` with `ops` applied in turn: value edits while the text still parses, token edits on
/// the text.
fn mutated(base: &str, ops: &[Op]) -> Vec<u8> {
    let mut text = base.to_owned();
    for op in ops {
        let parsed = serde_json::from_str::<Value>(&text).ok();
        text = match (op, parsed) {
            (Op::Value { at, pick }, Some(mut doc)) => {
                mutate_value(&mut doc, *at, *pick);
                doc.to_string()
            }
            (Op::Nest { at, depth }, Some(mut doc)) => {
                let mut all = Vec::new();
                paths(&doc, &mut Vec::new(), &mut all);
                let path = all[at % all.len()].clone();
                let inner = node_mut(&mut doc, &path).take();
                // Written as text: a `Value` this deep would overflow serde_json's own
                // (recursive) writer and dropper.
                let marker = "\"__nest__\"";
                *node_mut(&mut doc, &path) = Value::String("__nest__".into());
                let nested = format!("{}{inner}{}", "[".repeat(*depth), "]".repeat(*depth));
                doc.to_string().replacen(marker, &nested, 1)
            }
            (op, _) => {
                let mut toks = tokens(&text);
                if toks.is_empty() {
                    toks.push(String::new());
                }
                let n = toks.len();
                match op {
                    Op::Drop(i) => {
                        toks.remove(i % n);
                    }
                    Op::Duplicate(i) => {
                        let t = toks[i % n].clone();
                        toks.insert(i % n, t);
                    }
                    Op::Swap(a, b) => toks.swap(a % n, b % n),
                    Op::Insert(i, pick) => toks.insert(i % (n + 1), odd_token(*pick)),
                    Op::Value { at, pick } => toks[at % n] = odd_token(*pick),
                    Op::Nest { at, depth } => {
                        let i = at % n;
                        toks[i] =
                            format!("{}{}{}", "[".repeat(*depth), toks[i], "]".repeat(*depth));
                    }
                }
                toks.join(" ")
            }
        };
    }
    text.into_bytes()
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Bytes with JSON's punctuation, NULs and invalid UTF-8 over-represented.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    let jsonish = prop::sample::select(b"{}[]\":,0123456789.-+eE tfnaulrs\\\x00\xff\xc3".to_vec());
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        prop::collection::vec(jsonish, 0..256),
    ]
}

#[test]
fn arbitrary_bytes_are_refused_cleanly_by_every_json_entry_point() {
    let fx = Fixture::new();
    for (what, entry, _) in entries(&fx) {
        runner(256)
            .run(&bytes(), |input| entry(&fx, &input))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

#[test]
fn mutated_documents_are_read_or_refused_cleanly_by_every_json_entry_point() {
    let fx = Fixture::new();
    for (what, entry, base) in entries(&fx) {
        // The valid document itself is accepted (so that the mutations start from a success).
        entry(&fx, base.as_bytes()).unwrap_or_else(|e| panic!("{what}: base document: {e}"));
        let ops = prop::collection::vec(op(), 1..4);
        let before = ACCEPTED.with(|a| a.get());
        runner(384)
            .run(&ops, |ops| entry(&fx, &mutated(&base, &ops)))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let accepted = ACCEPTED.with(|a| a.get()) - before;
        // Some mutations keep the document valid (a number changed, an optional field
        // dropped): those took the round trip.
        eprintln!("{what}: {accepted} of 384 mutated documents accepted");
        assert!(accepted > 0, "{what}: no mutated document accepted");
    }
}

/// serde's positional form (a struct as the array of its field values), at the top and at
/// each nested struct, is refused with a message naming the array; nothing is changed.
#[test]
fn the_positional_form_is_refused_by_every_json_entry_point() {
    let fx = Fixture::new();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "spec",
            "hw_worker_spec_from_json",
            &[
                "[]",
                r#"["img:1"]"#,
                r#"{"image": "x", "resources": [2.0, 0, 0, 1, "a100"]}"#,
                r#"{"image": "x", "resources": []}"#,
            ],
        ),
        (
            "config",
            "hw_manager_new_from_json",
            &["[]", "[60, 30, 300, 1, 10]"],
        ),
        (
            "pools",
            "hw_manager_set_pools_json",
            &[
                r#"[["spot", "docker-local", {"image": "x"}]]"#,
                r#"[{"name": "p", "provider_id": "docker-local", "template": ["x"]}]"#,
                r#"[{"name": "p", "provider_id": "docker-local",
                     "template": {"image": "x", "resources": [1.0]}}]"#,
            ],
        ),
        (
            "plan",
            "hw_manager_plan_pools_json",
            &[
                "[[{}, [], {}, null, 3]]",
                r#"[{"resources": [1.0, 0, 0, 1], "count": 1}]"#,
            ],
        ),
        (
            "tick",
            "hw_manager_tick_demand",
            &[
                "[[{}, [], {}, null, 3]]",
                r#"[{"resources": [], "count": 1}]"#,
            ],
        ),
    ];
    let fns: std::collections::HashMap<&str, Entry> = entries(&fx)
        .into_iter()
        .map(|(what, entry, _)| (what, entry))
        .collect();
    for (what, name, docs) in cases {
        for doc in *docs {
            fns[what](&fx, doc.as_bytes()).unwrap_or_else(|e| panic!("{what} {doc}: {e}"));
            let message = last_refusal();
            assert!(
                message.starts_with(name)
                    && message.contains("invalid type: array, expected")
                    && message.contains("as a JSON object"),
                "{what} {doc}: {message}"
            );
        }
    }
    // A snapshot: its records and the specs and handles inside them.
    let snapshot: Value = serde_json::from_str(&fx.snapshot).unwrap();
    let positional = |path: &[&str]| {
        let mut doc = snapshot.clone();
        let node = path.iter().fold(&mut doc, |node, key| match node {
            Value::Object(map) => map.get_mut(*key).unwrap(),
            Value::Array(items) => &mut items[key.parse::<usize>().unwrap()],
            _ => unreachable!(),
        });
        *node = odd_value(0, node);
        doc.to_string()
    };
    for path in [
        &[][..],
        &["workers", "0"],
        &["workers", "1", "spec"],
        &["workers", "1", "spec", "resources"],
        &["workers", "2", "handle"],
    ] {
        let doc = positional(path);
        let registry = new_registry(fx.clock);
        let text = CString::new(doc.clone()).unwrap();
        let status = hw_registry_restore(registry, text.as_ptr());
        // SAFETY: made above, freed below.
        let count = unsafe { (*registry).inner.count().unwrap() };
        hw_registry_free(registry);
        assert_eq!(status, hw_status::HwErrSnapshot, "{path:?}");
        assert_eq!(count, 0);
        let message = last_error();
        assert!(
            message.contains("invalid type: array, expected"),
            "{path:?}: {message}"
        );
    }
}

/// Deep nesting, anywhere in the document, is refused without exhausting the stack (the test
/// threads' 2 MiB, in a debug build). The schema refuses most of it at the first level that
/// has the wrong type (an array where a struct is expected goes no deeper); what it would
/// descend into is bounded by serde_json's recursion limit of 128 levels, checked here too.
#[test]
fn deep_nesting_is_refused_without_exhausting_the_stack() {
    let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    assert!(serde_json::from_str::<Value>(&nested(127)).is_ok());
    let message = serde_json::from_str::<Value>(&nested(128))
        .unwrap_err()
        .to_string();
    assert!(message.contains("recursion limit exceeded"), "{message}");
    let fx = Fixture::new();
    for (what, entry, base) in entries(&fx) {
        for depth in [126, 127, 128, 129, 1_000, 1_000_000] {
            let top = format!("{}{base}{}", "[".repeat(depth), "]".repeat(depth));
            let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
            let mut inputs = vec![top.into_bytes(), objects.into_bytes()];
            for at in [1, 5, 20, 40] {
                inputs.push(mutated(&base, &[Op::Nest { at, depth }]));
            }
            for input in inputs {
                entry(&fx, &input).unwrap_or_else(|e| panic!("{what} {depth}: {e}"));
                assert!(!last_refusal().is_empty(), "{what} {depth}: accepted");
            }
        }
    }
}

/// Every object of every valid document, written as the array of its values instead (a
/// struct's positional form, or a map's values), is refused by its entry point.
#[test]
fn every_object_of_a_valid_document_as_an_array_is_refused() {
    let fx = Fixture::new();
    for (what, entry, base) in entries(&fx) {
        let doc: Value = serde_json::from_str(&base).unwrap();
        let mut all = Vec::new();
        paths(&doc, &mut Vec::new(), &mut all);
        let mut objects = 0;
        for path in all {
            let mut changed = doc.clone();
            let node = node_mut(&mut changed, &path);
            if !node.is_object() {
                continue;
            }
            objects += 1;
            *node = odd_value(0, node);
            entry(&fx, changed.to_string().as_bytes()).unwrap_or_else(|e| panic!("{what}: {e}"));
            let message = last_refusal();
            assert!(
                message.contains("invalid type:"),
                "{what}: {path:?} as an array: {message:?}"
            );
        }
        assert!(objects >= 1, "{what}: {objects} objects");
    }
}
