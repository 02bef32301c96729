"""The HTTP side of a connection: what a plain HTTP request must be to be served.

:class:`RequestChannel` gives each request ``[server] http_request_timeout`` seconds to
arrive whole, headers and body, counted from the connection's start (the front door's
ticket) or the end of the previous answer. Twisted's own timeout restarts with every
byte, so a client trickling a body one byte at a time would hold its connection forever.

:class:`CheckedRequest` then refuses, before any resource sees it:

- a body over the site's ``max_body_bytes`` (413, at once, never buffered);
- on a connection kept back for monitoring at the connection cap, anything but
  ``GET /health`` (503);
- ``OPTIONS`` (405, and no ``Access-Control-*`` header anywhere: no cross-site caller is
  ever invited, whatever its Origin);
- a Host or browser Origin that is not ours (403; the WebSocket handshake's rules, see
  :mod:`sysadmd.server.browser`).

(The REST calls, the only resources that take POST, also refuse a body that is not
declared ``application/json``: see :func:`is_json`.)
"""

import json

from twisted.web import http, server

from sysadmd.server.admission import HEALTH
from sysadmd.util.log import Logger
from sysadmd.util.timers import cancel_call

ALLOWED_METHODS = b"GET, HEAD, POST"


class RequestChannel(http.HTTPChannel):
    """An HTTP/1.1 channel whose requests must arrive whole in time (see the module
    docstring). ``ticket`` is the front door's (None when used alone, in tests)."""

    _log = Logger()
    ticket = None
    _deadline = None
    _partial = False

    def connectionMade(self):
        """Start the first request's clock at the connection's acceptance."""
        super().connectionMade()
        started = getattr(self.ticket, "started", None)
        self._arm(started)

    def _arm(self, since=None):
        seconds = self.site.request_timeout
        if not seconds:
            return
        clock = self.site.reactor
        elapsed = 0.0 if since is None else clock.seconds() - since
        self._partial = False
        self._deadline = cancel_call(self._deadline)
        self._deadline = clock.callLater(max(0.0, seconds - elapsed), self._too_slow)

    def _too_slow(self):
        self._deadline = None
        seconds = self.site.request_timeout
        if self._partial:
            self._log.info(
                "dropping {peer}: HTTP request not complete within {seconds} s",
                peer=getattr(self.transport.getPeer(), "host", "unix"), seconds=seconds,
            )
            self.transport.abortConnection()
        else:
            # An idle kept-alive connection: close it politely.
            self.transport.loseConnection()

    def dataReceived(self, data):
        """Note that a request has begun (for the log); bytes do not extend the time."""
        if data and self._deadline is not None:
            self._partial = True
        super().dataReceived(data)

    def allContentReceived(self):
        """The request is whole: stop its clock."""
        self._deadline = cancel_call(self._deadline)
        super().allContentReceived()

    def requestDone(self, request):
        """Start the next request's clock (before replaying any pipelined bytes)."""
        if self.persistent:
            self._arm()
        super().requestDone(request)

    def checkPersistence(self, request, version):
        """A connection kept back for /health serves one request only."""
        if self.ticket is not None and self.ticket.kind == HEALTH:
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])
            return False
        return super().checkPersistence(request, version)

    def connectionLost(self, reason):
        """Stop the clock."""
        self._deadline = cancel_call(self._deadline)
        super().connectionLost(reason)


def is_json(content_type):
    """Whether a Content-Type header value (bytes or None) is ``application/json``,
    with no parameter but ``charset``. A cross-site HTML form can only send
    ``text/plain``, urlencoded or multipart bodies without a CORS preflight (which is
    never granted), so requiring JSON keeps forms from calling REST."""
    if not content_type:
        return False
    media, *params = content_type.decode("latin-1").split(";")
    if media.strip().lower() != "application/json":
        return False
    return all(p.split("=", 1)[0].strip().lower() == "charset" for p in params if p.strip())


class CheckedRequest(server.Request):
    """A request checked before any resource sees it (see the module docstring)."""

    _log = Logger()
    _received = 0
    _refused = False

    def gotLength(self, length):
        """Refuse a declared length over the limit at once."""
        if length is not None and length > self.channel.site.max_body_bytes:
            self._refuse_body()
            return
        super().gotLength(length)

    def handleContentChunk(self, data):
        """Count chunked bodies too; discard everything once refused."""
        if self._refused:
            return
        self._received += len(data)
        if self._received > self.channel.site.max_body_bytes:
            self._refuse_body()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command, path, version):
        """A refused request was already answered."""
        if not self._refused:
            super().requestReceived(command, path, version)

    def process(self):
        """Answer a request that breaks a rule; serve the others."""
        refusal = self._refusal()
        if refusal is None:
            super().process()
            return
        code, details = refusal
        self.site = self.channel.site
        self.setResponseCode(code)
        if code == 405:
            self.setHeader(b"allow", ALLOWED_METHODS)
        self.setHeader(b"content-type", b"application/json")
        self.setHeader(b"cache-control", b"no-store")
        body = json.dumps({"args": {"code": code, "details": details}}).encode("utf-8")
        self.setHeader(b"content-length", str(len(body)).encode("ascii"))
        if self.method != b"HEAD":
            self.write(body)
        self.finish()

    def _refusal(self):
        channel = self.channel
        if channel.ticket is not None and channel.ticket.kind == HEALTH:
            if self.method not in (b"GET", b"HEAD") or self.path != b"/health":
                return 503, "The server is at its connection limit; only /health is answered."
        if self.method == b"OPTIONS":
            return 405, "No cross-origin requests: OPTIONS is not answered."
        browser = channel.site.browser
        if browser is not None:
            host, origin = _text(self.getHeader(b"host")), _text(self.getHeader(b"origin"))
            refusal = browser.refusal(host, origin, self.isSecure())
            if refusal is not None:
                self._log.warn(
                    "refused HTTP request from {peer}: {refusal} (Host {host}, Origin {origin})",
                    peer=getattr(self.getClientAddress(), "host", "unix"),
                    refusal=refusal, host=host, origin=origin,
                )
                return 403, refusal + "."
        return None

    def _refuse_body(self):
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


def _text(value):
    return None if value is None else value.decode("latin-1")
