"""The daemon's side of relayed clients: one :class:`Session` per client id a bridge
relays, exactly as if the client had connected directly.

A relayed client must authenticate (``rpc/auth``, ``auth_token`` or ``auth_ssl``), has its
own subscriptions, and everything the daemon sends it goes back through the bridge as
``"<client id>\\n<payload>"``. It gets the direct connection's limits, adapted to a client
that cannot be disconnected from here (its bridge connection is not ours):

- a message over the limit (``preauth_max_message_bytes`` before authentication) is
  answered 400 instead of closing;
- more than ``max_inflight_requests`` requests at once are answered 503 instead of
  pausing (pausing would stall every client of the bridge);
- ``auth_timeout`` without authenticating, or ``idle_timeout`` without a message, end the
  session with a 401 error frame (``"id": null``); its next message starts a new one;
- its outgoing frames are bounded by ``[events] subscriber_buffer_bytes`` like a direct
  client's (events dropped and counted, or the session ended, per ``slow_subscriber``).

The session also ends when the bridge's ``events/bridge`` no longer lists the client.
"""

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from sysadmd.channel.outbound import Outbound
from sysadmd.channel.session import Session
from sysadmd.protocol import envelope


class _Readdressed:
    """A hub event as Outbound sees it, framed for one relayed client: the hub's already
    encoded payload behind the client's id line."""

    __slots__ = ("channel", "_payload", "_prepare")

    def __init__(self, event, prepare):
        self.channel = event.channel
        self._payload = event.payload
        self._prepare = prepare

    def prepared(self):
        """The framed message."""
        return self._prepare(self._payload)


class RelaySink:
    """What the session and the event hub send to: replies and events for one relayed
    client, through its bounded :class:`Outbound`."""

    def __init__(self, outbound, prepare):
        self._outbound = outbound
        self._prepare = prepare

    def send_frame(self, frame):
        """Send a reply or notice (never dropped)."""
        self._outbound.send_frame(frame)

    def send_event(self, event):
        """Send a published :class:`sysadmd.events.hub.Event` (may be dropped)."""
        self._outbound.send_event(_Readdressed(event, self._prepare))


class RelayedClient:
    """One client relayed by a bridge; ``daemon`` is the daemon's server factory (settings,
    router, hub, tokens, reactor are shared with direct clients)."""

    _log = Logger()

    def __init__(self, clients, client_id, daemon, write, prepare):
        self._clients = clients
        self.client_id = client_id
        self._daemon = daemon
        self._settings = daemon.settings
        self._clock = daemon.reactor
        prefix = client_id.encode("utf-8") + b"\n"

        def addressed(payload):
            return prepare(prefix + payload)

        self.outbound = Outbound(
            write,
            addressed,
            self._settings.subscriber_buffer_bytes,
            self._settings.slow_subscriber,
            self._overflowed,
        )
        self.peer_host = f"bridge:{clients.nick}:{client_id}"
        self.session = Session(
            self.peer_host, RelaySink(self.outbound, addressed), daemon.tokens, daemon.hub,
            self._clock, self,
        )
        self.closed = False
        self._inflight = 0
        self._auth_call = self._idle_call = None
        self._arm_auth_timeout()
        if self._settings.idle_timeout > 0:
            self._idle_call = self._clock.callLater(self._settings.idle_timeout, self._idle)

    # Session listener

    def signed_in(self, session):
        """Authenticated: no authentication timeout any more."""
        self._cancel(self._auth_call)
        self._auth_call = None

    def signed_out(self, session):
        """Back to unauthenticated: the authentication timeout runs again."""
        self._arm_auth_timeout()

    # Incoming

    def received(self, payload):
        """Handle one relayed message (bytes) from the client."""
        if self.closed:
            return
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.reset(self._settings.idle_timeout)
        limit = (
            self._settings.max_message_bytes
            if self.session.grant is not None
            else self._settings.preauth_max_message_bytes
        )
        if len(payload) > limit:
            self.outbound.send_frame(
                envelope.error(None, 400, f"Messages are limited to {limit} bytes here.")
            )
            return
        try:
            request = envelope.decode_request(payload)
        except envelope.BadRequest as e:
            self.outbound.send_frame(self._daemon.router.bad_request(e))
            return
        if self._inflight >= self._settings.max_inflight_requests:
            self.outbound.send_frame(
                envelope.error(request.id, 503, "Too many requests at once; wait for replies.")
            )
            return
        self._inflight += 1
        self._daemon.router.handle(self.session, request).addCallback(self._answer)

    def _answer(self, result):
        frame, after = result
        self._inflight -= 1
        if self.closed:
            return
        self.outbound.send_frame(frame)
        if after is not None:
            after()

    # Ending

    def _overflowed(self):
        self._log.warn(
            "ending the session of slow relayed client {peer}: more than {limit} bytes waiting",
            peer=self.peer_host,
            limit=self._settings.subscriber_buffer_bytes,
        )
        self._clients.end(self.client_id)

    def _arm_auth_timeout(self):
        self._cancel(self._auth_call)
        timeout = self._settings.auth_timeout
        self._auth_call = self._clock.callLater(timeout, self._auth_timed_out) if timeout > 0 else None

    def _auth_timed_out(self):
        self._auth_call = None
        self._log.info("ending the session of {peer}: not authenticated in time", peer=self.peer_host)
        self._end_with_notice("Session ended: not authenticated in time.")

    def _idle(self):
        self._idle_call = None
        self._log.info("ending the session of {peer}: idle", peer=self.peer_host)
        self._end_with_notice("Session ended after a silence; authenticate again.")

    def _end_with_notice(self, details):
        self.outbound.send_frame(envelope.error(None, 401, details))
        self._clients.end(self.client_id)

    def close(self):
        """Release the session: subscriptions, timers and waiting frames."""
        if self.closed:
            return
        self.closed = True
        self._cancel(self._auth_call)
        self._cancel(self._idle_call)
        self._auth_call = self._idle_call = None
        self.session.close()
        self.outbound.close()

    @staticmethod
    def _cancel(call):
        if call is not None and call.active():
            call.cancel()


@implementer(IPushProducer)
class RelayedClients:
    """The clients one bridge link relays, by id.

    ``write(prepared)`` sends a framed message on the link and ``prepare(payload)`` frames
    bytes for it. Registered as the link transport's producer: when the link's buffer is
    full every client's frames wait in its own bounded queue.
    """

    _log = Logger()

    def __init__(self, nick, daemon, write, prepare):
        self.nick = nick
        self._daemon = daemon
        self._write = write
        self._prepare = prepare
        self._clients = {}
        self.available = frozenset()
        self.paused = False

    def __len__(self):
        return len(self._clients)

    def get(self, client_id):
        """The :class:`RelayedClient` of ``client_id``, or None."""
        return self._clients.get(client_id)

    def bridge_event(self, ids):
        """The bridge's list of clients that may reach us: sessions of the others end."""
        self.available = frozenset(ids)
        for client_id in [c for c in self._clients if c not in self.available]:
            self._log.info(
                "relayed client {client_id} left bridge {nick}", client_id=client_id, nick=self.nick
            )
            self.end(client_id)

    def relayed(self, client_id, payload):
        """A message from ``client_id``; its session starts with its first message."""
        if client_id not in self.available:
            self._log.warn(
                "bridge {nick} relayed a message from {client_id}, which it did not list",
                nick=self.nick,
                client_id=client_id,
            )
            return
        client = self._clients.get(client_id)
        if client is None:
            client = RelayedClient(self, client_id, self._daemon, self._write, self._prepare)
            if self.paused:
                client.outbound.pauseProducing()
            self._clients[client_id] = client
            self._log.info(
                "relayed client {client_id} connected through bridge {nick}",
                client_id=client_id,
                nick=self.nick,
            )
        client.received(payload)

    def end(self, client_id):
        """End one client's session."""
        client = self._clients.pop(client_id, None)
        if client is not None:
            client.close()

    def close_all(self):
        """The link is gone: end every session."""
        for client_id in list(self._clients):
            self.end(client_id)
        self.available = frozenset()

    def pauseProducing(self):
        """The link's buffer is full: every client queues."""
        self.paused = True
        for client in list(self._clients.values()):
            client.outbound.pauseProducing()

    def resumeProducing(self):
        """The link drained: send what waited."""
        self.paused = False
        for client in list(self._clients.values()):
            if not self.paused:
                client.outbound.resumeProducing()

    def stopProducing(self):
        """The link is going away."""
        self.close_all()
