"""One client's connection rules, whatever carries its bytes.

A transport (a direct WebSocket connection, a client relayed by a bridge, one REST
request) provides :class:`sysadmd.interfaces.IChannelTransport` and makes a
:class:`Channel`; the transport only moves bytes. The channel owns:

- the session (who the client is) and its outgoing queue, bounded by
  ``subscriber_buffer_bytes`` for a client that stops reading (events dropped and counted,
  or the client ended, per ``slow_subscriber``);
- message limits: ``preauth_max_message_bytes`` before authentication,
  ``max_message_bytes`` after; a bigger message is answered 400 (a WebSocket transport
  enforces the limit while reading and closes with 1009 first);
- ``auth_timeout`` without authenticating and ``idle_timeout`` without a message end the
  client (see :class:`Ending`);
- at most ``max_inflight_requests`` requests handled at once: beyond, a transport that can
  stop reading does (requests already read wait their turn, in order) and one that cannot
  answers 503; while the client does not read what we send, it is not read either;
- decoding requests and routing them.

Whatever a later feature keeps per connection (a dialect, resume positions, a tunnel)
belongs on the :class:`Channel`, so every transport gets it at once. The wire dialect
(:mod:`sysadmd.protocol.dialect`) is :attr:`Channel.dialect`: ``spec`` unless the
transport sets it (a WebSocket connection chooses by ``[server] dialect`` and Origin).
"""

from collections import deque
from dataclasses import dataclass
from typing import Any, Optional

from zope.interface import implementer

from sysadmd.channel.outbound import Outbound
from sysadmd.channel.session import Session
from sysadmd.interfaces import ISessionListener
from sysadmd.protocol import envelope
from sysadmd.protocol.dialect import check as check_dialect
from sysadmd.util.log import Logger
from sysadmd.util.timers import cancel_call

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008


@dataclass(frozen=True)
class Ending:
    """Why the channel ends a client: a WebSocket close ``code`` and ``reason``, and the
    ``notice`` (a 401 error's details) for a client that cannot be disconnected from here
    (None: ended without a notice)."""

    code: int
    reason: str
    notice: Optional[str]


AUTH_TIMEOUT = Ending(CLOSE_POLICY, "Authentication timeout", "Session ended: not authenticated in time.")
IDLE = Ending(CLOSE_NORMAL, "Idle timeout", "Session ended after a silence; authenticate again.")
TOO_SLOW = Ending(CLOSE_POLICY, "Too slow: event buffer full", None)


@dataclass
class ChannelParts:
    """What every channel of a server shares: the limits (a
    :class:`sysadmd.channel.settings.ConnectionSettings`), the router, the token store,
    the event hub (None where nothing can be subscribed) and the reactor."""

    settings: Any
    router: Any
    tokens: Any
    hub: Any
    reactor: Any


@implementer(ISessionListener)
class Channel:
    """One client: its session, outgoing queue, limits, timers and requests.

    ``session_class`` builds the session (the bridge's sign-ins last as long as the
    connection). Call :meth:`open` when the client may start talking, :meth:`received`
    with each message, :meth:`close` when the transport is gone.
    """

    log = Logger()

    def __init__(self, transport, parts, session_class=Session):
        self.transport = transport
        self.parts = parts
        self.settings = settings = parts.settings
        self._clock = parts.reactor
        self.outbound = Outbound(
            transport.write,
            transport.prepare,
            settings.subscriber_buffer_bytes,
            settings.slow_subscriber,
            self._overflowed,
            paused_changed=self._update_reading,
            frame_event=transport.frame_event,
        )
        self.session = session_class(
            transport.peer_host, self.outbound, parts.tokens, parts.hub, self._clock, self
        )
        self.message_limit = settings.preauth_max_message_bytes
        self.closed = False
        self._auth_call = self._idle_call = None
        self._inflight = 0
        self._backlog = deque()
        self._draining = False
        self._reading_paused = False

    @property
    def dialect(self):
        """The wire dialect the client speaks: ``"spec"`` (the default) or
        ``"original"``. A transport may set it at any time (before the first message,
        normally); replies, notices and events follow it from then on."""
        return self.outbound.dialect

    @dialect.setter
    def dialect(self, value):
        self.outbound.dialect = check_dialect(value)

    @property
    def peer(self):
        """The client's address, as logs name it."""
        return self.transport.peer_host

    def open(self, require_auth=True):
        """Start the timers: authentication (unless ``require_auth`` is false: the
        conformance echo mode) and idleness."""
        if require_auth:
            self._set_message_limit(self.settings.preauth_max_message_bytes)
            self._arm_auth_timeout()
        else:
            self._set_message_limit(self.settings.max_message_bytes)
        if self.settings.idle_timeout > 0:
            self._idle_call = self._clock.callLater(self.settings.idle_timeout, self._idle)

    def close(self):
        """The transport is gone: release the session, timers and waiting messages."""
        if self.closed:
            return
        self.closed = True
        self._auth_call = cancel_call(self._auth_call)
        self._idle_call = cancel_call(self._idle_call)
        self._backlog.clear()
        self.session.close()
        self.outbound.close()

    # Session listener

    def signed_in(self, session):
        """Authenticated: lift the pre-authentication limits."""
        self._auth_call = cancel_call(self._auth_call)
        self._set_message_limit(self.settings.max_message_bytes)

    def signed_out(self, session):
        """Unauthenticated again: the pre-authentication limits and timer are back."""
        self._set_message_limit(self.settings.preauth_max_message_bytes)
        self._arm_auth_timeout()

    # Incoming

    def touch(self):
        """The client sent something: the idle timer starts again."""
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.reset(self.settings.idle_timeout)

    def received(self, payload):
        """Handle one message (bytes) from the client."""
        if self.closed:
            return
        self.touch()
        if len(payload) > self.message_limit:
            self.outbound.send_frame(
                envelope.error(None, 400, f"Messages are limited to {self.message_limit} bytes here.")
            )
            return
        try:
            request = envelope.decode_request(payload)
        except envelope.BadRequest as e:
            self.log.debug("bad request from {peer}: {details}", peer=self.peer, details=e.details)
            self.outbound.send_frame(self.parts.router.bad_request(e))
            return
        if not self.transport.can_pause_reading and self._inflight >= self.settings.max_inflight_requests:
            self.outbound.send_frame(
                envelope.error(request.id, 503, "Too many requests at once; wait for replies.")
            )
            return
        # Pausing the socket does not stop a transport from delivering what it has
        # already read (one read may hold thousands of frames): those wait here.
        self._backlog.append(request)
        self._drain_backlog()

    def handle(self, request):
        """Route one decoded request now: a Deferred firing with ``(frame, after)``
        (what REST uses: it has no backlog, one request per channel)."""
        return self.parts.router.handle(self.session, request)

    def _drain_backlog(self):
        # A loop, not recursion: a handler that answers at once re-enters via _answer.
        if self._draining:
            return
        self._draining = True
        try:
            limit = self.settings.max_inflight_requests
            while self._backlog and self._inflight < limit:
                self._inflight += 1
                self.handle(self._backlog.popleft()).addCallback(self._answer)
        finally:
            self._draining = False
        self._update_reading()

    def _answer(self, result):
        frame, after = result
        self._inflight -= 1
        if self.closed:
            return
        self._send_reply(frame, after)
        self._drain_backlog()

    def _send_reply(self, frame, after):
        try:
            self.outbound.send_frame(frame)
        except ValueError:
            # A handler returned something JSON cannot carry: a bug, not the client's.
            self.log.failure("cannot encode the reply to {peer}", peer=self.peer)
            self.outbound.send_frame(
                envelope.error(frame.get("id"), 500, "The server failed to encode its reply; the failure is logged.")
            )
            return
        if after is not None:
            after()

    def _update_reading(self):
        """Read the client only while requests have room and it takes our output."""
        if not self.transport.can_pause_reading or self.closed:
            return
        busy = self._inflight >= self.settings.max_inflight_requests or self._backlog
        paused = bool(busy) or self.outbound.paused
        if paused == self._reading_paused:
            return
        self._reading_paused = paused
        if paused:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    # Ending

    def _set_message_limit(self, limit):
        self.message_limit = limit
        self.transport.set_message_limit(limit)

    def _arm_auth_timeout(self):
        cancel_call(self._auth_call)
        timeout = self.settings.auth_timeout
        self._auth_call = self._clock.callLater(timeout, self._auth_timed_out) if timeout > 0 else None

    def _auth_timed_out(self):
        self._auth_call = None
        self.log.info("closing {peer}: not authenticated in time", peer=self.peer)
        self.transport.end(AUTH_TIMEOUT)

    def _idle(self):
        self._idle_call = None
        self.log.info("closing {peer}: idle", peer=self.peer)
        self.transport.end(IDLE)

    def _overflowed(self):
        self.log.warn(
            "closing slow subscriber {peer}: more than {limit} bytes of events waiting",
            peer=self.peer,
            limit=self.settings.subscriber_buffer_bytes,
        )
        self.transport.end(TOO_SLOW)
