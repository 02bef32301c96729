"""rpc/dispatcher, the dispatcher event source plugin, and the [dispatcher] configuration."""

import pytest
from twisted.internet import defer
from twisted.logger import capturedLogs, formatEvent
from zope.interface.verify import verifyObject

from sysadmd.config import ConfigErrors
from sysadmd.dispatcher.api import DispatcherCall
from sysadmd.dispatcher.core import Dispatcher
from sysadmd.dispatcher.database import SyncWorker
from sysadmd.dispatcher.job import CommandLog
from sysadmd.dispatcher.queue import parse_queues
from sysadmd.dispatcher.runner import DEFAULT_PATH, build_environment
from sysadmd.dispatcher.service import DispatcherService, build_dispatcher, settings_from_config
from sysadmd.dispatcher.store import Store
from sysadmd.events.context import SourceContext
from sysadmd.interfaces import IEventSnapshot, IEventSource, IEventSourceFactory
from sysadmd.plugins.dispatcher_source import DispatcherSource, dispatcher_source
from sysadmd.protocol.envelope import RequestError
from sysadmd.taps.discovery import discover_sources
from sysadmd.taps.sections import load_daemon_config
from tests.unit.dispatcher_fakes import Caller, FakeProcessReactor, make_dispatcher, result_of


def call(dispatcher, args):
    """Run the handler; returns the result or the RequestError code."""
    try:
        return result_of(defer.maybeDeferred(DispatcherCall(dispatcher), Caller(), args))
    except RequestError as e:
        return e.code


@pytest.fixture
def running(tmp_path):
    """A started dispatcher: (reactor, dispatcher, events)."""
    return make_dispatcher(tmp_path)


def test_run_starts_jobs_and_reports_their_ids(running):
    """run queues every job of the request and answers with their ids; list shows them."""
    reactor, dispatcher, events = running
    reply = call(dispatcher, {"action": "run", "a": "echo a", "b": ["true", "echo b"], "queue": "pkg_queue"})
    assert reply == {"started": ["a", "b"]}
    listing = call(dispatcher, {"action": "list"})["jobs"]
    assert listing["pkg_queue"]["a"] == {"commands": ["echo a"], "state": "running", "queue_position": "0"}
    assert listing["pkg_queue"]["b"] == {"commands": ["true", "echo b"], "state": "pending", "queue_position": "1"}
    assert listing["no_queue"] == {}


def test_run_timeout_applies(running):
    """A run request's timeout stops the job when it expires."""
    reactor, dispatcher, events = running
    call(dispatcher, {"action": "run", "a": "sleep 60", "timeout": 2})
    reactor.advance(2)
    assert reactor.processes[0].signals == ["TERM"]


@pytest.mark.parametrize(
    "args",
    [
        {"action": "run"},
        {"action": "run", "a": ""},
        {"action": "run", "a": []},
        {"action": "run", "a": 5},
        {"action": "run", "a": ["true", None]},
        {"action": "run", "a": "true", "queue": "nope"},
        {"action": "run", "a": "true", "queue": 3},
        {"action": "run", "a": "true", "timeout": "5"},
        {"action": "run", "a": "true", "timeout": -1},
        {"action": "run", "a": "true", "b": "   "},
        {"action": 5},
        {},
        ["action", "run"],
        {"action": "kill"},
        {"action": "kill", "job_id": []},
        {"action": "kill", "job_id": [1]},
        {"action": "log"},
        {"action": "log", "job_id": 3},
        {"action": "history", "limit": 0},
        {"action": "history", "limit": "5"},
        {"action": "history", "limit": True},
    ],
)
def test_bad_requests_get_400_and_start_nothing(running, args):
    """Bad types, empty commands and unknown queues get 400; nothing starts."""
    reactor, dispatcher, events = running
    assert call(dispatcher, args) == 400
    assert reactor.processes == [] and events == []


def test_live_id_gets_409_and_nothing_starts(running):
    """An id that is pending or running gets 409 and no job of that request starts."""
    reactor, dispatcher, events = running
    call(dispatcher, {"action": "run", "a": "sleep 60"})
    assert call(dispatcher, {"action": "run", "b": "true", "a": "true"}) == 409
    assert len(reactor.processes) == 1
    assert "b" not in call(dispatcher, {"action": "list"})["jobs"]["no_queue"]


def test_unknown_action_and_unknown_log_are_404(running):
    """An unknown action, or log of an unknown job, is 404."""
    reactor, dispatcher, events = running
    assert call(dispatcher, {"action": "frobnicate"}) == 404
    assert call(dispatcher, {"action": "log", "job_id": "nope"}) == 404


def test_kill_log_and_history(running):
    """kill reports the ids found; log gives the full details; history is newest first without logs."""
    reactor, dispatcher, events = running
    call(dispatcher, {"action": "run", "a": "sleep 60", "b": "echo b", "queue": "pkg_queue"})
    assert call(dispatcher, {"action": "kill", "job_id": ["b", "zzz"]}) == {"killed": {"jobs": ["b"]}}
    assert call(dispatcher, {"action": "kill", "job_id": "a"}) == {"killed": {"jobs": ["a"]}}
    reactor.processes[0].write(b"bye\n")
    reactor.advance(1)
    reactor.processes[0].exit(signal=15)
    log = call(dispatcher, {"action": "log", "job_id": "a"})
    assert log["sleep 60"] == "bye\n" and log["return_codes/sleep 60"] == "-15" and log["killed"] == "true"
    history = call(dispatcher, {"action": "history", "limit": 1})["history"]
    assert [h["process_id"] for h in history] == ["a"]
    assert "sleep 60" not in history[0] and history[0]["queue"] == "pkg_queue"


def test_requests_wait_for_recovery(tmp_path):
    """Requests that arrive before the last run's jobs are read back are answered after."""
    reactor, first, _ = make_dispatcher(tmp_path)
    first.submit("a", "sleep 60", queue="pkg_queue")
    first.submit("b", "true", queue="pkg_queue")
    path = str(tmp_path / "dispatcher.sqlite")
    later = Dispatcher(FakeProcessReactor(), Store(lambda: SyncWorker(path), 1000), first.settings)
    answer = defer.maybeDeferred(DispatcherCall(later), None, {"action": "list"})
    assert not answer.called
    later.start()
    assert result_of(answer)["jobs"]["pkg_queue"]["b"]["state"] == "running"


def test_event_source_provides_the_interfaces_and_forwards_events(tmp_path):
    """The built-in dispatcher source is discovered, provides both interfaces and
    publishes the dispatcher's events while started."""
    reactor, dispatcher, _ = make_dispatcher(tmp_path)
    assert discover_sources()["dispatcher"] is dispatcher_source
    verifyObject(IEventSourceFactory, dispatcher_source)
    assert dispatcher_source.options == {}
    context = SourceContext(
        reactor=reactor, config={}, state_dir=str(tmp_path), services={"dispatcher": dispatcher}
    )
    source = dispatcher_source.build(context)
    verifyObject(IEventSource, source)
    assert (source.name, source.frame_name, source.replay_last) == ("dispatcher", "dispatcher", False)
    published = []
    result_of(source.start(published.append))
    dispatcher.submit("j", "true")
    assert published[0] == {"state": "pending", "process_id": "j"}
    result_of(source.stop())
    reactor.processes[0].exit(0)
    assert len(published) == 2


def test_event_source_snapshot_lists_the_live_jobs(tmp_path):
    """The dispatcher source provides IEventSnapshot: its snapshot is one event per live
    job in submission order (one running, one waiting in a queue of one), and empty once
    they finished."""
    reactor, dispatcher, _ = make_dispatcher(tmp_path, queues="main:1")
    context = SourceContext(reactor=reactor, config={}, state_dir=str(tmp_path), services={"dispatcher": dispatcher})
    source = dispatcher_source.build(context)
    verifyObject(IEventSnapshot, source)
    assert source.snapshot() == []
    dispatcher.submit("first", "true", queue="main")
    dispatcher.submit("second", "true", queue="main")
    assert [(e["process_id"], e["state"]) for e in source.snapshot()] == [("first", "running"), ("second", "pending")]
    reactor.processes[0].exit(0)
    assert [(e["process_id"], e["state"]) for e in source.snapshot()] == [("second", "running")]
    reactor.processes[1].exit(0)
    assert source.snapshot() == []


def test_event_source_needs_the_dispatcher(tmp_path):
    """Without context.services['dispatcher'] the source cannot be built."""
    context = SourceContext(reactor=None, config={}, state_dir=str(tmp_path))
    with pytest.raises(LookupError):
        dispatcher_source.build(context)
    context = SourceContext(
        reactor=None, config={}, state_dir=str(tmp_path), services={"dispatcher": object()}
    )
    assert isinstance(dispatcher_source.build(context), DispatcherSource)


def test_dispatcher_defaults():
    """The documented defaults of [dispatcher]."""
    section = load_daemon_config(text="")["dispatcher"]
    assert section == {
        "queues": {"no_queue": 0, "pkg_queue": 1, "iocage_queue": 1},
        "max_processes": 64,
        "default_timeout": 0.0,
        "kill_grace": 5.0,
        "update_interval": 1.0,
        "event_log_bytes": 65536,
        "store_log_bytes": 10485760,
        "history_days": 30.0,
        "max_output_bytes": 64 * 1024 * 1024,
        "output_batch_bytes": 16384,
        "output_batch_ms": 100.0,
        "env_passthrough": [],
        "cwd": "/",
    }


@pytest.mark.parametrize(
    "spec,problem",
    [
        ("no_queue", "NAME:MAX_RUNNING"),
        ("a:x", "not a whole number"),
        ("a:-1", "negative"),
        ("a:1 a:2", "twice"),
        ("", "at least one"),
        ("bad/name:1", "NAME:MAX_RUNNING"),
    ],
)
def test_bad_queue_specs(spec, problem):
    """Malformed [dispatcher] queues values are refused with a reason."""
    with pytest.raises(ValueError, match=problem):
        parse_queues(spec)


def test_config_errors_are_reported_together():
    """A bad queue spec is reported with the file, section and key, beside other errors."""
    with pytest.raises(ConfigErrors) as info:
        load_daemon_config(
            text="[dispatcher]\nqueues = pkg\nkill_grace = soon\nmax_processes = 0\n", source="x.ini"
        )
    text = str(info.value)
    assert "x.ini: [dispatcher] queues:" in text
    assert "x.ini: [dispatcher] kill_grace:" in text
    assert "x.ini: [dispatcher] max_processes:" in text


def test_build_dispatcher_checks_cwd_and_database(tmp_path):
    """A missing cwd and an unusable database become configuration errors."""
    config = load_daemon_config(
        text=f"[server]\nstate_dir = {tmp_path}\n[dispatcher]\ncwd = {tmp_path}/missing\n", source="x.ini"
    )
    errors = []
    service = build_dispatcher(None, config, errors)
    assert isinstance(service, DispatcherService)
    assert [str(e) for e in errors] == [f"x.ini: [dispatcher] cwd: {tmp_path}/missing is not a directory"]
    (tmp_path / "dispatcher.sqlite").write_bytes(b"garbage" * 1000)
    errors = []
    build_dispatcher(None, config, errors)
    assert any(e.section == "server" and "dispatcher database" in e.message for e in errors)


def test_environment_is_minimal_plus_passthrough():
    """Commands get PATH, LANG, HOME and only the passthrough names, never the whole environment."""
    environ = {"PATH": "/evil", "LANG": "de_DE.UTF-8", "HOME": "/home/x", "SECRET": "s", "HTTP_PROXY": "p"}
    assert build_environment([], environ) == {"PATH": DEFAULT_PATH, "LANG": "de_DE.UTF-8", "HOME": "/home/x"}
    env = build_environment(["HTTP_PROXY", "MISSING"], environ)
    assert env["HTTP_PROXY"] == "p" and "SECRET" not in env and "MISSING" not in env
    config = load_daemon_config(text="[dispatcher]\nenv_passthrough = HTTP_PROXY\ncwd = /tmp\n")
    settings = settings_from_config(config, environ)
    assert settings.env["HTTP_PROXY"] == "p" and settings.cwd == "/tmp"


def test_command_log_caps_on_character_boundaries():
    """Caps never split a UTF-8 character, and the marker counts every byte left out."""
    log = CommandLog(5)
    log.feed("aé✓".encode("utf-8"))  # 1 + 2 + 3 bytes: cut must not split a character
    assert log.body() == "é✓" and log.dropped == 1
    assert log.text() == "[... 1 bytes left out ...]\né✓"
    assert log.text(3) == "[... 3 bytes left out ...]\n✓"
    assert log.text(100) == log.text()


def test_run_and_kill_requests_are_logged_with_who_and_which_jobs(running):
    """Each run or kill request leaves one audit line naming the user, the peer and the
    jobs (ten by name, the rest counted); a request that starts nothing leaves none."""
    reactor, dispatcher, events = running
    jobs = {f"j{i:02d}": "true" for i in range(12)}
    with capturedLogs() as captured:
        call(dispatcher, dict(jobs, action="run", queue="pkg_queue"))
        call(dispatcher, {"action": "run", "j00": "true"})
        call(dispatcher, {"action": "kill", "job_id": ["j11", "nope"]})
    lines = [formatEvent(e) for e in captured if e.get("log_namespace") == "sysadmd.dispatcher.api"]
    assert lines == [
        "admin from 192.0.2.7 queued 12 job(s) in pkg_queue: "
        "j00, j01, j02, j03, j04, j05, j06, j07, j08, j09 and 2 more",
        "admin from 192.0.2.7 killed 1 job(s): j11",
    ]
