"""Host and Origin: one rule for the WebSocket handshake and plain HTTP (issue 13, items
4 and 5: cross-site requests and DNS rebinding)."""

import base64
import os

import pytest

from sysadmd.channel.settings import ConnectionSettings
from sysadmd.server.browser import BrowserRules
from sysadmd.taps.sections import load_daemon_config
from sysadmd.util.hosts import HostRule, default_allowed_hosts, host_of
from tests.unit.test_protocol import Daemon
from tests.unit.wsfake import Peer


@pytest.mark.parametrize(
    "header, host",
    [
        ("Example.ORG:8080", "example.org"),
        ("example.org.", "example.org"),
        ("[::1]:12150", "::1"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("127.0.0.1:0", "127.0.0.1"),
        ("user@example.org", None),
        ("example.org:http", None),
        ("[::1", None),
        ("[nothex]:80", None),
        ("", None),
        ("a b", None),
    ],
)
def test_host_of(header, host):
    assert host_of(header) == host


def test_default_hosts_are_the_listen_addresses_localhost_and_the_host_names():
    hosts = default_allowed_hosts(
        ["tcp:12150:interface=192.0.2.7", "ssl:12151:interface=\\:\\:1", "unix:/run/s"],
        hostname="box.example.org",
    )
    assert hosts == ["localhost", "192.0.2.7", "::1", "box.example.org", "box"]
    rule = HostRule(hosts)
    for allowed in ("192.0.2.7:12150", "[::1]:12151", "localhost", "BOX", "box.example.org:1"):
        assert rule.allows(allowed), allowed
    for refused in ("evil.example", "192.0.2.8", "127.0.0.1", "box.evil.example"):
        assert not rule.allows(refused), refused


def test_a_wildcard_listener_allows_every_ip_literal_but_not_other_names():
    rule = HostRule(default_allowed_hosts(["tcp:12150"], hostname="box"))
    assert rule.allows("203.0.113.9:12150") and rule.allows("[2001:db8::1]")
    assert not rule.allows("evil.example")
    assert HostRule(default_allowed_hosts(["tcp6:12150"], hostname="box")).allows("[2001:db8::1]")


def test_star_allows_any_host_and_no_host_header_is_not_a_browser():
    assert HostRule(["*"]).allows("anything.example")
    assert HostRule(["localhost"]).allows(None)


def test_allowed_hosts_come_from_the_config():
    config = load_daemon_config(text="[server]\nlisten = tcp:1:interface=10.1.2.3\n")
    settings = ConnectionSettings.from_config(config)
    assert "10.1.2.3" in settings.allowed_hosts and "localhost" in settings.allowed_hosts
    config = load_daemon_config(text="[server]\nallowed_hosts = dash.example.org\n")
    assert ConnectionSettings.from_config(config).allowed_hosts == ["dash.example.org"]


def test_the_origin_rule():
    rules = BrowserRules(["localhost", "127.0.0.1"], [])
    assert rules.refusal("127.0.0.1:12150", "http://127.0.0.1:12150", False) is None
    assert rules.refusal("localhost", "https://localhost", True) is None
    assert rules.refusal("localhost", "http://localhost", True) == "Origin not allowed"
    assert rules.refusal("127.0.0.1:12150", "null", False) == "Origin not allowed"
    assert rules.refusal("127.0.0.1", None, False) is None
    # DNS rebinding: the Origin matches the Host, but the Host is not ours.
    assert rules.refusal("evil.example:12150", "http://evil.example:12150", False) == "Host not allowed"
    listed = BrowserRules(["*"], ["https://dash.example.org/"])
    assert listed.refusal("x", "https://dash.example.org", True) is None
    assert listed.refusal("x", "http://x", False) == "Origin not allowed"


def handshake(peer, host, origin=None):
    key = base64.b64encode(os.urandom(16)).decode()
    lines = ["GET / HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if origin:
        lines.append(f"Origin: {origin}")
    peer.protocol.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode())
    return int(peer.transport.value().split(b" ", 2)[1])


@pytest.mark.parametrize(
    "host, origin, status",
    [
        ("evil.example:12150", "http://evil.example:12150", 403),
        ("evil.example", None, 403),
        ("localhost:12150", "http://localhost:12150", 101),
        ("127.0.0.1:12150", None, 101),
    ],
)
def test_the_websocket_handshake_checks_the_host(host, origin, status):
    daemon = Daemon(allowed_hosts=["localhost", "127.0.0.1"])
    assert handshake(Peer(daemon.factory, handshake=False), host, origin) == status
