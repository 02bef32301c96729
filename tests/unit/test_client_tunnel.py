"""The ``sysadm`` client's end of the encrypted tunnel through a bridge, in memory: the
CLI's :class:`sysadmd.client.bridge.BridgeLink` against the daemon's real end (its
``RelayedClients`` with a ``TunnelServer``, plaintext refused), through a fake bridge
that can swap, alter, replay, drop or forge what it relays."""

import json
from types import SimpleNamespace

import pytest
from autobahn.websocket.protocol import PreparedMessage
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.internet import defer, task

from sysadmd.auth.bans import BanList
from sysadmd.auth.handlers import Authenticator
from sysadmd.auth.keys_file import KeysFile
from sysadmd.auth.signatures import find_signer
from sysadmd.auth.tokens import TokenStore
from sysadmd.bridge.clients import RelayedClients
from sysadmd.bridge.tunnel import TunnelBinding, TunnelServer
from sysadmd.channel.channel import ChannelParts
from sysadmd.channel.router import Router
from sysadmd.channel.settings import ConnectionSettings
from sysadmd.client import commands
from sysadmd.client.auth import (
    Credentials,
    PasswordSource,
    authenticate,
    sign_in_with_key,
)
from sysadmd.client.bridge import BridgeLink, unwrap, wrap
from sysadmd.client.errors import ClientError, TunnelBroken, TunnelRefused
from sysadmd.client.watch import Watcher
from sysadmd.events import handlers as event_handlers
from sysadmd.events.hub import EventHub
from sysadmd.protocol import tunnel
from sysadmd.protocol.framing import prepare_text
from sysadmd.protocol.keydigests import fingerprint
from sysadmd.rpc import handlers as rpc_handlers
from tests.unit.test_bridge_tunnel import unframe
from tests.unit.test_client_fakes import Lines

SERVER_KEY = ed25519.Ed25519PrivateKey.generate()
PINNED = fingerprint(SERVER_KEY.public_key())
OTHER_KEY = ed25519.Ed25519PrivateKey.generate()
SERVER_ID = "srv-1"
PASSWORD = "correct-horse-battery-staple"
BROKE = f"the encrypted tunnel to {PINNED} broke: "
DID_NOT_DECRYPT = ("a tunnel message did not decrypt: it was altered, replayed, dropped or "
                   "reordered on the way")


class Users:
    """Password :data:`PASSWORD` for anyone; every user (a key's too) has full access."""

    name = "users"

    def authenticate(self, username, password):
        return defer.succeed("full" if password == PASSWORD else None)

    def role_of(self, username):
        return defer.succeed("full")


class Server:
    """A daemon behind one bridge link: the real relayed clients, tunnel required
    (``legacy_clients = no``), a keys file, and the hub's ``demo`` and ``system-state``
    sources."""

    def __init__(self, tmp_path, rekey=tunnel.DEFAULT_REKEY_MESSAGES):
        self.clock = task.Clock()
        self.keys = KeysFile(str(tmp_path / "keys"))
        self.hub = EventHub(prepare_text)
        self.hub.add_source("demo", "demo_frame", False)
        self.hub.add_source("system-state", "system_state", False)
        router = Router()
        tokens = TokenStore(self.clock, 900)
        bans = BanList(self.clock, 10, 600, 3600, ban_loopback=True)
        rpc_handlers.register(router)
        Authenticator(self.clock, tokens, bans, [Users()], self.keys, find_signer, 0).register(router)
        event_handlers.register(router, self.hub)
        daemon = SimpleNamespace(
            parts=ChannelParts(ConnectionSettings(auth_timeout=0), router, tokens, self.hub, self.clock)
        )
        self.written = []
        self.bridges = {}
        self._delivering = False
        self.clients = RelayedClients(
            "test", daemon, self.written.append,
            lambda payload: PreparedMessage(payload, isBinary=False, applyMask=True, doNotCompress=False),
            PINNED, legacy=False, tunnel_server=TunnelServer(SERVER_KEY, PINNED, rekey, 1 << 20),
        )

    def deliver(self):
        """Relay what the daemon wrote to each client's bridge connection, in order (a
        frame a client answers at once waits for those written before it)."""
        if self._delivering:
            return
        self._delivering = True
        try:
            while self.written:
                for frame in unframe(self.written.pop(0).payloadHybi):
                    client_id, _, payload = frame.partition(b"\n")
                    self.bridges[client_id.decode()].relay(payload.decode())
        finally:
            self._delivering = False

    def key(self, user="alice"):
        """A new key registered for ``user``."""
        key = ed25519.Ed25519PrivateKey.generate()
        self.keys.add(user, key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ))
        return key


class Bridge:
    """The bridge connection as the CLI's link sees it (``send_text``, ``receiver``,
    ``closed``, ``close()``), relaying to :class:`Server` as client ``client_id`` and
    back as from ``srv-1``. ``to_server`` keeps every payload the client relayed;
    ``tamper(payload)`` may change (or drop, returning None, or repeat, returning a list)
    what the server sends the client, ``tamper_up(payload)`` what the client sends it."""

    url = "ws://bridge:12149"

    def __init__(self, server, client_id="c1"):
        self.server = server
        self.client_id = client_id
        self.receiver = None
        self.closed = defer.Deferred()
        self.to_server = []
        self.tamper = self.tamper_up = None
        server.bridges[client_id] = self

    def offer(self):
        """Tell both ends about each other (the bridge's events)."""
        self.server.clients.bridge_event(list(self.server.bridges))
        self.receiver(json.dumps({"namespace": "events", "name": "bridge", "id": "", "args": {
            "available_connections": [SERVER_ID], "connection_id": self.client_id,
            "connections": {SERVER_ID: {"role": "server", "fingerprint": PINNED, "hostname": "web1"}},
        }}))

    def send_text(self, text):
        sender, payload = unwrap(text)
        assert sender == SERVER_ID, text
        self.to_server.append(payload)
        if self.tamper_up is not None:
            payload = self.tamper_up(payload)
        self.server.clients.relayed(self.client_id, payload.encode())
        self.server.deliver()

    def inject(self, payload):
        """A frame the bridge forges, as if from the server."""
        self.receiver(wrap(SERVER_ID, payload))

    def relay(self, payload):
        """A payload from the server to this client (through ``tamper``)."""
        payloads = payload if self.tamper is None else self.tamper(payload)
        for one in [payloads] if isinstance(payloads, str) else payloads or []:
            self.inject(one)

    def close(self):
        """The client closes its bridge connection."""
        if not self.closed.called:
            self.closed.callback("closed by us")
        return defer.succeed(None)


def connect(server, client_id="c1", tamper=None):
    """``(bridge, link, started)``: a CLI link through a new bridge connection, offered
    the server (``started`` holds the result of ``link.start()``)."""
    bridge = Bridge(server, client_id)
    bridge.tamper = tamper
    link = BridgeLink(task.Clock(), bridge, PINNED, lambda session: None)
    started = []
    link.start().addBoth(started.append)
    bridge.offer()
    return bridge, link, started


def result_of(d):
    """What ``d`` fired with (everything here is synchronous)."""
    out = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    return out[0]


def failure_text(d):
    """The one line of the :class:`ClientError` ``d`` failed with."""
    failure = result_of(d)
    assert isinstance(failure.value, ClientError), failure
    return str(failure.value)


def sealed(payloads):
    """Only transport messages: nothing in the clear after the handshake."""
    for payload in payloads:
        assert not payload.startswith(tunnel.CONTROL)
        tunnel.unb64(payload, "a transport message")
    return True


@pytest.fixture
def server(tmp_path):
    """A daemon that takes relayed sessions in the tunnel only."""
    return Server(tmp_path)


def test_the_link_opens_the_tunnel_before_anything_else_reaches_the_server(server):
    """Offer, hello, then only sealed messages; the daemon's end and the CLI's agree on
    the handshake, and a call goes through."""
    bridge, link, started = connect(server)
    assert started == [link]
    assert bridge.to_server[0] == tunnel.OFFER and bridge.to_server[1].startswith(tunnel.HELLO)
    daemon_end = server.clients.get("c1").tunnel
    assert link.tunnel.handshake_hash == daemon_end.handshake_hash
    assert link.session.challenge_binding.expected() == tunnel.binding_description(PINNED, daemon_end.handshake_hash)
    reply = result_of(link.session.call("rpc", "identify", {}))
    assert reply["type"] == "server"
    assert len(bridge.to_server) == 3 and sealed(bridge.to_server[2:])


def test_a_password_sign_in_and_events_are_sealed_end_to_end(server):
    """What the bridge relays never holds the password, the token or an event's text; a
    message bigger than one transport message is put together again."""
    bridge, link, _ = connect(server)
    seen = []
    bridge.tamper = lambda payload: seen.append(payload) or payload
    credentials = Credentials("admin", PasswordSource(None, "admin", {"SYSADM_PASSWORD": PASSWORD}))
    token, _ = result_of(authenticate(link.session, credentials))
    events = []
    link.session.on_event = events.append
    result_of(link.session.call("events", "subscribe", ["demo"]))
    marker = "unique-marker-" + "x" * 200000  # more than three transport messages
    server.hub.publish("demo", {"text": marker})
    server.deliver()
    assert [e["args"]["text"] for e in events] == [marker]
    relayed = "\n".join(bridge.to_server[2:] + seen)
    assert sealed(bridge.to_server[2:]) and sealed(seen)
    for secret in (PASSWORD, token, "unique-marker"):
        assert secret not in relayed


def test_a_key_signs_in_with_the_signature_bound_to_the_tunnel(server):
    """auth_ssl inside the tunnel: stage 1 carries the tunnel's binding, the client checks
    it and signs binding_text(pinned key, handshake hash, test string), which the daemon
    verifies."""
    key = server.key()
    _, link, _ = connect(server)
    relayed = server.clients.get("c1")
    token, ttl = result_of(sign_in_with_key(link.session, key))
    assert len(token) == 64 and relayed.session.grant.user == "alice"


def test_a_stage_1_bound_to_another_handshake_is_not_signed(server):
    """Had the server (not the bridge: it cannot alter sealed messages) bound its
    challenge to another tunnel, the client signs nothing."""
    key = server.key()
    bridge, link, _ = connect(server)
    relayed = server.clients.get("c1")
    relayed.binding = TunnelBinding(PINNED, b"\1" * 32)
    error = failure_text(sign_in_with_key(link.session, key))
    assert error.endswith("refusing to sign it") and "handshake '0101" in error
    assert len(bridge.to_server) == 3  # the offer, the hello and stage 1: no signature


def flip(payload):
    """A transport message with one bit changed (the tunnel's own steps pass)."""
    if payload.startswith(tunnel.CONTROL):
        return payload
    raw = bytearray(tunnel.unb64(payload, "a transport message"))
    raw[-1] ^= 0x80
    return tunnel.b64(bytes(raw))


def other_offer(payload):
    """The bridge swaps the server's offer for one signed by another key."""
    if payload.startswith(tunnel.OFFER):
        return tunnel.make_offer(OTHER_KEY, tunnel.new_static_key())
    return payload


def swapped_static(payload):
    """The bridge keeps the server's key but offers its own static key."""
    if payload.startswith(tunnel.OFFER):
        offer = json.loads(payload[len(tunnel.OFFER) + 1:])
        offer["static"] = tunnel.b64(tunnel.static_public(tunnel.new_static_key()))
        return tunnel.OFFER + " " + json.dumps(offer)
    return payload


@pytest.mark.parametrize("swap, reason", [
    (other_offer, f"the tunnel is offered by key {fingerprint(OTHER_KEY.public_key())}, not by the pinned server {PINNED}"),
    (swapped_static, f"the static key offered is not signed by {PINNED}"),
    (lambda payload: json.dumps({"namespace": "rpc", "name": "response", "id": 1, "args": {}}),
     "the server did not offer an encrypted tunnel"),
])
def test_an_offer_not_proven_by_the_pinned_key_is_refused_before_anything_is_sent(server, swap, reason):
    """The start fails with one line naming the pinned key; after noise:offer nothing at
    all goes to the server, and the connection closes."""
    bridge, link, started = connect(server, tamper=swap)
    assert isinstance(started[0].value, TunnelRefused)
    assert str(started[0].value) == f"cannot open the encrypted tunnel to {PINNED} through the bridge {bridge.url}: {reason}"
    assert bridge.to_server == [tunnel.OFFER]
    assert bridge.closed.called and link.tunnel is None


def test_a_welcome_that_does_not_prove_the_static_key_is_refused(server):
    """A bridge that forwards the real offer but answers the hello itself (it cannot
    even read it without the static key's private half) cannot complete the handshake."""

    def forge_welcome(payload):
        if payload.startswith(tunnel.HELLO):
            bridge.inject(tunnel.WELCOME + tunnel.b64(tunnel.static_public(tunnel.new_static_key()) + b"\0" * 16))
            return tunnel.OFFER  # the server gets something harmless instead
        return payload

    bridge = Bridge(server)
    bridge.tamper_up = forge_welcome
    link = BridgeLink(task.Clock(), bridge, PINNED, lambda session: None)
    d = link.start()
    bridge.offer()
    assert failure_text(d) == (f"cannot open the encrypted tunnel to {PINNED} through the bridge {bridge.url}: "
                               "the server could not prove the pinned key (handshake failed)")


def test_a_noise_error_from_the_server_ends_the_command(server):
    """The daemon could not open a message the bridge altered on the way up: its
    noise:error fails the call in flight with the tunnel line, and the link is over."""
    bridge, link, _ = connect(server)
    bridge.tamper_up = flip
    d = link.session.call("rpc", "identify", {})
    assert failure_text(d) == BROKE + DID_NOT_DECRYPT
    assert isinstance(link.broken, TunnelBroken) and str(link.broken) == BROKE + DID_NOT_DECRYPT
    assert link.closed.called and link.connection.closed.called
    assert server.clients.get("c1") is None
    assert failure_text(link.session.call("rpc", "identify", {})) == BROKE + DID_NOT_DECRYPT


def test_a_forged_noise_error_is_shown_without_control_characters(server):
    """A noise:error is plaintext (the bridge can forge one, as it can cut the
    connection): it ends the link, its reason cannot write to the terminal."""
    bridge, link, _ = connect(server)
    bridge.inject(tunnel.ERROR + "gone\x1b[2J away")
    assert str(link.broken) == BROKE + "gone?[2J away"
    assert bridge.to_server[2:] == []  # a noise:error is not answered


@pytest.mark.parametrize("attack", ["flip", "replay", "drop", "plaintext"])
def test_a_tampered_frame_from_the_server_ends_the_command(server, attack):
    """An altered, replayed or dropped reply, or a reply the bridge writes itself, is
    never taken: the command ends with the tunnel line, and the daemon hears noise:error."""
    bridge, link, _ = connect(server)
    first = link.session.call("rpc", "identify", {})
    frames = []
    if attack == "flip":
        bridge.tamper = flip
    elif attack == "replay":
        bridge.tamper = lambda payload: frames.append(payload) or [payload, payload]
    elif attack == "drop":
        bridge.tamper = lambda payload: None if not frames and not frames.append(payload) else payload
    else:
        bridge.tamper = lambda payload: json.dumps({"namespace": "rpc", "name": "response",
                                                    "id": "sysadm-2", "args": {"type": "forged"}})
    second = link.session.call("rpc", "identify", {})
    if attack in ("replay", "drop"):
        # The replayed (or the next) message is the one that does not open.
        third = link.session.call("rpc", "identify", {})
        if attack == "replay":
            assert result_of(second)["type"] == "server"
        else:
            assert failure_text(second) == BROKE + DID_NOT_DECRYPT  # its reply never came
        d = third
    else:
        d = second
    reason = "a tunnel message is not base64" if attack == "plaintext" else DID_NOT_DECRYPT
    assert failure_text(d) == BROKE + reason
    assert result_of(first)["type"] == "server"
    assert bridge.to_server[-1] == tunnel.ERROR + reason
    assert server.clients.get("c1") is None and link.closed.called


def test_a_wait_for_events_ends_with_the_tunnel_line(server):
    """A command waiting for an event (``state``) reports the broken tunnel, not a lost
    connection."""
    bridge, link, _ = connect(server)
    result_of(authenticate(link.session, Credentials("admin", PasswordSource(None, "admin", {"SYSADM_PASSWORD": PASSWORD}))))
    options = SimpleNamespace(timeout=30, json=True)
    d = commands.state(task.Clock(), link, options, Lines())
    bridge.tamper = flip
    server.hub.publish("system-state", {"hostname": "h"})
    server.deliver()
    assert failure_text(d) == BROKE + DID_NOT_DECRYPT


def test_watch_ends_on_a_broken_tunnel_instead_of_reconnecting(server):
    """A tampering bridge is not retried (never in plaintext); the line says why."""
    links = []

    def open_link():
        bridge, link, started = connect(server, client_id=f"c{len(links) + 1}")
        links.append(link)
        return started[0]

    out = Lines()
    credentials = Credentials("admin", PasswordSource(None, "admin", {"SYSADM_PASSWORD": PASSWORD}))
    watcher = Watcher(task.Clock(), open_link, credentials, ["demo"], True, lambda frame: None, out, keepalive=0)
    d = watcher.run()
    links[0].connection.tamper = flip
    server.hub.publish("demo", {"n": 1})
    server.deliver()
    assert failure_text(d) == BROKE + DID_NOT_DECRYPT
    assert len(links) == 1 and out.err == []


def test_each_connection_makes_a_new_handshake(server):
    """A reconnection (a new link, a new id on the bridge) asks for the offer again and
    gets a tunnel of its own."""
    first_bridge, first, _ = connect(server, "c1")
    second_bridge, second, _ = connect(server, "c2")
    assert second_bridge.to_server[:1] == [tunnel.OFFER]
    assert first.tunnel.handshake_hash != second.tunnel.handshake_hash
    assert result_of(second.session.call("rpc", "identify", {}))["type"] == "server"
    assert result_of(first.session.call("rpc", "identify", {}))["type"] == "server"


def test_rekeying_keeps_both_ends_in_step(tmp_path):
    """The rekey period comes from the offer: every second message, both ways."""
    server = Server(tmp_path, rekey=2)
    _, link, _ = connect(server)
    for _ in range(7):
        assert result_of(link.session.call("rpc", "identify", {}))["type"] == "server"
    assert link.tunnel.sent == link.tunnel.received == 7


def test_nothing_is_sent_to_the_server_before_the_tunnel_is_open(server):
    """A call on a link that is not ready fails; it is never sent in plaintext."""
    bridge = Bridge(server)
    link = BridgeLink(task.Clock(), bridge, PINNED, lambda session: None)
    with pytest.raises(ClientError, match="no encrypted tunnel"):
        link.session.call("rpc", "identify", {})
    assert bridge.to_server == []
