"""The interpreter exits while another thread is inside hodei_workers.

On CPython before 3.14, a thread other than the main one that needs the GIL once the
interpreter finalizes is ended with ``pthread_exit``: a forced unwind through every frame under
it. When those frames are the module's (a provider's method or a ticker's callback called by a
tick, the hook that reports a callback's exception, the ``__del__`` of an object the module
lets go of, a call that released the GIL), running their destructors without the GIL aborts
the process (``Fatal Python error``, ``FATAL: exception not rethrown``, a segfault). CPython
3.14 parks such a thread instead; the module must do the same, so that the exit status stays
the script's.

Each case runs a small script in a subprocess: the thread is busy in Python code under the
module's frames (a provider polling its cloud with short sleeps, as real ones do), or in a call
that released the GIL, when the main thread returns."""

from __future__ import annotations

import subprocess
import sys

import pytest

# A bound on how long the script may take before the test is considered hung (never reached).
HANG = 60.0

PROLOGUE = """\
import sys
import threading
import time
import hodei_workers as hw

busy = threading.Event()


def poll():
    # A provider or a callback that polls its cloud until the answer comes: it takes the GIL
    # back every millisecond, so it is sure to need it while the interpreter finalizes.
    busy.set()
    while True:
        time.sleep(0.001)


class Cloud:
    provider_id = "cloud"
    provider_type = "docker"

    def __init__(self, polls=()):
        self.polls = polls

    def create_worker(self, worker_id, spec):
        if "create" in self.polls:
            poll()
        return "vm-" + worker_id

    def destroy_worker(self, handle):
        if "destroy" in self.polls:
            poll()

    def list_workers(self):
        yield "vm-orphan"
        poll()

    def __del__(self):
        # Closes its sessions (when the module lets go of the last reference).
        if "del" in self.polls:
            poll()


class Pending:
    def __call__(self):
        return 0

    def __del__(self):
        poll()


def manager(*polls, min_ready=0):
    m = hw.LifecycleManager(hw.Registry(), hw.LifecycleConfig(min_ready_workers=min_ready))
    m.register_provider(Cloud(polls))
    m.set_scaling_target("cloud", hw.WorkerSpec("img"))
    return m


def in_daemon_thread(work):
    threading.Thread(target=work, daemon=True).start()


def polling_in(suffix):
    # A profiler (sampling to its file, say), for sys.setprofile: it polls when a Python
    # function of a file whose name ends with `suffix` is called.
    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.endswith(suffix):
            poll()

    return profile
"""

# The thread is in Python code the module called (under the module's frames).
IN_PYTHON_CODE = {
    "tick creating a worker": """
m = manager("create", min_ready=1)
in_daemon_thread(m.tick)
""",
    "terminate destroying a worker": """
m = manager("destroy")
w = m.provision_worker("cloud", hw.WorkerSpec("img"))
in_daemon_thread(lambda: m.terminate_worker(w.id))
""",
    "reconcile listing workers": """
m = manager()
in_daemon_thread(m.reconcile)
""",
    "ticker's tick creating a worker": """
m = manager("create", min_ready=1)
t = m.ticker(3600.0)
""",
    "ticker's pending()": """
m = manager()
t = m.ticker(3600.0, pending=lambda: poll())
""",
    "ticker's on_report()": """
m = manager()
t = m.ticker(3600.0, on_report=lambda report: poll())
""",
    "sys.unraisablehook reporting a ticker's callback": """
sys.unraisablehook = lambda unraisable: poll()  # sends it to a log service, say
m = manager()
t = m.ticker(3600.0, on_report=lambda report: 1 / 0)
""",
    "tick letting go of a provider's exception": """
class Session:
    def __del__(self):
        poll()  # closes its connections


class Failing(Cloud):
    def create_worker(self, worker_id, spec):
        session = Session()  # kept by the traceback's frame
        raise RuntimeError("no quota")


m = hw.LifecycleManager(hw.Registry(), hw.LifecycleConfig(min_ready_workers=1))
m.register_provider(Failing())
m.set_scaling_target("cloud", hw.WorkerSpec("img"))
in_daemon_thread(m.tick)
""",
    "register_provider reading a signature": """
class Signature:
    @property
    def __signature__(self):
        poll()

    def __call__(self, worker_id, spec):
        return "vm"


class Introspected(Cloud):
    create_worker = Signature()


m = hw.LifecycleManager(hw.Registry())
in_daemon_thread(lambda: m.register_provider(Introspected()))
""",
    "tick showing a provider's exception": """
class QuotaError(Exception):
    def __str__(self):
        poll()  # fetches the cloud's error body to show it, say
        return "no quota"


class Failing(Cloud):
    def create_worker(self, worker_id, spec):
        raise QuotaError()


m = hw.LifecycleManager(hw.Registry(), hw.LifecycleConfig(min_ready_workers=1))
m.register_provider(Failing())
m.set_scaling_target("cloud", hw.WorkerSpec("img"))
in_daemon_thread(m.tick)
""",
    "tick reading a created worker's metadata": """
from collections.abc import Mapping


class Tags(Mapping):
    # The instance's tags, fetched from the cloud as they are read, say.
    def __getitem__(self, key):
        return "v"

    def __iter__(self):
        poll()
        yield "k"

    def __len__(self):
        return 1


class Tagging(Cloud):
    def create_worker(self, worker_id, spec):
        return ("vm-" + worker_id, Tags())


m = hw.LifecycleManager(hw.Registry(), hw.LifecycleConfig(min_ready_workers=1))
m.register_provider(Tagging())
m.set_scaling_target("cloud", hw.WorkerSpec("img"))
in_daemon_thread(m.tick)
""",
    "register_provider reading provider_id": """
class Named(Cloud):
    @property
    def provider_id(self):
        poll()  # asks its cloud for the account's name, say
        return "cloud"


m = hw.LifecycleManager(hw.Registry())
in_daemon_thread(lambda: m.register_provider(Named()))
""",
    "a call reading a state argument": """
def work():
    r = hw.Registry()
    # Any Python function the module runs for a WorkerState argument (enum's `value`
    # descriptor) lands in the profiler.
    sys.setprofile(polling_in("enum.py"))
    r.find(states=[hw.WorkerState.READY])
    sys.setprofile(None)
    poll()  # in the thread's own code: no frame of the module's under it
in_daemon_thread(work)
""",
    "a call iterating a states argument": """
def states():
    poll()  # reads them from a config service, say
    yield hw.WorkerState.READY


r = hw.Registry()
in_daemon_thread(lambda: r.find(states=states()))
""",
    "a call iterating a capabilities argument": """
def capabilities():
    poll()
    yield "gpu"


r = hw.Registry()
in_daemon_thread(lambda: r.find(capabilities=capabilities()))
""",
    "Demand iterating its requirements": """
def requirements():
    poll()
    yield {"count": 1}


in_daemon_thread(lambda: hw.Demand(requirements()))
""",
    "Demand importing json": """
class Hook:
    # An import hook of the host's (a tracer, a sandbox): sees every first import.
    def find_spec(self, name, path=None, target=None):
        if name == "json":
            poll()
        return None


sys.meta_path.insert(0, Hook())


def work():
    hw.Demand([{"count": 1}])
    poll()  # in the thread's own code: no frame of the module's under it
in_daemon_thread(work)
""",
    "Demand writing a requirement": """
class Requirement(dict):
    def items(self):
        poll()  # a mapping of the host's, filled lazily
        return super().items()


def work():
    hw.Demand([Requirement(count=1)])
    poll()  # in the thread's own code: no frame of the module's under it
in_daemon_thread(work)
""",
    # A number, duration or sequence of the host's, converted by the module: the conversion
    # runs its dunder (`__float__`, `__index__`, a timedelta subclass's `total_seconds`, a
    # sequence's `__getitem__`, an int subclass's `__repr__` for an out-of-range message).
    "a call reading a float argument's __float__": """
class Start:
    def __float__(self):
        poll()  # reads the recorded start of a replay, say
        return 0.0


in_daemon_thread(lambda: hw.ManualClock(Start()))
""",
    "a call reading a duration's __float__": """
class Timeout(int):
    def __float__(self):
        poll()
        return 5.0


r = hw.Registry()
in_daemon_thread(lambda: r.find_unhealthy(Timeout(5)))
""",
    "a call reading an int argument's __index__": """
class Limit:
    def __index__(self):
        poll()  # asks a quota service, say
        return 1


r = hw.Registry()
in_daemon_thread(lambda: r.find(limit=Limit()))
""",
    "tick reading pending_jobs' __index__": """
class Backlog:
    def __index__(self):
        poll()  # counts the queue, say
        return 0


m = manager()
in_daemon_thread(lambda: m.tick(Backlog()))
""",
    "ticker's pending() returning an __index__": """
class Backlog:
    def __index__(self):
        poll()
        return 0


m = manager()
t = m.ticker(3600.0, pending=Backlog)
""",
    "a call reading a timedelta subclass's total_seconds": """
from datetime import timedelta


class Interval(timedelta):
    def total_seconds(self):
        poll()  # scaled by a config service, say
        return 5.0


r = hw.Registry()
in_daemon_thread(lambda: r.find_unhealthy(Interval(seconds=5)))
""",
    "set_pools reading a sequence's __getitem__": """
class Pools:
    # The pools, read from a config service as they are indexed, say.
    def __len__(self):
        return 1

    def __getitem__(self, index):
        poll()
        raise IndexError(index)


m = manager()
in_daemon_thread(lambda: m.set_pools(Pools()))
""",
    "a call showing an out-of-range int subclass": """
class Big(int):
    def __repr__(self):
        poll()
        return "Big()"


r = hw.Registry()
in_daemon_thread(lambda: r.find(limit=Big(2**70)))
""",
    "Demand showing an out-of-range int subclass": """
class Big(int):
    def __repr__(self):
        poll()
        return "Big()"


in_daemon_thread(lambda: hw.Demand([{"count": Big(2**70)}]))
""",
    "LifecycleConfig showing an out-of-range int subclass": """
class Big(int):
    def __repr__(self):
        poll()
        return "Big()"


in_daemon_thread(lambda: hw.LifecycleConfig(min_ready_workers=Big(2**70)))
""",
    "LifecycleConfig showing an unknown keyword": """
class Key(str):
    def __repr__(self):
        poll()
        return "Key()"


in_daemon_thread(lambda: hw.LifecycleConfig(**{Key("bogus"): 1}))
""",
    "a call raising one of the module's exceptions": """
def work():
    r = hw.Registry()
    # The module's exception classes are Python code (their __init__), run for every error
    # the module raises: they land in the profiler.
    sys.setprofile(polling_in("_errors.py"))
    try:
        r.heartbeat("00000000-0000-4000-8000-000000000000")  # a worker that is gone
    except hw.WorkerNotFoundError:
        pass
in_daemon_thread(work)
""",
    # The module lets go of what the host's code handed it (a call's answer, an item, an
    # exception it replaces by its own message): the last reference, whose __del__ runs there.
    "tick letting go of a created worker's metadata": """
class Tags(dict):
    def __del__(self):
        poll()  # closes the session the tags were read with, say


class Tagging(Cloud):
    def create_worker(self, worker_id, spec):
        return ("vm-" + worker_id, Tags(k="v"))


m = hw.LifecycleManager(hw.Registry(), hw.LifecycleConfig(min_ready_workers=1))
m.register_provider(Tagging())
m.set_scaling_target("cloud", hw.WorkerSpec("img"))
in_daemon_thread(m.tick)
""",
    "ticker letting go of on_report()'s answer": """
class Ack:
    def __del__(self):
        poll()


m = manager()
t = m.ticker(3600.0, on_report=lambda report: Ack())
""",
    "ticker letting go of pending()'s answer": """
class Count(int):
    def __del__(self):
        poll()


m = manager()
t = m.ticker(3600.0, pending=lambda: Count(0))
""",
    "a call letting go of a conversion's exception": """
class Session:
    def __del__(self):
        poll()


class Huge(int):
    def __float__(self):
        session = Session()  # kept by the traceback's frame
        raise OverflowError("too large")


c = hw.ManualClock()
in_daemon_thread(lambda: c.advance(Huge(1)))
""",
    "WorkerSpec letting go of a mapping's items": """
from collections.abc import Mapping


class Items(list):
    def __del__(self):
        poll()


class Labels(Mapping):
    def __getitem__(self, key):
        return "v"

    def __iter__(self):
        yield "k"

    def __len__(self):
        return 1

    def items(self):
        return Items([("k", "v")])


in_daemon_thread(lambda: hw.WorkerSpec("img", labels=Labels()))
""",
    "Demand letting go of a requirement": """
class Requirement(dict):
    def __del__(self):
        poll()


def requirements():
    yield Requirement(count=1)


in_daemon_thread(lambda: hw.Demand(requirements()))
""",
    # The module lets go of the last reference to a host's object: its __del__ runs there.
    "manager let go of": """
def work():
    m = manager("del")
    del m
in_daemon_thread(work)
""",
    "provider unregistered": """
m = manager("del")
in_daemon_thread(lambda: m.unregister_provider("cloud"))
""",
    "ticker let go of": """
def work():
    t = hw.LifecycleManager(hw.Registry()).ticker(3600.0, pending=Pending())
    t.stop()
    del t
in_daemon_thread(work)
""",
}

# The thread is in a call that released the GIL (or drops what it made, in a loop).
DETACHED = {
    "subscription recv": """
sub = hw.Registry().subscribe()
def work():
    busy.set()
    while True:
        sub.recv(timeout=0.001)
in_daemon_thread(work)
""",
    "manager stats": """
m = manager()
def work():
    busy.set()
    while True:
        m.stats()
in_daemon_thread(work)
""",
    "drops": """
def work():
    busy.set()
    while True:
        r = hw.Registry()
        s = r.subscribe()
        m = hw.LifecycleManager(r)
        t = m.ticker(3600.0)
        del t, m, s, r
in_daemon_thread(work)
""",
}


def run_and_exit(body: str) -> subprocess.CompletedProcess[str]:
    code = PROLOGUE + body + "assert busy.wait(60)\nprint('exiting')\n"
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=HANG,
    )


@pytest.mark.parametrize("case", sorted(IN_PYTHON_CODE))
def test_the_interpreter_exits_cleanly_while_a_thread_runs_python_code_the_module_called(
    case: str,
) -> None:
    done = run_and_exit(IN_PYTHON_CODE[case])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "exiting"
    assert done.stderr == "", done.stderr


@pytest.mark.parametrize("case", sorted(DETACHED))
def test_the_interpreter_exits_cleanly_while_a_thread_is_in_a_call_without_the_gil(
    case: str,
) -> None:
    done = run_and_exit(DETACHED[case])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "exiting"
    assert done.stderr == "", done.stderr

