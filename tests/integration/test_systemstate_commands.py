"""The system-state source running real ``zpool``, ``hostname`` and update-check scripts
as child processes; timers come from a task.Clock the test moves. (Its logic, on a fake
process reactor: tests/unit/test_systemstate_source.py and
test_systemstate_updates_source.py.)"""

import os

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.internet import reactor as global_reactor
from twisted.logger import capturedLogs

from sysadmd.systemstate.updates import CommandBackend
from tests.integration.clocked import ClockedReactor

# The unit tests' fixture, on this module's real-process clocked and fake.
from tests.unit.test_systemstate_source import HOST1_TANK, make_source  # noqa: F401

OLDER = """\
NAME       SIZE  ALLOC   FREE    CAP  DEDUP  HEALTH  ALTROOT
tank      95.5M   138K  95.4M     5%  1.00x  ONLINE  -
"""

class FakeZfs:
    """Fake zpool and hostname scripts whose output the test rewrites."""

    def __init__(self, root):
        self.root = root
        self.zpool = root / "zpool"
        self.hostname = root / "hostname"
        self.set_zpool(OLDER)
        self.set_hostname("host1")
        self._script(self.zpool, f'cat "{root}/zpool.out"; cat "{root}/zpool.err" >&2; '
                                 f'exit $(cat "{root}/zpool.rc")')
        self._script(self.hostname, f'cat "{root}/hostname.out"')

    def _script(self, path, body):
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)

    def set_zpool(self, out, err="", rc=0):
        (self.root / "zpool.out").write_text(out)
        (self.root / "zpool.err").write_text(err)
        (self.root / "zpool.rc").write_text(str(rc))

    def set_hostname(self, name):
        (self.root / "hostname.out").write_text(name + "\n")

    def hang_zpool(self):
        self._script(self.zpool, "exec sleep 60")


class Published(list):
    """The publish callback: records events."""

    def __call__(self, args):
        self.append(args)


@pytest.fixture
def fake(tmp_path):
    return FakeZfs(tmp_path)


@pytest.fixture
def clocked():
    return ClockedReactor()


def settle(source):
    """Wait (real time) until the source's poll is over."""
    return source.when_idle().addTimeout(10, global_reactor)


@defer.inlineCallbacks
def advance(clocked, source, seconds):
    """Move the clock by ``seconds`` (in 1 s steps) letting each poll finish."""
    for _ in range(int(seconds)):
        clocked.clock.advance(1)
        yield settle(source)


@pytest_twisted.inlineCallbacks
def test_first_poll_is_at_start_and_has_every_field(make_source):
    source = make_source()
    events = Published()
    yield source.start(events)
    yield settle(source)
    assert events == [HOST1_TANK]
    assert source.last_state == events[-1]


@pytest_twisted.inlineCallbacks
def test_publishes_on_change_only(clocked, make_source, fake):
    source = make_source(interval=60, heartbeat=900)
    events = Published()
    yield source.start(events)
    yield settle(source)
    yield advance(clocked, source, 120)
    assert len(events) == 1, "nothing changed: nothing published"
    fake.set_zpool(OLDER.replace("ONLINE", "DEGRADED"))
    yield advance(clocked, source, 59)
    assert len(events) == 1, "not polled yet"
    yield advance(clocked, source, 1)
    assert len(events) == 2
    assert events[1]["zpools"]["tank"]["health"] == "DEGRADED"
    assert events[1]["zpools"]["tank"]["priority"] == "9 - Urgent"
    assert events[1]["priority"] == "9 - Urgent"
    fake.set_zpool(OLDER.replace("  5%", " 85%"))
    yield advance(clocked, source, 60)
    assert events[2]["zpools"]["tank"]["priority"] == "3 - Warning"
    fake.set_zpool(OLDER.replace("  5%", " 95%"))
    yield advance(clocked, source, 60)
    assert events[3]["priority"] == "6 - Critical"
    assert len(events) == 4


@pytest_twisted.inlineCallbacks
def test_a_hung_zpool_is_killed_and_the_source_carries_on(clocked, make_source, fake):
    source = make_source(interval=60, command_timeout=30)
    events = Published()
    yield source.start(events)
    yield settle(source)
    fake.hang_zpool()
    with capturedLogs() as logs:
        clocked.clock.advance(60)
        yield task.deferLater(global_reactor, 0.3, lambda: None)
        assert not source.when_idle().called, "the poll waits for the hung zpool"
        (hung,) = [c for c in source._commands if c.argv[0] == str(fake.zpool)]
        clocked.clock.advance(29)
        assert not hung.result.called
        clocked.clock.advance(1)
        yield settle(source)
        yield hung.ended.addTimeout(10, global_reactor)  # the process is really gone
    failed = [e for e in logs if "failed" in e["log_format"]]
    assert len(failed) == 1 and "still running after 30 s" in failed[0]["problem"]
    assert len(events) == 1, "a hung zpool does not make the pools vanish"
    fake.set_zpool(OLDER.replace("ONLINE", "FAULTED"))
    fake._script(fake.zpool, f'cat "{fake.root}/zpool.out"')
    with capturedLogs() as logs:
        yield advance(clocked, source, 30)  # the next poll is at 120 s
    assert events[-1]["zpools"]["tank"]["health"] == "FAULTED"
    assert any("works again" in e["log_format"] for e in logs)


@pytest_twisted.inlineCallbacks
def test_stop_kills_a_running_command_and_waits_for_it(clocked, make_source, fake):
    fake.hang_zpool()
    source = make_source()
    events = Published()
    yield source.start(events)
    yield task.deferLater(global_reactor, 0.2, lambda: None)
    (command,) = [c for c in source._commands if c.argv[0] == str(fake.zpool)]
    yield source.stop().addTimeout(10, global_reactor)
    assert command.finished
    assert clocked.clock.getDelayedCalls() == []
    assert events == []


def _check_script(root, body):
    """An updates_command script (its body in sh)."""
    path = root / "check-updates"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return CommandBackend([str(path)])


@pytest_twisted.inlineCallbacks
def test_an_update_check_runs_beside_the_polls(clocked, make_source, tmp_path):
    """The first event says checkingforupdates; the script's answer follows on its own."""
    backend = _check_script(tmp_path, "sleep 0.5; echo updatesavailable; echo curl 8.5.0")
    source = make_source(updates_backend=backend)
    events = Published()
    yield source.start(events)
    yield settle(source)
    assert events[0]["updates"]["status"] == "checkingforupdates"
    yield source.updates.when_idle().addTimeout(10, global_reactor)
    assert events[-1]["updates"]["status"] == "updatesavailable"
    assert events[-1]["updates"]["details"] == "curl 8.5.0"
    assert events[-1]["priority"] == "2 - Information"


@pytest_twisted.inlineCallbacks
def test_a_hung_update_check_and_its_children_are_killed(clocked, make_source, tmp_path):
    """A check still running at command_timeout is killed with its process group (the
    sleep it started in the background too); the source carries on."""
    pids = tmp_path / "pids"
    backend = _check_script(tmp_path, f"sleep 300 & echo $! > {pids}; wait")
    source = make_source(updates_backend=backend, command_timeout=30)
    events = Published()
    with capturedLogs() as logs:
        yield source.start(events)
        yield settle(source)
        yield task.deferLater(global_reactor, 0.3, lambda: None)
        (command,) = [c for c in source._commands if c.argv == backend.argv]
        clocked.clock.advance(30)
        yield source.updates.when_idle().addTimeout(10, global_reactor)
        yield command.ended.addTimeout(10, global_reactor)
    child = int(pids.read_text())
    for _ in range(50):
        if not os.path.exists(f"/proc/{child}") or "Z" in _state(child):
            break
        yield task.deferLater(global_reactor, 0.1, lambda: None)
    else:
        raise AssertionError(f"the check's background child {child} outlived it")
    assert "still running after 30 s" in events[-1]["updates"]["details"]
    assert events[-1]["updates"]["status"] == "checkingforupdates"
    assert any("still running after 30 s" in e.get("problem", "") for e in logs)


def _state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
