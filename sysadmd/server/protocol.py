"""The WebSocket side of a client connection.

Each connection owns a :class:`sysadmd.channel.session.Session` and an
:class:`sysadmd.channel.outbound.Outbound`. Frames carry the envelope described in
``sysadmd.protocol.envelope``. Limits enforced here:

- before authentication a frame may be at most ``preauth_max_message_bytes`` and the
  connection is closed (1008) after ``auth_timeout``; afterwards ``max_message_bytes``
  (Autobahn closes with 1009 past it);
- ``idle_timeout`` seconds without an incoming message close it (1000);
- at most ``max_inflight_requests`` requests are handled at once, after which the
  connection's socket is not read until one finishes (backpressure, not errors);
  requests already read wait their turn in order;
- while the peer does not read what we send (the transport's buffer is full), its socket
  is not read either, so a client cannot pile up replies it never takes.

With ``[server] conformance_echo`` (loopback only, for the Autobahn test suite) every
message is echoed back instead of routed, with no authentication and the post-login
message limit.
"""

from collections import deque
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer
from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger

from sysadmd.channel.outbound import Outbound
from sysadmd.channel.session import Session
from sysadmd.protocol import envelope
from sysadmd.protocol.framing import prepare_message

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008


def _origin_host(origin):
    parts = urlsplit(origin)
    return (parts.hostname or "").lower(), parts.port or {"https": 443, "http": 80}.get(
        parts.scheme
    )


def _host_header(host, secure):
    parts = urlsplit("//" + (host or ""))
    return (parts.hostname or "").lower(), parts.port or (443 if secure else 80)


class SysadmServerProtocol(WebSocketServerProtocol):
    """One client connection to the daemon."""

    _log = Logger()

    session = None
    outbound = None
    # The bridge's connections use a subclass whose login lasts as long as the connection.
    session_class = Session

    def connectionMade(self):
        """Count the connection against its address before the handshake."""
        peer = self.transport.getPeer()
        self.peer_host = getattr(peer, "host", "unix")
        self.lost = defer.Deferred()
        self._auth_call = self._idle_call = None
        self._inflight = 0
        self._backlog = deque()
        self._draining = False
        self._reading_paused = False
        self.factory.connection_made(self)
        super().connectionMade()

    def connectionLost(self, reason):
        """Release everything the connection held."""
        try:
            super().connectionLost(reason)
        finally:
            self._cancel_timers()
            self._backlog.clear()
            if self.session is not None:
                self.session.close()
            if self.outbound is not None:
                self.outbound.close()
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
        """Start the session with pre-authentication limits."""
        factory = self.factory
        settings = factory.settings
        self.outbound = Outbound(
            self._write_prepared,
            factory.prepare,
            # What Twisted buffers before pausing the producer counts against the bound.
            max(settings.subscriber_buffer_bytes // 2,
                settings.subscriber_buffer_bytes - getattr(self.transport, "bufferSize", 0)),
            settings.slow_subscriber,
            self._overflowed,
            paused_changed=self._update_reading,
        )
        self.transport.registerProducer(self.outbound, True)
        if self._perMessageCompress is None:
            # Shared frames can go straight to the socket (see _write_prepared).
            self.outbound.direct = self.transport.write
        self.session = self.session_class(
            self.peer_host, self.outbound, factory.tokens, factory.hub, factory.reactor, self
        )
        if settings.conformance_echo:
            self._set_message_limit(settings.max_message_bytes)
        else:
            self._set_message_limit(settings.preauth_max_message_bytes)
            self._arm_auth_timeout()
        if settings.idle_timeout > 0:
            self._idle_call = factory.reactor.callLater(settings.idle_timeout, self._idle)
        factory.opened(self)
        self._log.info("client connected from {peer}", peer=self.peer_host)

    def onClose(self, wasClean, code, reason):
        """Log the end of an opened connection."""
        if self.session is not None:
            self._log.info(
                "client {peer} disconnected (code {code})",
                peer=self.peer_host,
                user=self.session.user,
                code=code,
            )

    # Session listener

    def signed_in(self, session):
        """Authentication succeeded: lift the pre-authentication limits."""
        self._cancel(self._auth_call)
        self._auth_call = None
        self._set_message_limit(self.factory.settings.max_message_bytes)

    def signed_out(self, session):
        """Back to unauthenticated: pre-authentication limits again."""
        self._set_message_limit(self.factory.settings.preauth_max_message_bytes)
        self._arm_auth_timeout()

    # Incoming

    def onMessage(self, payload, isBinary):
        """Decode and route one request; replies keep the connection open."""
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.reset(self.factory.settings.idle_timeout)
        if self.factory.settings.conformance_echo:
            self.outbound.send_prepared(prepare_message(payload, isBinary))
            return
        try:
            request = envelope.decode_request(payload)
        except envelope.BadRequest as e:
            self._log.debug("bad request from {peer}: {details}", peer=self.peer_host, details=e.details)
            self.outbound.send_frame(self.factory.router.bad_request(e))
            return
        # Pausing the socket does not stop Autobahn from delivering the frames it has
        # already read (one read may hold thousands): those wait here for a slot.
        self._backlog.append(request)
        self._drain_backlog()

    def _drain_backlog(self):
        # A loop, not recursion: a handler that answers at once re-enters via _answer.
        if self._draining:
            return
        self._draining = True
        try:
            limit = self.factory.settings.max_inflight_requests
            while self._backlog and self._inflight < limit:
                self._inflight += 1
                request = self._backlog.popleft()
                self.factory.router.handle(self.session, request).addCallback(self._answer)
        finally:
            self._draining = False
        self._update_reading()

    def _update_reading(self):
        """Read the socket only while requests have room and the peer takes our output."""
        busy = self._inflight >= self.factory.settings.max_inflight_requests or self._backlog
        paused = bool(busy) or (self.outbound is not None and self.outbound.paused)
        if paused == self._reading_paused or self.transport is None:
            return
        self._reading_paused = paused
        if paused:
            self.transport.pauseProducing()
        else:
            self.transport.resumeProducing()

    def _answer(self, result):
        frame, after = result
        self._inflight -= 1
        if self.state != self.STATE_OPEN:
            return
        self._send_reply(frame, after)
        self._drain_backlog()

    def _send_reply(self, frame, after):
        try:
            self.outbound.send_frame(frame)
        except ValueError:
            # A handler returned something JSON cannot carry: a bug, not the client's.
            self._log.failure("cannot encode the reply to {peer}", peer=self.peer_host)
            self.outbound.send_frame(
                envelope.error(frame.get("id"), 500, "The server failed to encode its reply; the failure is logged.")
            )
            return
        if after is not None:
            after()

    # Outgoing

    def _write_prepared(self, prepared):
        if self.state == self.STATE_OPEN:
            # Autobahn's sendPreparedMessage -> sendData formats a debug log line
            # (hltype/hlval) on every call, which costs more than the write itself.
            if self._perMessageCompress is None and not self.send_queue:
                self.transport.write(prepared.payloadHybi)
            else:
                self.sendPreparedMessage(prepared)

    def sendCloseFrame(self, *args, **kwargs):
        """No event frame may follow a close frame (ours or our reply to the peer's)."""
        if self.outbound is not None:
            self.outbound.direct = None
        return super().sendCloseFrame(*args, **kwargs)

    def _overflowed(self):
        self._log.warn(
            "closing slow subscriber {peer}: more than {limit} bytes of events waiting",
            peer=self.peer_host,
            limit=self.factory.settings.subscriber_buffer_bytes,
        )
        self.close_with(CLOSE_POLICY, "Too slow: event buffer full")

    def close_with(self, code, reason):
        """Start the closing handshake with any RFC 6455 code (Autobahn's ``sendClose``
        only allows 1000 and 3000-4999, but we need 1001 and 1008 too)."""
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code, reason.encode("utf-8")[:123], isReply=False)

    # Timers

    def _set_message_limit(self, limit):
        self.maxMessagePayloadSize = limit
        self.maxFramePayloadSize = limit

    def _arm_auth_timeout(self):
        self._cancel(self._auth_call)
        timeout = self.factory.settings.auth_timeout
        self._auth_call = self.factory.reactor.callLater(timeout, self._auth_timed_out) if timeout > 0 else None

    def _auth_timed_out(self):
        self._auth_call = None
        self._log.info("closing {peer}: not authenticated in time", peer=self.peer_host)
        self.close_with(CLOSE_POLICY, "Authentication timeout")

    def _idle(self):
        self._idle_call = None
        self._log.info("closing {peer}: idle", peer=self.peer_host)
        self.close_with(CLOSE_NORMAL, "Idle timeout")

    @staticmethod
    def _cancel(call):
        if call is not None and call.active():
            call.cancel()

    def _cancel_timers(self):
        self._cancel(self._auth_call)
        self._cancel(self._idle_call)
        self._auth_call = self._idle_call = None
