"""``sysadm fleet``: its command line, --since WHEN, --hosts globs, settings, the tables it
prints, and how its ordered consumer resumes (against in-memory stand-ins for nats-py)."""

import asyncio
import datetime
import json
import sys
from types import SimpleNamespace

import pytest
from nats.js import api

from sysadmd.client.cli import build_parser
from sysadmd.client.errors import ClientError
from sysadmd.client.fleet import launch as launching
from sysadmd.client.fleet import run as fleet_run
from sysadmd.client.fleet import tables
from sysadmd.client.fleet.arguments import (
    Start,
    host_matches,
    parse_globs,
    parse_when,
    subject_host,
)
from sysadmd.client.fleet.commands import watch_subjects
from sysadmd.client.fleet.connection import (
    NoAnswer,
    Refused,
    StreamMissing,
    api_failure,
    describe_connect_error,
    matching,
    violation_of,
)
from sysadmd.client.fleet.feed import OrderedFeed, consumer_config
from sysadmd.client.fleet.settings import DEFAULT_SERVER, parse_fleet_defaults, settings
from sysadmd.protocol import fleet as wire

NOW = 1_800_000_000.0


def parse(*argv):
    return build_parser().parse_args(["fleet", *argv])


# -- the command line ---------------------------------------------------------------


def test_connection_options_go_before_or_after_the_fleet_command():
    before = parse("--nats", "nats://a:4222", "--nats-user", "ops", "hosts", "--json")
    after = parse("hosts", "--nats", "nats://a:4222", "--nats", "nats://b:4222", "--nats-user", "ops")
    assert before.command == "fleet" and before.fleet_command == "hosts" and before.json
    assert before.nats == ["nats://a:4222"] and before.nats_user == "ops"
    assert after.nats == ["nats://a:4222", "nats://b:4222"] and after.nats_user == "ops"


def test_setup_has_the_documented_defaults():
    options = parse("setup")
    assert (options.max_age, options.max_bytes, options.duplicate_window) == (7 * 86400, 1 << 30, 120)
    options = parse("setup", "--max-age", "3600", "--max-bytes", "1000", "--duplicate-window", "30")
    assert (options.max_age, options.max_bytes, options.duplicate_window) == (3600, 1000, 30)


def test_run_needs_hosts_an_id_and_commands(capsys):
    options = parse("run", "--hosts", "web*,db1", "--queue", "pkg_queue", "--timeout", "60", "up",
                    "pkg update", "pkg upgrade -y")
    assert options.hosts == ["web*", "db1"] and options.job_id == "up"
    assert options.commands == ["pkg update", "pkg upgrade -y"] and options.wait_timeout == 600
    with pytest.raises(SystemExit) as info:
        parse("run", "up", "true")
    assert info.value.code == 2 and "--hosts" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["watch", "bad.source"], ["watch", "--since", "yesterday"], ["setup", "--max-age", "0"],
    ["run", "--hosts", "", "x", "true"], ["run", "--hosts", "a", "--wait-timeout", "-1", "x", "true"],
])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        parse(*argv)
    assert info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_watch_defaults_to_new_events_of_every_source_and_host():
    options = parse("watch")
    assert options.since == Start("new") and options.sources == [] and options.hosts is None
    assert watch_subjects(options) == [wire.EVENTS_SUBJECTS]


def test_watch_filters_on_the_server_when_one_host_is_named():
    assert watch_subjects(parse("watch", "--hosts", "nas1", "dispatcher", "system-state")) == [
        "sysadm.nas1.events.dispatcher", "sysadm.nas1.events.system-state"]
    assert watch_subjects(parse("watch", "--hosts", "nas*")) == ["sysadm.*.events.>"]


# -- WHEN and globs -------------------------------------------------------------------


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1.5h", 5400)])
def test_durations_start_that_long_before_now(text, seconds):
    start = parse_when(text, now=NOW)
    assert start.policy == "time"
    assert start.time == datetime.datetime.fromtimestamp(NOW - seconds, datetime.timezone.utc)


def test_new_all_and_stream_sequences():
    assert parse_when("new") == Start("new") and parse_when("all") == Start("all")
    assert parse_when("seq:42") == Start("seq", seq=42)


def test_iso_times_with_a_zone_or_in_local_time():
    utc = parse_when("2026-12-01T03:00:00Z").time
    assert utc == datetime.datetime(2026, 12, 1, 3, 0, tzinfo=datetime.timezone.utc)
    assert parse_when("2026-12-01T04:00:00+01:00").time == utc
    local = parse_when("2026-12-01 03:00:00").time
    assert local == datetime.datetime(2026, 12, 1, 3, 0).astimezone().astimezone(datetime.timezone.utc)


@pytest.mark.parametrize("text", ["seq:0", "seq:x", "10y", "yesterday", "", "-5m"])
def test_other_whens_are_refused_with_what_is_accepted(text):
    with pytest.raises(ValueError):
        parse_when(text)


def test_globs_match_whole_host_names():
    globs = parse_globs("web*, db1")
    assert globs == ["web*", "db1"]
    assert host_matches("web3", globs) and host_matches("db1", globs)
    assert not host_matches("db10", globs) and not host_matches("xweb", globs)
    assert host_matches("anything", None)
    assert subject_host(["nas1"]) == "nas1" and subject_host(["nas?"]) == "*" and subject_host(None) == "*"
    assert subject_host(["a", "b"]) == "*"


# -- settings -------------------------------------------------------------------------


def test_fleet_section_of_the_defaults_file(tmp_path):
    values = parse_fleet_defaults(
        "[client]\nurl = ws://x\n[fleet]\nnats = tls://a:4222, tls://b:4222\nuser = ops\n"
        "password_file = ~/pw\nca = ~/ca.pem\n", "client.ini")
    assert values["nats"] == ["tls://a:4222", "tls://b:4222"] and values["user"] == "ops"
    assert values["password_file"].endswith("/pw") and not values["password_file"].startswith("~")


@pytest.mark.parametrize("text, message", [
    ("[fleet]\nserver = x\n", "client.ini: [fleet] server: unknown key"),
    ("[nats]\nuser = x\n", "client.ini: unknown section [nats]"),
])
def test_fleet_section_mistakes_name_file_section_and_key(text, message):
    with pytest.raises(ClientError) as info:
        parse_fleet_defaults(text, "client.ini")
    assert str(info.value).startswith(message)


def test_password_from_the_file_given_then_the_environment_then_the_defaults(tmp_path):
    given, default = tmp_path / "given", tmp_path / "default"
    given.write_text("from-file\n")
    default.write_text("from-defaults\n")
    config = tmp_path / "client.ini"
    config.write_text(f"[fleet]\nuser = ops\npassword_file = {default}\n")
    env = {"SYSADM_NATS_PASSWORD": "from-env"}
    assert settings(parse("hosts", "--config", str(config), "--nats-password-file", str(given)), env).password == "from-file"
    assert settings(parse("hosts", "--config", str(config)), env).password == "from-env"
    chosen = settings(parse("hosts", "--config", str(config)), {})
    assert (chosen.password, chosen.user, chosen.servers) == ("from-defaults", "ops", [DEFAULT_SERVER])
    assert settings(parse("hosts", "--config", str(config), "--nats", "nats://n:1"), {}).servers == ["nats://n:1"]


def test_no_user_means_no_password_and_a_password_file_needs_a_user(tmp_path):
    assert settings(parse("hosts"), {"SYSADM_NATS_PASSWORD": "x", "XDG_CONFIG_HOME": str(tmp_path)}).password is None
    with pytest.raises(ClientError, match="--nats-user"):
        settings(parse("hosts", "--nats-password-file", "/nonexistent"), {"XDG_CONFIG_HOME": str(tmp_path)})
    with pytest.raises(ClientError, match="not a NATS URL"):
        settings(parse("hosts", "--nats", "http://x"), {"XDG_CONFIG_HOME": str(tmp_path)})


# -- what is printed ------------------------------------------------------------------


def presence(host, up=True, time_=NOW - 5, since=NOW - 3600, state=None):
    return json.loads(wire.presence(host, f"{host}.example.org", "0.1.0", up, since, time_, 10, state))


def test_hosts_table_is_sorted_and_says_up_since_or_down_since_last_heard():
    state = {"hostname": "b", "priority": "3 - Warning", "zpools": {}}
    machines = [
        tables.machine("web2", presence("web2", state=state), NOW),
        tables.machine("db1", presence("db1", time_=NOW - 100), NOW),  # silent for 10 intervals
        tables.machine("web1", presence("web1", up=False, time_=NOW - 50), NOW),
    ]
    lines = tables.hosts_text(machines).splitlines()
    assert lines[0].split() == ["HOST", "STATUS", "SINCE", "PRIORITY", "HOSTNAME", "VERSION"]
    assert [line.split()[:2] for line in lines[1:]] == [["db1", "down"], ["web1", "down"], ["web2", "up"]]
    assert tables.format_time(NOW - 100) in lines[1] and tables.format_time(NOW - 3600) in lines[3]
    assert "3 - Warning" in lines[3] and "web2.example.org" in lines[3] and "0.1.0" in lines[3]
    assert lines[1].split()[4] == "-"  # no state yet: no priority
    assert "no machine" in tables.hosts_text([])


def test_state_rows_show_pools_with_health_and_capacity():
    state = {"hostname": "nas1", "priority": "9 - Urgent",
             "zpools": {"tank": {"health": "ONLINE", "capacity": "12%"},
                        "backup": {"health": "DEGRADED", "capacity": "92"}}}
    row = tables.state_row("nas1", state, True)
    assert row == ["nas1", "9 - Urgent", "nas1", "backup DEGRADED 92%, tank ONLINE 12%", "up"]
    assert tables.state_row("nas2", None, False)[1:] == ["-", "-", "no system state yet", "down"]
    text = tables.state_text([row])
    assert text.splitlines()[0].split() == ["HOST", "PRIORITY", "HOSTNAME", "POOLS", "STATUS"]


def test_run_table_lists_results_codes_and_seconds_by_host():
    text = tables.run_text({"b": ("finished", [0, 1], 2.25), "a": ("no answer", [], None)})
    lines = text.splitlines()
    assert lines[0].split() == ["HOST", "RESULT", "RETURN", "CODES", "SECONDS"]
    assert lines[1].split() == ["a", "no", "answer", "-", "-"]
    assert lines[2].split() == ["b", "finished", "0", "1", "2.2"]


def test_watch_lines_put_the_host_before_the_usual_event_line():
    frame = {"namespace": "events", "name": "life_preserver", "id": "none", "seq": 3, "epoch": "e",
             "args": {"priority": "6 - Critical", "message": "scrub failed"}}
    line = tables.watch_line("nas1", frame, when=NOW)
    assert line.startswith("nas1 ") and line.endswith("scrub failed")
    assert "life-preserver" in line and "6 - Critical" in line
    gap = {"name": "gap", "args": {"source": "dispatcher", "missed_from": 5, "head": 9, "reason": "expired"}}
    assert tables.watch_line("nas1", gap, when=NOW).endswith("dispatcher: events 5-9 were missed on the machine (expired)")
    assert json.loads(tables.watch_json("nas1", 17, frame)) == {"host": "nas1", "stream_seq": 17, "event": frame}


def test_a_finished_job_gives_its_return_codes_in_command_order():
    details = {"cmd_list": ["a", "b", "c"], "return_codes/a": "0", "return_codes/b": "2"}
    assert tables.finished_outcome(details) == ("finished", [0, 2])
    assert tables.finished_outcome({"cmd_list": ["a"], "return_codes/a": "-15", "killed": "true"}) == (
        "finished, killed", [-15])
    assert tables.finished_outcome({"cmd_list": ["a"]}) == ("finished, no command ran", [])


# -- run ------------------------------------------------------------------------------


def test_the_request_is_the_dispatcher_run_envelope():
    options = parse("run", "--hosts", "*", "--queue", "pkg_queue", "--timeout", "60", "up", "pkg update", "pkg upgrade -y")
    assert fleet_run.request_envelope(options) == {
        "namespace": "rpc", "name": "dispatcher", "id": "fleet-run",
        "args": {"action": "run", "up": ["pkg update", "pkg upgrade -y"], "queue": "pkg_queue", "timeout": 60}}
    single = fleet_run.request_envelope(parse("run", "--hosts", "*", "one", "uptime"))
    assert single["args"] == {"action": "run", "one": "uptime"}


def test_error_replies_and_finished_events():
    error = {"namespace": "error", "name": "error", "id": "fleet-run",
             "args": {"code": 409, "message": "Conflict", "details": "job up is already running"}}
    assert fleet_run.reply_error(json.dumps(error)) == "error 409: job up is already running"
    assert fleet_run.reply_error(json.dumps({"namespace": "rpc", "name": "response", "args": {}})) is None
    assert fleet_run.reply_error(b"nonsense") == "unreadable reply"
    finished = {"name": "dispatcher", "args": {"state": "finished", "process_id": "up",
                                               "process_details": {"cmd_list": ["true"], "return_codes/true": "0"}}}
    assert fleet_run.finished_details(finished, "up") == {"cmd_list": ["true"], "return_codes/true": "0"}
    assert fleet_run.finished_details(finished, "other") is None
    running = {"name": "dispatcher", "args": {"state": "running", "process_id": "up"}}
    assert fleet_run.finished_details(running, "up") is None


def test_success_needs_every_return_code_zero():
    assert fleet_run.succeeded(("finished", [0, 0], 1.0))
    assert not fleet_run.succeeded(("finished", [0, 1], 1.0))
    assert not fleet_run.succeeded(("finished, no command ran", [], 1.0))
    assert not fleet_run.succeeded(("no answer", [], None))


# -- NATS failures as one line --------------------------------------------------------


def test_permission_violations_are_recognised():
    error = Exception('nats: permissions violation for publish to "sysadm.web1.rpc"')
    assert violation_of(error) == ("publish", "sysadm.web1.rpc")
    assert violation_of(Exception("nats: permissions violation for subscription to \"_INBOX.>\"")) == (
        "subscription", "_INBOX.>")
    assert violation_of(Exception("nats: timeout")) is None


def test_violations_are_matched_whatever_case_nats_py_left_them_in():
    # nats-py lowercases the server's error line, subject included.
    assert matching("sysadm.nas2.rpc", ("sysadm.NAS2.rpc", "_INBOX.")) == "sysadm.NAS2.rpc"
    assert matching("$js.api.stream.info.sysadm_events", ("$JS.", "_INBOX.")) == "$JS.API.STREAM.INFO.SYSADM_EVENTS"
    assert matching("$js.api.direct.get.sysadm_events.sysadm.nas1.events.x", ("$JS.",)) == (
        "$JS.API.DIRECT.GET.SYSADM_EVENTS.sysadm.nas1.events.x")
    assert matching("sysadm.nas1.rpc", ("sysadm.nas2.rpc", "$JS.")) is None


def test_connect_and_api_failures_are_described():
    from nats import errors as nats_errors
    from nats.js import errors as js_errors

    assert "authorization violation" in describe_connect_error(Exception("nats: 'Authorization Violation'"))
    assert "connection refused" in describe_connect_error(ConnectionRefusedError(111, "refused"))
    missing = api_failure(js_errors.NotFoundError(code=404, err_code=10059, description="stream not found"), "S")
    assert isinstance(missing, StreamMissing) and str(missing) == "stream S does not exist: run sysadm fleet setup"
    assert isinstance(api_failure(nats_errors.TimeoutError()), NoAnswer)
    assert isinstance(api_failure(nats_errors.NoRespondersError()), NoAnswer)
    refused = Refused("refused by NATS: x")
    assert api_failure(refused) is refused


def test_missing_nats_py_is_one_line_and_exit_1(monkeypatch):
    monkeypatch.setitem(sys.modules, "nats", None)  # import nats -> ImportError
    errors = []
    out = SimpleNamespace(error=errors.append)
    assert launching.launch(parse("hosts"), {}, out) == 1
    assert errors == ["the fleet commands need nats-py: pip install 'sysadmd[fleet]'"]


# -- the ordered consumer -------------------------------------------------------------


def test_consumer_configs_follow_the_start():
    new = consumer_config("s.>", Start("new"), "_INBOX.x")
    assert new.deliver_policy == api.DeliverPolicy.NEW and new.ack_policy == api.AckPolicy.NONE
    assert new.flow_control and new.idle_heartbeat and new.filter_subject == "s.>" and new.deliver_subject == "_INBOX.x"
    assert consumer_config("s", Start("seq", seq=7), "i").opt_start_seq == 7
    moment = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    by_time = consumer_config("s", Start("time", time=moment), "i")
    assert by_time.deliver_policy == api.DeliverPolicy.BY_START_TIME and by_time.opt_start_time == moment
    last = consumer_config("s", Start("last"), "i", flow_control=False)
    assert last.deliver_policy == api.DeliverPolicy.LAST_PER_SUBJECT and not last.flow_control


class FakeSub:
    def __init__(self, cb):
        self.cb, self.closed = cb, False

    async def unsubscribe(self):
        self.closed = True


class FakeNats:
    is_connected = True
    is_closed = False

    def __init__(self):
        self.subs, self.published = [], []

    def new_inbox(self):
        return f"_INBOX.{len(self.subs)}"

    async def subscribe(self, subject, cb):
        self.subs.append(FakeSub(cb))
        return self.subs[-1]

    async def publish(self, subject, data=b""):
        self.published.append(subject)


class FakeJetStream:
    def __init__(self, before_first):
        self.configs, self.deleted, self.before_first = [], [], before_first

    async def add_consumer(self, stream, config):
        self.configs.append(config)
        before = self.before_first if config.opt_start_seq is None else config.opt_start_seq - 1
        return SimpleNamespace(name=f"c{len(self.configs)}", delivered=SimpleNamespace(stream_seq=before))

    async def delete_consumer(self, stream, name):
        self.deleted.append(name)


class FakeConnection:
    def __init__(self, before_first=100):
        self.nc, self.js, self.on_reconnected, self.on_closed = FakeNats(), FakeJetStream(before_first), [], []

    async def api(self, awaitable, stream=None):
        return await awaitable


def message(dseq, sseq, data=b"{}"):
    metadata = SimpleNamespace(sequence=SimpleNamespace(consumer=dseq, stream=sseq))
    return SimpleNamespace(subject="sysadm.a.events.x", data=data, headers=None, reply=None, metadata=metadata)


def heartbeat(last_consumer):
    return SimpleNamespace(data=b"", reply=None, headers={"Status": "100", "Description": "Idle Heartbeat",
                                                            "Nats-Last-Consumer": str(last_consumer)})


def feed_scenario(steps):
    """Run ``steps(connection, feed, seen)`` against a feed of fakes; returns them."""

    async def scenario():
        connection = FakeConnection()
        seen = []
        feed = OrderedFeed(connection, "S", "sysadm.*.events.>", Start("new"), lambda m: seen.append(m.metadata.sequence.stream),
                           heartbeat=60)
        await feed.open()
        try:
            await steps(connection, feed, seen)
        finally:
            await feed.close()
        return connection, feed, seen

    return asyncio.run(scenario())


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_skipped_consumer_sequence_restarts_after_the_last_message_handed_on():
    async def steps(connection, feed, seen):
        cb = connection.nc.subs[0].cb
        await cb(message(1, 101))
        await cb(message(2, 102))
        await cb(message(4, 104))  # 3 never arrived
        await settle()
        assert connection.js.configs[-1].opt_start_seq == 103
        assert connection.js.configs[-1].deliver_policy == api.DeliverPolicy.BY_START_SEQUENCE
        await cb(message(5, 105))  # the old consumer's: ignored
        new = connection.nc.subs[-1].cb
        await new(message(1, 103))
        await new(message(2, 104))

    connection, feed, seen = feed_scenario(steps)
    assert seen == [101, 102, 103, 104] and feed.last == 104
    assert connection.nc.subs[0].closed and "c1" in connection.js.deleted


def test_a_reconnect_before_any_event_resumes_after_the_stream_end_seen_at_the_start():
    # nats-py's ordered consumer would restart from sequence 1 here: the whole stream.
    async def steps(connection, feed, seen):
        for callback in connection.on_reconnected:
            callback()
        await settle()

    connection, feed, seen = feed_scenario(steps)
    assert connection.js.configs[0].deliver_policy == api.DeliverPolicy.NEW
    assert connection.js.configs[1].opt_start_seq == 101 and seen == []


def test_messages_already_handed_on_are_not_handed_on_again():
    async def steps(connection, feed, seen):
        cb = connection.nc.subs[0].cb
        await cb(message(1, 101))
        feed.restart()
        await settle()
        new = connection.nc.subs[-1].cb
        await new(message(1, 100))  # a consumer that started too early (say)
        await new(message(2, 101))
        await new(message(3, 102))

    _, _, seen = feed_scenario(steps)
    assert seen == [101, 102]


def test_heartbeats_that_count_more_than_arrived_restart_and_flow_control_is_answered():
    async def steps(connection, feed, seen):
        cb = connection.nc.subs[0].cb
        await cb(message(1, 101))
        await cb(heartbeat(1))  # all there
        await settle()
        assert len(connection.js.configs) == 1
        await cb(SimpleNamespace(data=b"", reply="$JS.FC.S.c1.x", headers={"Status": "100"}))
        assert connection.nc.published == ["$JS.FC.S.c1.x"]
        await cb(heartbeat(3))  # 2 and 3 were lost
        await settle()
        assert connection.js.configs[-1].opt_start_seq == 102

    feed_scenario(steps)


def test_a_refused_restart_ends_the_feed_with_its_reason():
    async def steps(connection, feed, seen):
        async def refuse(stream, config):
            raise StreamMissing("stream S does not exist: run sysadm fleet setup")

        connection.js.add_consumer = refuse
        feed.restart()
        await settle()
        assert feed.failed.done() and "does not exist" in str(feed.failed.result())

    feed_scenario(steps)


def test_a_connection_that_ends_for_good_ends_the_feed():
    async def steps(connection, feed, seen):
        for callback in connection.on_closed:
            callback()
        assert feed.failed.done() and str(feed.failed.result()) == "lost the connection to NATS"

    feed_scenario(steps)


def test_ctrl_c_ends_a_command_even_one_that_swallows_the_cancellation():
    """Ctrl-C cancels the command (status 130); one that does not end within the grace
    (nats-py waiting on a dead server, say) is ended anyway by exit_now(130)."""
    import os
    import signal

    from sysadmd.client.fleet.launch import interruptible

    released = asyncio.Event()

    async def well_behaved():
        await asyncio.sleep(60)

    async def stubborn():
        while not released.is_set():
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                continue  # swallowed, until the test lets it go
        return "released"

    async def interrupt(command):
        exits = []
        exited = asyncio.Event()

        def exit_now(status):
            exits.append(status)  # stands in for the process's end
            exited.set()

        task = asyncio.ensure_future(interruptible(command(), grace=0.2, exit_now=exit_now))
        await asyncio.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)
        done, _ = await asyncio.wait([task, asyncio.ensure_future(exited.wait())], timeout=5,
                                     return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result(), exits
        released.set()  # let the stubborn one end, so the loop can close
        task.cancel()
        await asyncio.wait([task], timeout=5)
        return "ended by exit_now", exits

    # As in a terminal, whatever the suite inherited (a background job has SIGINT ignored).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert asyncio.run(interrupt(well_behaved)) == (130, [])
        assert asyncio.run(interrupt(stubborn)) == ("ended by exit_now", [130])
    finally:
        signal.signal(signal.SIGINT, previous)


def test_an_ignored_sigint_stays_ignored():
    """A background job of a non-interactive shell inherits SIGINT ignored: so be it."""
    import signal

    from sysadmd.client.fleet.launch import interruptible

    async def quick():
        await asyncio.sleep(0.1)
        return 0

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert asyncio.run(interruptible(quick())) == 0
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
