"""One port for WebSocket and plain HTTP.

Each connection's first request headers decide who gets it: a WebSocket upgrade goes to
the WebSocket factory's protocol (on any path, so clients using ``/`` and ``/ws`` both
work), anything else to the web site (dashboard, REST, health). The chosen protocol then
owns the transport; this one only forwards bytes.
"""

import re

from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from zope.interface import implementer

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

    def connectionMade(self):
        """Start the handshake timeout."""
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
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None
        websocket = _UPGRADE.search(self._buffer, 0, end + 2) is not None
        target = self._factory.websocket if websocket else self._factory.web
        self._inner = target.buildProtocol(self._addr)
        self._inner.makeConnection(self.transport)
        buffered, self._buffer = self._buffer, b""
        self._inner.dataReceived(buffered)

    def connectionLost(self, reason):
        """Tell the chosen protocol; cancel the timeout."""
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
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

    def __init__(self, reactor, websocket, web, handshake_timeout):
        self.reactor = reactor
        self.websocket = websocket
        self.web = web
        self.handshake_timeout = handshake_timeout

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
