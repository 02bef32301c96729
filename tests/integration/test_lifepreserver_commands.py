"""The zfs backend and the life-preserver source running a fake ``zfs`` script as a real
child process; timers come from a task.Clock the test moves. (Their logic, on a fake
process reactor: tests/unit/test_lifepreserver_zfs.py.)"""

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.internet import reactor as global_reactor
from twisted.logger import capturedLogs

from sysadmd.events.context import SourceContext
from sysadmd.plugins.lifepreserver_source import life_preserver
from sysadmd.taps.sections import load_daemon_config
from tests.integration.clocked import ClockedReactor

# The unit tests' fixture, on this module's real-process clocked and fake.
from tests.unit.test_lifepreserver_zfs import backends, destroyed, new  # noqa: F401


class FakeZfs:
    """A fake zfs whose snapshot list the test rewrites; it records its argv."""

    def __init__(self, root):
        self.root = root
        self.path = root / "zfs"
        self.set_snapshots([])
        self.script(f'echo "$@" > "{root}/argv"; cat "{root}/zfs.out"; '
                    f'cat "{root}/zfs.err" >&2; exit $(cat "{root}/zfs.rc")')

    def script(self, body):
        self.path.write_text(f"#!/bin/sh\n{body}\n")
        self.path.chmod(0o755)

    def set_snapshots(self, names, err="", rc=0):
        (self.root / "zfs.out").write_text("".join(n + "\n" for n in names))
        (self.root / "zfs.err").write_text(err)
        (self.root / "zfs.rc").write_text(str(rc))

    def argv(self):
        return (self.root / "argv").read_text().split()


@pytest.fixture
def fake(tmp_path):
    root = tmp_path / "bin"
    root.mkdir()
    return FakeZfs(root)


@pytest.fixture
def clocked():
    return ClockedReactor()


def settle(backend):
    return backend.when_idle().addTimeout(10, global_reactor)


@pytest_twisted.inlineCallbacks
def test_first_listing_is_a_baseline_without_a_flood(backends, fake):
    fake.set_snapshots(["tank@a", "tank/data@b"])
    backend, events = backends(interval=60)
    backend.start()
    yield settle(backend)
    assert events == []
    assert fake.argv() == ["list", "-H", "-t", "snapshot", "-o", "name"]


@pytest_twisted.inlineCallbacks
def test_new_and_destroyed_snapshots_are_events(clocked, backends, fake):
    fake.set_snapshots(["tank@a", "tank/data@b"])
    backend, events = backends(interval=60)
    backend.start()
    yield settle(backend)
    fake.set_snapshots(["tank/data@b", "tank/data@c", "tank@d"])
    clocked.clock.advance(59)
    yield settle(backend)
    assert events == []
    clocked.clock.advance(1)
    yield settle(backend)
    assert events == [destroyed("tank@a"), new("tank/data@c"), new("tank@d")]
    clocked.clock.advance(60)
    yield settle(backend)
    assert len(events) == 3


@pytest_twisted.inlineCallbacks
def test_a_hung_zfs_is_killed_and_listing_goes_on(clocked, backends, fake):
    fake.set_snapshots(["tank@a"])
    backend, events = backends(interval=60, command_timeout=30)
    backend.start()
    yield settle(backend)
    good = fake.path.read_text()
    fake.script("exec sleep 60")
    clocked.clock.advance(60)
    yield task.deferLater(global_reactor, 0.3, lambda: None)
    hung = backend._command
    with capturedLogs() as logs:
        clocked.clock.advance(30)
        yield settle(backend)
    yield hung.ended.addTimeout(10, global_reactor)
    assert any("still running after 30 s" in e.get("problem", "") for e in logs)
    fake.path.write_text(good)
    fake.set_snapshots(["tank@a", "tank@b"])
    clocked.clock.advance(30)
    yield settle(backend)
    assert events == [new("tank@b")]


def make_source(clocked, tmp_path, **keys):
    text = "[source:life-preserver]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
    config = load_daemon_config(text=text, source_options={"life-preserver": life_preserver.options})
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    context = SourceContext(clocked, config.source_section("life-preserver"), str(state))
    return life_preserver.build(context)


@pytest_twisted.inlineCallbacks
def test_the_source_runs_the_zfs_backend_and_stop_waits(clocked, tmp_path, fake):
    fake.script("exec sleep 60")
    source = make_source(clocked, tmp_path, backend="zfs", zfs_command=fake.path)
    yield source.start(lambda args: None)
    assert source.backend_name == "zfs"
    yield task.deferLater(global_reactor, 0.2, lambda: None)
    command = source.backend._command
    assert not command.finished
    yield defer.maybeDeferred(source.stop).addTimeout(10, global_reactor)
    assert command.finished
    assert clocked.clock.getDelayedCalls() == []
