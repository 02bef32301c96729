"""Unit tests leave the global reactor and the process as they found them.

pytest-twisted runs every test inside the global reactor but, unlike trial, never checks
what a test leaves behind there. A timer, a listening port, a client connection or a child
process that outlives its test fires, answers or exits during a later test, where the
failure (if any) names the wrong test. The autouse fixture below is trial's janitor for
pytest: after each unit test it lets the reactor run the calls that are already due (as
trial's ``iterate(0)``), then fails the test naming every delayed call, reader/writer
(port, connection, pipe) and child process that is still there and was not there before
the test. It also cleans them up (cancels, disconnects, kills and reaps), so one leaking
test does not make the next ones fail.
"""

import os
import signal
import time

import pytest
import pytest_twisted
from twisted.internet import process as twisted_process
from twisted.internet import reactor, task
from twisted.internet.error import ConnectionLost
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

# After a test the reactor may finish what the test already set in motion and is due now
# (zero-delay calls, a close, a SIGCHLD already delivered), in a few turns that wait for
# nothing, as trial's janitor does with iterate(0): a timer due later is a leak.
SETTLE_TURNS = 3


def _children():
    """{pid: (state, command line)} of this process's children, from /proc (any thread's)."""
    pid = os.getpid()
    pids = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return {}
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                pids.update(int(p) for p in f.read().split())
        except OSError:
            continue
    found = {}
    for child in pids:
        try:
            with open(f"/proc/{child}/stat") as f:
                # "pid (comm) state ...": comm may hold spaces and parentheses.
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{child}/cmdline", "rb") as f:
                argv = f.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        found[child] = (state, argv)
    return found


def _selectables():
    """The reactor's readers and writers, less its own (waker, SIGCHLD waker)."""
    internal = set(getattr(reactor, "_internalReaders", ()))
    internal.add(getattr(reactor, "waker", None))
    readers = {r for r in reactor.getReaders() if r not in internal}
    writers = {w for w in reactor.getWriters() if w not in internal}
    return readers, writers


def _snapshot():
    readers, writers = _selectables()
    return {
        "calls": {c for c in reactor.getDelayedCalls() if c.active()},
        "readers": readers,
        "writers": writers,
        "children": {pid for pid, (state, _) in _children().items() if state != "Z"},
        "reapers": set(twisted_process.reapProcessHandlers),
    }


def _leaks(before):
    now = _snapshot()
    return {key: now[key] - before[key] for key in now if now[key] - before[key]}


def _turn():
    """Let the global reactor run one turn: the calls due now and the I/O ready now."""
    pytest_twisted.blockon(task.deferLater(reactor, 0, lambda: None))


def _describe_selectable(selectable):
    text = repr(selectable)
    proc = getattr(selectable, "proc", None)  # a child process's pipe
    if proc is not None:
        text += f" (pipe of process pid {getattr(proc, 'pid', '?')})"
    for attribute in ("getHost", "getPeer"):
        try:
            text += f" {attribute[3:].lower()}={getattr(selectable, attribute)()}"
        except Exception:
            pass
    return text


def _kill_and_reap(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        # Processes the reactor spawned are reaped through it, so their protocols hear
        # of the end; others (subprocess.Popen left running) directly.
        twisted_process.reapAllProcesses()
        for pid in pids:
            if pid in twisted_process.reapProcessHandlers:
                continue
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        alive = {pid for pid, (state, _) in _children().items() if pid in pids}
        if not alive:
            return
        time.sleep(0.01)


def _clean(leaks, before):
    """Undo what a test left behind, so that the next test starts clean."""
    if leaks.get("children"):
        _kill_and_reap(leaks["children"])
    for pid in leaks.get("reapers", ()):
        handler = twisted_process.reapProcessHandlers.get(pid)
        if handler is not None:
            handler.reapProcess()
    selectables = leaks.get("readers", set()) | leaks.get("writers", set())
    for selectable in selectables:
        reactor.removeReader(selectable)
        reactor.removeWriter(selectable)
    for selectable in selectables:
        # What the reactor itself does to a selectable it drops: tell it the connection
        # is lost, so it closes its descriptor and its protocol hears of it.
        try:
            selectable.connectionLost(Failure(ConnectionLost("left open by a unit test")))
        except Exception:
            pass
    # The leaked timers, and any that the disconnections above scheduled.
    for call in reactor.getDelayedCalls():
        if call.active() and call not in before["calls"]:
            call.cancel()


@pytest.fixture(autouse=True)
def reactor_left_clean(request):
    """Fail a unit test that leaves timers, readers/writers or child processes behind."""
    before = _snapshot()
    yield
    leaks = _leaks(before)
    for _ in range(SETTLE_TURNS):
        if not leaks or not reactor.running:
            break
        _turn()
        leaks = _leaks(before)
    if not leaks:
        return
    children = _children()
    lines = []
    for call in sorted(leaks.get("calls", ()), key=lambda c: c.getTime()):
        lines.append(f"delayed call on the global reactor: {call}")
    for reader in leaks.get("readers", ()):
        lines.append(f"reader on the global reactor: {_describe_selectable(reader)}")
    for writer in leaks.get("writers", set()) - leaks.get("readers", set()):
        lines.append(f"writer on the global reactor: {_describe_selectable(writer)}")
    for pid in sorted(leaks.get("children", ())):
        lines.append(f"child process still running: pid {pid}: {children.get(pid, ('?', '?'))[1]}")
    for pid in sorted(leaks.get("reapers", set()) - leaks.get("children", set())):
        handler = twisted_process.reapProcessHandlers.get(pid)
        lines.append(f"process the reactor has not reaped: pid {pid}: {handler!r}")
    _clean(leaks, before)
    pytest.fail(
        f"{request.node.nodeid} left this behind (now cleaned up): a unit test "
        "uses a fake reactor (task.Clock, MemoryReactorClock) or cleans up what it starts:\n  " + "\n  ".join(lines),
        pytrace=False,
    )


@pytest.fixture
def log_events():
    """Every log event emitted during the test (twisted.logger's global publisher)."""
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)
