"""What a plain HTTP request must be to be served (issue 13, items 3 and 4): whole within
http_request_timeout however its bytes trickle, Host and Origin ours, no OPTIONS, REST
bodies declared JSON, no browser credential prompt, and /health only at the cap."""

import json
from types import SimpleNamespace

import pytest
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from sysadmd.server.admission import FULL, HEALTH, Ticket
from sysadmd.server.browser import BrowserRules
from sysadmd.web.channel import is_json
from sysadmd.web.site import Health, build_site

PEER = IPv4Address("TCP", "127.0.0.1", 40000)


class Gateway:
    """Answers every REST call with ``answer``; records the calls."""

    log = SimpleNamespace(failure=lambda *a, **k: None)
    max_body_bytes = 65536

    def __init__(self, answer=(200, {"args": "ok"})):
        self.answer = answer
        self.calls = []

    def call(self, request, namespace, name):
        self.calls.append((namespace, name, request.content.read()))
        return defer.succeed(self.answer)


def make_site(clock, gateway=None, timeout=10.0, browser=None):
    gateway = gateway or Gateway()
    return build_site(gateway, Health(clock, lambda: {}), request_timeout=timeout,
                      browser=browser, reactor=clock)


class Connection:
    """One HTTP connection to ``site`` through a StringTransport."""

    def __init__(self, site, ticket=None):
        self.transport = StringTransport(peerAddress=PEER)
        self.protocol = site.buildProtocol(PEER)
        self.protocol.ticket = ticket
        self.protocol.makeConnection(self.transport)

    def send(self, data):
        self.protocol.dataReceived(data if isinstance(data, bytes) else data.encode("latin-1"))

    def responses(self):
        data, _ = self.transport.value(), self.transport.clear()
        return [part for part in data.split(b"HTTP/1.1 ")[1:]]

    def status(self):
        [response] = self.responses()
        return int(response[:3]), response

    @property
    def closed(self):
        return self.transport.disconnecting or self.transport.disconnected


def get(path, host="127.0.0.1:12150", extra=""):
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n"


def post(path, body=b"{}", content_type="application/json", host="127.0.0.1", extra=""):
    ctype = f"Content-Type: {content_type}\r\n" if content_type else ""
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{ctype}Content-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode("latin-1") + body


# http_request_timeout


def test_a_trickled_body_does_not_extend_the_request_timeout():
    clock = task.Clock()
    connection = Connection(make_site(clock, timeout=2))
    connection.send(b"POST /rpc/identify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(7):
        clock.advance(0.25)
        connection.send(b"x")
    assert not connection.transport.disconnected
    clock.advance(0.25)
    assert connection.transport.disconnected  # aborted at 2 s, bytes or not
    assert connection.transport.value() == b""


def test_the_first_request_is_timed_from_the_connections_acceptance():
    clock = task.Clock()
    ticket = Ticket(None, "127.0.0.1", FULL)
    ticket.started = clock.seconds()
    clock.advance(1.5)  # the front door waited this long for the headers
    connection = Connection(make_site(clock, timeout=2), ticket)
    connection.send(b"POST /rpc/identify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nab")
    clock.advance(0.5)
    assert connection.transport.disconnected


def test_a_whole_request_is_served_and_the_next_one_gets_its_own_time():
    clock = task.Clock()
    gateway = Gateway()
    connection = Connection(make_site(clock, gateway, timeout=2))
    clock.advance(1.9)
    connection.send(post("/rpc/identify"))
    assert connection.status()[0] == 200 and gateway.calls == [("rpc", "identify", b"{}")]
    clock.advance(1.9)  # kept alive, idle: the next request's clock started at the answer
    connection.send(get("/health"))
    assert connection.status()[0] == 200
    assert not connection.closed
    clock.advance(2)  # idle past the timeout: closed politely
    assert connection.transport.disconnecting and not connection.transport.disconnected
    connection.protocol.connectionLost(Failure(ConnectionDone()))
    assert not clock.getDelayedCalls()


def test_no_timer_is_left_when_the_connection_goes():
    clock = task.Clock()
    connection = Connection(make_site(clock, timeout=2))
    connection.protocol.connectionLost(Failure(ConnectionDone()))
    assert not clock.getDelayedCalls()


# Connections kept back for /health at the cap


def test_a_health_only_connection_gets_health_and_is_closed_after_it():
    clock = task.Clock()
    site = make_site(clock)
    health = Connection(site, Ticket(None, "127.0.0.1", HEALTH))
    health.send(get("/health"))
    code, response = health.status()
    assert code == 200 and b"connection: close" in response.lower()
    assert health.closed
    for request in (get("/"), get("/metrics"), post("/rpc/identify")):
        other = Connection(site, Ticket(None, "127.0.0.1", HEALTH))
        other.send(request)
        assert other.status()[0] == 503


# Cross-site requests (item 4) and Host (item 5)


def test_rest_posts_must_be_declared_json():
    clock = task.Clock()
    gateway = Gateway()
    site = make_site(clock, gateway)
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None,
                         "multipart/form-data; boundary=x", "application/json; foo=bar"):
        connection = Connection(site)
        connection.send(post("/rpc/dispatcher", content_type=content_type))
        code, response = connection.status()
        assert code == 415 and b"application/json" in response, content_type
    assert gateway.calls == []
    for content_type in ("application/json", "Application/JSON; charset=utf-8"):
        connection = Connection(site)
        connection.send(post("/rpc/identify", content_type=content_type))
        assert connection.status()[0] == 200
    assert len(gateway.calls) == 2


def test_a_401_does_not_invite_the_browser_to_prompt():
    clock = task.Clock()
    connection = Connection(make_site(clock, Gateway((401, {"args": {"code": 401}}))))
    connection.send(post("/rpc/query"))
    code, response = connection.status()
    assert code == 401 and b"www-authenticate" not in response.lower()


@pytest.mark.parametrize("path", ["/", "/health", "/metrics", "/rpc/identify", "/static/app.js", "/x/y/z"])
def test_options_is_405_everywhere_with_no_cors_header(path):
    clock = task.Clock()
    connection = Connection(make_site(clock, browser=BrowserRules(["127.0.0.1"], [])))
    connection.send(
        f"OPTIONS {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://127.0.0.1\r\n"
        "Access-Control-Request-Method: POST\r\n\r\n"
    )
    code, response = connection.status()
    assert code == 405
    assert b"access-control-" not in response.lower()


def test_foreign_origins_and_hosts_are_refused_403_on_every_path():
    clock = task.Clock()
    gateway = Gateway()
    site = make_site(clock, gateway, browser=BrowserRules(["localhost", "127.0.0.1"], []))
    cases = [
        (post("/rpc/dispatcher", extra="Origin: http://evil.example\r\n"), 403),
        (post("/rpc/dispatcher", host="evil.example", extra="Origin: http://evil.example\r\n"), 403),
        (get("/health", host="evil.example"), 403),
        (get("/", host="evil.example:12150", extra="Origin: http://evil.example:12150\r\n"), 403),
        (post("/rpc/identify", extra="Origin: http://127.0.0.1\r\n"), 200),
        (post("/rpc/identify", host="localhost:80"), 200),
        (get("/health", host="LOCALHOST"), 200),
    ]
    for request, expected in cases:
        connection = Connection(site)
        connection.send(request)
        code, response = connection.status()
        assert code == expected, request
        if code == 403:
            assert json.loads(response.split(b"\r\n\r\n", 1)[1])["args"]["code"] == 403
    assert [call[1] for call in gateway.calls] == ["identify", "identify"]


def test_is_json():
    assert is_json(b"application/json") and is_json(b"application/json;charset=UTF-8")
    assert not is_json(None) and not is_json(b"text/plain") and not is_json(b"application/jsonx")
