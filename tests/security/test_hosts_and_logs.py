"""Issue 13, item 5: DNS rebinding (a handshake whose Origin equals its Host was accepted
whatever the Host), peer-supplied strings written raw into the log, and the dispatcher's
database and the state directory readable by others."""

import base64
import os
import re
import socket
import stat

import pytest

from tests.integration.harness import Client
from tests.security.flood import address_of, http_from


def handshake(daemon, host, origin=None, extra=b""):
    """A raw WebSocket opening handshake naming ``host``; returns the HTTP status."""
    key = base64.b64encode(os.urandom(16))
    request = (
        b"GET / HTTP/1.1\r\nHost: " + host.encode("latin-1") + b"\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n"
    )
    if origin is not None:
        request += b"Origin: " + origin.encode("latin-1") + b"\r\n"
    with socket.create_connection(address_of(daemon), timeout=10) as sock:
        sock.sendall(request + extra + b"\r\n")
        answer = sock.recv(4096)
    return int(answer.split(b" ", 2)[1])


def get(daemon, path, host, origin=None):
    headers = f"Host: {host}\r\n" + (f"Origin: {origin}\r\n" if origin else "")
    request = f"GET {path} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n".encode("latin-1")
    return http_from("127.0.0.1", daemon, request)[0]


def test_dns_rebinding_is_refused_on_websocket_and_http(daemon):
    """Host: evil.example with a matching Origin is 403 on both; the listen address and
    localhost (any port) are accepted."""
    _, port = address_of(daemon)
    assert handshake(daemon, f"evil.example:{port}", f"http://evil.example:{port}") == 403
    assert handshake(daemon, "evil.example") == 403
    assert get(daemon, "/health", f"evil.example:{port}", f"http://evil.example:{port}") == 403
    assert get(daemon, "/", "evil.example") == 403
    daemon.wait_for_log("refused connection from 127.0.0.1: Host not allowed")
    daemon.wait_for_log("refused HTTP request from 127.0.0.1: Host not allowed")

    assert handshake(daemon, f"127.0.0.1:{port}", f"http://127.0.0.1:{port}") == 101
    assert handshake(daemon, f"localhost:{port}", f"http://localhost:{port}") == 101
    assert handshake(daemon, "LOCALHOST") == 101
    assert get(daemon, "/health", f"127.0.0.1:{port}") == 200
    assert get(daemon, "/health", "localhost:1") == 200
    # The real client (which names the URL's host) is unaffected.
    client = Client(daemon.url)
    assert client.call("rpc", "identify")["name"] == "response"
    client.close()


FORGED = "2026-11-30T00:00:00+0000 [sysadmd.auth] admin authenticated from 10.0.0.1"


def raw_escapes(daemon):
    """Lines of the daemon's log holding a raw control character (tab excepted)."""
    return [line for line in daemon.log_text().splitlines()
            if re.search("[\x00-\x08\x0b-\x1f\x7f]", line)]


def test_peer_strings_cannot_forge_log_lines_or_drive_a_terminal(daemon):
    """An Origin and a Host carrying escape sequences are logged escaped; a user name with
    a newline and a forged line after it does not become a line of the log."""
    assert handshake(daemon, "127.0.0.1", "http://evil.example/\x1b[31mRED\x1b[0m") == 403
    assert get(daemon, "/health", "evil\x1b[2J.example") == 403
    daemon.wait_for_log(re.escape(r"Origin http://evil.example/\x1b[31mRED\x1b[0m)"))
    daemon.wait_for_log(re.escape(r"(Host evil\x1b[2J.example, Origin None)"))

    client = Client(daemon.url)
    reply = client.login("eve\n" + FORGED + "\x1b[2J", "wrong")
    assert reply["name"] == "error"
    client.close()
    basic = base64.b64encode(("eve\r\n" + FORGED + ":wrong").encode()).decode()
    request = (f"POST /rpc/query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Authorization: Basic {basic}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}")
    assert http_from("127.0.0.1", daemon, request.encode())[0] == 401
    daemon.wait_for_log("authentication")

    lines = daemon.log_text().splitlines()
    assert not [line for line in lines if line.startswith(FORGED[:19])]
    assert raw_escapes(daemon) == []


def test_a_job_id_cannot_forge_a_log_line(daemon, admin):
    job_id = "job\n" + FORGED + "\x1b[2J"
    reply = admin.call("rpc", "dispatcher", {"action": "run", job_id: "true"})
    assert reply["name"] == "response", reply
    daemon.wait_for_log("queued 1 job")
    lines = daemon.log_text().splitlines()
    assert not [line for line in lines if line.startswith(FORGED[:19])]
    assert raw_escapes(daemon) == []


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_database_and_the_state_dir_are_private(make_daemon, tmp_path):
    """dispatcher.sqlite and its journal files 0600, the state directory 0700, whatever
    the umask; an existing state directory left open by an older version is narrowed."""
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o755)
    old = os.umask(0o002)  # the daemon inherits a permissive umask
    try:
        daemon = make_daemon(start=False, ticker=False)
        daemon.add_user("admin", "admin-secret-pw", "full")
        daemon.start()
    finally:
        os.umask(old)
    admin = Client(daemon.url)
    admin.login("admin", "admin-secret-pw")
    assert admin.call("rpc", "dispatcher", {"action": "run", "private": "echo secret"})["name"] == "response"
    admin.close()
    daemon.wait_for_log(r"state directory \S+ narrowed from mode 0755 to 0700")
    assert mode(state) == 0o700
    database = state / "dispatcher.sqlite"
    companions = [p for p in state.iterdir() if p.name.startswith("dispatcher.sqlite")]
    assert database in companions and len(companions) >= 2  # the -wal and -shm files
    for path in companions:
        assert mode(path) == 0o600, path
