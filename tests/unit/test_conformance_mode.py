"""``[server] conformance_echo`` and ``[server] compression``, in memory."""

import json
import os
import struct
import zlib

import pytest

from sysadmd.server.endpoints import is_loopback_endpoint
from sysadmd.taps import daemon as tap
from sysadmd.taps.sections import load_daemon_config
from tests.unit.test_protocol import Daemon
from tests.unit.wsfake import Peer, client_frame


def raw_frames(data):
    """Server frames with their RSV1 (compressed) bit: (opcode, rsv1, payload)."""
    frames = []
    while data:
        first, second = data[0], data[1] & 0x7F
        offset = 2
        if second == 126:
            second, offset = struct.unpack("!H", data[2:4])[0], 4
        elif second == 127:
            second, offset = struct.unpack("!Q", data[2:10])[0], 10
        frames.append((first & 0x0F, bool(first & 0x40), data[offset:offset + second]))
        data = data[offset + second:]
    return frames


class Inflater:
    """One connection's permessage-deflate decompressor (the context carries over from
    message to message unless no_context_takeover was agreed)."""

    def __init__(self):
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)

    def __call__(self, payload):
        return self._inflater.decompress(payload + b"\x00\x00\xff\xff")


def handshake(peer, extensions=None):
    """The opening handshake, optionally offering extensions; returns the response head."""
    peer.handshake(extra_headers=[f"Sec-WebSocket-Extensions: {extensions}"] if extensions else [])
    return peer.response_head


def test_echo_mode_echoes_text_and_binary_without_authentication():
    """Every message comes back as it was sent, text as text and binary as binary,
    before any sign-in and past the pre-authentication size limit."""
    daemon = Daemon(conformance_echo=True, max_message_bytes=1 << 20, preauth_max_message_bytes=1024)
    peer = daemon.peer()
    big = os.urandom(200_000)
    peer.send("héllo")
    peer.send(big, opcode=2)
    peer.send(json.dumps({"namespace": "rpc", "name": "query", "id": 1, "args": {}}))
    assert peer.frames() == [
        (1, "héllo".encode()),
        (2, big),
        (1, b'{"namespace": "rpc", "name": "query", "id": 1, "args": {}}'),
    ]


def test_echo_mode_keeps_the_daemon_limits_but_not_the_auth_timeout():
    """max_message_bytes still closes with 1009; an echo connection is not closed for
    not signing in (the suite never signs in)."""
    daemon = Daemon(conformance_echo=True, max_message_bytes=4096, auth_timeout=30, idle_timeout=0)
    peer = daemon.peer()
    daemon.clock.advance(60)
    assert peer.close_code() is None
    peer.send(b"x" * 5000, opcode=2)
    assert peer.close_code() == 1009


def test_normal_mode_does_not_echo():
    """Without the mode a message is a request (here a malformed one: 400)."""
    peer = Daemon().peer()
    peer.send("hello")
    assert peer.messages()[0]["args"]["code"] == 400


@pytest.mark.parametrize(
    "description, loopback",
    [
        ("tcp:0:interface=127.0.0.1", True),
        ("tcp:12150:interface=127.0.0.2", True),
        ("tcp6:0:interface=\\:\\:1", True),
        ("ssl:0:interface=localhost:privateKey=k.pem", True),
        ("tcp:0", False),
        ("tcp:0:interface=0.0.0.0", False),
        ("tcp6:0:interface=\\:\\:", False),
        ("tcp:0:interface=192.0.2.1", False),
        ("unix:/tmp/sysadmd.sock", False),
    ],
)
def test_loopback_endpoints(description, loopback):
    assert is_loopback_endpoint(description) is loopback


def test_echo_mode_is_refused_off_loopback():
    """A configuration error naming the key when any endpoint is not loopback."""
    config = load_daemon_config(
        text="[server]\nconformance_echo = yes\nlisten = tcp:0:interface=127.0.0.1 tcp:12150\n"
    )
    errors = []
    tap._check_conformance(config, errors)
    [error] = errors
    assert "[server] conformance_echo" in str(error) and "tcp:12150" in str(error)
    errors = []
    tap._check_conformance(load_daemon_config(text="[server]\nconformance_echo = yes\nlisten = tcp:0:interface=127.0.0.1\n"), errors)
    assert errors == []


def test_the_modes_are_off_by_default():
    server = load_daemon_config(text="")["server"]
    assert server["conformance_echo"] is False and server["compression"] is False


def test_compression_off_ignores_the_offer():
    """By default permessage-deflate is not accepted."""
    daemon = Daemon()
    peer = Peer(daemon.factory, handshake=False)
    head = handshake(peer, "permessage-deflate; client_max_window_bits")
    assert head.startswith("http/1.1 101") and "permessage-deflate" not in head


def test_compression_on_compresses_prepared_event_frames_per_connection():
    """With compression on, an event's shared prepared frame is compressed for a
    connection that negotiated deflate (Autobahn falls back to sendMessage) and sent as
    is to one that did not; both get the same event."""
    daemon = Daemon(compression=True, idle_timeout=0)
    compressed = Peer(daemon.factory, handshake=False)
    head = handshake(compressed, "permessage-deflate; client_max_window_bits")
    assert "sec-websocket-extensions: permessage-deflate" in head
    plain = Peer(daemon.factory, handshake=False)
    assert "permessage-deflate" not in handshake(plain)
    for peer in (compressed, plain):
        peer.request("rpc", "auth", {"username": "admin", "password": "right"}, "login")
        peer.request("events", "subscribe", ["demo"], "sub")
    payload = {"n": 1, "pad": "z" * 2000}
    daemon.hub.publish("demo", payload)
    inflate = Inflater()
    login, subscribed, event = raw_frames(compressed.transport.value())
    assert [json.loads(inflate(body))["id"] for _, _, body in (login, subscribed)] == ["login", "sub"]
    opcode, rsv1, body = event
    assert opcode == 1 and rsv1 and len(body) < 200
    assert json.loads(inflate(body))["args"] == payload
    plain.transport.clear()
    daemon.hub.publish("demo", payload)
    [(opcode, rsv1, body)] = raw_frames(plain.transport.value())
    assert opcode == 1 and not rsv1 and json.loads(body)["args"] == payload


def test_compressed_requests_are_understood():
    """A compressed request is inflated and answered (compressed)."""
    daemon = Daemon(compression=True)
    peer = Peer(daemon.factory, handshake=False)
    handshake(peer, "permessage-deflate")
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
    request = json.dumps({"namespace": "rpc", "name": "identify", "id": "z", "args": {}}).encode()
    body = compressor.compress(request) + compressor.flush(zlib.Z_SYNC_FLUSH)
    frame = bytearray(client_frame(body[:-4]))
    frame[0] |= 0x40  # RSV1: this message is compressed
    peer.protocol.dataReceived(bytes(frame))
    [(opcode, rsv1, reply)] = raw_frames(peer.transport.value())
    assert rsv1 and json.loads(Inflater()(reply))["id"] == "z"
