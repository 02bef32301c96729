"""The WebSocket side of a direct client connection: a transport for a
:class:`sysadmd.channel.channel.Channel`, which owns every rule of the connection (limits,
timers, requests in flight, routing, the outgoing queue). What this module adds:

- connections are refused at the handshake from banned addresses (429), past
  ``max_connections_per_ip`` (503) and from foreign browser origins (403);
- Autobahn enforces the channel's current message limit while reading (close 1009);
- the channel pauses and resumes reading the socket;
- events go straight to the socket as the hub framed them, when nothing is queued and the
  connection is not compressed.

With ``[server] conformance_echo`` (loopback only, for the Autobahn test suite) every
message is echoed back instead of routed, with no authentication and the post-login
message limit.
"""

from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer
from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger
from zope.interface import implementer

from sysadmd.channel.channel import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    Channel,
)
from sysadmd.channel.outbound import shared_frame
from sysadmd.channel.session import Session
from sysadmd.interfaces import IChannelTransport
from sysadmd.protocol.framing import prepare_message

__all__ = ["CLOSE_GOING_AWAY", "CLOSE_NORMAL", "CLOSE_POLICY", "SysadmServerProtocol"]


def _origin_host(origin):
    parts = urlsplit(origin)
    return (parts.hostname or "").lower(), parts.port or {"https": 443, "http": 80}.get(
        parts.scheme
    )


def _host_header(host, secure):
    parts = urlsplit("//" + (host or ""))
    return (parts.hostname or "").lower(), parts.port or (443 if secure else 80)


@implementer(IChannelTransport)
class SysadmServerProtocol(WebSocketServerProtocol):
    """One client connection to the daemon."""

    _log = Logger()

    channel = None
    # The bridge's connections use a session whose login lasts as long as the connection.
    session_class = Session
    can_pause_reading = True
    frame_event = staticmethod(shared_frame)

    def connectionMade(self):
        """Count the connection against its address before the handshake."""
        peer = self.transport.getPeer()
        self.peer_host = getattr(peer, "host", "unix")
        self.lost = defer.Deferred()
        self.factory.connection_made(self)
        super().connectionMade()

    def connectionLost(self, reason):
        """Release everything the connection held."""
        try:
            super().connectionLost(reason)
        finally:
            if self.channel is not None:
                self.channel.close()
            self.factory.connection_lost(self)
            self.lost.callback(None)

    def onConnect(self, request):
        """Refuse banned addresses, too many connections and foreign browser origins."""
        factory = self.factory
        if factory.bans is not None and factory.bans.is_banned(self.peer_host):
            self._log.info("refused connection from banned {peer}", peer=self.peer_host)
            raise ConnectionDeny(429, "Too many failed logins from this address")
        if factory.count_from(self.peer_host) > factory.settings.max_connections_per_ip:
            self._log.warn("refused connection from {peer}: too many connections", peer=self.peer_host)
            raise ConnectionDeny(503, "Too many connections from this address")
        origin = request.headers.get("origin")
        if origin and not self._origin_allowed(origin, request.headers.get("host", "")):
            self._log.warn(
                "refused browser connection from {peer}: origin {origin} not allowed",
                peer=self.peer_host,
                origin=origin,
            )
            raise ConnectionDeny(403, "Origin not allowed")
        return None

    def _origin_allowed(self, origin, host):
        allowed = self.factory.settings.allowed_origins
        if "*" in allowed or origin.rstrip("/") in (o.rstrip("/") for o in allowed):
            return True
        if allowed:
            return False
        # Default: the page must come from the host the browser connected to.
        secure = ISSLTransport.providedBy(self.transport)
        return _origin_host(origin) == _host_header(host, secure)

    def onOpen(self):
        """Start the client's channel with pre-authentication limits."""
        factory = self.factory
        settings = factory.settings
        self.channel = Channel(self, factory.parts, self.session_class)
        outbound = self.channel.outbound
        # What Twisted buffers before pausing the producer counts against the bound.
        outbound.limit = max(
            settings.subscriber_buffer_bytes // 2,
            settings.subscriber_buffer_bytes - getattr(self.transport, "bufferSize", 0),
        )
        self.transport.registerProducer(outbound, True)
        if self._perMessageCompress is None:
            # Shared frames can go straight to the socket (see write).
            outbound.direct = self.transport.write
        self.channel.open(require_auth=not settings.conformance_echo)
        factory.opened(self)
        self._log.info("client connected from {peer}", peer=self.peer_host)

    def onClose(self, wasClean, code, reason):
        """Log the end of an opened connection."""
        if self.channel is not None:
            self._log.info(
                "client {peer} disconnected (code {code})",
                peer=self.peer_host,
                user=self.channel.session.user,
                code=code,
            )

    def onMessage(self, payload, isBinary):
        """Hand the message to the channel (or echo it, in conformance mode)."""
        if self.factory.settings.conformance_echo:
            self.channel.touch()
            self.channel.outbound.send_prepared(prepare_message(payload, isBinary))
            return
        self.channel.received(payload)

    # IChannelTransport

    def prepare(self, payload):
        """Frame ``payload`` as a text message."""
        return self.factory.prepare(payload)

    def write(self, prepared):
        """Send a framed message now (nothing once closing)."""
        if self.state == self.STATE_OPEN:
            # Autobahn's sendPreparedMessage -> sendData formats a debug log line
            # (hltype/hlval) on every call, which costs more than the write itself.
            if self._perMessageCompress is None and not self.send_queue:
                self.transport.write(prepared.payloadHybi)
            else:
                self.sendPreparedMessage(prepared)

    def set_message_limit(self, limit):
        """Autobahn closes with 1009 past ``limit``."""
        self.maxMessagePayloadSize = limit
        self.maxFramePayloadSize = limit

    def pause_reading(self):
        """Stop reading the socket."""
        if self.transport is not None:
            self.transport.pauseProducing()

    def resume_reading(self):
        """Read the socket again."""
        if self.transport is not None:
            self.transport.resumeProducing()

    def end(self, ending):
        """Close the connection with the ending's code and reason."""
        self.close_with(ending.code, ending.reason)

    def sendCloseFrame(self, *args, **kwargs):
        """No event frame may follow a close frame (ours or our reply to the peer's)."""
        if self.channel is not None:
            self.channel.outbound.direct = None
        return super().sendCloseFrame(*args, **kwargs)

    def close_with(self, code, reason):
        """Start the closing handshake with any RFC 6455 code (Autobahn's ``sendClose``
        only allows 1000 and 3000-4999, but we need 1001 and 1008 too)."""
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code, reason.encode("utf-8")[:123], isReply=False)
