"""The relay framing and the link through a bridge, against a fake bridge connection whose
servers speak the encrypted tunnel with the protocol objects (``sysadmd.protocol.tunnel``;
``test_client_tunnel`` drives the daemon's real end)."""

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.internet import defer, task

from sysadmd.client.bridge import BridgeLink, unwrap, wrap
from sysadmd.client.errors import ClientError, ConnectionClosed
from sysadmd.protocol import tunnel
from sysadmd.protocol.keydigests import fingerprint


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


class TunnelEnd:
    """A server's end of the tunnel, proving ``bridge_key``: answers the offer and the
    hello, then opens what it is sent (``messages``) and seals what it sends."""

    def __init__(self, bridge_key):
        static = tunnel.new_static_key()
        self.offer = tunnel.make_offer(bridge_key, static)
        self._responder = tunnel.Responder(static, tunnel.DEFAULT_REKEY_MESSAGES, 1 << 20)
        self.tunnel = None
        self.messages = []

    def received(self, payload):
        """The payloads answering ``payload`` (from the client)."""
        if payload == tunnel.OFFER:
            return [self.offer]
        if payload.startswith(tunnel.HELLO):
            welcome, self.tunnel = self._responder.hello(payload)
            return [welcome]
        message = self.tunnel.open(payload)
        if message is not None:
            self.messages.append(json.loads(message))
        return []

    def seal(self, frame):
        return self.tunnel.seal(json.dumps(frame).encode())


class FakeBridgeConnection:
    url = "ws://bridge:12149"

    def __init__(self):
        self.sent = []
        self.receiver = None
        self.closed = defer.Deferred()
        # The servers behind the bridge that speak the tunnel, by connection id.
        self.ends = {"srv-1": TunnelEnd(SERVER_KEY), "real": TunnelEnd(SERVER_KEY)}

    def send_text(self, text):
        self.sent.append(text)
        sender, payload = unwrap(text)
        end = self.ends.get(sender)
        if end is not None:
            for answer in end.received(payload):
                self.receiver(wrap(sender, answer))

    def close(self):
        if not self.closed.called:
            self.closed.callback("closed by us")
        return defer.succeed(None)

    def from_bridge(self, frame):
        self.receiver(json.dumps(frame))

    def from_peer(self, sender, frame):
        """``frame`` from ``sender``: sealed when it is a server with a tunnel open."""
        end = self.ends.get(sender)
        payloads = end.seal(frame) if end is not None and end.tunnel is not None else [json.dumps(frame)]
        for payload in payloads:
            self.receiver(wrap(sender, payload))

    def last(self):
        return unwrap(self.sent[-1])

    def last_message(self, server="srv-1"):
        """``(to, the frame)`` of the last message sent, opened by the server's end."""
        return unwrap(self.sent[-1])[0], self.ends[server].messages[-1]


SERVER_KEY = ed25519.Ed25519PrivateKey.generate()
SERVER = fingerprint(SERVER_KEY.public_key())
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


def test_the_link_is_ready_once_signed_in_and_the_tunnel_to_the_server_is_open():
    """The offer is asked for, checked, the handshake made; auth_ssl is then bound to the
    pinned key and the tunnel's handshake."""
    clock, connection, link, signed_in, started = make_link()
    connection.from_bridge(bridge_event(["other"]))
    signed_in.callback(["token", 900])
    assert started == []
    connection.from_bridge(bridge_event(["other", "srv-1"]))
    assert started == [link] and not clock.getDelayedCalls()
    assert link.server_id == "srv-1" and link.connection_id == "me"
    assert [unwrap(text)[1].split(" ")[0] for text in connection.sent] == ["noise:offer", "noise:hello"]
    assert link.tunnel.handshake_hash == connection.ends["srv-1"].tunnel.handshake_hash
    binding = link.session.challenge_binding
    assert (binding.server_fingerprint, binding.handshake_hash) == (SERVER, link.tunnel.handshake_hash)
    assert link.bridge_session.challenge_binding is None  # the bridge's own sign-in is direct


def test_server_frames_are_sealed_and_replies_opened_to_the_server_session():
    _, connection, link, signed_in, _ = make_link()
    signed_in.callback(None)
    connection.from_bridge(bridge_event(["srv-1"]))
    got = []
    link.session.call("rpc", "identify").addBoth(got.append)
    sender, request = connection.last_message()
    assert sender == "srv-1" and request["name"] == "identify"
    assert "identify" not in connection.sent[-1]
    # a frame relayed from another connection with the same id must not answer it
    connection.from_peer("intruder", {"namespace": "rpc", "name": "response", "id": request["id"], "args": "no"})
    assert got == []
    connection.from_peer("srv-1", {"namespace": "rpc", "name": "response", "id": request["id"],
                                   "args": {"type": "server"}})
    assert got == [{"type": "server"}]
    assert link.broken is None
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
    assert connection.last_message("real")[1]["name"] == "auth"
    assert {unwrap(text)[0] for text in connection.sent} == {"real"}


def test_a_bridge_that_does_not_say_who_is_who_is_a_clear_error():
    """An older bridge's event (ids only) cannot pick a server by key."""
    clock, connection, link, signed_in, started = make_link(server_wait=5)
    signed_in.callback(None)
    connection.from_bridge({"namespace": "events", "name": "bridge", "id": "",
                            "args": {"available_connections": ["srv-1"]}})
    clock.advance(5)
    assert "too old for --server SHA256:" in str(started[0].value)


def test_a_server_that_does_not_open_the_tunnel_in_time_is_a_clear_error():
    """Offered, but no answer to the offer: the wait ends with a line saying so, and a
    late answer changes nothing."""
    clock, connection, link, signed_in, started = make_link(server_wait=5)
    end = connection.ends.pop("srv-1")
    signed_in.callback(None)
    connection.from_bridge(bridge_event(["srv-1"]))
    assert [unwrap(text)[1] for text in connection.sent] == ["noise:offer"]
    clock.advance(5)
    assert str(started[0].value) == (
        f"the server {SERVER} did not open the encrypted tunnel within 5 s (through the bridge {connection.url})"
    )
    connection.receiver(wrap("srv-1", end.offer))
    assert len(connection.sent) == 1 and link.tunnel is None


def test_the_server_leaving_during_the_handshake_fails_the_start():
    clock, connection, link, signed_in, started = make_link()
    connection.ends.pop("srv-1")
    signed_in.callback(None)
    connection.from_bridge(bridge_event(["srv-1"]))
    connection.from_bridge(bridge_event([]))
    assert isinstance(started[0].value, ConnectionClosed)
    assert str(started[0].value) == f"the bridge no longer offers server {SERVER}"
    assert not clock.getDelayedCalls() and connection.closed.called


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
