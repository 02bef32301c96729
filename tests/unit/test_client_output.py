"""``run --follow`` and ``log -f``: a job's output printed live from ``job-output``
events, against fake daemons (no network): streams and order, the exit status, gap
notices, and resuming from the last offset after a dropped connection."""

import io

import pytest
from twisted.internet import defer, task

from sysadmd.client import cli, commands
from sysadmd.client.auth import Credentials
from sysadmd.client.errors import ClientError
from sysadmd.client.output import (
    OutputFollow,
    OutputPrinter,
    dropped_notice,
    last_return_code,
)
from tests.unit.test_client_fakes import FakeLink, FakePeer, Lines, Refuse


class Streams(Lines):
    """Lines that also record the job's stderr, and every write of both streams in the
    order it happened."""

    def __init__(self):
        super().__init__()
        self.raw_err = []
        self.both = []

    def write(self, text):
        super().write(text)
        self.both.append(("out", text))

    def write_err(self, text):
        self.raw_err.append(text)
        self.both.append(("err", text))

    @property
    def stderr(self):
        return "".join(self.raw_err)


class Passwords:
    def get(self):
        return defer.succeed("right")


def chunk(offset, data, stream="stdout", command=0):
    return {"command": command, "stream": stream, "offset": offset, "data": data}


def output(chunks, next_offset, job_id="j1", eof=False, **extra):
    """A job_output event's args; the first chunk's offset is the event's (else next_offset)."""
    args = {"job_id": job_id, "offset": chunks[0]["offset"] if chunks else next_offset,
            "next_offset": next_offset, "chunks": chunks, "eof": eof, "dropped_bytes": 0}
    if eof:
        args["state"] = "finished"
    args.update(extra)
    return args


def gap(missed_from, missed_to, job_id="j1"):
    return {"source": "job-output", "job_id": job_id, "missed_from": missed_from, "missed_to": missed_to,
            "reason": "dropped"}


class Daemon:
    """Makes links to fake daemons that know the jobs in ``jobs`` and run new ones."""

    def __init__(self, clock, jobs=("j1",)):
        self.clock = clock
        self.jobs = set(jobs)
        self.up = True
        self.links = []

    def open_link(self):
        if not self.up:
            return defer.fail(ClientError("cannot connect to ws://fake:12150: connection refused"))
        peer = FakePeer(self.clock)

        def run(args):
            if args.get("action") != "run":
                raise Refuse(400, "unexpected action")
            job_id = next(key for key in args if key not in ("action", "queue", "timeout"))
            if job_id in self.jobs:
                raise Refuse(409, f"Job {job_id!r} exists.")
            self.jobs.add(job_id)
            return {"started": [job_id]}

        def subscribe(args):
            for item in args:
                if not isinstance(item, dict) or item.get("name") != "job-output":
                    raise Refuse(400, f"unexpected subscription {item!r}")
                if item["job_id"] not in self.jobs:
                    raise Refuse(400, f"Unknown job {item['job_id']!r}.")
            return {"subscribe": ["job-output"]}

        peer.handlers.update({
            ("rpc", "auth"): lambda args: ["tok", 900],
            ("rpc", "auth_token"): lambda args: (_ for _ in ()).throw(Refuse(401)),
            ("rpc", "dispatcher"): run,
            ("events", "subscribe"): subscribe,
            ("rpc", "query"): lambda args: {},
        })
        link = FakeLink(peer)
        self.links.append(link)
        return defer.succeed(link)

    @property
    def peer(self):
        """The fake daemon behind the newest link."""
        return self.links[-1].peer


def follow(job_id="j1", offset=0, start=None, jobs=("j1",)):
    clock = task.Clock()
    daemon = Daemon(clock, jobs)
    out = Streams()
    follower = OutputFollow(clock, daemon.open_link, Credentials("admin", Passwords()), job_id, out,
                            offset=offset, start=start, keepalive=60, backoff_cap=8)
    result = []
    follower.run().addBoth(result.append)
    return clock, daemon, out, follower, result


def subscriptions(peer):
    return [frame["args"] for frame in peer.requests("events", "subscribe")]


def printer(offset=0):
    out = Streams()
    return OutputPrinter("j1", out.write, out.write_err, out.error, offset), out


# Printing


def test_stdout_and_stderr_chunks_go_to_their_streams_in_order():
    """Each chunk is written to the stream it came from, as it is, in offset order."""
    p, out = printer()
    p.event(output([chunk(0, "building\n"), chunk(9, "warning: x\n", "stderr"), chunk(20, "done\n")], 25))
    assert out.both == [("out", "building\n"), ("err", "warning: x\n"), ("out", "done\n")]
    assert out.stdout == "building\ndone\n" and out.stderr == "warning: x\n"
    assert out.err == [] and p.position == 25


def test_text_is_written_raw_without_added_newlines():
    """A chunk without a trailing newline stays so; the next chunk continues the line."""
    p, out = printer()
    p.event(output([chunk(0, "50%")], 3))
    p.event(output([chunk(3, "\r100%\n")], 9))
    assert out.stdout == "50%\r100%\n"


def test_events_of_another_job_are_ignored():
    p, out = printer()
    assert p.event(output([chunk(0, "other\n")], 6, job_id="j2", eof=True, return_codes={"0": 1})) is False
    assert out.both == [] and p.position == 0


def test_bytes_sent_twice_are_printed_once():
    """An event repeating bytes already printed (after a resubscription) prints only the
    new part, cut at the right byte even inside a chunk."""
    p, out = printer()
    p.event(output([chunk(0, "héllo\n")], 7))
    p.event(output([chunk(0, "héllo\nwor")], 10))
    p.event(output([chunk(7, "wor"), chunk(10, "ld\n", "stderr")], 13))
    assert out.stdout == "héllo\nwor" and out.stderr == "ld\n" and out.err == []


def test_a_chunk_of_invalid_utf8_ends_where_the_next_one_starts():
    """Replacement characters make the text longer than its bytes: the next chunk's offset
    (or next_offset) says where it ends, so nothing is cut or reported missing."""
    p, out = printer()
    p.event(output([chunk(0, "a\ufffdb"), chunk(3, "c\n", "stderr")], 5))  # b"a\xffb" then b"c\n"
    p.event(output([chunk(5, "\ufffd")], 6))
    p.event(output([chunk(6, "z\n")], 8))
    assert out.stdout == "a\ufffdb\ufffdz\n" and out.stderr == "c\n" and out.err == []
    assert p.position == 8


# Gaps


def test_a_gap_prints_one_notice_and_output_goes_on():
    """Bytes dropped by the daemon are announced on stderr once, with their count."""
    p, out = printer()
    p.event(output([chunk(0, "head\n")], 5))
    p.gap(gap(5, 1029))
    p.event(output([chunk(1029, "tail\n")], 1034))
    assert out.err == ["sysadm: [... 1024 bytes of output dropped by the server ...]"]
    assert out.stdout == "head\ntail\n" and p.position == 1034


def test_a_gap_already_announced_or_of_another_job_says_nothing():
    p, out = printer()
    p.gap(gap(0, 10))
    p.gap(gap(0, 10))
    p.gap(gap(0, 50, job_id="j2"))
    p.gap({"source": "dispatcher", "missed_from": 1, "first_available": 3, "head": 9})
    assert out.err == ["sysadm: " + dropped_notice(10)] and p.position == 10


def test_bytes_skipped_without_a_gap_frame_are_announced_too():
    """Nothing is skipped silently: a chunk starting after the position says how much is
    missing."""
    p, out = printer()
    p.event(output([chunk(0, "a")], 1))
    p.event(output([chunk(2, "c")], 3))
    assert out.stdout == "ac" and out.err == ["sysadm: [... 1 byte of output dropped by the server ...]"]


# The end and the return code


def test_the_return_code_is_the_last_commands():
    assert last_return_code({"0": 0, "1": 2}) == 2
    assert last_return_code({"10": 4, "9": 0, "2": 1}) == 4
    assert last_return_code({}) is None and last_return_code(None) is None


def test_run_follow_submits_then_subscribes_from_zero_prints_and_exits_with_the_code():
    """The job is submitted on the first session after signing in, then its output is
    subscribed from offset 0; output is printed live and the command ends with the
    last command's return code at eof."""
    start_args = {"action": "run", "j2": ["make", "make check"]}
    clock, daemon, out, _, result = follow("j2", start=lambda s: s.call("rpc", "dispatcher", start_args), jobs=())
    peer = daemon.peer
    assert [(f["namespace"], f["name"]) for f in peer.sent] == [
        ("rpc", "auth"), ("rpc", "dispatcher"), ("events", "subscribe")]
    assert peer.sent[1]["args"] == start_args
    assert subscriptions(peer) == [[{"name": "job-output", "job_id": "j2", "offset": 0}]]
    peer.push("job_output", output([chunk(0, "cc -c x.c\n")], 10, job_id="j2"))
    assert out.stdout == "cc -c x.c\n" and result == []
    peer.push("job_output", output([chunk(10, "FAIL: t1\n", "stderr", command=1)], 19, job_id="j2"))
    peer.push("job_output", output([], 19, job_id="j2", eof=True, return_codes={"0": 0, "1": 3}))
    assert result == [3]
    assert out.stderr == "FAIL: t1\n"
    assert out.err == ["sysadm: job j2 finished with return code 3"]
    assert daemon.links[0].close_calls == 1 and clock.getDelayedCalls() == []


def test_a_successful_job_exits_0_quietly():
    _, daemon, out, _, result = follow()
    daemon.peer.push("job_output", output([chunk(0, "ok\n")], 3, eof=True, return_codes={"0": 0}))
    assert result == [0] and out.stdout == "ok\n" and out.err == []


@pytest.mark.parametrize("codes, flags, status, line", [
    ({"0": -9}, {"killed": True}, 137, "sysadm: job j1 finished with return code -9 (killed)"),
    ({"0": -15}, {"timed_out": True}, 143, "sysadm: job j1 finished with return code -15 (timed out)"),
    ({"0": 0, "1": 300}, {}, 255, "sysadm: job j1 finished with return code 300"),
    ({}, {"killed": True}, 1, "sysadm: job j1 ended before any command ran (killed)"),
])
def test_killed_and_timed_out_jobs_exit_like_run_wait(codes, flags, status, line):
    """The exit status maps like ``run --wait``: killed by signal N is 128+N, a code above
    255 is 255, a job that ran nothing is 1; the flags are named on stderr."""
    _, daemon, out, _, result = follow()
    daemon.peer.push("job_output", output([], 0, eof=True, return_codes=codes, **flags))
    assert result == [status] and out.err == [line]


def test_events_after_the_end_are_ignored():
    _, daemon, out, follower, result = follow()
    peer = daemon.peer
    peer.push("job_output", output([chunk(0, "a")], 1, eof=True, return_codes={"0": 0}))
    peer.push("job_output", output([chunk(1, "b")], 2))
    assert result == [0] and out.stdout == "a"


def test_the_end_arriving_with_the_subscription_ends_at_once():
    """A finished job's whole output can come while the subscribe reply is handled: the
    command still ends (and closes its link) instead of waiting for ever."""
    clock = task.Clock()
    daemon = Daemon(clock)
    out = Streams()
    original = daemon.open_link

    def open_link():
        d = original()
        peer = daemon.peer
        subscribe = peer.handlers[("events", "subscribe")]

        def answer_then_end(args):
            reply = subscribe(args)
            # Before the reply is delivered: the same turn, as if in one TCP read.
            clock.callLater(0, peer.push, "job_output", output([chunk(0, "x\n")], 2, eof=True, return_codes={"0": 0}))
            return reply

        peer.handlers[("events", "subscribe")] = answer_then_end
        return d

    follower = OutputFollow(clock, open_link, Credentials("admin", Passwords()), "j1", out)
    result = []
    follower.run().addBoth(result.append)
    clock.advance(0)
    assert result == [0] and out.stdout == "x\n" and daemon.links[0].close_calls == 1


# log -f and offsets


def test_log_follow_subscribes_from_the_offset_given():
    _, daemon, out, _, _ = follow(offset=1000)
    assert subscriptions(daemon.peer) == [[{"name": "job-output", "job_id": "j1", "offset": 1000}]]
    daemon.peer.push("job_output", output([chunk(1000, "from here\n")], 1010))
    assert out.stdout == "from here\n" and out.err == []


def test_a_job_that_is_not_known_is_one_error_line():
    _, daemon, out, _, result = follow("nope")
    error = result[0].value
    assert isinstance(error, ClientError)
    assert str(error) == "cannot follow job nope: Unknown job 'nope'."
    assert daemon.links[0].close_calls == 1


def test_a_refused_run_is_the_daemons_error_and_nothing_is_followed():
    start = lambda s: s.call("rpc", "dispatcher", {"action": "run", "j1": "true"})  # noqa: E731
    _, daemon, _, _, result = follow(start=start)
    assert "409" in str(result[0].value) and "exists" in str(result[0].value)
    assert subscriptions(daemon.peer) == []


# Dropped connections


def test_a_dropped_connection_resumes_from_next_offset_and_prints_every_byte_once():
    """After a drop the follower reconnects (1 s later), signs in, subscribes from the
    last next_offset (the job is not submitted again), and bytes sent again are not
    printed twice."""
    start_args = {"action": "run", "j2": "make"}
    clock, daemon, out, _, result = follow("j2", start=lambda s: s.call("rpc", "dispatcher", start_args), jobs=())
    first = daemon.peer
    first.push("job_output", output([chunk(0, "one\n"), chunk(4, "err1\n", "stderr")], 9, job_id="j2"))
    daemon.links[0].drop()
    assert out.err == ["sysadm: connection to ws://fake:12150 lost (the connection was dropped); reconnecting in 1 s"]
    clock.advance(1)
    second = daemon.peer
    assert second is not first
    assert [(f["namespace"], f["name"]) for f in second.sent] == [
        ("rpc", "auth_token"), ("rpc", "auth"), ("events", "subscribe")]  # the fake refuses cached tokens
    assert subscriptions(second) == [[{"name": "job-output", "job_id": "j2", "offset": 9}]]
    assert out.err[-1] == "sysadm: reconnected to ws://fake:12150; following job j2 from byte 9"
    # A daemon may send from a little earlier (say, a chunk start): the overlap is skipped.
    second.push("job_output", output([chunk(4, "err1\nerr2\n", "stderr"), chunk(14, "two\n")], 18, job_id="j2"))
    second.push("job_output", output([], 18, job_id="j2", eof=True, return_codes={"0": 0}))
    assert result == [0]
    assert out.both == [("out", "one\n"), ("err", "err1\n"), ("err", "err2\n"), ("out", "two\n")]


def test_reconnecting_backs_off_while_the_daemon_is_down_and_resumes_after_the_last_byte():
    clock, daemon, out, _, result = follow()
    daemon.peer.push("job_output", output([chunk(0, "abc")], 3))
    daemon.up = False
    daemon.links[0].drop()
    clock.advance(1)
    assert out.err[-1] == ("sysadm: reconnecting failed: cannot connect to ws://fake:12150: connection refused; "
                           "retrying in 2 s")
    daemon.up = True
    clock.advance(2)
    assert subscriptions(daemon.peer) == [[{"name": "job-output", "job_id": "j1", "offset": 3}]]
    daemon.peer.push("job_output", output([chunk(3, "def")], 6, eof=True, return_codes={"0": 0}))
    assert result == [0] and out.stdout == "abcdef"


def test_a_gap_after_resuming_is_announced_once():
    """The daemon dropped bytes while the client was away: one notice, then the rest."""
    clock, daemon, out, _, result = follow()
    daemon.peer.push("job_output", output([chunk(0, "a\n")], 2))
    daemon.links[0].drop()
    clock.advance(1)
    daemon.peer.push("gap", gap(2, 502))
    daemon.peer.push("job_output", output([chunk(502, "z\n")], 504, eof=True, return_codes={"0": 0}))
    assert result == [0] and out.stdout == "a\nz\n"
    assert out.err[-1] == "sysadm: [... 500 bytes of output dropped by the server ...]"


def test_a_job_gone_after_a_reconnect_ends_the_command():
    """A new daemon that no longer knows the job: no point retrying."""
    clock, daemon, out, _, result = follow()
    daemon.jobs.clear()
    daemon.links[0].drop()
    clock.advance(1)
    assert "cannot follow job j1: Unknown job 'j1'." in str(result[0].value)
    assert clock.getDelayedCalls() == []


def test_an_ended_session_signs_in_and_resubscribes_from_next_offset():
    clock, daemon, out, _, result = follow()
    peer = daemon.peer
    peer.push("job_output", output([chunk(0, "12345")], 5))
    peer.session.text_received('{"namespace":"error","name":"error","id":null,'
                               '"args":{"code":401,"message":"Unauthorized","details":"Your session expired."}}')
    assert subscriptions(peer)[-1] == [{"name": "job-output", "job_id": "j1", "offset": 5}]
    peer.push("job_output", output([chunk(0, "123456")], 6, eof=True, return_codes={"0": 0}))
    assert result == [0] and out.stdout == "123456"


def test_keepalive_pings_while_a_quiet_job_runs():
    clock, daemon, _, follower, result = follow()
    clock.advance(60)
    assert len(daemon.peer.requests("rpc", "query")) == 1
    follower.stop()
    assert result == [0] and clock.getDelayedCalls() == []


# The command line


def test_the_options_parse():
    parser = cli.build_parser()
    options = parser.parse_args(["run", "j1", "sh -c 'echo a'", "--follow"])
    assert options.follow and not options.wait and cli.follows_output(options)
    options = parser.parse_args(["log", "-f", "j1", "--offset", "5"])
    assert options.follow and options.offset == 5 and cli.follows_output(options)
    options = parser.parse_args(["log", "j1"])
    assert not options.follow and options.offset is None and not cli.follows_output(options)


@pytest.mark.parametrize("argv", [["run", "j1", "x", "--wait", "--follow"], ["log", "-f", "j1", "--offset", "-1"]])
def test_conflicting_or_bad_options_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.build_parser().parse_args(argv)
    assert info.value.code == 2


@pytest.mark.parametrize("argv, message", [
    (["log", "j1", "--offset", "5"], "sysadm: log: --offset goes with -f"),
    (["log", "-f", "j1", "--json"], "sysadm: log: -f prints the output as it is; --json does not go with it"),
])
def test_offset_without_follow_is_a_usage_error(argv, message):
    out, result = Lines(), []
    cli.run(None, cli.build_parser().parse_args(argv), out).addBoth(result.append)
    assert result == [2] and out.err == [message]


class Reactor(task.Clock):
    """A clock that takes shutdown triggers (cli.run registers one)."""

    def __init__(self):
        super().__init__()
        self.triggers = []

    def addSystemEventTrigger(self, phase, event, f, *args):
        self.triggers.append((phase, event, f))


def test_cli_log_follow_runs_the_follow_with_the_offset(monkeypatch, tmp_path):
    """``sysadm log -f j1 --offset 2`` signs in, follows from byte 2 and exits with the
    job's code; Ctrl-C (reactor shutdown) would stop the follow."""
    reactor = Reactor()
    daemon = Daemon(reactor)
    monkeypatch.setattr(commands, "open_link", lambda r, target: daemon.open_link())
    out, result = Streams(), []
    options = cli.build_parser().parse_args(["--url", "ws://fake:12150", "--user", "admin",
                                             "log", "-f", "j1", "--offset", "2"])
    environ = {"XDG_CONFIG_HOME": str(tmp_path), "SYSADM_PASSWORD": "right"}
    cli.run(reactor, options, out, environ).addBoth(result.append)
    assert subscriptions(daemon.peer) == [[{"name": "job-output", "job_id": "j1", "offset": 2}]]
    assert [(phase, event) for phase, event, _ in reactor.triggers] == [("before", "shutdown")]
    daemon.peer.push("job_output", output([chunk(2, "llo\n")], 6, eof=True, return_codes={"0": 4}))
    assert result == [4] and out.stdout == "llo\n"


def test_cli_run_follow_submits_the_job_with_its_options(monkeypatch, tmp_path):
    reactor = Reactor()
    daemon = Daemon(reactor, jobs=())
    monkeypatch.setattr(commands, "open_link", lambda r, target: daemon.open_link())
    out, result = Streams(), []
    options = cli.build_parser().parse_args(["--url", "ws://fake:12150", "--user", "admin", "run", "j9", "a", "b",
                                             "--queue", "q", "--timeout", "30", "--follow"])
    environ = {"XDG_CONFIG_HOME": str(tmp_path), "SYSADM_PASSWORD": "right"}
    cli.run(reactor, options, out, environ).addBoth(result.append)
    assert daemon.peer.requests("rpc", "dispatcher")[0]["args"] == {
        "action": "run", "j9": ["a", "b"], "queue": "q", "timeout": 30}
    assert subscriptions(daemon.peer) == [[{"name": "job-output", "job_id": "j9", "offset": 0}]]
    daemon.peer.push("job_output", output([], 0, job_id="j9", eof=True, return_codes={"0": 0, "1": 0}))
    assert result == [0]
    assert out.stdout == ""  # no "started:" line: stdout is the job's


def test_output_write_err_writes_raw_text_after_flushing_stdout():
    class Recording(io.StringIO):
        def __init__(self, name, log):
            super().__init__()
            self.name, self.log = name, log

        def flush(self):
            self.log.append(("flush", self.name))

    log = []
    stdout, stderr = Recording("out", log), Recording("err", log)
    out = cli.Output(stdout, stderr, colour=False)
    out.write("a")
    out.write_err("b")
    assert stdout.getvalue() == "a" and stderr.getvalue() == "b"
    assert log == [("flush", "out"), ("flush", "out"), ("flush", "err")]
