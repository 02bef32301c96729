"""The system-state source against fake ``zpool`` and ``hostname`` programs on a fake
process reactor and clock (the same with real child processes:
tests/integration/test_systemstate_commands.py)."""

import socket

import pytest
from twisted.logger import capturedLogs
from twisted.plugin import IPlugin
from zope.interface.verify import verifyObject

from sysadmd.events.context import SourceContext
from sysadmd.interfaces import IEventSource, IEventSourceFactory
from sysadmd.plugins.systemstate_source import system_state
from sysadmd.systemstate.rules import Thresholds
from sysadmd.systemstate.source import SystemStateSource
from sysadmd.taps.discovery import discover_sources
from sysadmd.taps.sections import load_daemon_config
from tests.unit.process_fakes import FakeProcessReactor, answer, hang

OLDER = """\
NAME       SIZE  ALLOC   FREE    CAP  DEDUP  HEALTH  ALTROOT
tank      95.5M   138K  95.4M     5%  1.00x  ONLINE  -
"""

OPENZFS = """\
NAME   SIZE  ALLOC   FREE  CKPOINT  EXPANDSZ   FRAG    CAP  DEDUP  HEALTH  ALTROOT
tank   107G  13.1G  93.9G        -         -     6%    12%  1.00x  ONLINE  -
"""


class FakeZfs:
    """Fake zpool and hostname programs whose answers the test sets. Their files exist
    (so they are found), but the fake reactor runs them: each answers in the reactor turn
    after its spawn."""

    def __init__(self, root, reactor):
        self.zpool = root / "zpool"
        self.hostname = root / "hostname"
        for path in (self.zpool, self.hostname):
            path.write_text("#!/bin/sh\n")
            path.chmod(0o755)
        self.set_zpool(OLDER)
        self.set_hostname("host1")
        self.zpool_hangs = False
        reactor.programs[str(self.zpool)] = self._zpool
        reactor.programs[str(self.hostname)] = lambda process: answer(self._hostname)(process)

    def _zpool(self, process):
        if self.zpool_hangs:
            hang(process)
        else:
            answer(*self._zpool_answer)(process)

    def set_zpool(self, out, err="", rc=0):
        self._zpool_answer = (out, err, rc)

    def set_hostname(self, name):
        self._hostname = name + "\n"

    def hang_zpool(self):
        self.zpool_hangs = True


class Published(list):
    """The publish callback: records events."""

    def __call__(self, args):
        self.append(args)


# The event for host1 with one pool, tank, as the fake zpool reports it first.
HOST1_TANK = {
    "hostname": "host1",
    "zpools": {
        "tank": {
            "size": "95.5M", "alloc": "138K", "free": "95.4M", "frag": "-",
            "expandsz": "-", "dedup": "1.00x", "altroot": "-", "capacity": "5%",
            "health": "ONLINE", "priority": "0 - Information",
        }
    },
    "priority": "0 - Information",
}


@pytest.fixture
def clocked():
    return FakeProcessReactor()


@pytest.fixture
def fake(tmp_path, clocked):
    return FakeZfs(tmp_path, clocked)


@pytest.fixture
def make_source(clocked, fake):
    sources = []

    def make(**kwargs):
        kwargs.setdefault("zpool_command", str(fake.zpool))
        kwargs.setdefault("hostname_command", str(fake.hostname))
        source = SystemStateSource(clocked, **kwargs)
        sources.append(source)
        return source

    yield make
    for source in sources:
        source.stop()


def settle(clocked, source):
    """Let the programs answer (one reactor turn); the poll is over then."""
    clocked.advance(0)
    assert source.when_idle().called, "the poll is still running"


def advance(clocked, source, seconds):
    """Move the clock by ``seconds`` (in 1 s steps) letting each poll finish."""
    for _ in range(int(seconds)):
        clocked.advance(1)
        settle(clocked, source)


def test_first_poll_is_at_start_and_has_every_field(clocked, make_source):
    source = make_source()
    events = Published()
    source.start(events)
    settle(clocked, source)
    assert events == [HOST1_TANK]
    assert source.last_state == events[-1]


def test_openzfs_columns_through_the_command(clocked, make_source, fake):
    fake.set_zpool(OPENZFS)
    source = make_source()
    events = Published()
    source.start(events)
    settle(clocked, source)
    assert events[0]["zpools"]["tank"]["frag"] == "6%"
    assert events[0]["zpools"]["tank"]["alloc"] == "13.1G"


def test_publishes_on_change_only(clocked, make_source, fake):
    source = make_source(interval=60, heartbeat=900)
    events = Published()
    source.start(events)
    settle(clocked, source)
    advance(clocked, source, 120)
    assert len(events) == 1, "nothing changed: nothing published"
    fake.set_zpool(OLDER.replace("ONLINE", "DEGRADED"))
    advance(clocked, source, 59)
    assert len(events) == 1, "not polled yet"
    advance(clocked, source, 1)
    assert len(events) == 2
    assert events[1]["zpools"]["tank"]["health"] == "DEGRADED"
    assert events[1]["zpools"]["tank"]["priority"] == "9 - Urgent"
    assert events[1]["priority"] == "9 - Urgent"
    fake.set_zpool(OLDER.replace("  5%", " 85%"))
    advance(clocked, source, 60)
    assert events[2]["zpools"]["tank"]["priority"] == "3 - Warning"
    fake.set_zpool(OLDER.replace("  5%", " 95%"))
    advance(clocked, source, 60)
    assert events[3]["priority"] == "6 - Critical"
    assert len(events) == 4


def test_heartbeat_publishes_an_unchanged_state(clocked, make_source):
    source = make_source(interval=60, heartbeat=150)
    events = Published()
    source.start(events)
    settle(clocked, source)
    advance(clocked, source, 149)
    assert len(events) == 1
    advance(clocked, source, 1)
    assert len(events) == 2, "the heartbeat is due at 150 s"
    assert events[1] == events[0]
    advance(clocked, source, 150)
    assert len(events) == 3


def test_hostname_change_is_reported_once(clocked, make_source, fake):
    source = make_source(interval=60)
    events = Published()
    source.start(events)
    settle(clocked, source)
    fake.set_hostname("host2")
    advance(clocked, source, 60)
    assert events[-1]["hostname"] == "host2"
    assert events[-1]["hostnamechanged"] == "true"
    assert events[-1]["priority"] == "3 - Warning"
    advance(clocked, source, 60)
    assert events[-1]["hostname"] == "host2"
    assert "hostnamechanged" not in events[-1]
    assert events[-1]["priority"] == "0 - Information"
    assert len(events) == 3


def test_capacity_thresholds_come_from_the_config(clocked, make_source, fake):
    fake.set_zpool(OLDER.replace("  5%", " 55%"))
    source = make_source(thresholds=Thresholds(50, 60))
    events = Published()
    source.start(events)
    settle(clocked, source)
    assert events[0]["priority"] == "3 - Warning"


def test_no_zpool_command_means_no_pools_logged_once(clocked, make_source, tmp_path):
    source = make_source(zpool_command=str(tmp_path / "missing-zpool"))
    events = Published()
    with capturedLogs() as logs:
        source.start(events)
        settle(clocked, source)
        advance(clocked, source, 180)
    assert events[0]["zpools"] == {} and events[0]["hostname"] == "host1"
    assert events[0]["priority"] == "0 - Information"
    why = [e for e in logs if "no ZFS" in e["log_format"]]
    assert len(why) == 1
    assert "missing-zpool" in why[0]["reason"]


def test_zpool_without_zfs_behind_it_means_no_pools(clocked, make_source, fake):
    fake.set_zpool("", "Please make sure that the zfs-fuse daemon is running.\n"
                       "internal error: failed to initialize ZFS library\n", rc=1)
    source = make_source()
    events = Published()
    with capturedLogs() as logs:
        source.start(events)
        settle(clocked, source)
    assert events[0]["zpools"] == {}
    assert any("zfs-fuse daemon" in e.get("reason", "") for e in logs)


def test_a_hung_zpool_is_killed_and_the_source_carries_on(clocked, make_source, fake):
    """A zpool still running at command_timeout gets SIGTERM and the poll goes on with
    the pools it knew; the failure is logged, the next good poll logs the recovery."""
    source = make_source(interval=60, command_timeout=30)
    events = Published()
    source.start(events)
    settle(clocked, source)
    fake.hang_zpool()
    with capturedLogs() as logs:
        clocked.advance(60)
        assert not source.when_idle().called, "the poll waits for the hung zpool"
        (hung,) = [c for c in source._commands if c.argv[0] == str(fake.zpool)]
        clocked.advance(29)
        assert not hung.result.called
        clocked.advance(1)
        settle(clocked, source)
        zpools = [p for p in clocked.processes if p.executable == str(fake.zpool)]
        assert zpools[-1].signals == ["TERM"]
        assert hung.ended.called, "the process is gone"
    failed = [e for e in logs if "failed" in e["log_format"]]
    assert len(failed) == 1 and "still running after 30 s" in failed[0]["problem"]
    assert len(events) == 1, "a hung zpool does not make the pools vanish"
    fake.zpool_hangs = False
    fake.set_zpool(OLDER.replace("ONLINE", "FAULTED"))
    with capturedLogs() as logs:
        advance(clocked, source, 30)  # the next poll is at 120 s
    assert events[-1]["zpools"]["tank"]["health"] == "FAULTED"
    assert any("works again" in e["log_format"] for e in logs)


def test_a_failing_zpool_is_logged_with_backoff(clocked, make_source, fake):
    source = make_source(interval=60)
    events = Published()
    source.start(events)
    settle(clocked, source)
    fake.set_zpool("", "cannot open /dev/thing: Permission denied\n", rc=2)
    with capturedLogs() as logs:
        advance(clocked, source, 60 * 5)
    failed = [e["failures"] for e in logs if "failed" in e["log_format"]]
    assert failed == [1, 2, 4]
    assert "Permission denied" in [e for e in logs if "failed" in e["log_format"]][0]["problem"]
    assert len(events) == 1 and events[0]["zpools"]["tank"]["health"] == "ONLINE"


def test_failing_hostname_falls_back_to_the_kernel_name(clocked, make_source, tmp_path):
    source = make_source(hostname_command=str(tmp_path / "no-hostname"))
    events = Published()
    source.start(events)
    settle(clocked, source)
    assert events[0]["hostname"] == socket.gethostname()


def test_stop_kills_a_running_command_and_waits_for_it(clocked, make_source, fake):
    """stop sends SIGTERM to a running zpool and fires only once it has ended; no timer
    is left."""
    fake.hang_zpool()
    source = make_source()
    events = Published()
    source.start(events)
    clocked.advance(0)
    (command,) = [c for c in source._commands if c.argv[0] == str(fake.zpool)]
    stopped = source.stop()
    assert not stopped.called and not command.finished
    clocked.advance(0)  # the fake zpool dies of its SIGTERM
    assert stopped.called and command.finished
    assert clocked.getDelayedCalls() == []
    assert events == []


def test_source_and_factory_provide_their_interfaces(clocked):
    assert verifyObject(IEventSourceFactory, system_state)
    assert verifyObject(IPlugin, system_state)
    config = load_daemon_config(text="", source_options={"system-state": system_state.options})
    context = SourceContext(clocked, config.source_section("system-state"), "/nonexistent")
    source = system_state.build(context)
    assert verifyObject(IEventSource, source)
    assert (source.name, source.frame_name, source.replay_last) == (
        "system-state", "system_state", True
    )
    assert source.config_section == "source:system-state"
    assert discover_sources()["system-state"] is system_state


def test_option_defaults_and_validation():
    config = load_daemon_config(text="", source_options={"system-state": system_state.options})
    section = config.source_section("system-state")
    assert section == {
        "interval": 60.0, "heartbeat": 900.0, "capacity_warning": 80.0,
        "capacity_critical": 90.0, "zpool_command": "zpool", "hostname_command": "hostname",
        "command_timeout": 30.0, "updates": "auto", "updates_interval": 3600.0,
        "updates_refresh": False, "updates_command": None,
    }
    from sysadmd.config import ConfigErrors

    with pytest.raises(ConfigErrors) as e:
        load_daemon_config(
            text="[source:system-state]\ncapacity_warning = 120\nzpool_command =\n",
            source_options={"system-state": system_state.options},
        )
    assert "capacity_warning" in str(e.value) and "zpool_command" in str(e.value)
