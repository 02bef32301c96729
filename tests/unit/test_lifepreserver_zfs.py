"""The zfs backend and the life-preserver source, against a fake ``zfs`` program on a
fake process reactor and clock (the same with a real child process:
tests/integration/test_lifepreserver_commands.py)."""

import pytest
from twisted.internet import defer
from twisted.logger import capturedLogs
from twisted.plugin import IPlugin
from zope.interface.verify import verifyObject

from sysadmd.config import ConfigErrors
from sysadmd.events.context import SourceContext
from sysadmd.interfaces import IEventSource, IEventSourceFactory
from sysadmd.lifepreserver.snapshots import ZfsSnapshotBackend
from sysadmd.plugins.lifepreserver_source import life_preserver
from sysadmd.taps.discovery import discover_sources
from sysadmd.taps.sections import load_daemon_config
from tests.unit.process_fakes import FakeProcessReactor, answer, hang


class FakeZfs:
    """A fake zfs whose snapshot list the test sets. Its file exists (so it is found),
    but the fake reactor runs it: it answers in the reactor turn after its spawn."""

    def __init__(self, root, reactor):
        self._reactor = reactor
        self.path = root / "zfs"
        self.path.write_text("#!/bin/sh\n")
        self.path.chmod(0o755)
        self.hangs = False
        self.set_snapshots([])
        reactor.programs[str(self.path)] = self._run

    def _run(self, process):
        if self.hangs:
            hang(process)
        else:
            answer(*self._answer)(process)

    def set_snapshots(self, names, err="", rc=0):
        self._answer = ("".join(n + "\n" for n in names), err, rc)

    def argv(self):
        """The arguments of the last zfs run."""
        return [p for p in self._reactor.processes if p.executable == str(self.path)][-1].args[1:]


def new(name):
    dataset, snap = name.split("@")
    return {"message": f"New snapshot of {dataset}: {snap}", "priority": "1 - Information",
            "class": "snapshot"}


def destroyed(name):
    dataset, snap = name.split("@")
    return {"message": f"Destroyed snapshot of {dataset}: {snap}",
            "priority": "1 - Information", "class": "snapshot"}


@pytest.fixture
def clocked():
    return FakeProcessReactor()


@pytest.fixture
def fake(tmp_path, clocked):
    root = tmp_path / "bin"
    root.mkdir()
    return FakeZfs(root, clocked)


@pytest.fixture
def backends(clocked, fake, tmp_path):
    made = []

    def make(**kwargs):
        events = []
        backend = ZfsSnapshotBackend(
            clocked, events.append, str(tmp_path / "snapshots.json"),
            zfs_command=str(fake.path), **kwargs
        )
        made.append(backend)
        return backend, events

    yield make
    for backend in made:
        backend.stop()


def settle(clocked, backend):
    """Let zfs answer (one reactor turn); the listing is over then."""
    clocked.advance(0)
    assert backend.when_idle().called, "the listing is still running"


def test_first_listing_is_a_baseline_without_a_flood(clocked, backends, fake):
    fake.set_snapshots(["tank@a", "tank/data@b"])
    backend, events = backends(interval=60)
    backend.start()
    settle(clocked, backend)
    assert events == []
    assert fake.argv() == ["list", "-H", "-t", "snapshot", "-o", "name"]


def test_new_and_destroyed_snapshots_are_events(clocked, backends, fake):
    fake.set_snapshots(["tank@a", "tank/data@b"])
    backend, events = backends(interval=60)
    backend.start()
    settle(clocked, backend)
    fake.set_snapshots(["tank/data@b", "tank/data@c", "tank@d"])
    clocked.advance(59)
    settle(clocked, backend)
    assert events == []
    clocked.advance(1)
    settle(clocked, backend)
    assert events == [destroyed("tank@a"), new("tank/data@c"), new("tank@d")]
    clocked.advance(60)
    settle(clocked, backend)
    assert len(events) == 3


def test_snapshots_taken_while_down_are_reported_at_start(clocked, backends, fake):
    fake.set_snapshots(["tank@a"])
    first, events = backends()
    first.start()
    settle(clocked, first)
    assert first.stop().called
    fake.set_snapshots(["tank@a", "tank@while-down"])
    second, events = backends()
    second.start()
    settle(clocked, second)
    assert events == [new("tank@while-down")]


def test_a_failed_listing_destroys_nothing(clocked, backends, fake):
    fake.set_snapshots(["tank@a"])
    backend, events = backends(interval=60)
    backend.start()
    settle(clocked, backend)
    fake.set_snapshots([], err="internal error: failed to initialize ZFS library\n", rc=1)
    with capturedLogs() as logs:
        clocked.advance(60)
        settle(clocked, backend)
    assert events == []
    assert "failed to initialize ZFS library" in [
        e for e in logs if "failed" in e["log_format"]][0]["problem"]
    fake.set_snapshots(["tank@a", "tank@b"])
    clocked.advance(60)
    settle(clocked, backend)
    assert events == [new("tank@b")]


def test_a_hung_zfs_is_killed_and_listing_goes_on(clocked, backends, fake):
    """A zfs still running at command_timeout gets SIGTERM, the failure is logged, and
    the next listing goes on from the snapshots known before."""
    fake.set_snapshots(["tank@a"])
    backend, events = backends(interval=60, command_timeout=30)
    backend.start()
    settle(clocked, backend)
    fake.hangs = True
    clocked.advance(60)
    hung = backend._command
    assert not backend.when_idle().called
    with capturedLogs() as logs:
        clocked.advance(30)
        settle(clocked, backend)
    assert hung.ended.called and clocked.processes[-1].signals == ["TERM"]
    assert any("still running after 30 s" in e.get("problem", "") for e in logs)
    fake.hangs = False
    fake.set_snapshots(["tank@a", "tank@b"])
    clocked.advance(30)
    settle(clocked, backend)
    assert events == [new("tank@b")]


def make_source(clocked, tmp_path, **keys):
    text = "[source:life-preserver]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
    config = load_daemon_config(text=text, source_options={"life-preserver": life_preserver.options})
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    context = SourceContext(clocked, config.source_section("life-preserver"), str(state))
    return life_preserver.build(context)


def test_source_and_factory_provide_their_interfaces(clocked, tmp_path):
    assert verifyObject(IEventSourceFactory, life_preserver)
    assert verifyObject(IPlugin, life_preserver)
    source = make_source(clocked, tmp_path)
    assert verifyObject(IEventSource, source)
    assert (source.name, source.frame_name, source.replay_last) == (
        "life-preserver", "life_preserver", True
    )
    assert source.config_section == "source:life-preserver"
    assert discover_sources()["life-preserver"] is life_preserver


def test_option_defaults_and_validation():
    config = load_daemon_config(text="", source_options={"life-preserver": life_preserver.options})
    assert config.source_section("life-preserver") == {
        "backend": "auto", "log_dir": "/var/log/lpreserver", "poll_interval": 1.0,
        "interval": 60.0, "zfs_command": "zfs", "command_timeout": 30.0,
    }
    with pytest.raises(ConfigErrors) as e:
        load_daemon_config(text="[source:life-preserver]\nbackend = rsync\n",
                    source_options={"life-preserver": life_preserver.options})
    assert "backend" in str(e.value) and "rsync" in str(e.value)
    with pytest.raises(ConfigErrors) as e:
        load_daemon_config(text="[source:life-preserver]\nlog_dir = var/log\n",
                    source_options={"life-preserver": life_preserver.options})
    assert "log_dir" in str(e.value) and "not an absolute path" in str(e.value)


def test_auto_prefers_the_lpreserver_log(clocked, tmp_path, fake):
    logs = tmp_path / "lp"
    logs.mkdir()
    source = make_source(clocked, tmp_path, log_dir=logs, zfs_command=fake.path)
    assert source.choose_backend() == "zfs"
    (logs / "lpreserver.log").write_text("")
    assert source.choose_backend() == "lpreserver"
    missing = make_source(clocked, tmp_path, log_dir=tmp_path / "none",
                          zfs_command=tmp_path / "no-zfs")
    assert missing.choose_backend() is None
    forced = make_source(clocked, tmp_path, backend="zfs", log_dir=logs)
    assert forced.choose_backend() == "zfs"


def test_without_lpreserver_or_zfs_the_source_idles_and_says_so_once(clocked, tmp_path):
    source = make_source(clocked, tmp_path, log_dir=tmp_path / "none",
                         zfs_command=tmp_path / "no-zfs")
    events = []
    with capturedLogs() as logs:
        assert source.start(events.append).called
        clocked.advance(3600)
    idle = [e for e in logs if "idle" in e["log_format"]]
    assert len(idle) == 1 and "no-zfs" in idle[0]["zfs"]
    assert clocked.getDelayedCalls() == [] and clocked.processes == []
    assert source.stop().called


def test_the_source_runs_the_lpreserver_backend(clocked, tmp_path):
    logs = tmp_path / "lp"
    logs.mkdir()
    (logs / "lpreserver.log").write_text("Fri Nov 27 09:00:00 UTC 2026: Creating snapshot on old\n")
    source = make_source(clocked, tmp_path, log_dir=logs)
    events = []
    assert source.start(events.append).called
    assert source.backend_name == "lpreserver"
    with open(logs / "lpreserver.log", "a") as f:
        f.write("Fri Nov 27 10:00:00 UTC 2026: Creating snapshot on tank/new\n")
    clocked.advance(1)
    assert [e["message"] for e in events] == ["New snapshot of tank/new"]
    assert source.stop().called
    assert (tmp_path / "state" / "life-preserver.lpreserver.json").exists()
    assert clocked.getDelayedCalls() == []


def test_the_source_runs_the_zfs_backend_and_stop_waits(clocked, tmp_path, fake):
    """stop kills a running zfs and fires only once it has ended; no timer is left."""
    fake.hangs = True
    source = make_source(clocked, tmp_path, backend="zfs", zfs_command=fake.path)
    assert source.start(lambda args: None).called
    assert source.backend_name == "zfs"
    clocked.advance(0)
    command = source.backend._command
    assert not command.finished
    stopped = defer.maybeDeferred(source.stop)
    assert not stopped.called
    clocked.advance(0)  # the fake zfs dies of its SIGTERM
    assert stopped.called and command.finished
    assert clocked.getDelayedCalls() == []
