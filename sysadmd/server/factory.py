"""The WebSocket server factory: shared state of every connection."""

from autobahn.twisted.websocket import WebSocketServerFactory
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)
from twisted.internet import defer

import sysadmd
from sysadmd.channel.channel import ChannelParts
from sysadmd.protocol.framing import prepare_text
from sysadmd.server.admission import Admission
from sysadmd.server.browser import BrowserRules
from sysadmd.server.eager import WriteTurns
from sysadmd.server.protocol import CLOSE_GOING_AWAY, SysadmServerProtocol
from sysadmd.util.log import Logger

CLOSE_HANDSHAKE_TIMEOUT = 5.0


def accept_deflate(offers):
    """Accept the client's first permessage-deflate offer (``[server] compression``).

    Each compressed connection compresses every event itself (a prepared frame falls back
    to ``sendMessage``), which is why compression is off unless asked for.
    """
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


class SysadmServerFactory(WebSocketServerFactory):
    """Builds :class:`SysadmServerProtocol` connections sharing the router, the event
    hub (None: nothing to subscribe to), the token store and the ban list (``parts``, as
    every channel sees them). ``reactor`` is used for every timer.

    ``admission`` counts connections per address (and in all, once the daemon sets its
    cap); ``browser`` holds the Host and Origin rules. A front door shares both with the
    web site; listening with this factory directly (the bridge), each protocol admits
    itself."""

    protocol = SysadmServerProtocol
    noisy = False  # we log connections ourselves, with the peer
    _log = Logger()

    def __init__(self, reactor, settings, router, hub, tokens, bans):
        super().__init__(reactor=reactor, server=f"sysadmd/{sysadmd.__version__}")
        self.settings = settings
        self.router = router
        self.hub = hub
        self.tokens = tokens
        self.bans = bans
        self.parts = ChannelParts(settings, router, tokens, hub, reactor)
        self.write_turns = WriteTurns(reactor)
        self.setProtocolOptions(
            maxMessagePayloadSize=settings.max_message_bytes,
            maxFramePayloadSize=settings.max_message_bytes,
            openHandshakeTimeout=settings.handshake_timeout,
            closeHandshakeTimeout=CLOSE_HANDSHAKE_TIMEOUT,
            autoPingInterval=settings.ping_interval,
            autoPingTimeout=settings.ping_interval,
            webStatus=False,
            # Send a close frame with the reason code (e.g. 1009) instead of just dropping.
            failByDrop=False,
        )
        if settings.compression:
            self.setProtocolOptions(perMessageCompressionAccept=accept_deflate)
        self.admission = Admission(settings.max_connections_per_ip)
        self.browser = BrowserRules.from_settings(settings)
        self._connections = set()
        self._open = set()

    prepare = staticmethod(prepare_text)

    # Connection registry

    def connection_made(self, protocol):
        """A TCP connection arrived (before its handshake)."""
        self._connections.add(protocol)

    def connection_lost(self, protocol):
        """A connection is gone."""
        self._connections.discard(protocol)
        self._open.discard(protocol)

    def opened(self, protocol):
        """A connection completed its WebSocket handshake."""
        self._open.add(protocol)

    def count_from(self, host):
        """Connections from ``host`` now (WebSocket and HTTP), including the one asking."""
        return self.admission.count_from(host)

    @property
    def open_connections(self):
        """The number of open WebSocket connections."""
        return len(self._open)

    def close_all(self, code=CLOSE_GOING_AWAY, reason="Server shutting down"):
        """Close every connection (open ones with ``code``); fires when all are gone."""
        waits = []
        for protocol in list(self._connections):
            waits.append(protocol.lost)
            if protocol in self._open and protocol.state == protocol.STATE_OPEN:
                protocol.close_with(code, reason)
            elif protocol.transport is not None:
                protocol.transport.abortConnection()
        if waits:
            self._log.info("closing {count} connection(s)", count=len(waits))
        return defer.DeferredList(waits).addCallback(lambda _: None)
