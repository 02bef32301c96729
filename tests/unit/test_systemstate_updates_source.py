"""The ``updates`` field in the system-state source: checks in the background on their
own timer, ``checkingforupdates`` until the first ends, the priority they raise, failures
and timeouts, stop. Fake programs on a fake process reactor and clock (as
test_systemstate_source.py); the backends' parsing is in test_systemstate_updates.py."""

from datetime import datetime

import pytest
from twisted.logger import capturedLogs

from sysadmd.events.context import SourceContext
from sysadmd.plugins.systemstate_source import system_state
from sysadmd.systemstate.apt import AptBackend
from sysadmd.systemstate.rules import Thresholds, build_state
from sysadmd.systemstate.updates import CommandBackend
from sysadmd.taps.sections import load_daemon_config
from tests.unit.process_fakes import answer, hang
from tests.unit.test_systemstate_source import (  # noqa: F401 (clocked, fake: fixtures)
    Published,
    clocked,
    fake,
    settle,
)


class FakeCheck:
    """A fake update-check program: it answers what the test set (or hangs, or waits
    for :meth:`release`); ``runs`` counts its starts."""

    def __init__(self, root, reactor, name="check-updates"):
        self.path = root / name
        self.path.write_text("#!/bin/sh\n")
        self.path.chmod(0o755)
        self.answer = ("noupdates\n", "", 0)
        self.mode = "answer"
        self.waiting = []
        self.runs = []
        reactor.programs[str(self.path)] = self._run

    def _run(self, process):
        self.runs.append(process)
        if self.mode == "hang":
            hang(process)
        elif self.mode == "wait":
            self.waiting.append(process)
        else:
            answer(*self.answer)(process)

    def set(self, stdout, stderr="", code=0):
        self.answer = (stdout, stderr, code)

    def release(self):
        """The waiting runs answer now."""
        waiting, self.waiting = self.waiting, []
        for process in waiting:
            answer(*self.answer)(process)


@pytest.fixture
def check(tmp_path, clocked):
    return FakeCheck(tmp_path, clocked)


@pytest.fixture
def make_source(clocked, fake, check):
    from sysadmd.systemstate.source import SystemStateSource

    sources = []

    def make(**kwargs):
        kwargs.setdefault("zpool_command", str(fake.zpool))
        kwargs.setdefault("hostname_command", str(fake.hostname))
        kwargs.setdefault("updates_backend", CommandBackend([str(check.path)]))
        source = SystemStateSource(clocked, **kwargs)
        sources.append(source)
        return source

    yield make
    for source in sources:
        source.stop()
    clocked.advance(0)


def started(clocked, make_source, **kwargs):
    source = make_source(**kwargs)
    events = Published()
    source.start(events)
    settle(clocked, source)
    return source, events


def checked_at(field):
    """``last_check`` as seconds since the epoch."""
    return datetime.fromisoformat(field["last_check"]).timestamp()


def test_first_event_says_checking_and_never_waits_for_the_check(clocked, make_source, check):
    check.mode = "wait"
    check.set("updatesavailable\n3 packages\n")
    clocked.advance(1000)
    _source, events = started(clocked, make_source)
    assert len(events) == 1, "the state is published while the check still runs"
    assert events[0]["updates"] == {"status": "checkingforupdates",
                                    "details": "Checking for updates for the first time.",
                                    "last_check": ""}
    assert events[0]["priority"] == "0 - Information"
    clocked.advance(5)
    check.release()
    assert len(events) == 2, "the check's result is published at once"
    assert events[1]["updates"]["status"] == "updatesavailable"
    assert events[1]["updates"]["details"] == "3 packages"
    assert checked_at(events[1]["updates"]) == 1005
    assert events[1]["priority"] == "2 - Information"
    assert events[1]["zpools"] == events[0]["zpools"]


@pytest.mark.parametrize("status, level", [
    ("noupdates", "0 - Information"),
    ("updatesavailable", "2 - Information"),
    ("updaterunning", "2 - Information"),
    ("rebootrequired", "9 - Urgent"),
])
def test_updates_raise_the_priority(clocked, make_source, check, status, level):
    check.set(f"{status}\n")
    _source, events = started(clocked, make_source)
    assert events[-1]["updates"]["status"] == status
    assert events[-1]["priority"] == level


def test_updates_never_lower_a_pool_priority():
    pools = {"tank": {"health": "ONLINE", "capacity": "95%"}}
    state = build_state("h", pools, False, Thresholds(), {"status": "updatesavailable"})
    assert state["priority"] == "6 - Critical"
    state = build_state("h", pools, False, Thresholds(), {"status": "rebootrequired"})
    assert state["priority"] == "9 - Urgent"
    assert "updates" not in build_state("h", pools, False, Thresholds())


def test_checks_run_every_updates_interval_not_every_poll(clocked, make_source, check):
    source, events = started(clocked, make_source, interval=60, updates_interval=3600)
    assert len(check.runs) == 1, "the first check is at start"
    for _ in range(59):
        clocked.advance(60)
        settle(clocked, source)
    assert len(check.runs) == 1
    check.set("rebootrequired\nnew kernel\n")
    clocked.advance(60)
    clocked.advance(0)
    assert len(check.runs) == 2
    assert events[-1]["updates"]["status"] == "rebootrequired"
    assert checked_at(events[-1]["updates"]) == 3600
    assert events[-1]["priority"] == "9 - Urgent"


def test_a_failed_check_keeps_the_last_status_and_is_logged(clocked, make_source, check):
    check.set("updatesavailable\ncurl\n")
    _source, events = started(clocked, make_source, updates_interval=600)
    good = events[-1]["updates"]
    check.set("", "cannot reach the mirror\n", 3)
    with capturedLogs() as logs:
        clocked.advance(600)
        clocked.advance(0)
    updates = events[-1]["updates"]
    assert updates["status"] == "updatesavailable"
    assert updates["last_check"] == good["last_check"], "the last check that succeeded"
    assert updates["details"].startswith("curl\nThe check for updates at ")
    assert "exited with 3: cannot reach the mirror" in updates["details"]
    assert events[-1]["priority"] == "2 - Information"
    warned = [e for e in logs if "failed" in e["log_format"]]
    assert len(warned) == 1 and "cannot reach the mirror" in warned[0]["problem"]
    assert warned[0]["what"] == "update check (updates_command)"
    check.set("noupdates\n")
    with capturedLogs() as logs:
        clocked.advance(600)
        clocked.advance(0)
    assert events[-1]["updates"]["status"] == "noupdates"
    assert any("works again" in e["log_format"] for e in logs)


def test_a_first_check_that_fails_says_so_and_stays_checking(clocked, make_source, tmp_path):
    backend = CommandBackend([str(tmp_path / "no-such-check")])
    with capturedLogs() as logs:
        _source, events = started(clocked, make_source, updates_backend=backend)
    updates = events[-1]["updates"]
    assert updates["status"] == "checkingforupdates" and updates["last_check"] == ""
    assert "failed: " in updates["details"] and "no-such-check" in updates["details"]
    assert any("update check" in e.get("what", "") for e in logs)


def test_a_hung_check_is_killed_at_the_command_timeout(clocked, make_source, check):
    check.mode = "hang"
    source, events = started(clocked, make_source, command_timeout=30)
    assert events[0]["updates"]["status"] == "checkingforupdates"
    clocked.advance(29)
    assert check.runs[0].signals == []
    with capturedLogs() as logs:
        clocked.advance(1)
        clocked.advance(0)
    assert check.runs[0].signals == ["TERM"], "its process group got SIGTERM"
    assert "still running after 30 s" in events[-1]["updates"]["details"]
    assert any("still running after 30 s" in e.get("problem", "") for e in logs)
    assert source.updates.when_idle().called, "the checker carries on"


def test_stop_kills_a_running_check_and_publishes_nothing_after(clocked, make_source, check):
    check.mode = "hang"
    source, events = started(clocked, make_source)
    stopped = source.stop()
    assert not stopped.called
    clocked.advance(0)
    assert stopped.called and check.runs[0].signals == ["TERM"]
    assert len(events) == 1
    assert clocked.getDelayedCalls() == []


def test_apt_on_the_process_reactor_runs_the_simulation_in_the_c_locale(clocked, make_source, tmp_path):
    apt_get = tmp_path / "apt-get"
    apt_get.write_text("#!/bin/sh\n")
    apt_get.chmod(0o755)
    clocked.programs[str(apt_get)] = answer("Inst bash [5.2.15-2+b8] (5.2.15-2+b13 Debian:12 [amd64])\n")
    backend = AptBackend(apt_get=str(apt_get), reboot_file=str(tmp_path / "reboot-required"),
                         lock_files=(), proc_locks=str(tmp_path / "locks"))
    _source, events = started(clocked, make_source, updates_backend=backend)
    (process,) = [p for p in clocked.processes if p.executable == str(apt_get)]
    assert process.args == [str(apt_get), "-s", "-q", "-o", "Debug::NoLocking=true", "dist-upgrade"]
    assert process.env["LC_ALL"] == "C"
    assert events[-1]["updates"]["status"] == "updatesavailable"
    assert events[-1]["updates"]["details"].startswith("1 package to upgrade")


def _built(clocked, text):
    config = load_daemon_config(text=text, source_options={"system-state": system_state.options})
    return system_state.build(SourceContext(clocked, config.source_section("system-state"), "/x"))


def test_the_options_build_the_backend(clocked, check, fake, tmp_path):
    with capturedLogs() as logs:
        off = _built(clocked, "[source:system-state]\nupdates = none\n")
    assert off.updates is None
    assert any(e.get("why") == "updates = none" for e in logs)
    source = _built(clocked, f"[source:system-state]\nupdates_command = {check.path} --now\n"
                             f"updates_interval = 120\nzpool_command = {fake.zpool}\n"
                             f"hostname_command = {fake.hostname}\n")
    assert source.updates.backend.argv == [str(check.path), "--now"]
    events = Published()
    source.start(events)
    settle(clocked, source)
    clocked.advance(120)
    clocked.advance(0)
    assert len(check.runs) == 2 and check.runs[0].args == [str(check.path), "--now"]
    source.stop()
    clocked.advance(0)


def test_no_updates_field_when_checks_are_off(clocked, make_source):
    _source, events = started(clocked, make_source, updates_backend=None)
    assert "updates" not in events[0]
    assert events[0]["zpools"]["tank"]["capacity"] == "5%"
