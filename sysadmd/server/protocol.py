"""The WebSocket side of a direct client connection: a transport for a
:class:`sysadmd.channel.channel.Channel`, which owns every rule of the connection (limits,
timers, requests in flight, routing, the outgoing queue). What this module adds:

- connections are refused at the handshake from banned addresses (429), past
  ``max_connections_per_ip`` or at the daemon's connection cap (503, see
  :mod:`sysadmd.server.admission`), and with a Host or browser Origin that is not ours
  (403, see :mod:`sysadmd.server.browser`); an Origin that is not a URL (the original
  SysAdm client's ``sysadm-client``) is accepted, though Autobahn alone would refuse it;
- the channel speaks the dialect ``[server] dialect`` and the Origin choose
  (:func:`sysadmd.protocol.dialect.choose`);
- Autobahn enforces the channel's current message limit while reading (close 1009);
- the channel pauses and resumes reading the socket;
- events go straight to the socket as the hub framed them, when nothing is queued and the
  connection is not compressed.

With ``[server] conformance_echo`` (loopback only, for the Autobahn test suite) every
message is echoed back instead of routed, with no authentication and the post-login
message limit.
"""

from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer
from twisted.internet.interfaces import ISSLTransport
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
from sysadmd.protocol.dialect import choose as choose_dialect
from sysadmd.protocol.framing import prepare_message
from sysadmd.server.admission import AT_CAP, FULL, HEALTH
from sysadmd.server.browser import hide_application_origin
from sysadmd.server.eager import eager_writer, no_delay
from sysadmd.util.log import Logger

__all__ = ["CLOSE_GOING_AWAY", "CLOSE_NORMAL", "CLOSE_POLICY", "SysadmServerProtocol"]


@implementer(IChannelTransport)
class SysadmServerProtocol(WebSocketServerProtocol):
    """One client connection to the daemon."""

    _log = Logger()

    channel = None
    # The bridge's connections use a session whose login lasts as long as the connection.
    session_class = Session
    can_pause_reading = True
    frame_event = staticmethod(shared_frame)
    # The connection's place (sysadmd.server.admission.Ticket): given by the front door
    # that accepted it, else taken here.
    ticket = None
    # The handshake's Origin (None: none); application_origin is one that is not a URL,
    # kept from Autobahn (see processHandshake).
    origin = None
    application_origin = None
    # Writes frames to the socket (sysadmd.server.eager), set when the connection opens.
    _write_frame = None

    def connectionMade(self):
        """Count the connection against its address before the handshake."""
        peer = self.transport.getPeer()
        self.peer_host = getattr(peer, "host", "unix")
        self.lost = defer.Deferred()
        if self.ticket is None:
            self.ticket = self.factory.admission.admit(self.peer_host)
        self.factory.connection_made(self)
        no_delay(self.transport)
        super().connectionMade()
        if self.ticket is None:
            self.transport.abortConnection()

    def connectionLost(self, reason):
        """Release everything the connection held."""
        try:
            super().connectionLost(reason)
        finally:
            if self.channel is not None:
                self.channel.close()
            self.factory.connection_lost(self)
            if self.ticket is not None:
                self.ticket.release()
            self.lost.callback(None)

    def processHandshake(self):
        """Take an Origin that is not a URL out of the handshake before Autobahn reads
        it (Autobahn would answer 400 "No host part in Origin"); :meth:`onConnect` applies
        our rules to it."""
        if self.application_origin is None:
            self.data, self.application_origin = hide_application_origin(self.data)
        return super().processHandshake()

    def onConnect(self, request):
        """Refuse banned addresses, connections past the limits, and Hosts or browser
        Origins that are not ours."""
        factory = self.factory
        if factory.bans is not None and factory.bans.is_banned(self.peer_host):
            self._log.info("refused connection from banned {peer}", peer=self.peer_host)
            raise ConnectionDeny(429, "Too many failed logins from this address")
        if self.ticket.kind == HEALTH:
            factory.admission.note_refusal(self.peer_host, AT_CAP)
            raise ConnectionDeny(503, "The server is at its connection limit")
        if self.ticket.kind != FULL:
            # Over the address's limit (admission counted and logged it).
            raise ConnectionDeny(503, "Too many connections from this address")
        host, origin = request.headers.get("host"), request.headers.get("origin")
        if self.application_origin is not None:
            origin = self.application_origin
        self.origin = origin
        refusal = factory.browser.refusal(host, origin, ISSLTransport.providedBy(self.transport))
        if refusal is not None:
            self._log.warn(
                "refused connection from {peer}: {refusal} (Host {host}, Origin {origin})",
                peer=self.peer_host, refusal=refusal, host=host, origin=origin,
            )
            raise ConnectionDeny(403, refusal)
        return None

    def onOpen(self):
        """Start the client's channel with pre-authentication limits."""
        factory = self.factory
        settings = factory.settings
        # Frames leave at once when nothing is buffered (see sysadmd.server.eager).
        self._write_frame = eager_writer(self.transport, factory.write_turns)
        self.channel = Channel(self, factory.parts, self.session_class)
        self.channel.dialect = choose_dialect(settings.dialect, self.origin)
        # Local sign-in ([auth] local_login) finds the client's socket by these.
        self.channel.session.socket_addresses = self.socket_addresses()
        outbound = self.channel.outbound
        # What Twisted buffers before pausing the producer counts against the bound.
        outbound.limit = max(
            settings.subscriber_buffer_bytes // 2,
            settings.subscriber_buffer_bytes - getattr(self.transport, "bufferSize", 0),
        )
        self.transport.registerProducer(outbound, True)
        if self._perMessageCompress is None:
            # Shared frames can go straight to the socket (see write).
            outbound.direct = self._write_frame
        self.channel.open(require_auth=not settings.conformance_echo)
        factory.opened(self)
        self._log.info("client connected from {peer}", peer=self.peer_host,
                       dialect=self.channel.dialect)

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
                self._write_frame(prepared.payloadHybi)
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

    def socket_addresses(self):
        """``(getHost(), getPeer())`` of the client's connection."""
        return (self.transport.getHost(), self.transport.getPeer())

    def sendCloseFrame(self, *args, **kwargs):
        """No event frame may follow a close frame (ours or our reply to the peer's)."""
        if self.channel is not None:
            self.channel.outbound.direct = None
        # Frames corked this turn go before it (sysadmd.server.eager).
        flush = getattr(self._write_frame, "flush", None)
        if flush is not None:
            flush()
        return super().sendCloseFrame(*args, **kwargs)

    def close_with(self, code, reason):
        """Start the closing handshake with any RFC 6455 code (Autobahn's ``sendClose``
        only allows 1000 and 3000-4999, but we need 1001 and 1008 too)."""
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code, reason.encode("utf-8")[:123], isReply=False)
