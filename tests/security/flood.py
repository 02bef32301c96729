"""Floods from several loopback addresses, and what became of each connection.

Linux routes the whole of 127.0.0.0/8 to the loopback interface, so binding a client
socket to 127.0.0.2, 127.0.0.3... makes the daemon see distinct addresses."""

import selectors
import socket
import time

from tests.integration.harness import Client


def address_of(daemon):
    """(host, port) of the daemon's first listening URL."""
    host, port = daemon.url.split("//", 1)[1].rsplit(":", 1)
    return host, int(port)


def connect_from(source, daemon, timeout=5):
    """A TCP socket from ``source`` connected to ``daemon``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(address_of(daemon))
    return sock


def websocket_from(source, daemon, **kwargs):
    """A :class:`Client` whose connection comes from ``source``."""
    return Client(daemon.url, sock=connect_from(source, daemon), **kwargs)


def http_from(source, daemon, request, timeout=10):
    """Send ``request`` (bytes) from ``source``; returns (status or None, whole answer)."""
    sock = connect_from(source, daemon, timeout)
    try:
        sock.sendall(request)
        answer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
            if b"\r\n\r\n" in answer and b"connection: close" not in answer.lower():
                head, _, body = answer.partition(b"\r\n\r\n")
                length = [int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                          if line.startswith(b"content-length:")]
                if length and len(body) >= length[0]:
                    break
    finally:
        sock.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else None
    return status, answer


class Outcome:
    """What happened to one flood connection."""

    def __init__(self, sock, connected_at):
        self.sock = sock
        self.connected_at = connected_at
        self.answer = b""
        self.closed_after = None  # seconds after connecting, once closed

    @property
    def refused_503(self):
        """Whether the daemon answered 503."""
        return self.answer.startswith(b"HTTP/1.1 503")


def flood(source, daemon, count, first_bytes):
    """``count`` connections from ``source``, each sending ``first_bytes`` at once;
    connections the kernel itself refused are left out."""
    outcomes = []
    for _ in range(count):
        try:
            sock = connect_from(source, daemon)
            sock.sendall(first_bytes)
        except OSError:
            continue
        sock.setblocking(False)
        outcomes.append(Outcome(sock, time.monotonic()))
    return outcomes


def watch(outcomes, seconds, trickle_every=None):
    """Read every connection for ``seconds`` (recording answers and when each closed),
    sending one more byte to each open one every ``trickle_every`` seconds."""
    selector = selectors.DefaultSelector()
    for outcome in outcomes:
        if outcome.closed_after is None:
            selector.register(outcome.sock, selectors.EVENT_READ, outcome)
    deadline = time.monotonic() + seconds
    next_trickle = time.monotonic() + (trickle_every or seconds + 1)
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.05):
            outcome = key.data
            try:
                chunk = outcome.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if chunk:
                outcome.answer += chunk
                continue
            outcome.closed_after = time.monotonic() - outcome.connected_at
            selector.unregister(outcome.sock)
        if trickle_every and time.monotonic() >= next_trickle:
            next_trickle += trickle_every
            for key in list(selector.get_map().values()):
                try:
                    key.data.sock.send(b"x")
                except OSError:
                    pass
    selector.close()


def close_all(outcomes):
    """Close every flood connection."""
    for outcome in outcomes:
        outcome.sock.close()
