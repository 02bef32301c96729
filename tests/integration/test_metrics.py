"""``GET /metrics`` on the real daemon's port, scraped with treq like Prometheus would."""

import pytest_twisted
import treq
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import BASE_CONFIG, Client


def http_url(daemon, path):
    return daemon.url.replace("ws://", "http://", 1) + path


@pytest_twisted.inlineCallbacks
def scrape(daemon):
    """(status, content type, {(name, labels): value})."""
    response = yield treq.get(http_url(daemon, "/metrics"), persistent=False)
    text = (yield response.content()).decode()
    values = {}
    if response.code == 200:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return response.code, response.headers.getRawHeaders("content-type", [""])[0], values


@pytest_twisted.inlineCallbacks
def test_loopback_scrapes_live_figures_without_authentication(daemon):
    """Connections, subscribers and events per source, jobs per queue and state,
    failed logins and errors by code, as they are at scrape time."""
    code, content_type, before = yield scrape(daemon)
    assert code == 200 and content_type.startswith("text/plain; version=")
    assert before[("sysadmd_connections_open", ())] == 0
    assert before[("sysadmd_jobs", (("queue", "no_queue"), ("state", "pending")))] == 0

    admin = Client(daemon.url)
    assert admin.login("admin", "admin-secret-pw")["name"] == "response"
    admin.call("events", "subscribe", ["ticker"])
    admin.next_event("ticker")
    stranger = Client(daemon.url)
    assert stranger.login("admin", "wrong")["args"]["code"] == 401
    assert admin.call("rpc", "dispatcher", {"action": "run", "metrics-sleeper": "sleep 30"})["name"] == "response"
    try:
        _, _, after = yield scrape(daemon)
        assert after[("sysadmd_connections_open", ())] == 2
        assert after[("sysadmd_event_subscribers", (("source", "ticker"),))] == 1
        assert after[("sysadmd_event_subscribers", (("source", "dispatcher"),))] == 0
        assert after[("sysadmd_events_published_total", (("source", "ticker"),))] >= 1
        assert after[("sysadmd_events_dropped_total", (("source", "ticker"),))] == 0
        assert after[("sysadmd_events_published_total", (("source", "dispatcher"),))] >= 1
        assert after[("sysadmd_jobs", (("queue", "no_queue"), ("state", "running")))] == 1
        assert after[("sysadmd_auth_failures_total", ())] == 1
        assert after[("sysadmd_request_errors_total", (("code", "401"),))] == 1
        assert after[("sysadmd_bans_active", ())] == 0
    finally:
        admin.call("rpc", "dispatcher", {"action": "kill", "job_id": "metrics-sleeper"})
        admin.close()
        stranger.close()


@pytest_twisted.inlineCallbacks
def test_metrics_can_be_turned_off(make_daemon):
    daemon = make_daemon(BASE_CONFIG.replace("ping_interval = 0\n", "ping_interval = 0\nmetrics = no\n"))
    code, _, values = yield scrape(daemon)
    assert code in (404, 405) and values == {}
