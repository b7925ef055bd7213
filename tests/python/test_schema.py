"""The Python classes follow the core's serde schema (issue 10 item 13, issue 11): every field
the core serialises (``to_json()``, the core's own serde form) is an attribute of the binding's
class, nested values included — a field added in the core is one at once (served from the serde
form), and fails ``test_every_report_field_is_typed_and_in_the_stub`` until it has its typed
getter and its stub property; LifecycleConfig takes every field of the core's configuration;
every core error kind has its own exception class; and the package's, the native module's and
the stub's lists of names agree.
"""

from __future__ import annotations

import ast
import inspect
import json
import pickle
from pathlib import Path
from typing import Any

import pytest

import hodei_workers as hw
import hodei_workers._native as native

STUB = Path(hw.__file__).parent / "_native.pyi"


def missing_fields(value: Any, path: str = "") -> list[str]:
    """Every key of ``value.to_json()`` that ``value`` lacks as an attribute, walking nested
    report values (objects with ``to_json``, and lists of them)."""
    name = path or type(value).__name__
    missing = []
    for key in json.loads(value.to_json()):
        if not hasattr(value, key):
            missing.append(f"{name}.{key}")
            continue
        attr = getattr(value, key)
        items = attr if isinstance(attr, list) else [attr]
        for item in items:
            if hasattr(item, "to_json"):
                missing.extend(missing_fields(item, f"{name}.{key}"))
    return missing


def brake_reports(registry: hw.Registry, clock: hw.ManualClock) -> list[Any]:
    """Reports of a fleet whose workers mostly die: the brake holds, then gives up (every field
    that is None in a quiet report is set in one of these)."""
    config = hw.LifecycleConfig(
        heartbeat_timeout=60, health_check_interval=30, max_workers=5, max_mass_expiry_hold=120
    )
    manager = hw.LifecycleManager(registry, config)
    workers = [registry.register("gone", "docker", f"c-{i}").id for i in range(5)]
    for w in workers:
        registry.update_state(w, "ready")
    registry.assign_to_job(workers[0], "job-1")
    survivor = workers[4]
    reports: list[Any] = [manager.tick()]
    for _ in range(8):
        clock.advance(30)
        registry.heartbeat(survivor)
        reports.append(manager.tick())
    clock.advance(600)  # a stall: the next tick grants grace
    reports.append(manager.tick())
    reports.append(manager.run_health_check())
    reports.append(manager.cleanup_workers())
    reports.append(manager.reconcile())
    reports.append(manager.stats())
    reports.append(manager.plan_scaling(3))
    return reports


def test_every_core_report_field_is_an_attribute(
    registry: hw.Registry, clock: hw.ManualClock
) -> None:
    reports = brake_reports(registry, clock)
    held = [r for r in reports if isinstance(r, hw.TickReport) and r.mass_expiry_held]
    gave_up = [r for r in reports if isinstance(r, hw.TickReport) and r.brake_gave_up]
    stalled = [r for r in reports if isinstance(r, hw.TickReport) and r.stall_grace]
    assert held and gave_up and stalled, "the scenario sets every optional field"
    hold = held[0].mass_expiry_held
    assert hold is not None and hold.suspect >= hold.would_expire >= 1
    give_up = gave_up[0].brake_gave_up
    assert give_up is not None and give_up.held_for == 150.0
    assert give_up.hold.suspect >= give_up.hold.would_expire
    assert [j.job_id for j in gave_up[0].lost_jobs] == ["job-1"]
    assert gave_up[0].brake_released is False
    missing = [m for r in reports for m in missing_fields(r)]
    assert not missing, missing


def report_values(value: Any) -> list[Any]:
    """``value`` and every report nested in it (objects with ``to_json``, and lists of them)."""
    out = [value]
    for key in json.loads(value.to_json()):
        attr = getattr(value, key)
        for item in attr if isinstance(attr, list) else [attr]:
            if hasattr(item, "to_json"):
                out.extend(report_values(item))
    return out


def stub_properties() -> dict[str, set[str]]:
    """The properties each class of the stub declares."""
    out: dict[str, set[str]] = {}
    for node in ast.parse(STUB.read_text()).body:
        if isinstance(node, ast.ClassDef):
            out[node.name] = {
                item.name
                for item in node.body
                if isinstance(item, ast.FunctionDef)
                and any(isinstance(d, ast.Name) and d.id == "property" for d in item.decorator_list)
            }
    return out


def test_every_report_field_is_typed_and_in_the_stub(
    registry: hw.Registry, clock: hw.ManualClock
) -> None:
    """A field of the core's serde form without a typed getter is served as raw JSON (a time
    in milliseconds, a state as text): each must get its getter, and the stub its property;
    a stub property the core no longer has is stale."""
    stub = stub_properties()
    untyped, undeclared, stale = set(), set(), set()
    seen: set[type] = set()
    for report in brake_reports(registry, clock):
        for value in report_values(report):
            cls = type(value)
            keys = list(json.loads(value.to_json()))
            for key in keys:
                if not inspect.isgetsetdescriptor(inspect.getattr_static(cls, key, None)):
                    untyped.add(f"{cls.__name__}.{key}")
                if key not in stub.get(cls.__name__, set()):
                    undeclared.add(f"{cls.__name__}.{key}")
            if cls not in seen:
                seen.add(cls)
                stale |= {f"{cls.__name__}.{p}" for p in stub.get(cls.__name__, set()) - set(keys)}
            # Every field shows in repr() and dir().
            text = repr(value)
            assert all(f"{key}=" in text for key in keys), (text, keys)
            assert set(keys) <= set(dir(value)), cls
    assert not untyped, f"fields without a typed getter: {sorted(untyped)}"
    assert not undeclared, f"fields the stub does not declare: {sorted(undeclared)}"
    assert not stale, f"stub properties the core does not have: {sorted(stale)}"
    assert len(seen) >= 12, seen


def test_a_report_has_no_attribute_beyond_the_schema(registry: hw.Registry) -> None:
    manager = hw.LifecycleManager(registry)
    report = manager.tick()
    with pytest.raises(AttributeError, match="'TickReport' object has no attribute 'no_such'"):
        report.no_such  # type: ignore[attr-defined]  # noqa: B018
    assert not hasattr(report, "__no_such__")


def test_health_check_result_has_the_brake_fields(
    registry: hw.Registry, clock: hw.ManualClock
) -> None:
    manager = hw.LifecycleManager(registry, hw.LifecycleConfig(heartbeat_timeout=60))
    for i in range(4):
        registry.update_state(registry.register("p", "docker", f"c-{i}").id, "ready")
    clock.advance(61)
    result = manager.run_health_check()
    assert result.held is not None and result.held.suspect == 4
    assert result.brake_released is False and result.brake_gave_up is None
    assert not missing_fields(result)


def test_lifecycle_config_takes_every_core_field() -> None:
    default = hw.LifecycleConfig()
    fields = json.loads(default.to_json())
    stub = ast.parse(STUB.read_text())
    [config_class] = [
        n for n in stub.body if isinstance(n, ast.ClassDef) and n.name == "LifecycleConfig"
    ]
    [new] = [n for n in config_class.body if isinstance(n, ast.FunctionDef) and n.name == "__new__"]
    stub_keywords = {a.arg for a in new.args.kwonlyargs}
    assert stub_keywords == set(fields), "the stub's LifecycleConfig(...) names the core's fields"
    untyped = [
        key
        for key in fields
        if not inspect.isgetsetdescriptor(inspect.getattr_static(hw.LifecycleConfig, key, None))
    ]
    assert not untyped, f"fields without a typed getter (served raw from serde): {untyped}"
    for key, value in fields.items():
        assert hasattr(default, key), key
        assert getattr(default, key) == value, key
        # Each field is accepted by name and read back (a changed value for each).
        changed: Any = value * 2 if key != "max_unhealthy_fraction" else 0.25
        if key in ("min_ready_workers",):
            changed = 2
        kwargs: dict[str, Any] = {key: changed}
        config = hw.LifecycleConfig(**kwargs)
        assert json.loads(config.to_json())[key] == changed, key
        assert f"{key}=" in repr(config)
    with pytest.raises(TypeError, match="unexpected keyword argument 'no_such_field'"):
        hw.LifecycleConfig(no_such_field=1)  # type: ignore[call-arg]


def test_every_error_kind_has_its_own_exception_class() -> None:
    classes = native._error_classes()
    kinds = [kind for kind, _ in classes]
    assert len(kinds) == len(set(kinds)) >= 12
    assert len({cls for _, cls in classes}) == len(classes), "no two kinds share a class"
    for kind, cls in classes:
        assert issubclass(cls, hw.HodeiWorkersError) and cls is not hw.HodeiWorkersError
        assert cls.kind == kind, (cls, kind)
        assert (cls.__doc__ or "").strip(), cls
        assert getattr(hw, cls.__name__) is cls
    assert dict(classes)["not_found"] is hw.WorkerNotFoundError
    assert dict(classes)["invalid_argument"] is hw.InvalidArgumentError


def test_exceptions_pickle_with_their_attributes(registry: hw.Registry) -> None:
    with pytest.raises(hw.WorkerNotFoundError) as info:
        registry.heartbeat("6f1c1c3e-2f4b-4f57-9a43-1b9b6d6f0a11")
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is hw.WorkerNotFoundError and isinstance(again, LookupError)
    assert str(again) == str(info.value)
    assert again.worker_id == info.value.worker_id == "6f1c1c3e-2f4b-4f57-9a43-1b9b6d6f0a11"
    assert again.kind == "not_found" and again.job_id is None
    error = hw.InvalidArgumentError("bad", worker_id="w")
    assert isinstance(error, ValueError) and error.worker_id == "w"
    assert pickle.loads(pickle.dumps(error)).worker_id == "w"


def stub_all() -> list[str]:
    for node in ast.parse(STUB.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise AssertionError("the stub has no __all__")


def test_names_agree_between_native_module_and_stub() -> None:
    """(The package's own exports: test_package.py.)"""
    assert sorted(stub_all()) == sorted(native.__all__)
    # Every public class of the native module is exported.
    public = {n for n, v in vars(native).items() if inspect.isclass(v) and not n.startswith("_")}
    assert public <= set(native.__all__), public - set(native.__all__)


def test_stub_docstrings_say_what_the_module_says() -> None:
    """A docstring in the stub without an Arguments/Raises/Returns section is the module's own
    docstring (the stub's copy, for IDE hovers): the two may not drift apart. Sectioned ones
    are the stub's own, written for the IDE."""
    stale = []
    for node in ast.parse(STUB.read_text()).body:
        if not isinstance(node, ast.ClassDef) or not hasattr(native, node.name):
            continue
        runtime = getattr(native, node.name)
        members: list[tuple[str, Any, ast.AST]] = [(node.name, runtime, node)]
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and not item.name.startswith("__"):
                members.append(
                    (f"{node.name}.{item.name}", inspect.getattr_static(runtime, item.name), item)
                )
        for name, obj, definition in members:
            stub_doc = ast.get_docstring(definition)  # type: ignore[arg-type]
            if not stub_doc or any(s in stub_doc for s in ("Arguments:", "Raises:", "Returns:")):
                continue
            if inspect.cleandoc(getattr(obj, "__doc__", None) or "") != stub_doc:
                stale.append(name)
    assert not stale, f"stale stub docstrings (re-copy them from the module): {stale}"
