"""The subcommands against a fake daemon: what they send, print and exit with."""

import argparse
import json

from twisted.internet import defer, task

from sysadmd.client import commands
from sysadmd.client.auth import Credentials
from sysadmd.client.errors import ClientError, ConnectionClosed, ErrorReply
from tests.unit.test_client_fakes import FakeLink, FakePeer, Lines, Refuse


def options(**kwargs):
    kwargs.setdefault("json", False)
    return argparse.Namespace(**kwargs)


def setup():
    clock = task.Clock()
    peer = FakePeer(clock)
    return clock, peer, FakeLink(peer), Lines()


def outcome(d):
    box = []
    d.addBoth(box.append)
    return box[0] if box else None


def details(state, logs, codes=None):
    d = {"state": state, "process_id": "j1", "cmd_list": list(logs)}
    d.update({c: t for c, t in logs.items() if t is not None})
    d.update({"return_codes/" + c: str(v) for c, v in (codes or {}).items()})
    return {"state": state, "process_id": "j1", "process_details": d}


def test_run_wait_subscribes_before_running_streams_output_and_returns_the_code():
    clock, peer, link, out = setup()
    peer.handlers[("events", "subscribe")] = lambda args: {"subscribe": args}
    peer.handlers[("rpc", "dispatcher")] = lambda args: {"started": ["j1"]}
    d = commands.run(clock, link, options(job_id="j1", commands=["sh -c 'echo a; exit 3'"], queue=None,
                                          timeout=5, wait=True), out)
    assert [f["name"] for f in peer.sent] == ["subscribe", "dispatcher"]
    assert peer.sent[0]["args"] == ["dispatcher"]
    assert peer.sent[1]["args"] == {"action": "run", "j1": "sh -c 'echo a; exit 3'", "timeout": 5}
    peer.push("dispatcher", {"state": "pending", "process_id": "j1"})
    peer.push("dispatcher", details("running", {"sh -c 'echo a; exit 3'": "a\n"}))
    assert out.stdout == "a\n" and not d.called
    peer.push("dispatcher", details("finished", {"sh -c 'echo a; exit 3'": "a\nb\n"}, {"sh -c 'echo a; exit 3'": 3}))
    assert outcome(d) == 3
    assert out.stdout == "a\nb\n"
    assert out.err == ["sysadm: job j1 finished with return code 3"]


def test_run_sends_several_commands_as_a_list_with_the_queue():
    clock, peer, link, out = setup()
    peer.handlers[("rpc", "dispatcher")] = lambda args: {"started": ["j1"]}
    d = commands.run(clock, link, options(job_id="j1", commands=["a", "b"], queue="pkg_queue", timeout=None,
                                          wait=False), out)
    assert outcome(d) == 0
    assert peer.sent[0]["args"] == {"action": "run", "j1": ["a", "b"], "queue": "pkg_queue"}
    assert out.stdout == "started: j1\n"


def test_run_wait_fails_clearly_when_the_connection_drops():
    clock, peer, link, out = setup()
    peer.handlers[("events", "subscribe")] = lambda args: {"subscribe": args}
    peer.handlers[("rpc", "dispatcher")] = lambda args: {"started": ["j1"]}
    d = commands.run(clock, link, options(job_id="j1", commands=["sleep 9"], queue=None, timeout=None, wait=True), out)
    link.drop("closed by the peer (code 1001)")
    error = outcome(d).value
    assert isinstance(error, ConnectionClosed)
    assert "while job j1 was running (see: sysadm log j1)" in str(error)


def test_run_refused_is_the_daemons_error():
    clock, peer, link, out = setup()
    peer.handlers[("rpc", "dispatcher")] = lambda args: (_ for _ in ()).throw(Refuse(409, "Job 'j1' exists."))
    error = outcome(commands.run(clock, link, options(job_id="j1", commands=["x"], queue=None, timeout=None,
                                                      wait=False), out)).value
    assert isinstance(error, ErrorReply) and error.code == 409


def test_state_prints_the_replayed_event_as_a_table():
    clock, peer, link, out = setup()

    def subscribe(args):
        return {"subscribe": args}

    peer.handlers[("events", "subscribe")] = subscribe
    d = commands.state(clock, link, options(timeout=5), out)
    peer.push("system_state", {"hostname": "nas1", "priority": "3 - Warning", "zpools": {
        "tank": {"health": "ONLINE", "capacity": "85%", "size": "1T", "alloc": "850G", "free": "150G",
                 "priority": "3 - Warning"}}})
    assert outcome(d) == 0
    lines = out.stdout.splitlines()
    assert lines[:2] == ["hostname: nas1", "priority: 3 - Warning"]
    assert lines[-1].split() == ["tank", "ONLINE", "85%", "1T", "850G", "150G", "3", "-", "Warning"]
    assert not clock.getDelayedCalls()


def test_state_times_out_with_a_clear_message():
    clock, peer, link, out = setup()
    peer.handlers[("events", "subscribe")] = lambda args: {"subscribe": args}
    d = commands.state(clock, link, options(timeout=5), out)
    clock.advance(5)
    error = outcome(d).value
    assert isinstance(error, ClientError)
    assert str(error).startswith("no system state from ws://fake:12150 within 5 s")


def test_kill_reports_ids_that_were_not_found():
    clock, peer, link, out = setup()
    peer.handlers[("rpc", "dispatcher")] = lambda args: {"killed": {"jobs": ["a"]}}
    assert outcome(commands.kill(clock, link, options(job_ids=["a", "b"]), out)) == 1
    assert peer.sent[0]["args"] == {"action": "kill", "job_id": ["a", "b"]}
    assert out.stdout == "killed: a\n" and out.err == ["sysadm: no pending or running job: b"]


def test_json_output_is_the_reply():
    clock, peer, link, out = setup()
    reply = {"jobs": {"no_queue": {"x": {"commands": ["true"], "state": "running", "queue_position": "0"}}}}
    peer.handlers[("rpc", "dispatcher")] = lambda args: reply
    assert outcome(commands.jobs(clock, link, options(json=True), out)) == 0
    assert json.loads(out.stdout) == reply


def test_history_passes_the_limit_and_log_the_job_id():
    clock, peer, link, out = setup()
    peer.handlers[("rpc", "dispatcher")] = lambda args: {"history": []} if args["action"] == "history" else {
        "state": "finished", "process_id": "j", "cmd_list": []}
    outcome(commands.history(clock, link, options(limit=3), out))
    outcome(commands.log(clock, link, options(job_id="j"), out))
    assert [f["args"] for f in peer.sent] == [{"action": "history", "limit": 3}, {"action": "log", "job_id": "j"}]


def test_run_command_closes_the_link_even_when_the_command_fails(monkeypatch):
    clock, peer, link, out = setup()
    peer.handlers[("rpc", "auth")] = lambda args: ["tok", 900]
    monkeypatch.setattr(commands, "open_link", lambda reactor, target: defer.succeed(link))

    class Passwords:
        def get(self):
            return defer.succeed("pw")

    def failing(reactor, link_, options_, out_):
        raise ClientError("boom")

    result = outcome(commands.run_command(clock, None, Credentials("a", Passwords()), failing, None, out))
    assert str(result.value) == "boom"
    assert link.close_calls == 1 and [f["name"] for f in peer.sent] == ["auth"]
