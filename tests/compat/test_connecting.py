"""Connecting as the original Qt client does: the handshake bytes ``QWebSocket`` writes,
``Origin: sysadm-client`` (not a URL), over ws and over wss with a generated certificate
the client does not verify. Browser Origins keep their rules."""

import base64
import hashlib
import json
import os
import socket
import ssl
from urllib.parse import urlsplit

import pytest

from tests.integration.test_auth import config
from tests.unit.wsfake import client_frame, parse_frames

WSS_CONFIG = config(server={"listen": "ssl:0:interface=127.0.0.1", "tls_generate": "yes"})
# RFC 6455's GUID, to check the server's Sec-WebSocket-Accept
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def insecure_context():
    """What the Qt client does with a self-signed certificate: ignore its errors."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class RawConnection:
    """A socket that sends exactly the bytes QWebSocket sends, then speaks frames."""

    def __init__(self, url, origin=b"sysadm-client"):
        parts = urlsplit(url)
        sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        if parts.scheme == "wss":
            sock = insecure_context().wrap_socket(sock, server_hostname=parts.hostname)
        self.sock = sock
        self.key = base64.b64encode(os.urandom(16))
        # Qt 5 QWebSocketPrivate::createHandShakeRequest: these lines, in this order.
        request = (
            b"GET / HTTP/1.1\r\n"
            b"Host: " + f"{parts.hostname}:{parts.port}".encode() + b"\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + self.key + b"\r\n"
            + (b"Origin: " + origin + b"\r\n" if origin is not None else b"")
            + b"Sec-WebSocket-Version: 13\r\n"
            b"\r\n"
        )
        sock.sendall(request)
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("iso-8859-1").split("\r\n")
        self.status = int(lines[0].split(" ", 2)[1])
        self.headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:])
        }

    def accepted(self):
        """True when the server switched protocols with the right accept key."""
        expected = base64.b64encode(hashlib.sha1(self.key + GUID).digest()).decode()
        return self.status == 101 and self.headers.get("sec-websocket-accept") == expected

    def send(self, text):
        """One masked text frame, as a client sends."""
        self.sock.sendall(client_frame(text))

    def recv(self):
        """The next text frame's JSON."""
        while True:
            if _complete(self.buffer):
                [(opcode, payload)] = parse_frames(self.buffer[:_frame_length(self.buffer)])
                self.buffer = self.buffer[_frame_length(self.buffer):]
                assert opcode == 1, (opcode, payload)
                return json.loads(payload)
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the connection"
            self.buffer += chunk

    def close(self):
        self.sock.close()


def _frame_length(data):
    length = data[1] & 0x7F
    if length == 126:
        return 4 + int.from_bytes(data[2:4], "big")
    if length == 127:
        return 10 + int.from_bytes(data[2:10], "big")
    return 2 + length


def _complete(data):
    if len(data) < 2:
        return False
    header = {126: 4, 127: 10}.get(data[1] & 0x7F, 2)
    return len(data) >= header and len(data) >= _frame_length(data)


IDENTIFY = '{"args":"","id":"sysadm_client_identify","name":"identify","namespace":"rpc"}'


@pytest.fixture
def wss_daemon(make_daemon):
    return make_daemon(WSS_CONFIG, ticker=False)


@pytest.fixture
def ws_daemon(make_daemon):
    return make_daemon(ticker=False)


def speaks_after_the_qt_handshake(url):
    connection = RawConnection(url)
    try:
        assert connection.accepted(), (connection.status, connection.headers)
        connection.send(IDENTIFY)
        reply = connection.recv()
        assert reply["id"] == "sysadm_client_identify" and reply["args"]["type"] == "server"
    finally:
        connection.close()


def test_the_qt_handshake_is_accepted_on_ws(ws_daemon):
    """The exact handshake with Origin: sysadm-client gets 101 (Autobahn alone answered
    400 "No host part in Origin"), and the connection then answers identify."""
    speaks_after_the_qt_handshake(ws_daemon.url)


def test_the_qt_handshake_is_accepted_on_wss_with_a_generated_certificate(wss_daemon):
    """The same over wss (ssl: endpoint, tls_generate = yes), the client ignoring the
    self-signed certificate, as the Qt client does."""
    assert wss_daemon.url.startswith("wss://")
    speaks_after_the_qt_handshake(wss_daemon.url)


def test_an_original_server_origin_is_accepted_too(ws_daemon):
    """An original server linking to a bridge sends Origin: sysadm-server."""
    connection = RawConnection(ws_daemon.url, origin=b"sysadm-server")
    try:
        assert connection.accepted()
    finally:
        connection.close()


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_a_foreign_browser_origin_is_still_refused(make_daemon, scheme):
    """A page of another site (a URL Origin) still gets 403, on ws and wss."""
    daemon = make_daemon(WSS_CONFIG if scheme == "wss" else config(), ticker=False)
    connection = RawConnection(daemon.url, origin=b"https://evil.example")
    try:
        assert connection.status == 403
    finally:
        connection.close()
    daemon.wait_for_log(r"refused connection from 127\.0\.0\.1: Origin not allowed "
                        r"\(Host 127\.0\.0\.1:\d+, Origin https://evil\.example\)")


def test_the_daemons_own_origin_and_null_are_as_before(ws_daemon):
    """The browser rule is unchanged: a page served by the daemon's own host and port
    passes; the opaque origin null is refused at the handshake (400), as it always was."""
    port = urlsplit(ws_daemon.url).port
    own = RawConnection(ws_daemon.url, origin=f"http://127.0.0.1:{port}".encode())
    null = RawConnection(ws_daemon.url, origin=b"null")
    try:
        assert own.accepted()
        assert null.status == 400
    finally:
        own.close()
        null.close()
