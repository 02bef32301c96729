"""The relay framing and the link through a bridge, against a fake bridge connection."""

import json

import pytest
from twisted.internet import defer, task

from sysadmd.client.bridge import BridgeLink, unwrap, wrap
from sysadmd.client.errors import ClientError, ConnectionClosed


def test_wrap_prefixes_the_destination_line():
    payload = '{"namespace":"rpc","name":"identify","id":"1","args":{}}'
    assert wrap("srv-1", payload) == "srv-1\n" + payload
    with pytest.raises(ValueError):
        wrap("bad\nid", payload)


def test_unwrap_splits_relayed_frames_and_leaves_bridge_frames_whole():
    payload = '{"a": "line1\\nline2"}\n'
    assert unwrap("srv-1\n" + payload) == ("srv-1", payload)
    assert unwrap(wrap("x", payload)) == ("x", payload)
    direct = '{"namespace":"events","name":"bridge","id":"","args":{"available_connections":[]}}'
    assert unwrap(direct) == (None, direct)
    assert unwrap(' \n{"multi": "line"}') == (None, ' \n{"multi": "line"}')
    assert unwrap("no newline") == (None, "no newline")


class FakeBridgeConnection:
    url = "ws://bridge:12149"

    def __init__(self):
        self.sent = []
        self.receiver = None
        self.closed = defer.Deferred()

    def send_text(self, text):
        self.sent.append(text)

    def close(self):
        if not self.closed.called:
            self.closed.callback("closed by us")
        return defer.succeed(None)

    def from_bridge(self, frame):
        self.receiver(json.dumps(frame))

    def from_peer(self, sender, frame):
        self.receiver(wrap(sender, json.dumps(frame)))

    def last(self):
        return unwrap(self.sent[-1])


SERVER = "SHA256:" + "s" * 43
OTHER = "SHA256:" + "o" * 43
# Who each connection id is, as the bridge says (from the keys they proved to it).
WHO = {
    "srv-1": {"role": "server", "fingerprint": SERVER, "hostname": "web1"},
    "other": {"role": "server", "fingerprint": OTHER, "hostname": "web2"},
    "a": {"role": "server", "fingerprint": OTHER},
    "b": {"role": "server", "fingerprint": "SHA256:" + "b" * 43, "hostname": "nas1"},
}


def bridge_event(ids, who=WHO, own="me"):
    return {"namespace": "events", "name": "bridge", "id": "", "args": {
        "available_connections": ids, "connection_id": own,
        "connections": {i: who[i] for i in ids if i in who},
    }}


def make_link(server_wait=10, server=SERVER):
    clock = task.Clock()
    connection = FakeBridgeConnection()
    signed_in = defer.Deferred()
    link = BridgeLink(clock, connection, server, lambda session: signed_in, server_wait=server_wait)
    started = []
    link.start().addBoth(started.append)
    return clock, connection, link, signed_in, started


def test_the_bridge_identify_request_is_answered_as_a_client():
    _, connection, _, _, _ = make_link()
    connection.from_bridge({"namespace": "rpc", "name": "identify", "id": "sysadm_bridge_request_ident", "args": {}})
    sender, payload = connection.last()
    assert sender is None
    assert json.loads(payload) == {"namespace": "rpc", "name": "response",
                                   "id": "sysadm_bridge_request_ident", "args": {"type": "client"}}


def test_the_link_is_ready_once_signed_in_and_the_server_is_offered():
    clock, connection, link, signed_in, started = make_link()
    connection.from_bridge(bridge_event(["other"]))
    signed_in.callback(["token", 900])
    assert started == []
    connection.from_bridge(bridge_event(["other", "srv-1"]))
    assert started == [link] and not clock.getDelayedCalls()
    assert link.server_id == "srv-1" and link.connection_id == "me"
    binding = link.session.challenge_binding
    assert (binding.server_fingerprint, binding.connection_id) == (SERVER, "me")
    assert link.bridge_session.challenge_binding is None  # the bridge's own sign-in is direct


def test_server_frames_are_wrapped_and_replies_unwrapped_to_the_server_session():
    _, connection, link, signed_in, _ = make_link()
    signed_in.callback(None)
    connection.from_bridge(bridge_event(["srv-1"]))
    got = []
    link.session.call("rpc", "identify").addBoth(got.append)
    sender, payload = connection.last()
    request = json.loads(payload)
    assert sender == "srv-1" and request["name"] == "identify"
    # a frame relayed from another connection with the same id must not answer it
    connection.from_peer("intruder", {"namespace": "rpc", "name": "response", "id": request["id"], "args": "no"})
    assert got == []
    connection.from_peer("srv-1", {"namespace": "rpc", "name": "response", "id": request["id"],
                                   "args": {"type": "server"}})
    assert got == [{"type": "server"}]
    events = []
    link.session.on_event = events.append
    connection.from_peer("srv-1", {"namespace": "events", "name": "dispatcher", "id": "none", "args": {}})
    assert [e["name"] for e in events] == ["dispatcher"]


def test_a_server_the_bridge_does_not_offer_is_a_clear_error():
    """No identify probe is sent to anyone; the error lists the offered servers by
    fingerprint, with their labels."""
    clock, connection, link, signed_in, started = make_link(server_wait=5)
    signed_in.callback(None)
    connection.from_bridge(bridge_event(["a", "b"]))
    assert connection.sent == []
    clock.advance(5)
    error = started[0].value
    assert isinstance(error, ClientError)
    assert f"offers no server {SERVER} (offered servers: SHA256:{'b' * 43} (nas1), {OTHER})" in str(error)
    assert not clock.getDelayedCalls()


def test_a_server_is_chosen_by_its_key_never_by_its_host_name():
    """Connections labelled with any host name, or claiming the pinned fingerprint with
    the client role, are not chosen; the one the bridge lists as a server with that key is."""
    clock = task.Clock()
    connection = FakeBridgeConnection()
    link = BridgeLink(clock, connection, SERVER, lambda session: None)
    started = []
    link.start().addBoth(started.append)
    who = {
        "fake-1": {"role": "server", "fingerprint": OTHER, "hostname": SERVER},
        "fake-2": {"role": "client", "fingerprint": SERVER, "hostname": "web1"},
        "real": {"role": "server", "fingerprint": SERVER},
    }
    connection.from_bridge(bridge_event(["fake-1", "fake-2"], who))
    assert started == [] and connection.sent == []
    connection.from_bridge(bridge_event(["fake-1", "fake-2", "real"], who))
    assert started == [link] and link.server_id == "real"
    link.session.call("rpc", "auth", {})
    assert unwrap(connection.sent[-1])[0] == "real"


def test_a_bridge_that_does_not_say_who_is_who_is_a_clear_error():
    """An older bridge's event (ids only) cannot pick a server by key."""
    clock, connection, link, signed_in, started = make_link(server_wait=5)
    signed_in.callback(None)
    connection.from_bridge({"namespace": "events", "name": "bridge", "id": "",
                            "args": {"available_connections": ["srv-1"]}})
    clock.advance(5)
    assert "too old for --server SHA256:" in str(started[0].value)


def test_refused_bridge_sign_in_fails_the_start():
    clock, _, _, signed_in, started = make_link()
    signed_in.errback(ClientError("the bridge refused the key"))
    assert str(started[0].value) == "the bridge refused the key"
    assert not clock.getDelayedCalls()


def test_the_server_leaving_the_bridge_closes_the_server_session():
    _, connection, link, signed_in, _ = make_link()
    signed_in.callback(None)
    connection.from_bridge(bridge_event(["srv-1"]))
    pending = []
    link.session.call("rpc", "query").addBoth(pending.append)
    connection.from_bridge(bridge_event(["other"]))
    assert isinstance(pending[0].value, ConnectionClosed)
    assert link.closed.called and connection.closed.called


def test_a_relay_error_from_the_bridge_ends_the_server_session():
    _, connection, link, signed_in, _ = make_link()
    signed_in.callback(None)
    connection.from_bridge(bridge_event(["srv-1"]))
    descriptions = []
    link.closed.addCallback(descriptions.append)
    connection.from_bridge({"namespace": "error", "name": "error", "id": None,
                            "args": {"code": 404, "message": "Not Found", "details": "gone",
                                     "destination": "another-connection"}})
    assert descriptions == []
    connection.from_bridge({"namespace": "error", "name": "error", "id": None,
                            "args": {"code": 404, "message": "Not Found", "details": "no such connection",
                                     "destination": "srv-1"}})
    assert descriptions == [f"the bridge cannot relay to server {SERVER}: no such connection"]


def test_losing_the_bridge_connection_fails_both_sessions():
    _, connection, link, signed_in, started = make_link()
    connection.closed.callback("dropped")
    assert isinstance(started[0].value, ConnectionClosed)
    assert link.closed.called
