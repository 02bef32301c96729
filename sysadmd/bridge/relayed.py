"""The daemon's side of relayed clients: one :class:`sysadmd.channel.channel.Channel` per
client id a bridge relays, exactly as if the client had connected directly.

A relayed client must authenticate (``rpc/auth``, ``auth_token`` or ``auth_ssl``), has its
own subscriptions, and everything the daemon sends it goes back through the bridge as
``"<client id>\\n<payload>"``. Its channel applies the direct connection's rules, adapted
to a client that cannot be disconnected from here (its bridge connection is not ours):

- a message over the limit (``preauth_max_message_bytes`` before authentication) is
  answered 400 instead of closing;
- more than ``max_inflight_requests`` requests at once are answered 503 instead of
  pausing (pausing would stall every client of the bridge);
- ``auth_timeout`` without authenticating, or ``idle_timeout`` without a message, end the
  session with a 401 error frame (``"id": null``); its next message starts a new one;
- its outgoing frames are bounded by ``[events] subscriber_buffer_bytes`` like a direct
  client's (events dropped and counted, or the session ended, per ``slow_subscriber``).

The session also ends when the bridge's ``events/bridge`` no longer lists the client, or
lists it with another key.

Two things tie a relayed client to who it is rather than to its connection id, which
changes at every reconnection to the bridge:

- its ``peer_host`` (what failed logins and bans count on) is ``bridge:<nick>:<the
  fingerprint of the key it signed in to the bridge with>``, as the bridge event's
  ``connections`` map says, so reconnecting does not reset its failure count;
- its ``rpc/auth_ssl`` is bound to this daemon's bridge key and its connection id
  (:class:`sysadmd.bridge.binding.RelayBinding`), and inside a tunnel to the tunnel's
  handshake hash (:class:`sysadmd.bridge.tunnel.TunnelBinding`).

A session starts with the encrypted tunnel (``sysadmd.protocol.tunnel``: the ``noise:``
steps, then sealed messages only; a message that does not open ends the session with a
``noise:error``), or, only while ``[bridge] legacy_clients = yes``, in plaintext (the
bridge can read and alter it): the dashboard through a relay, or the original Qt client,
which signs in another way (``auth_ssl`` with ``md5_key``, then base64 payloads and the
original dialect, see :mod:`sysadmd.bridge.original`). Otherwise a first plaintext message
is answered 403 and the session ends.
"""

from dataclasses import replace

from zope.interface import implementer

from sysadmd.bridge import original
from sysadmd.bridge.binding import RelayBinding
from sysadmd.bridge.tunnel import SealedFrames, TunnelBinding, Unsealed
from sysadmd.channel.channel import Channel
from sysadmd.interfaces import IChannelTransport
from sysadmd.protocol import envelope, tunnel
from sysadmd.protocol.dialect import ORIGINAL
from sysadmd.protocol.tunnel import TunnelError
from sysadmd.util.log import Logger

UNKNOWN_KEY = "unknown-key"
CONTROL = tunnel.CONTROL.encode("ascii")
ERROR = tunnel.ERROR.encode("ascii")
# How far past the message limit a tunnel puts fragments together (the channel answers
# 400 to a message a little over it; one far over it ends the session).
FRAGMENTS_OVER_LIMIT = 2
PLAINTEXT_REFUSED = (
    "This server takes relayed sessions only inside an encrypted tunnel (sysadm speaks it); "
    "plaintext sessions through a bridge are off ([bridge] legacy_clients = no)."
)


def ban_key(nick, key_fingerprint):
    """What failed logins of a relayed client count on: the bridge link and the client's
    key, ``bridge:<nick>:SHA256:...``. Clients whose key the bridge did not say (an older
    bridge) share one count per link, so they cannot escape it by reconnecting."""
    return f"bridge:{nick}:{key_fingerprint or UNKNOWN_KEY}"


@implementer(IChannelTransport)
class RelayedClient:
    """One client relayed by a bridge: the transport of its
    :class:`sysadmd.channel.channel.Channel`. ``daemon`` is the daemon's server factory
    (its ``parts`` are shared with direct clients); ``write(prepared)`` sends on the link
    and ``prepare(payload)`` frames bytes for it."""

    _log = Logger()
    can_pause_reading = False  # pausing would stall every client of the bridge

    def __init__(self, clients, client_id, daemon, write, prepare, key_fingerprint=None):
        self._clients = clients
        self.client_id = client_id
        self.key_fingerprint = key_fingerprint
        self._link_write = write
        self._prepare = prepare
        # The encrypted tunnel, once its handshake is done (sysadmd.bridge.tunnel).
        self.tunnel = None
        self._message_limit = None
        self._prefix = client_id.encode("utf-8") + b"\n"
        self.peer_host = ban_key(clients.nick, key_fingerprint)
        # True once the original flow started: payloads are base64 both ways.
        self.original = False
        self.binding = RelayBinding(clients.fingerprint, client_id)
        router = original.OriginalSignIn(daemon.parts.router, self)
        self.channel = Channel(self, replace(daemon.parts, router=router))
        self.channel.session.challenge_binding = self.binding
        self.channel.open()

    # What sysadmd.bridge.original.OriginalSignIn asks

    @property
    def legacy(self):
        """Whether the original sign-in is allowed (``[bridge] legacy_clients``, and not
        inside a tunnel, where it would be a sign-in bound to nothing)."""
        return self._clients.legacy and self.tunnel is None

    @property
    def bridge_public_pem(self):
        """This daemon's bridge public key, PEM: the ``new_ssl_key`` of the original flow."""
        return self._clients.public_pem

    def key_for_md5(self, md5):
        """The registered public key named ``md5`` in ``md5_keys`` form, or None."""
        return self._clients.key_for_md5(md5)

    def plain(self):
        """An original client (it sent ``md5_key``): the original dialect from now on,
        and plain JSON until its flow starts (it starts its sign-in over so)."""
        self.original = False
        self.channel.dialect = ORIGINAL

    def start_original(self):
        """The original flow started: base64 payloads both ways from the next frame on
        (the bridge can read all of it)."""
        if not self.original:
            self._log.info(
                "relayed client {client_id} of bridge {nick} signs in the original way: "
                "its messages are base64, readable by the bridge",
                client_id=self.client_id,
                nick=self._clients.nick,
            )
        self.original = True

    @property
    def session(self):
        """The client's session."""
        return self.channel.session

    @property
    def outbound(self):
        """The client's outgoing queue."""
        return self.channel.outbound

    @property
    def closed(self):
        """True once the session has ended."""
        return self.channel.closed

    def received(self, payload):
        """Handle one relayed message (bytes) from the client: a tunnel step or message,
        or (``legacy_clients``) a plaintext one."""
        if self.tunnel is not None:
            self._from_tunnel(payload)
        elif payload.startswith(CONTROL):
            self._tunnel_step(payload.decode("utf-8", "replace"))
        elif not self._clients.legacy:
            if payload.lstrip().startswith(b"{"):
                self._refuse_plaintext()
            else:
                # Sealed for a session that ended (idle or sign-in timeout): say so, so
                # the client opens a new tunnel instead of guessing.
                self._tunnel_failed("no tunnel: this session ended; open a new one")
        else:
            if self.original:
                payload = original.decode(payload)
            self.channel.received(payload)

    def _from_tunnel(self, payload):
        if payload.startswith(ERROR):
            reason = payload[len(ERROR):].decode("utf-8", "replace")
            self._log.info(
                "relayed client {client_id} of bridge {nick} closed its tunnel: {reason}",
                client_id=self.client_id, nick=self._clients.nick, reason=reason[:200],
            )
            self.tunnel = None
            self._clients.end(self.client_id)
            return
        try:
            message = self.tunnel.open(payload.decode("ascii"))
        except (TunnelError, UnicodeDecodeError) as e:
            self._tunnel_failed(str(e) if isinstance(e, TunnelError) else "a tunnel message is not text")
            return
        if message is not None:
            self.channel.received(message)

    def _tunnel_step(self, text):
        server = self._clients.tunnel
        if server is None:
            self._send_plain(tunnel.ERROR + "this server has no tunnel key")
            return
        if text == tunnel.OFFER:
            self._send_plain(server.offer)
            return
        if not text.startswith(tunnel.HELLO) or self.channel.session.grant is not None:
            self._tunnel_failed("unexpected tunnel step")
            return
        try:
            welcome, established = server.accept(text)
        except TunnelError as e:
            self._tunnel_failed(str(e))
            return
        self._send_plain(welcome)
        self.tunnel = established
        if self._message_limit is not None:
            self.set_message_limit(self._message_limit)
        # Every rpc/auth_ssl challenge of this session is bound to the tunnel from now on
        # (the sign-in router sets the session's binding from this attribute).
        self.binding = TunnelBinding(server.fingerprint, established.handshake_hash)
        self.channel.session.challenge_binding = self.binding
        self._log.info(
            "relayed client {client_id} of bridge {nick} opened an encrypted tunnel",
            client_id=self.client_id, nick=self._clients.nick,
        )

    def _tunnel_failed(self, reason):
        self._log.warn(
            "relayed client {client_id} of bridge {nick}: {reason}; its session ends",
            client_id=self.client_id, nick=self._clients.nick, reason=reason,
        )
        self.tunnel = None  # nothing more is sealed with a broken tunnel
        self._send_plain(tunnel.ERROR + reason)
        self._clients.end(self.client_id)

    def _refuse_plaintext(self):
        self._log.warn(
            "relayed client {client_id} of bridge {nick} sent plaintext; refused "
            "([bridge] legacy_clients = no)", client_id=self.client_id, nick=self._clients.nick,
        )
        notice = envelope.error(None, 403, PLAINTEXT_REFUSED)
        self._send_plain(envelope.encode(notice).decode("utf-8"))
        self._clients.end(self.client_id)

    def _send_plain(self, text):
        self._link_write(self._prepare(self._prefix + text.encode("utf-8")))

    def write(self, prepared):
        """Send a frame on the link; one for a tunnel client is sealed now, in order."""
        if isinstance(prepared, Unsealed):
            if self.tunnel is None:
                return  # the tunnel broke: the session is ending
            prepared = SealedFrames(
                [self._prepare(self._prefix + frame.encode("ascii")) for frame in self.tunnel.seal(prepared.message)]
            )
        self._link_write(prepared)

    def close(self):
        """Release the session: subscriptions, timers and waiting frames."""
        self.channel.close()

    # IChannelTransport

    def prepare(self, payload):
        """Frame ``payload`` for the link, behind the client's id line (sealed when written
        in a tunnel, base64 in the original flow)."""
        if self.tunnel is not None:
            return Unsealed(payload)
        if self.original:
            payload = original.encode(payload)
        return self._prepare(self._prefix + payload)

    def frame_event(self, event):
        """An event's payload behind the client's id line (the hub's shared frame is for
        direct clients)."""
        return self.prepare(event.payload)

    def set_message_limit(self, limit):
        """The channel answers 400 past ``limit``; a tunnel stops putting fragments
        together past twice that (before sign-in too, so a stranger cannot make the
        daemon hold a message of the full limit) and ends the session."""
        self._message_limit = limit
        if self.tunnel is not None:
            self.tunnel.max_message = FRAGMENTS_OVER_LIMIT * limit

    def pause_reading(self):
        """Never called: relayed clients cannot be paused (``can_pause_reading``)."""

    def resume_reading(self):
        """Never called: relayed clients cannot be paused (``can_pause_reading``)."""

    def end(self, ending):
        """End the session, with a 401 notice when the ending has one (the client's
        bridge connection is not ours to close); its next message starts a new one."""
        if ending.notice is not None:
            self.channel.outbound.send_frame(envelope.error(None, 401, ending.notice))
        self._clients.end(self.client_id)

    def socket_addresses(self):
        """None: the client's socket is the bridge's, not ours to look up."""
        return None
