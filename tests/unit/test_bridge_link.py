"""The daemon's link to a bridge in memory: the client handshake over a StringTransport,
then identify, auth_ssl, list_ssl_checksums, relaying, keepalive and backoff."""

import base64
import hashlib
import json
import re
import struct
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from sysadmd.auth.signatures import verify_challenge
from sysadmd.bridge.link import (
    AUTH_ANSWER_ID,
    AUTH_CHALLENGE_ID,
    KEEPALIVE_ID,
    Backoff,
    BridgeLinkFactory,
)
from sysadmd.bridge.urls import parse_url
from sysadmd.channel.channel import ChannelParts
from sysadmd.channel.router import Router
from sysadmd.channel.settings import ConnectionSettings
from sysadmd.events.hub import EventHub
from sysadmd.protocol.framing import prepare_text
from sysadmd.rpc import handlers as rpc_handlers
from tests.unit.wsfake import Transport

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def server_frame(text, opcode=1):
    payload = text.encode() if isinstance(text, str) else text
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, length)
    else:
        header = struct.pack("!BBH", 0x80 | opcode, 126, length)
    return header + payload


def client_frames(data):
    """Unmask the link's frames: a list of (opcode, payload)."""
    frames = []
    while data:
        opcode, length, offset = data[0] & 0x0F, data[1] & 0x7F, 2
        if length == 126:
            length, offset = struct.unpack("!H", data[2:4])[0], 4
        elif length == 127:
            length, offset = struct.unpack("!Q", data[2:10])[0], 10
        mask, offset = data[offset:offset + 4], offset + 4
        body = data[offset:offset + length]
        frames.append((opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(body))))
        data = data[offset + length:]
    return frames


class Bridge:
    """The bridge's end of one link."""

    def __init__(self, keepalive=0, checksums=("SHA256:a",), key=None, legacy_clients=False):
        self.clock = task.Clock()
        self.key = key or ed25519.Ed25519PrivateKey.generate()
        self.checksums = checksums if isinstance(checksums, dict) else list(checksums)
        router = Router()
        rpc_handlers.register(router)
        daemon = SimpleNamespace(parts=ChannelParts(
            ConnectionSettings(handshake_timeout=0, ping_interval=0), router, None,
            EventHub(prepare_text), self.clock,
        ))
        self.backoff = Backoff(jitter=lambda: 0)
        self.factory = BridgeLinkFactory(
            self.clock, parse_url("test", "ws://127.0.0.1:12149"), daemon, self.key,
            "SHA256:me",
            lambda: dict(self.checksums) if isinstance(self.checksums, dict) else list(self.checksums),
            keepalive, self.backoff, legacy_clients=legacy_clients,
        )
        self.factory.setProtocolOptions(closeHandshakeTimeout=0)
        self.transport = Transport(peerAddress=IPv4Address("TCP", "127.0.0.1", 12149))
        self.protocol = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 12149))
        self.protocol.makeConnection(self.transport)
        request = self.transport.value().decode()
        self.transport.clear()
        key = re.search(r"Sec-WebSocket-Key: (\S+)", request).group(1)
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        self.protocol.dataReceived((
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        ).encode())

    def send(self, message):
        self.protocol.dataReceived(server_frame(json.dumps(message) if isinstance(message, dict) else message))

    def received(self):
        """Text frames from the link since the last call (JSON decoded when they are)."""
        frames = client_frames(self.transport.value())
        self.transport.clear()
        out = []
        for opcode, payload in frames:
            if opcode == 1:
                text = payload.decode()
                out.append(json.loads(text) if text.startswith("{") else text)
            elif opcode == 8:
                out.append(("close", struct.unpack("!H", payload[:2])[0]))
        return out

    def sign_in(self):
        """Both auth_ssl stages; returns the signature the link sent."""
        [stage1] = self.received()
        assert stage1 == {"namespace": "rpc", "name": "auth_ssl", "id": AUTH_CHALLENGE_ID, "args": {}}
        self.send({"namespace": "rpc", "name": "response", "id": AUTH_CHALLENGE_ID,
                   "args": {"test_string": "challenge-123"}})
        [stage2] = self.received()
        assert stage2["id"] == AUTH_ANSWER_ID
        signature = base64.b64decode(stage2["args"]["encrypted_string"])
        assert verify_challenge(self.key.public_key(), "challenge-123", signature)
        self.send({"namespace": "rpc", "name": "response", "id": AUTH_ANSWER_ID, "args": ["t", 900]})
        assert self.protocol.signed_in
        return signature


def test_link_answers_identify_as_a_server():
    """The bridge's identify request gets type "server" back, with the bridge's id."""
    bridge = Bridge()
    bridge.received()
    bridge.send({"namespace": "rpc", "name": "identify", "id": "sysadm_bridge_request_ident", "args": ""})
    [reply] = bridge.received()
    assert reply["id"] == "sysadm_bridge_request_ident" and reply["args"]["type"] == "server"


def test_link_signs_in_with_its_key_and_answers_checksums():
    """auth_ssl is answered with a signature of the test string that the key verifies;
    list_ssl_checksums with the daemon's accepted fingerprints."""
    bridge = Bridge(checksums=["SHA256:x", "SHA256:y"])
    bridge.sign_in()
    bridge.send({"namespace": "rpc", "name": "settings", "id": "bridge_request_list_keys",
                 "args": {"action": "list_ssl_checksums"}})
    [reply] = bridge.received()
    assert reply == {"namespace": "rpc", "name": "response", "id": "bridge_request_list_keys",
                     "args": {"sha256_keys": ["SHA256:x", "SHA256:y"]}}


def test_an_rsa_bridge_key_answers_in_the_original_raw_rsa_form_and_md5_keys_are_sent():
    """What an original bridge checks: RSA_public_decrypt of the signature gives the test
    string back (PKCS#1 type 1, no digest); the checksums answer has md5_keys too."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bridge = Bridge(key=key, checksums={"sha256_keys": ["SHA256:x"], "md5_keys": ["bWQ1=="]})
    signature = bridge.sign_in()
    assert key.public_key().recover_data_from_signature(
        signature, padding.PKCS1v15(), None) == b"challenge-123"
    bridge.send({"namespace": "rpc", "name": "settings", "id": "bridge_request_list_keys",
                 "args": {"action": "list_ssl_checksums"}})
    [reply] = bridge.received()
    assert reply["args"] == {"sha256_keys": ["SHA256:x"], "md5_keys": ["bWQ1=="]}


def test_relayed_requests_are_answered_to_their_sender():
    """With legacy_clients, a relayed plaintext identify from a listed client is answered
    as "<client id>\\n<reply>"."""
    bridge = Bridge(legacy_clients=True)
    bridge.sign_in()
    bridge.send({"id": "", "namespace": "events", "name": "bridge", "args": {"available_connections": ["c1"]}})
    bridge.send('c1\n{"namespace": "rpc", "name": "identify", "id": 7, "args": {}}')
    [text] = bridge.received()
    client_id, _, payload = text.partition("\n")
    assert client_id == "c1" and json.loads(payload)["id"] == 7


def test_by_default_a_relayed_plaintext_request_is_refused_and_its_session_ends():
    """Without legacy_clients (the default) a plaintext first message is answered 403 and
    the client has no session left; it was never run."""
    bridge = Bridge()
    bridge.sign_in()
    bridge.send({"id": "", "namespace": "events", "name": "bridge", "args": {"available_connections": ["c1"]}})
    bridge.send('c1\n{"namespace": "rpc", "name": "identify", "id": 7, "args": {}}')
    [text] = bridge.received()
    client_id, _, payload = text.partition("\n")
    reply = json.loads(payload)
    assert client_id == "c1" and reply["namespace"] == "error" and reply["id"] is None
    assert reply["args"]["code"] == 403 and "legacy_clients = no" in reply["args"]["details"]
    assert bridge.protocol.clients.get("c1") is None


def test_keepalive_and_changed_keys_are_sent_on_the_interval():
    """Every keepalive seconds an identify request goes to the bridge, and a changed keys
    file is announced without being asked."""
    bridge = Bridge(keepalive=60)
    bridge.sign_in()
    bridge.send({"namespace": "rpc", "name": "settings", "id": "bridge_request_list_keys",
                 "args": {"action": "list_ssl_checksums"}})
    bridge.received()
    bridge.clock.advance(60)
    assert [m["id"] for m in bridge.received()] == [KEEPALIVE_ID]
    bridge.checksums.append("SHA256:new")
    bridge.clock.advance(60)
    keepalive, update = bridge.received()
    assert keepalive["id"] == KEEPALIVE_ID
    assert update["id"] == "bridge_request_list_keys"
    assert update["args"]["sha256_keys"] == ["SHA256:a", "SHA256:new"]
    bridge.protocol.connectionLost(Failure(ConnectionDone()))
    assert bridge.clock.getDelayedCalls() == []


def test_a_refused_key_closes_the_link_and_slows_retries():
    """An auth error closes the link; the backoff then counts a link that never signed in."""
    bridge = Bridge()
    bridge.received()
    bridge.send({"namespace": "error", "name": "error", "id": AUTH_CHALLENGE_ID,
                 "args": {"code": 401, "message": "Unauthorized", "details": "no"}})
    assert bridge.received() == [("close", 1000)]
    bridge.protocol.connectionLost(Failure(ConnectionDone()))
    assert bridge.backoff.unsigned == 1


def test_unknown_requests_from_the_bridge_get_404():
    """The link answers only identify and list_ssl_checksums."""
    bridge = Bridge()
    bridge.received()
    bridge.send({"namespace": "rpc", "name": "settings", "id": "x", "args": {"action": "other"}})
    [reply] = bridge.received()
    assert reply["namespace"] == "error" and reply["args"]["code"] == 404


@pytest.mark.parametrize("unsigned, attempt, expected", [
    (0, 1, 1.5), (0, 2, 2.25), (3, 1, 1.5 ** 4), (0, 50, 60.0), (40, 1, 60.0),
])
def test_backoff_grows_with_failed_links_and_is_capped_at_60_seconds(unsigned, attempt, expected):
    """Failed TCP attempts and links that ended before signing in both grow the delay."""
    backoff = Backoff(jitter=lambda: 0)
    backoff.unsigned = unsigned
    assert backoff(attempt) == pytest.approx(expected)


def test_backoff_resets_after_a_signed_in_link_and_caps_jitter():
    """A link that signed in resets the count; jitter never takes the delay past 60 s."""
    backoff = Backoff(jitter=lambda: 0.99)
    for _ in range(5):
        backoff.link_ended(signed_in=False)
    assert backoff.unsigned == 5
    backoff.link_ended(signed_in=True)
    assert backoff.unsigned == 0 and backoff(1) == pytest.approx(2.49)
    assert backoff(100) == 60.0


def test_relayed_clients_are_keyed_on_their_key_and_bound_to_the_link_key():
    """The bridge event's connections map gives each relayed client's key: its failed
    logins count on ``bridge:<nick>:<key>``, and its auth_ssl is bound to the link's key
    fingerprint and its connection id (a plaintext session: legacy_clients)."""
    bridge = Bridge(legacy_clients=True)
    bridge.sign_in()
    bridge.send({"id": "", "namespace": "events", "name": "bridge", "args": {
        "available_connections": ["c1"], "connection_id": "me-on-the-bridge",
        "connections": {"c1": {"role": "client", "fingerprint": "SHA256:k"}},
    }})
    bridge.send('c1\n{"namespace": "rpc", "name": "identify", "id": 7, "args": {}}')
    client = bridge.protocol.clients.get("c1")
    assert client.peer_host == "bridge:test:SHA256:k"
    assert client.session.challenge_binding.describe() == {
        "bind": {"scheme": "sysadm-relay-v1", "server": "SHA256:me", "connection": "c1"}
    }
