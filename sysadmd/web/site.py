"""The web site behind the daemon's ports: REST, ``/health`` and the dashboard."""

import json

from twisted.web import pages, resource, server

import sysadmd
from sysadmd.web.channel import CheckedRequest, RequestChannel
from sysadmd.web.rest import RestNamespace


class Health(resource.Resource):
    """``GET /health``: 200 and a small JSON status for monitoring (no auth needed)."""

    isLeaf = True

    def __init__(self, clock, status):
        super().__init__()
        self._clock = clock
        self._started = clock.seconds()
        self._status = status

    def render_GET(self, request):
        """The status document."""
        request.setHeader("content-type", "application/json")
        request.setHeader("cache-control", "no-store")
        body = {
            "status": "ok",
            "version": sysadmd.__version__,
            "uptime_seconds": int(self._clock.seconds() - self._started),
        }
        body.update(self._status())
        return json.dumps(body).encode("utf-8")


class WebRoot(resource.Resource):
    """Routes ``/health``, ``/metrics``, the dashboard (``/``, ``/static/...``) and REST calls."""

    def __init__(self, gateway, health, dashboard=None, metrics=None):
        super().__init__()
        self._gateway = gateway
        self._health = health
        self._dashboard = dashboard
        self._metrics = metrics

    def getChild(self, path, request):
        """Known pages first; any other first segment is a REST namespace."""
        if path == b"health":
            return self._health
        if path == b"metrics" and self._metrics is not None:
            return self._metrics
        if self._dashboard is not None:
            page = self._dashboard.child(path)
            if page is not None:
                return page
        if not path:
            return pages.notFound("Not Found", "Nothing here: connect a WebSocket client to this URL.")
        try:
            return RestNamespace(self._gateway, path.decode("utf-8"))
        except UnicodeDecodeError:
            return pages.notFound()

    def render(self, request):
        """``/`` without a trailing segment (twisted.web calls this for the root)."""
        return self.getChild(b"", request).render(request)


def build_site(gateway, health, dashboard=None, max_body_bytes=65536, metrics=None,
               browser=None, request_timeout=10.0, reactor=None):
    """A :class:`twisted.web.server.Site` for the daemon's ports; ``metrics`` is the
    ``/metrics`` resource (None: no such page).

    Every request goes through :mod:`sysadmd.web.channel`: it must arrive whole within
    ``request_timeout`` seconds (0: no limit) and pass ``browser``'s Host and Origin
    rules (a :class:`sysadmd.server.browser.BrowserRules`; None checks neither, for
    tests of the pages alone). ``reactor`` times the requests (None: the global one)."""
    # REST reads its body as JSON; Twisted's own form parsing would only cost memory.
    site = server.Site(
        WebRoot(gateway, health, dashboard, metrics), reactor=reactor, parsePOSTFormSubmission=False
    )
    # No HTTP/2 (ALPN offers http/1.1 only), so the channel needs no negotiating wrapper.
    site.protocol = RequestChannel
    site.requestFactory = CheckedRequest
    site.max_body_bytes = max_body_bytes
    site.browser = browser
    site.request_timeout = request_timeout
    site.displayTracebacks = False
    site.noisy = False
    return site
