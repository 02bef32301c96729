"""One port for WebSocket and plain HTTP.

Each connection's first request headers decide who gets it: a WebSocket upgrade goes to
the WebSocket factory's protocol (on any path, so clients using ``/`` and ``/ws`` both
work), anything else to the web site (dashboard, REST, health). The chosen protocol then
owns the transport; this one only forwards bytes.
"""

import re
from collections import Counter

from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from zope.interface import implementer

from sysadmd.util.timers import cancel_call

MAX_HEADER_BYTES = 16384
_UPGRADE = re.compile(rb"\r\nupgrade:[ \t]*websocket[ \t]*\r\n", re.IGNORECASE)


class FrontDoor(Protocol):
    """Buffers the first request's headers, then hands the connection over."""

    _log = Logger()

    def __init__(self, factory, addr):
        self._factory = factory
        self._addr = addr
        self._buffer = b""
        self._inner = None
        self._timeout = None
        self._host = None

    def connectionMade(self):
        """Refuse an address with too many connections still sending their first
        request; start the handshake timeout."""
        host = getattr(self._addr, "host", "unix")
        if not self._factory.opening(host):
            self._log.warn("dropping {peer}: too many connections opening", peer=host)
            self.transport.abortConnection()
            return
        self._host = host
        seconds = self._factory.handshake_timeout
        if seconds > 0:
            self._timeout = self._factory.reactor.callLater(seconds, self._too_slow)

    def _too_slow(self):
        self._timeout = None
        self._log.info("dropping {peer}: no complete request in time", peer=self._addr)
        self.transport.abortConnection()

    def dataReceived(self, data):
        """Forward to the chosen protocol, or keep reading headers."""
        if self._inner is not None:
            self._inner.dataReceived(data)
            return
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEADER_BYTES:
                self.transport.abortConnection()
            return
        self._opened()
        websocket = _UPGRADE.search(self._buffer, 0, end + 2) is not None
        target = self._factory.websocket if websocket else self._factory.web
        self._inner = target.buildProtocol(self._addr)
        self._inner.makeConnection(self.transport)
        buffered, self._buffer = self._buffer, b""
        self._inner.dataReceived(buffered)

    def _opened(self):
        self._timeout = cancel_call(self._timeout)
        if self._host is not None:
            self._factory.opened(self._host)
            self._host = None

    def connectionLost(self, reason):
        """Tell the chosen protocol; cancel the timeout."""
        self._opened()
        if self._inner is not None:
            self._inner.connectionLost(reason)


@implementer(IProtocolNegotiationFactory)
class FrontDoorFactory(ServerFactory):
    """The factory the listening ports use: ``websocket`` and ``web`` are factories."""

    noisy = False

    def acceptableProtocols(self):
        """ALPN on ssl: endpoints. Without an answer Twisted's TLS refuses every client
        that offers ALPN (browsers, curl); both WebSocket and HTTP ride on HTTP/1.1."""
        return [b"http/1.1"]

    def __init__(self, reactor, websocket, web, handshake_timeout, max_opening_per_host=256):
        self.reactor = reactor
        self.websocket = websocket
        self.web = web
        self.handshake_timeout = handshake_timeout
        self.max_opening_per_host = max_opening_per_host
        self._opening = Counter()

    def opening(self, host):
        """Count a connection from ``host`` that has not sent its first request yet;
        False when the host already has the maximum of those."""
        if self._opening[host] >= self.max_opening_per_host:
            return False
        self._opening[host] += 1
        return True

    def opened(self, host):
        """``host``'s connection sent its first request (or went away)."""
        self._opening[host] -= 1
        if self._opening[host] <= 0:
            del self._opening[host]

    def buildProtocol(self, addr):
        """A :class:`FrontDoor` for each connection."""
        return FrontDoor(self, addr)

    def startFactory(self):
        """Start both inner factories."""
        self.websocket.doStart()
        self.web.doStart()

    def stopFactory(self):
        """Stop both inner factories."""
        self.websocket.doStop()
        self.web.doStop()
