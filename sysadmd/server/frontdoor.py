"""One port for WebSocket and plain HTTP.

Every connection is admitted first (:mod:`sysadmd.server.admission`), from its address
alone: one the daemon cannot take is closed before a byte is read, one past its
address's limit is answered 503 as soon as its request's headers are in, and one of the few kept back for monitoring at
the connection cap is answered 503 as soon as its request line is not ``GET /health``. Then its first request's headers decide who
gets it: a WebSocket upgrade goes to the WebSocket factory's protocol (on any path, so
clients using ``/`` and ``/ws`` both work), anything else to the web site (dashboard,
REST, health). The chosen protocol then owns the transport, and gets the connection's
ticket (``ticket``: its kind, and when it was accepted); this one only forwards bytes.
"""

import re

from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.protocol import Protocol, ServerFactory
from zope.interface import implementer

from sysadmd.server.admission import AT_CAP, HEALTH, REFUSE
from sysadmd.util.log import Logger
from sysadmd.util.timers import cancel_call

MAX_HEADER_BYTES = 16384
_UPGRADE = re.compile(rb"\r\nupgrade:[ \t]*websocket[ \t]*\r\n", re.IGNORECASE)
# How long a refused connection may take to read its 503 and close before it is cut:
# long enough for any live client on a slow link, short enough that a flood of refused
# connections holds few descriptors (REFUSALS_PER_HOST of them per address at most).
REFUSAL_GRACE = 2.0
_HEALTH_REQUEST = re.compile(rb"(GET|HEAD) /health(\?[^ ]*)? HTTP/1\.[01]\r\n")


def _answer_503(text):
    body = text.encode("ascii") + b"\n"
    return (
        b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


_TOO_MANY = _answer_503("Too many connections from this address")
_HEALTH_ONLY = _answer_503("The server is at its connection limit; only GET /health is answered")


class FrontDoor(Protocol):
    """Buffers the first request's headers, then hands the connection over."""

    _log = Logger()

    def __init__(self, factory, addr, ticket):
        self._factory = factory
        self._addr = addr
        self._ticket = ticket
        self._buffer = b""
        self._inner = None
        self._timeout = None
        self._refused = False
        self._refusal = None  # the answer owed to a connection over its address's limit

    def connectionMade(self):
        """Answer 503 to an address over its limit; else start the handshake timeout."""
        reactor = self._factory.reactor
        self._ticket.started = reactor.seconds()
        if self._ticket.kind == REFUSE:
            # Answered once its request's headers are in (an answer sent before the
            # request confuses clients), and cut after REFUSAL_GRACE whatever happens.
            self._refusal = _TOO_MANY
            self._timeout = reactor.callLater(REFUSAL_GRACE, self._cut)
            return
        seconds = self._factory.handshake_timeout
        if seconds > 0:
            self._timeout = reactor.callLater(seconds, self._too_slow)

    def _refuse(self, answer):
        self._refused = True
        self.transport.write(answer)
        # Closing with the request still arriving would reset the connection before the
        # client read the answer: half-close, discard what comes, cut it after a moment.
        try:
            self.transport.loseWriteConnection()
        except AttributeError:
            self.transport.loseConnection()
            return
        if self._timeout is None:
            self._timeout = self._factory.reactor.callLater(REFUSAL_GRACE, self._cut)

    def _cut(self):
        self._timeout = None
        self.transport.abortConnection()

    def _too_slow(self):
        self._timeout = None
        self._log.info("dropping {peer}: no complete request in time", peer=self._ticket.host)
        self.transport.abortConnection()

    def dataReceived(self, data):
        """Forward to the chosen protocol, or keep reading headers."""
        if self._inner is not None:
            self._inner.dataReceived(data)
            return
        if self._refused:
            return
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEADER_BYTES:
                self.transport.abortConnection()
            return
        if self._refusal is not None:
            self._buffer = b""
            self._refuse(self._refusal)
            return
        if self._ticket.kind == HEALTH and not _HEALTH_REQUEST.match(self._buffer):
            # A place kept back for monitoring: refused now, not once a body has come.
            self._buffer = b""
            self._factory.admission.note_refusal(self._ticket.host, AT_CAP)
            self._timeout = cancel_call(self._timeout)
            self._refuse(_HEALTH_ONLY)
            return
        self._timeout = cancel_call(self._timeout)
        websocket = _UPGRADE.search(self._buffer, 0, end + 2) is not None
        target = self._factory.websocket if websocket else self._factory.web
        self._inner = target.buildProtocol(self._addr)
        self._inner.ticket = self._ticket
        self._inner.makeConnection(self.transport)
        buffered, self._buffer = self._buffer, b""
        self._inner.dataReceived(buffered)

    def connectionLost(self, reason):
        """Tell the chosen protocol; give the connection's place back."""
        self._timeout = cancel_call(self._timeout)
        try:
            if self._inner is not None:
                self._inner.connectionLost(reason)
        finally:
            self._ticket.release()


@implementer(IProtocolNegotiationFactory)
class FrontDoorFactory(ServerFactory):
    """The factory the listening ports use: ``websocket`` and ``web`` are factories;
    ``admission`` (a :class:`sysadmd.server.admission.Admission`) decides which
    connections are taken."""

    noisy = False

    def acceptableProtocols(self):
        """ALPN on ssl: endpoints. Without an answer Twisted's TLS refuses every client
        that offers ALPN (browsers, curl); both WebSocket and HTTP ride on HTTP/1.1."""
        return [b"http/1.1"]

    def __init__(self, reactor, websocket, web, handshake_timeout, admission):
        self.reactor = reactor
        self.websocket = websocket
        self.web = web
        self.handshake_timeout = handshake_timeout
        self.admission = admission

    def buildProtocol(self, addr):
        """A :class:`FrontDoor` for an admitted connection; None (Twisted closes the
        socket at once, before accepting the next) for one the daemon cannot take."""
        ticket = self.admission.admit(getattr(addr, "host", "unix"))
        if ticket is None:
            return None
        return FrontDoor(self, addr, ticket)

    def startFactory(self):
        """Start both inner factories."""
        self.websocket.doStart()
        self.web.doStart()

    def stopFactory(self):
        """Stop both inner factories."""
        self.websocket.doStop()
        self.web.doStop()
