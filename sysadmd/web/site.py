"""The web site behind the daemon's ports: REST, ``/health`` and the dashboard."""

import json

from twisted.web import pages, resource, server

import sysadmd
from sysadmd.util.timers import cancel_call
from sysadmd.web.rest import RestNamespace


class LimitedRequest(server.Request):
    """A request whose body may not exceed the site's ``max_body_bytes``: a bigger one
    is answered 413 at once and never buffered."""

    _received = 0
    _refused = False

    def gotLength(self, length):
        """Refuse a declared length over the limit at once."""
        if length is not None and length > self.channel.site.max_body_bytes:
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data):
        """Count chunked bodies too; discard everything once refused."""
        if self._refused:
            return
        self._received += len(data)
        if self._received > self.channel.site.max_body_bytes:
            self._refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command, path, version):
        """A refused request was already answered."""
        if not self._refused:
            super().requestReceived(command, path, version)

    def _refuse(self):
        self._refused = True
        self.content = None
        transport = self.channel.transport
        if transport is None:
            return
        transport.write(
            b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        # Closing with the body still arriving would reset the connection and the
        # client could lose the answer: send it and half-close, keep discarding what
        # comes, and drop the connection if the client does not stop in a few seconds.
        try:
            transport.loseWriteConnection()
        except AttributeError:
            transport.loseConnection()
            return
        drop = self.channel.callLater(5, transport.abortConnection)
        self.notifyFinish().addBoth(lambda _: cancel_call(drop))


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


def build_site(gateway, health, dashboard=None, max_body_bytes=65536, metrics=None):
    """A :class:`twisted.web.server.Site` for the daemon's ports; ``metrics`` is the
    ``/metrics`` resource (None: no such page)."""
    site = server.Site(WebRoot(gateway, health, dashboard, metrics))
    site.requestFactory = LimitedRequest
    site.max_body_bytes = max_body_bytes
    site.displayTracebacks = False
    site.noisy = False
    return site
