"""A str that is not valid text: one holding a lone surrogate (``'\\udcff'``, what
``os.fsdecode`` and the ``surrogateescape`` error handler make of undecodable bytes). It has no
UTF-8 form, so no id, label, image or connection string can be made of it: every str parameter
of the API refuses it with InvalidArgumentError (a ValueError) naming the parameter, never the
UnicodeEncodeError CPython raises when asked for its UTF-8, and changes nothing
(DESIGN.md, "Errors and bindings"). ``'\\udcff' in registry`` alone answers False, as it does
for any string that is not a worker id.

The cases are read from the stub (``_native.pyi``, which stubtest keeps true to the module):
every parameter whose annotation holds a ``str`` (bare, optional, in a mapping's keys or
values, in an iterable, in ``_StateLike``), one case per place a str can go. A str parameter
added to the stub without a baseline call in ``CALLS`` fails here until it has one.
"""

from __future__ import annotations

import ast
import pathlib
from dataclasses import dataclass
from typing import Callable, Iterator

import pytest

import hodei_workers as hw
from hodei_workers import _native

SURROGATE = "\udcff"
STUB = pathlib.Path(_native.__file__).with_name("_native.pyi")

# Generic containers of the stub, by what a surrogate goes into.
MAPPINGS = {"Mapping", "dict", "MutableMapping"}
ITERABLES = {"Iterable", "list", "Sequence", "set", "frozenset", "Collection", "tuple"}


@dataclass(frozen=True)
class Case:
    """A lone surrogate in one place of one parameter of one callable of the stub."""

    qualname: str  # "Registry.heartbeat", "WorkerSpec.__new__"
    param: str
    place: str  # "", "key", "value", "item", "item.key", ...
    value: object

    @property
    def id(self) -> str:
        return f"{self.qualname}({self.param}{'.' + self.place if self.place else ''})"


def _aliases(tree: ast.Module) -> dict[str, ast.expr]:
    """``_StateLike: TypeAlias = Union['WorkerState', str]`` -> its value."""
    out: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if node.value is not None and "TypeAlias" in ast.unparse(node.annotation):
                out[node.target.id] = node.value
    return out


def _subscript_args(node: ast.Subscript) -> list[ast.expr]:
    return list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]


def _good(node: ast.expr, aliases: dict[str, ast.expr]) -> object | None:
    """A valid value of the annotation, to go beside a bad one (a mapping's other half)."""
    text = ast.unparse(node)
    if text in ("str", "Any"):
        return "v"
    if isinstance(node, ast.Name) and node.id in aliases:
        return _good(aliases[node.id], aliases)
    return None


def _bad(node: ast.expr, aliases: dict[str, ast.expr]) -> Iterator[tuple[str, object]]:
    """(place, value) for each place of the annotation where a str goes: a lone surrogate
    there, valid text everywhere else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a forward reference
        yield from _bad(ast.parse(node.value, mode="eval").body, aliases)
    elif isinstance(node, ast.Name):
        if node.id == "str":
            yield "", SURROGATE
        elif node.id in aliases:
            yield from _bad(aliases[node.id], aliases)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        yield from _bad(node.left, aliases)
        yield from _bad(node.right, aliases)
    elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        base, args = node.value.id, _subscript_args(node)
        if base in ("Union", "Optional"):
            for arg in args:
                yield from _bad(arg, aliases)
        elif base in MAPPINGS and len(args) == 2:
            key, value = args
            good_key, good_value = _good(key, aliases), _good(value, aliases)
            if good_value is not None:
                for place, bad in _bad(key, aliases):
                    yield _join("key", place), {bad: good_value}
            if good_key is not None:
                for place, bad in _bad(value, aliases):
                    yield _join("value", place), {good_key: bad}
        elif base in ITERABLES:
            for place, bad in _bad(args[0], aliases):
                yield _join("item", place), [bad]


def _join(outer: str, inner: str) -> str:
    return f"{outer}.{inner}" if inner else outer


def stub_cases() -> list[Case]:
    """Every (callable, str parameter, place) of the stub's classes and functions."""
    tree = ast.parse(STUB.read_text(encoding="utf-8"))
    aliases = _aliases(tree)
    cases: list[Case] = []

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, ast.FunctionDef):
                a = node.args
                for arg in a.posonlyargs + a.args + a.kwonlyargs:
                    if arg.annotation is None or arg.arg in ("self", "cls"):
                        continue
                    seen: set[str] = set()
                    for place, value in _bad(arg.annotation, aliases):
                        if place not in seen:  # `str | Iterable[str]`: "" and "item" once each
                            seen.add(place)
                            cases.append(Case(prefix + node.name, arg.arg, place, value))

    visit(tree.body, "")
    return cases


CASES = stub_cases()


class FakeProvider:
    provider_id = "p"
    provider_type = "docker"

    def create_worker(self, worker_id: str, spec: hw.WorkerSpec) -> str:
        return f"c-{worker_id}"

    def destroy_worker(self, handle: hw.WorkerHandle) -> None:
        pass


@dataclass
class Env:
    registry: hw.Registry
    manager: hw.LifecycleManager
    worker: str  # a READY worker's id
    spec: hw.WorkerSpec

    def state(self) -> tuple[object, ...]:
        """What a refused call must leave as it was."""
        m = self.manager
        return (self.registry.snapshot(), m.providers(), m.pools(), m.scaling_target())


Call = tuple[Callable[..., object], dict[str, object]]

# A valid call of each callable of the stub that has a str parameter; each case replaces one
# argument (or adds it: the optional ones) with its lone-surrogate value.
CALLS: dict[str, Callable[[Env], Call]] = {
    "Resources.__new__": lambda e: (hw.Resources, {}),
    "WorkerSpec.__new__": lambda e: (hw.WorkerSpec, {"image": "u"}),
    "WorkerSpec.replace": lambda e: (e.spec.replace, {}),
    # Never reach a server: the text is checked first (a miss would be a BackendError).
    "Registry.postgres": lambda e: (
        hw.Registry.postgres,
        {"url": "host=/nonexistent", "name": "x"},
    ),
    "Registry.drop_postgres": lambda e: (
        hw.Registry.drop_postgres,
        {"url": "host=/nonexistent", "name": "x"},
    ),
    "Registry.register": lambda e: (
        e.registry.register,
        {"provider_id": "p", "provider_type": "docker", "resource_id": "c-1"},
    ),
    "Registry.unregister": lambda e: (e.registry.unregister, {"worker_id": e.worker}),
    "Registry.get": lambda e: (e.registry.get, {"worker_id": e.worker}),
    "Registry.find": lambda e: (e.registry.find, {}),
    "Registry.find_by_provider": lambda e: (e.registry.find_by_provider, {"provider_id": "p"}),
    "Registry.update_state": lambda e: (
        e.registry.update_state,
        {"worker_id": e.worker, "state": "draining"},
    ),
    "Registry.heartbeat": lambda e: (e.registry.heartbeat, {"worker_id": e.worker}),
    "Registry.assign_to_job": lambda e: (
        e.registry.assign_to_job,
        {"worker_id": e.worker, "job_id": "j"},
    ),
    "Registry.release_from_job": lambda e: (e.registry.release_from_job, {"worker_id": e.worker}),
    "Registry.claim": lambda e: (e.registry.claim, {"job_id": "j"}),
    "Registry.restore": lambda e: (e.registry.restore, {"snapshot": "{}"}),
    "Registry.heartbeat_many": lambda e: (e.registry.heartbeat_many, {"worker_ids": [e.worker]}),
    "HeartbeatReceived.__new__": lambda e: (hw.HeartbeatReceived, {"worker_id": e.worker}),
    "UnhealthyDetected.__new__": lambda e: (
        hw.UnhealthyDetected,
        {"worker_id": e.worker, "last_heartbeat": 1.0},
    ),
    "ProvisionRequested.__new__": lambda e: (hw.ProvisionRequested, {"provider_id": "p"}),
    "ProvisionFailed.__new__": lambda e: (
        hw.ProvisionFailed,
        {"provider_id": "p", "error": "e"},
    ),
    "DestroyFailed.__new__": lambda e: (
        hw.DestroyFailed,
        {"worker_id": e.worker, "provider_id": "p", "error": "e", "attempts": 1},
    ),
    "LeaderChanged.__new__": lambda e: (
        hw.LeaderChanged,
        {"holder": "h", "term": 1, "by": "h"},
    ),
    "LifecycleManager.unregister_provider": lambda e: (
        e.manager.unregister_provider,
        {"provider_id": "p"},
    ),
    "LifecycleManager.provision_worker": lambda e: (
        e.manager.provision_worker,
        {"provider_id": "p", "spec": e.spec},
    ),
    "LifecycleManager.process_heartbeat": lambda e: (
        e.manager.process_heartbeat,
        {"worker_id": e.worker},
    ),
    "LifecycleManager.drain_worker": lambda e: (e.manager.drain_worker, {"worker_id": e.worker}),
    "LifecycleManager.terminate_worker": lambda e: (
        e.manager.terminate_worker,
        {"worker_id": e.worker},
    ),
    "LifecycleManager.set_scaling_target": lambda e: (
        e.manager.set_scaling_target,
        {"provider_id": "p", "spec": e.spec},
    ),
    "LifecycleManager.remove_pool": lambda e: (e.manager.remove_pool, {"name": "pool"}),
    "LifecycleManager.notify_interruption": lambda e: (
        e.manager.notify_interruption,
        {"worker_id": e.worker, "deadline": e.registry.now() + 60},
    ),
    "LifecycleManager.replicated": lambda e: (
        hw.LifecycleManager.replicated,
        {"registry": e.registry, "holder": "h", "lease_ttl": 10.0},
    ),
    "Demand.__new__": lambda e: (hw.Demand, {"requirements": [{"count": 1}]}),
    "Pool.__new__": lambda e: (hw.Pool, {"name": "pool", "provider_id": "p", "template": e.spec}),
}

# Documented otherwise: `in` answers False for any string that is not a worker id (tested below).
NOT_RAISING = {"Registry.__contains__"}

# Where the message names the argument by another name than the parameter's.
NAMED_AS = {("Demand.__new__", "requirements"): "demand[0]"}


@pytest.fixture
def env(registry: hw.Registry) -> Env:
    manager = hw.LifecycleManager(registry)
    manager.register_provider(FakeProvider())
    worker = registry.register("p", "docker", "c-0")
    registry.update_state(worker.id, hw.WorkerState.READY)
    return Env(registry, manager, worker.id, hw.WorkerSpec("u", labels={"pool": "a"}))


def test_the_stub_gives_every_str_parameter() -> None:
    """The reading of the stub finds what it must (a broken reading would test nothing)."""
    found = {(c.qualname, c.param, c.place) for c in CASES}
    assert len({(q, p) for q, p, _ in found}) >= 40
    for expected in [
        ("Registry.heartbeat", "worker_id", ""),
        ("Registry.register", "metadata", "key"),
        ("Registry.register", "metadata", "value"),
        ("Registry.find", "capabilities", "item"),
        ("Registry.find", "states", "item"),
        ("Registry.update_state", "state", ""),
        ("Registry.unregister", "reason", ""),
        ("Demand.__new__", "requirements", "item.key"),
        ("WorkerSpec.replace", "image", ""),
        ("Registry.postgres", "url", ""),
    ]:
        assert expected in found


def test_every_callable_with_a_str_parameter_has_a_call() -> None:
    missing = sorted({c.qualname for c in CASES} - set(CALLS) - NOT_RAISING)
    assert not missing, f"add a baseline call to CALLS for {missing}"


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.qualname not in NOT_RAISING], ids=lambda c: c.id
)
def test_a_lone_surrogate_is_an_invalid_argument(env: Env, case: Case) -> None:
    make = CALLS.get(case.qualname)
    assert make is not None, f"add a baseline call to CALLS for {case.qualname}"
    function, kwargs = make(env)
    before = env.state()
    with pytest.raises(hw.InvalidArgumentError) as raised:
        function(**{**kwargs, case.param: case.value})
    message = str(raised.value)
    assert "not valid text" in message and "lone surrogate '\\udcff'" in message
    assert NAMED_AS.get((case.qualname, case.param), case.param) in message
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value.__cause__, UnicodeEncodeError)
    assert env.state() == before


def test_the_position_of_the_surrogate_is_given(registry: hw.Registry) -> None:
    with pytest.raises(hw.InvalidArgumentError, match=r"worker_id .* at position 3\)"):
        registry.heartbeat("abc\udc80def")
    with pytest.raises(hw.InvalidArgumentError, match=r"labels\[\"pool\"\] .* at position 1\)"):
        hw.WorkerSpec("u", labels={"pool": "a\ud800"})


def test_in_answers_false(env: Env) -> None:
    assert SURROGATE not in env.registry
    assert env.worker + SURROGATE not in env.registry
    assert env.worker in env.registry


def test_a_provider_whose_id_or_type_is_not_text_is_refused(env: Env) -> None:
    class Odd(FakeProvider):
        pass

    for attribute in ("provider_id", "provider_type"):
        odd = Odd()
        setattr(odd, attribute, "x" + SURROGATE)
        if attribute == "provider_type":
            odd.provider_id = "q"
        before = env.state()
        with pytest.raises(hw.InvalidArgumentError, match=f"{attribute} is not valid text"):
            env.manager.register_provider(odd)
        assert env.state() == before


def test_a_requirement_value_that_is_not_text(env: Env) -> None:
    for requirement in [
        {"labels": {"gpu": SURROGATE}, "count": 1},
        {"capabilities": ["cuda", SURROGATE], "count": 1},
        {"architecture": SURROGATE, "count": 1},
    ]:
        with pytest.raises(hw.InvalidArgumentError, match=r"demand\[0\] is not valid text"):
            hw.Demand([requirement])


def test_a_config_value_that_is_not_text() -> None:
    with pytest.raises(hw.InvalidArgumentError, match="config.heartbeat_timeout is not valid"):
        hw.LifecycleConfig(heartbeat_timeout=SURROGATE)  # type: ignore[arg-type]


def test_a_keyword_that_is_not_text_is_no_field() -> None:
    spec = hw.WorkerSpec("u")
    unknown: dict[str, object] = {SURROGATE: 1}
    with pytest.raises(TypeError, match=r"no field '\\udcff'"):
        spec.replace(**unknown)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"unexpected keyword argument '\\udcff'"):
        hw.LifecycleConfig(**unknown)  # type: ignore[arg-type]


def test_text_beyond_ascii_still_goes_through(env: Env) -> None:
    """Only lone surrogates are refused: a pair's character (U+1F600) is text."""
    text = "ü-\U0001f600-ü"
    spec = hw.WorkerSpec(text, labels={text: text}, capabilities=[text])
    assert (spec.image, spec.labels, spec.capabilities) == (text, {text: text}, frozenset([text]))
    worker = env.registry.register("p", "docker", text, spec, metadata={text: text})
    assert (worker.resource_id, worker.metadata) == (text, {text: text})
    assert env.registry.find(labels={text: text}) == [worker]


def test_a_provider_answer_that_is_not_text_is_a_provider_error(env: Env) -> None:
    """Not an argument, an answer: create_worker's resource id with a lone surrogate fails the
    provision as the provider's fault, and registers nothing."""

    class Odd(FakeProvider):
        provider_id = "odd"

        def create_worker(self, worker_id: str, spec: hw.WorkerSpec) -> str:
            return "c" + SURROGATE

    env.manager.register_provider(Odd())
    with pytest.raises(hw.ProviderError, match="not valid text"):
        env.manager.provision_worker("odd", env.spec)
    assert len(env.registry) == 1


def test_an_attribute_name_that_is_not_text_is_no_attribute(env: Env) -> None:
    """The classes that read unknown attributes from the core's serde form (``__getattr__``)
    answer AttributeError, as any object does: hasattr() is False, not an exception."""
    plan = env.manager.plan_pools(hw.Demand())
    for obj in (hw.LifecycleConfig(), env.manager.tick(), plan):
        assert not hasattr(obj, SURROGATE)
        with pytest.raises(AttributeError, match=r"no attribute '\\udcff'"):
            getattr(obj, SURROGATE)
