"""RequestServer and the [fleet] options in memory: who may ask, as whom it is asked, and
what comes back (the real NATS and daemon meet in tests/integration/test_fleet.py)."""

import json

import pytest
from twisted.internet import defer

from sysadmd.client.errors import CallTimeout, ConnectionClosed, ErrorReply
from sysadmd.config import ConfigErrors
from sysadmd.fleet import options
from sysadmd.fleet.daemonlink import FleetSignInRefused
from sysadmd.fleet.requests import RequestServer
from sysadmd.protocol import fleet as wire

USERS = {"ops": ("alice", "full"), "viewer": ("bob", "limited")}


def info(user, account="SYSADM"):
    return {wire.REQUEST_INFO: json.dumps({"acc": account, "user": user, "kind": "Client"})}


def request(namespace="rpc", name="dispatcher", args=None, request_id="r1"):
    return json.dumps({"namespace": namespace, "name": name, "id": request_id,
                       "args": {"action": "list"} if args is None else args}).encode()


class Session:
    def __init__(self, outcomes):
        self.outcomes = list(outcomes)
        self.calls = []

    def call(self, namespace, name, args=None):
        self.calls.append((namespace, name, args))
        outcome = self.outcomes.pop(0)
        return defer.fail(outcome) if isinstance(outcome, Exception) else defer.succeed(outcome)


class Link:
    def __init__(self, session):
        self.session = session


class Sessions:
    """Hands out links per (user, access), each with the outcomes given for that user."""

    def __init__(self, **outcomes):
        self.outcomes = outcomes
        self.asked = []

    def get(self, user, access):
        self.asked.append((user, access))
        outcome = self.outcomes[user]
        if isinstance(outcome, Exception):
            return defer.fail(outcome)
        return defer.succeed(Link(outcome.pop(0) if isinstance(outcome, list) else outcome))


def answer(server, headers, data):
    result = []
    server.answer(headers, data).addCallback(result.append)
    assert result, "answer() must not wait in these tests"
    return result[0]


def test_a_mapped_user_is_answered_by_the_daemon_as_the_local_user():
    session = Session([{"jobs": []}])
    sessions = Sessions(alice=session)
    server = RequestServer("m1", None, sessions, USERS)
    reply = answer(server, info("ops"), request())
    assert reply == {"namespace": "rpc", "name": "response", "id": "r1", "args": {"jobs": []}}
    assert sessions.asked == [("alice", "full")]
    assert session.calls == [("rpc", "dispatcher", {"action": "list"})]


@pytest.mark.parametrize("headers, details", [
    (info("mallory"), "NATS user 'mallory' may not use m1."),
    ({}, "No sender identity: requests come through the fleet account's service import."),
    ({wire.REQUEST_INFO: "not json"}, "No sender identity: requests come through the fleet account's service import."),
])
def test_requests_without_a_mapped_server_asserted_user_are_refused(headers, details):
    sessions = Sessions()
    server = RequestServer("m1", None, sessions, USERS)
    reply = answer(server, headers, request())
    assert reply["namespace"] == "error" and reply["id"] == "r1"
    assert reply["args"]["code"] == 403 and reply["args"]["details"] == details
    assert sessions.asked == [] and server.refused == 1


@pytest.mark.parametrize("namespace, name", [("rpc", "auth"), ("rpc", "auth_fleet"), ("events", "subscribe")])
def test_sign_in_and_event_calls_are_not_forwarded(namespace, name):
    sessions = Sessions()
    reply = answer(RequestServer("m1", None, sessions, USERS), info("ops"), request(namespace, name, {}))
    assert reply["args"]["code"] == 400 and sessions.asked == []


def test_a_malformed_request_gets_400():
    reply = answer(RequestServer("m1", None, Sessions(), USERS), info("ops"), b"{not json")
    assert reply["args"]["code"] == 400 and reply["id"] is None


def test_the_daemons_error_comes_back_as_it_gave_it():
    denied = ErrorReply("rpc/dispatcher", 403, "Forbidden", "Full access is needed.")
    server = RequestServer("m1", None, Sessions(bob=Session([denied])), USERS)
    reply = answer(server, info("viewer"), request(args={"action": "run"}))
    assert reply["args"] == {"code": 403, "message": "Forbidden", "details": "Full access is needed."}


def test_failures_to_reach_the_daemon_are_named():
    refused = answer(RequestServer("m1", None, Sessions(alice=FleetSignInRefused("no")), USERS),
                     info("ops"), request())
    assert refused["args"]["code"] == 403 and "refused local user 'alice'" in refused["args"]["details"]
    slow = answer(RequestServer("m1", None, Sessions(alice=Session([CallTimeout("late")])), USERS),
                  info("ops"), request())
    assert slow["args"]["code"] == 503 and "did not answer in time" in slow["args"]["details"]


def test_a_session_that_closed_meanwhile_is_opened_again_once():
    gone = Session([ConnectionClosed("lost")])
    fresh = Session([{"ok": True}])
    sessions = Sessions(alice=[gone, fresh])
    reply = answer(RequestServer("m1", None, sessions, USERS), info("ops"), request())
    assert reply["args"] == {"ok": True} and len(sessions.asked) == 2


def test_requests_beyond_the_bound_get_429():
    pending = defer.Deferred()

    class Slow:
        def call(self, *args):
            return pending

    sessions = Sessions(alice=Slow())
    server = RequestServer("m1", None, sessions, USERS, max_inflight=1)
    first = []
    server.answer(info("ops"), request(request_id="a")).addCallback(first.append)
    reply = answer(server, info("ops"), request(request_id="b"))
    assert reply["args"]["code"] == 429 and reply["id"] == "b"
    pending.callback({"done": 1})
    assert first[0]["args"] == {"done": 1}


def test_fleet_options_map_users_and_name_the_key_of_a_mistake(tmp_path):
    config = options.load(text="[fleet]\nhost = nas1\nusers = ops=alice:full viewer=bob:limited\n")
    assert config["fleet"]["users"] == USERS and config["fleet"]["host"] == "nas1"
    for line, key in [("users = ops=alice", "users"), ("host = nas1.example.com", "host"),
                      ("servers = http://x", "servers"), ("users = a=b:full a=c:limited", "users")]:
        with pytest.raises(ConfigErrors) as caught:
            options.load(text=f"[fleet]\n{line}\n")
        assert f"[fleet] {key}:" in str(caught.value)
