"""``GET /metrics``: the daemon's counters in the Prometheus text format.

Nothing is counted for metrics' sake: the collector reads, at scrape time, the numbers the
daemon's parts keep anyway (the server factory's open connections, each event channel's
subscribers and published/dropped counts, the dispatcher's queues, the authenticator's
failures, the ban list, the router's errors by code), so publishing an event costs nothing
more with metrics on. The collector lives in its own registry, never the library's global
one (which would also export the Python process collectors of whatever imported it).

Access: loopback always, the addresses and networks of ``[server] metrics_allow``, and
nobody else (403); no authentication.
"""


from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.internet.address import UNIXAddress
from twisted.web import resource

from sysadmd.util.log import Logger
from sysadmd.util.net import ip_address, is_loopback


class SysadmdCollector:
    """A custom collector over the daemon's live objects: the WebSocket server factory
    (its open connections, and its ``hub``, ``bans`` and ``router``), the dispatcher and
    the authenticator. A part that is None (not running in this process) is left out."""

    def __init__(self, factory, dispatcher=None, authenticator=None):
        self._factory = factory
        self._dispatcher = dispatcher
        self._authenticator = authenticator

    def collect(self):
        """The metric families, read now."""
        factory = self._factory
        hub = getattr(factory, "hub", None)
        bans = getattr(factory, "bans", None)
        router = getattr(factory, "router", None)
        yield GaugeMetricFamily(
            "sysadmd_connections_open",
            "Open WebSocket connections (handshake completed).",
            value=factory.open_connections,
        )
        admission = getattr(factory, "admission", None)
        if admission is not None:
            yield from _admission_metrics(admission)
        if hub is not None:
            subscribers = GaugeMetricFamily(
                "sysadmd_event_subscribers", "Subscribers of each event source.", labels=["source"]
            )
            published = CounterMetricFamily(
                "sysadmd_events_published", "Events published by each source.", labels=["source"]
            )
            dropped = CounterMetricFamily(
                "sysadmd_events_dropped",
                "Events not delivered to a subscriber that did not keep up, per source.",
                labels=["source"],
            )
            for name in hub.names():
                channel = hub.channel(name)
                subscribers.add_metric([name], len(channel.subscribers))
                published.add_metric([name], channel.published)
                dropped.add_metric([name], channel.dropped)
            yield subscribers
            yield published
            yield dropped
        if self._dispatcher is not None:
            jobs = GaugeMetricFamily(
                "sysadmd_jobs", "Dispatcher jobs waiting or running, per queue.", labels=["queue", "state"]
            )
            for name, queue in self._dispatcher.queues.items():
                jobs.add_metric([name, "pending"], len(queue.pending))
                jobs.add_metric([name, "running"], len(queue.running))
            yield jobs
        if self._authenticator is not None:
            yield CounterMetricFamily(
                "sysadmd_auth_failures",
                "Failed authentication attempts since the start.",
                value=self._authenticator.failures,
            )
        if bans is not None:
            yield GaugeMetricFamily(
                "sysadmd_bans_active", "Addresses banned now for failed logins.", value=bans.banned_count
            )
        if router is not None:
            errors = CounterMetricFamily(
                "sysadmd_request_errors", "Error replies sent, by code.", labels=["code"]
            )
            for code, count in sorted(router.errors_by_code.items()):
                errors.add_metric([str(code)], count)
            yield errors


def registry_for(collector):
    """A registry of its own holding only ``collector``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


class Metrics(resource.Resource):
    """The ``/metrics`` page. ``allow`` is a list of ``ipaddress`` networks."""

    isLeaf = True
    _log = Logger()

    def __init__(self, registry, allow=()):
        super().__init__()
        self._registry = registry
        self._allow = list(allow)

    def allowed(self, host):
        """Whether a client at ``host`` may read the metrics."""
        if is_loopback(host):
            return True
        address = ip_address(host)
        return address is not None and any(
            address.version == network.version and address in network for network in self._allow
        )

    def render_GET(self, request):
        """The exposition, or 403 for an address not allowed."""
        client = request.getClientAddress()
        host = getattr(client, "host", "")
        request.setHeader("cache-control", "no-store")
        # A UNIX socket is as local as loopback.
        if not (isinstance(client, UNIXAddress) or self.allowed(host)):
            self._log.info("refused /metrics to {peer}", peer=host)
            request.setResponseCode(403)
            request.setHeader("content-type", "text/plain; charset=utf-8")
            return b"Forbidden: add this address to [server] metrics_allow.\n"
        request.setHeader("content-type", CONTENT_TYPE_LATEST)
        return generate_latest(self._registry)


def _admission_metrics(admission):
    """Every client connection held (WebSocket and HTTP, at any stage), the cap, and
    the connections refused at acceptance by reason (see sysadmd.server.admission)."""
    yield GaugeMetricFamily(
        "sysadmd_connections",
        "Client connections held, WebSocket and plain HTTP, handshake done or not.",
        value=admission.total,
    )
    if admission.max_total is not None:
        yield GaugeMetricFamily(
            "sysadmd_connections_cap",
            "Connections the daemon takes: the descriptor limit minus reserved_descriptors.",
            value=admission.max_total,
        )
    refused = CounterMetricFamily(
        "sysadmd_connections_refused",
        "Connections refused at acceptance (answered 503 or closed at once), by reason.",
        labels=["reason"],
    )
    for reason, count in sorted(admission.refused.items()):
        refused.add_metric([reason], count)
    yield refused
