"""A client's session: who it is, and the sink its events and replies go to.

A session does not know about WebSockets: a direct connection owns one, and a relayed
client (through a bridge) can own one too.
"""

from sysadmd.protocol import envelope
from sysadmd.protocol.dialect import SPEC
from sysadmd.util.log import Logger
from sysadmd.util.timers import cancel_call


class Session:
    """One client's authentication state and outbound channel.

    ``outbound`` provides :class:`sysadmd.interfaces.IOutgoingQueue`; ``listener``, an
    :class:`sysadmd.interfaces.ISessionListener`, is told of sign-ins and sign-outs;
    ``hub`` is the event hub its subscriptions are in (None where there is none).
    """

    log = Logger()

    def __init__(self, peer_host, outbound, tokens, hub, clock, listener=None):
        self.peer_host = peer_host
        self.outbound = outbound
        self._tokens = tokens
        self._hub = hub
        self._clock = clock
        self._listener = listener
        self.grant = None
        # SHA256:... of the key that signed in by rpc/auth_ssl (the bridge routes by it)
        self.key_fingerprint = None
        # rpc/auth_ssl stage 1 state: (test_string, expires_at) or None
        self.challenge = None
        # What a key signs besides rpc/auth_ssl's test string, or None (direct clients):
        # a relayed client's binds it to this server's key and its relayed connection.
        # Provides text(test_string) -> the string to sign, describe() -> stage-1 extras.
        self.challenge_binding = None
        # (local, peer) addresses of a direct connection's socket, for local sign-in;
        # None for REST and relayed clients (see IChannelTransport.socket_addresses).
        self.socket_addresses = None
        self._expiry_call = None

    @property
    def user(self):
        """The authenticated user's name, or None."""
        return self.grant.user if self.grant else None

    @property
    def dialect(self):
        """The wire dialect of the client (its channel sets it on the outgoing queue);
        handlers that answer differently in the original dialect read it here."""
        return getattr(self.outbound, "dialect", SPEC)

    @property
    def access(self):
        """'full', 'limited', or None before authentication."""
        return self.grant.access if self.grant else None

    def sign_in(self, grant, key_fingerprint=None):
        """Attach an authenticated grant (replacing any earlier one); ``key_fingerprint``
        names the key of an rpc/auth_ssl login."""
        self._unlisten()
        self.grant = grant
        self.key_fingerprint = key_fingerprint
        grant.revoke_listeners.add(self._revoked)
        self._arm_expiry()
        if self._listener is not None:
            self._listener.signed_in(self)

    def sign_out(self):
        """Drop authentication; the session's subscriptions end."""
        was_signed_in = self.grant is not None
        self._unlisten()
        self.grant = None
        self.key_fingerprint = None
        self._cancel_expiry()
        self._drop_subscriptions()
        if was_signed_in and self._listener is not None:
            self._listener.signed_out(self)

    def check(self):
        """True when authenticated (extending the token); an expired or revoked token
        signs the session out."""
        if self.grant is None:
            return False
        if self._tokens.touch(self.grant):
            return True
        self.log.info(
            "session of {user} from {peer} ended: token expired or revoked",
            user=self.grant.user,
            peer=self.peer_host,
        )
        self.sign_out()
        return False

    def close(self):
        """The client is gone: release subscriptions and timers (the token stays valid
        for reuse with rpc/auth_token until it expires)."""
        self._unlisten()
        self._cancel_expiry()
        self._drop_subscriptions()

    def _drop_subscriptions(self):
        if self._hub is not None:
            self._hub.drop(self.outbound)

    def _unlisten(self):
        if self.grant is not None:
            self.grant.revoke_listeners.discard(self._revoked)

    def _revoked(self, grant):
        # Another connection signed this token out (rpc/auth_clear).
        self.log.info(
            "session of {user} from {peer} ended: token revoked", user=grant.user, peer=self.peer_host
        )
        self.sign_out()
        self.outbound.send_frame(
            envelope.error(None, 401, "Your session was signed out; authenticate again.")
        )

    def _arm_expiry(self):
        self._cancel_expiry()
        delay = max(0.0, self.grant.expires - self._clock.seconds())
        self._expiry_call = self._clock.callLater(delay, self._expiry_due)

    def _cancel_expiry(self):
        self._expiry_call = cancel_call(self._expiry_call)

    def _expiry_due(self):
        self._expiry_call = None
        if self.grant is None:
            return
        if self._tokens.is_valid(self.grant):
            # Extended since the timer was set: wait for the new expiry.
            self._arm_expiry()
            return
        self.check()
        self.outbound.send_frame(
            envelope.error(None, 401, "Your session expired; authenticate again.")
        )
