"""The package as shipped: exports, typing marker, abi3 module, docstrings for help()."""

from __future__ import annotations

import inspect
from pathlib import Path

import hodei_workers as hw
import hodei_workers._native as native


def test_all_exports_everything_the_native_module_has() -> None:
    # Beside the native module's names, the ones defined in Python (provider.py).
    assert set(hw.__all__) - set(native.__all__) == {"Provider", "Created", "NoCapacity", "Fenced"}
    assert set(native.__all__) <= set(hw.__all__)
    assert len(hw.__all__) == len(set(hw.__all__)), "no name twice"
    for name in native.__all__:
        assert getattr(hw, name) is getattr(native, name), name
    assert hw.__version__.count(".") == 2


def test_typing_files_and_abi3_module_ship_in_the_package() -> None:
    package = Path(hw.__file__).parent
    assert (package / "py.typed").exists()
    assert (package / "_native.pyi").exists()
    assert native.__file__ is not None and native.__file__.endswith(".abi3.so")


def test_every_public_class_and_method_has_a_docstring() -> None:
    missing = []
    for name in hw.__all__:
        obj = getattr(hw, name)
        if not inspect.isclass(obj):
            continue
        if not (obj.__doc__ or "").strip():
            missing.append(name)
        for attr, member in vars(obj).items():
            if attr.startswith("_") or not callable(member) and not isinstance(member, property) and not inspect.isgetsetdescriptor(member):
                continue
            if not (getattr(member, "__doc__", None) or "").strip():
                missing.append(f"{name}.{attr}")
    assert not missing, missing


def test_help_on_registry_is_useful() -> None:
    text = inspect.getdoc(hw.Registry) or ""
    assert "ManualClock" in text and "WorkerNotFoundError" in text
    claim_doc = inspect.getdoc(hw.Registry.claim) or ""
    assert "atomic" in claim_doc
    assert "job_id" in str(inspect.signature(hw.Registry.claim))
