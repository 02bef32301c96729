"""The dashboard's HTTP resources, through the real web site, in memory."""

import os
from types import SimpleNamespace

import pytest
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from sysadmd.server.admission import Admission
from sysadmd.taps import daemon as tap
from sysadmd.taps.sections import load_daemon_config
from sysadmd.web.dashboard import HERE, Dashboard
from sysadmd.web.site import Health, build_site


@implementer(ISSLTransport)
class TLSStringTransport(StringTransport):
    """What Request.isSecure() sees on an ssl: endpoint."""

    def setTcpNoDelay(self, enabled):
        pass

    def setTcpKeepAlive(self, enabled):
        pass


class Response:
    def __init__(self, raw):
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.code = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers.setdefault(name.strip().lower(), []).append(value.strip())

    def header(self, name):
        values = self.headers.get(name, [])
        assert len(values) <= 1, values
        return values[0] if values else None


def request(site, path, method="GET", host="127.0.0.1:12150", secure=False):
    """One HTTP/1.1 request through the site's real HTTP channel."""
    site.reactor = task.Clock()
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    peer = IPv4Address("TCP", "127.0.0.1", 40000)
    transport = (TLSStringTransport if secure else StringTransport)(peerAddress=peer)
    protocol.makeConnection(transport)
    host_line = f"Host: {host}\r\n" if host is not None else ""
    protocol.dataReceived(
        f"{method} {path} HTTP/1.1\r\n{host_line}Connection: close\r\n\r\n".encode("latin-1")
    )
    protocol.connectionLost(Failure(ConnectionDone()))
    return Response(transport.value())


def site_with(dashboard):
    gateway = SimpleNamespace(max_body_bytes=65536)
    health = Health(task.Clock(), lambda: {})
    return build_site(gateway, health, dashboard)


@pytest.fixture
def site():
    return site_with(Dashboard())


def csp_directives(response):
    policy = response.header("content-security-policy")
    assert policy, "no Content-Security-Policy header"
    return {d.split()[0]: d.split()[1:] for d in (p.strip() for p in policy.split(";")) if d}


def test_index_is_served_at_the_root_as_html(site):
    response = request(site, "/")
    assert response.code == 200
    assert response.header("content-type") == "text/html; charset=utf-8"
    with open(os.path.join(HERE, "index.html"), "rb") as f:
        assert response.body == f.read()
    assert b'<script src="/static/app.js"' in response.body


@pytest.mark.parametrize(
    "name, content_type",
    [("app.js", "text/javascript; charset=utf-8"), ("style.css", "text/css; charset=utf-8")],
)
def test_static_files_have_their_content_type(site, name, content_type):
    response = request(site, "/static/" + name)
    assert response.code == 200
    assert response.header("content-type") == content_type
    with open(os.path.join(HERE, name), "rb") as f:
        assert response.body == f.read()


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/static/missing.js", "/static/", "/static/../tap.py"])
def test_every_answer_carries_the_security_headers(site, path):
    response = request(site, path)
    directives = csp_directives(response)
    assert directives["default-src"] == ["'none'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    assert directives["img-src"] == ["'self'", "data:"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    assert directives["form-action"] == ["'none'"]
    assert response.header("x-content-type-options") == "nosniff"
    assert response.header("referrer-policy") == "no-referrer"


def test_connect_src_is_this_origin_only(site):
    """'self' plus the exact WebSocket origin (for browsers where 'self' does not cover
    ws:), never a bare scheme that would allow any host."""
    assert csp_directives(request(site, "/"))["connect-src"] == ["'self'", "ws://127.0.0.1:12150"]
    assert csp_directives(request(site, "/", secure=True))["connect-src"] == [
        "'self'", "wss://127.0.0.1:12150"
    ]
    assert csp_directives(request(site, "/", host="[::1]:8080"))["connect-src"] == [
        "'self'", "ws://[::1]:8080"
    ]


@pytest.mark.parametrize("host", ["evil.example; script-src *", "a b", "x'y"])
def test_a_strange_host_header_is_not_repeated_in_the_policy(site, host):
    directives = csp_directives(request(site, "/", host=host))
    assert directives["connect-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'"]


@pytest.mark.parametrize(
    "path",
    [
        "/static/../dashboard.py",
        "/static/..%2fdashboard.py",
        "/static/%2e%2e/site.py",
        "/static/..%2f..%2ftap.py",
        "/static/%2fetc%2fpasswd",
        "/static/.hidden.js",
        "/static//etc/passwd",
        "/static/app.js/extra",
    ],
)
def test_path_traversal_is_refused(site, path):
    response = request(site, path)
    assert response.code == 404
    assert b"import" not in response.body and b"root:" not in response.body


@pytest.mark.parametrize(
    "path",
    ["/static/..%2fsecret.js", "/static/%2e%2e%2fsecret.js", "/static/%2e%2e/secret.js",
     "/static/..%5csecret.js", "/static/%2fsecret.js"],
)
def test_traversal_cannot_reach_a_servable_file_outside(tmp_path, path):
    """A .js file right beside the dashboard folder stays out of reach."""
    root = tmp_path / "dashboard"
    root.mkdir()
    (root / "index.html").write_text("<p>hi</p>")
    (tmp_path / "secret.js").write_text("secret()")
    site = site_with(Dashboard(str(root)))
    response = request(site, path)
    assert response.code == 404
    assert b"secret()" not in response.body


def test_no_directory_listing(site):
    for path in ("/static", "/static/"):
        response = request(site, path)
        assert response.code == 404
        assert b"app.js" not in response.body


def test_files_of_unknown_type_are_not_served(tmp_path):
    (tmp_path / "index.html").write_text("<p>hi</p>")
    (tmp_path / "notes.txt").write_text("secret")
    (tmp_path / "app.js").write_text("1")
    site = site_with(Dashboard(str(tmp_path)))
    assert request(site, "/static/notes.txt").code == 404
    assert request(site, "/static/app.js").code == 200
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.js").write_text("1")
    assert request(site, "/static/sub/x.js").code == 404
    assert request(site, "/static/sub").code == 404


def test_only_get_and_head(site):
    assert request(site, "/", method="POST").code == 405
    head = request(site, "/", method="HEAD")
    assert head.code == 200 and head.body == b""
    assert head.header("content-security-policy")


def test_paths_it_does_not_own_fall_through():
    dashboard = Dashboard()
    for path in (b"rpc", b"events", b"health", b"favicon.ico", b"index.html", b"ws"):
        assert dashboard.child(path) is None
    assert dashboard.child(b"") is not None
    assert dashboard.child(b"static") is not None


def test_rest_and_health_still_answer_beside_the_dashboard(site):
    health = request(site, "/health")
    assert health.code == 200 and b'"status": "ok"' in health.body
    assert request(site, "/rpc/identify").code == 405  # REST is POST only


def front_door_site(text):
    config = load_daemon_config(text=text)
    factory = SimpleNamespace(parts=None, open_connections=0, admission=Admission(256), browser=None)
    return tap.front_door(task.Clock(), config, factory, None).web


def test_the_daemon_serves_the_dashboard_by_default():
    assert load_daemon_config(text="")["server"]["dashboard"] is True
    response = request(front_door_site(""), "/")
    assert response.code == 200 and b"/static/app.js" in response.body


def test_dashboard_no_leaves_the_root_unserved():
    site = front_door_site("[server]\ndashboard = no\n")
    response = request(site, "/")
    assert response.code == 404
    assert b"/static/app.js" not in response.body
    static = request(site, "/static/app.js")
    assert static.code != 200 and b"sysadmd" not in static.body  # a REST namespace now
    assert static.header("content-security-policy") is None
    assert request(site, "/health").code == 200
