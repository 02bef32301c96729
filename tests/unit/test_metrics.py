"""``GET /metrics``: what the collector reads, the exposition format and who may scrape."""

import ipaddress
from collections import OrderedDict
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import task
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from sysadmd.config import ConfigErrors
from sysadmd.dispatcher.queue import JobQueue
from sysadmd.server.admission import Admission
from sysadmd.taps import daemon as tap
from sysadmd.taps.sections import load_daemon_config
from sysadmd.web.metrics import Metrics, SysadmdCollector, registry_for
from sysadmd.web.site import Health, build_site
from tests.unit.test_protocol import Daemon


def samples(text):
    """{(name, labels as a sorted tuple): value} of an exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def fake_dispatcher():
    queues = OrderedDict((name, JobQueue(name, 1)) for name in ("no_queue", "pkg_queue"))
    queues["no_queue"].pending = {1: object(), 2: object()}
    queues["no_queue"].running = {3: object()}
    return SimpleNamespace(queues=queues)


def http_get(site, path, client):
    """One request through the site's real HTTP channel from ``client`` (an address)."""
    site.reactor = task.Clock()
    protocol = site.buildProtocol(client)
    transport = StringTransport(peerAddress=client)
    protocol.makeConnection(transport)
    protocol.dataReceived(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    protocol.connectionLost(Failure(ConnectionDone()))
    head, _, body = transport.value().partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def site_with(metrics):
    return build_site(SimpleNamespace(), Health(task.Clock(), lambda: {}), metrics=metrics)


def local(host="127.0.0.1"):
    return IPv4Address("TCP", host, 40000)


def test_the_collector_reads_the_daemon_at_scrape_time():
    """Connections, subscribers, published and dropped events per source, jobs per queue
    and state, auth failures, bans and errors by code, read from the live objects."""
    daemon = Daemon()
    daemon.hub.add_source("other", "other_frame", False)
    authenticator = SimpleNamespace(failures=0)
    registry = registry_for(SysadmdCollector(daemon.factory, fake_dispatcher(), authenticator))
    before = samples(generate_latest(registry).decode())
    assert before[("sysadmd_connections_open", ())] == 0
    assert before[("sysadmd_events_published_total", (("source", "demo"),))] == 0

    subscriber = daemon.signed_in()
    subscriber.request("events", "subscribe", ["demo"])
    daemon.signed_in(host="10.0.0.2").request("rpc", "nope", request_id=5)
    for n in range(3):
        daemon.hub.publish("demo", {"n": n})
    daemon.hub.channel("demo").dropped = 2
    authenticator.failures = 4
    for _ in range(3):
        daemon.bans.record_failure("192.0.2.9")
    after = samples(generate_latest(registry).decode())
    assert after[("sysadmd_connections_open", ())] == 2
    assert after[("sysadmd_event_subscribers", (("source", "demo"),))] == 1
    assert after[("sysadmd_event_subscribers", (("source", "other"),))] == 0
    assert after[("sysadmd_events_published_total", (("source", "demo"),))] == 3
    assert after[("sysadmd_events_dropped_total", (("source", "demo"),))] == 2
    assert after[("sysadmd_jobs", (("queue", "no_queue"), ("state", "pending")))] == 2
    assert after[("sysadmd_jobs", (("queue", "no_queue"), ("state", "running")))] == 1
    assert after[("sysadmd_jobs", (("queue", "pkg_queue"), ("state", "pending")))] == 0
    assert after[("sysadmd_auth_failures_total", ())] == 4
    assert after[("sysadmd_bans_active", ())] == 1
    assert after[("sysadmd_request_errors_total", (("code", "404"),))] == 1


def test_its_own_registry_only():
    """Nothing goes to the library's global registry, and ours holds only sysadmd's
    metrics (no process or platform collectors)."""
    registry = registry_for(SysadmdCollector(Daemon().factory))
    assert b"sysadmd_" not in generate_latest(REGISTRY)
    names = {f.name for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert names and all(name.startswith("sysadmd_") for name in names)


def test_loopback_scrapes_without_authentication():
    metrics = Metrics(registry_for(SysadmdCollector(Daemon().factory)))
    for client in (local(), IPv6Address("TCP", "::1", 40000), IPv6Address("TCP", "::ffff:127.0.0.1", 1),
                   UNIXAddress(b"/run/sysadmd.sock")):
        code, headers, body = http_get(site_with(metrics), "/metrics", client)
        assert code == 200, client
        assert headers["content-type"].startswith("text/plain; version=")
        assert b"sysadmd_connections_open 0.0" in body


def test_other_addresses_get_403_unless_listed():
    allow = [ipaddress.ip_network("192.0.2.7"), ipaddress.ip_network("10.1.0.0/16")]
    metrics = Metrics(registry_for(SysadmdCollector(Daemon().factory)), allow)
    site = site_with(metrics)
    code, _, body = http_get(site, "/metrics", local("198.51.100.1"))
    assert code == 403 and b"sysadmd_" not in body and b"metrics_allow" in body
    assert http_get(site, "/metrics", local("192.0.2.7"))[0] == 200
    assert http_get(site, "/metrics", local("10.1.200.3"))[0] == 200
    assert http_get(site, "/metrics", IPv6Address("TCP", "::ffff:10.1.0.9", 1))[0] == 200
    assert http_get(site, "/metrics", local("10.2.0.1"))[0] == 403


def daemon_site(text):
    config = load_daemon_config(text=text)
    factory = SimpleNamespace(
        parts=None, bans=None, open_connections=3, admission=Admission(256), browser=None
    )
    return tap.front_door(task.Clock(), config, factory, SimpleNamespace(failures=1)).web


def test_metrics_are_on_by_default_and_can_be_turned_off():
    code, _, body = http_get(daemon_site(""), "/metrics", local())
    assert code == 200 and b"sysadmd_connections_open 3.0" in body and b"sysadmd_auth_failures_total 1.0" in body
    code, _, body = http_get(daemon_site("[server]\nmetrics = no\n"), "/metrics", local())
    assert code in (404, 405) and b"sysadmd_" not in body


def test_metrics_allow_is_read_from_the_config():
    site = daemon_site("[server]\nmetrics_allow = 192.0.2.0/24 2001:db8::1\n")
    assert http_get(site, "/metrics", local("192.0.2.200"))[0] == 200
    assert http_get(site, "/metrics", IPv6Address("TCP", "2001:db8::1", 1))[0] == 200
    assert http_get(site, "/metrics", local("192.0.3.1"))[0] == 403


@pytest.mark.parametrize("value", ["nope", "10.0.0.0/33", "192.0.2.1 ::g"])
def test_a_bad_metrics_allow_names_the_key(value):
    with pytest.raises(ConfigErrors) as raised:
        load_daemon_config(text=f"[server]\nmetrics_allow = {value}\n")
    assert "[server] metrics_allow" in str(raised.value.errors[0])


def test_connections_of_every_kind_and_refusals_are_exported():
    """All held connections (WebSocket and HTTP), the cap, and refusals by reason."""
    from sysadmd.server.admission import Admission

    admission = Admission(1, max_total=10)
    admission.admit("10.0.0.1")
    admission.admit("10.0.0.1")  # over the address's limit: answered 503
    factory = SimpleNamespace(open_connections=0, admission=admission)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in SysadmdCollector(factory).collect()
        for s in family.samples
    }
    assert samples[("sysadmd_connections", ())] == 2
    assert samples[("sysadmd_connections_cap", ())] == 10
    reason = (("reason", "too many connections from this address"),)
    assert samples[("sysadmd_connections_refused_total", reason)] == 1
