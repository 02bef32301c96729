"""The bridge's WebSocket side: connection ids, sign-in, and the relay.

The protocol is :class:`sysadmd.server.protocol.SysadmServerProtocol` with the daemon's
limits (message sizes, authentication and idle timeouts, connections per address, bans at
the handshake, requests in flight); what differs is described in ``sysadmd.bridge.wire``.
Everything the bridge sends a connection other than a direct reply goes through its
bounded :class:`sysadmd.channel.outbound.Outbound`: a peer that stops reading is closed
with 1008 once ``[relay] buffer_bytes`` are waiting, so it cannot grow the bridge's memory.
"""

import json
import uuid

from twisted.internet import defer

import sysadmd
from sysadmd.auth import policy
from sysadmd.bridge import wire
from sysadmd.bridge.registry import Registry
from sysadmd.channel.channel import TOO_SLOW
from sysadmd.channel.session import Session
from sysadmd.protocol import envelope
from sysadmd.protocol.reply import Reply
from sysadmd.server.factory import SysadmServerFactory
from sysadmd.server.protocol import CLOSE_POLICY, SysadmServerProtocol
from sysadmd.util.log import Logger


class BridgeSession(Session):
    """A sign-in on the bridge lasts as long as the connection: the token ``auth_ssl``
    returns is never used again, so the session neither expires nor needs extending.
    ``role`` is what the signed-in key makes the connection (set by
    :class:`sysadmd.bridge.auth.BridgeSignIn`; a client until a server key signs in)."""

    connection_id = None
    role = wire.CLIENT
    # The signed-in key's other names (its MD5: name), set with the role.
    key_aliases = ()

    def _arm_expiry(self):
        pass

    def check(self):
        """True once signed in."""
        return self.grant is not None


def new_connection_id():
    """A fresh, unguessable connection id."""
    return str(uuid.uuid4())


def _decode_reply(payload):
    """The envelope in ``payload`` if it is a reply (response or error), else None."""
    try:
        text = payload.decode("utf-8") if isinstance(payload, (bytes, bytearray)) else payload
        message = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if isinstance(message, dict) and wire.is_reply(message):
        return message
    return None


class BridgeServerProtocol(SysadmServerProtocol):
    """One connection to the bridge, server or client."""

    _log = Logger()
    session_class = BridgeSession
    connection_id = None

    def onOpen(self):
        """Give the connection its id and ask who it is."""
        super().onOpen()
        self._asked_checksums = False
        self._claimed = None
        self._warned_claim = False
        self.connection_id = self.factory.register(self)
        self.channel.session.connection_id = self.connection_id
        self._log.info(
            "bridge connection {connection_id} from {peer}",
            connection_id=self.connection_id,
            peer=self.peer_host,
        )
        self.channel.outbound.send_frame(wire.identify_request())

    def connectionLost(self, reason):
        """Forget the connection; those that could reach it are told."""
        try:
            if self.connection_id is not None:
                self.factory.unregister(self)
        finally:
            super().connectionLost(reason)

    # Incoming

    def onMessage(self, payload, isBinary):
        """Relay frames go on unread; envelopes are the bridge's own calls and replies."""
        if not isBinary and not wire.is_for_bridge(payload):
            self.channel.touch()
            self._relay(payload)
            return
        reply = _decode_reply(payload)
        if reply is not None:
            self.channel.touch()
            self._reply_received(reply)
            return
        super().onMessage(payload, isBinary)

    def _error(self, code, details, **extra):
        frame = envelope.error(None, code, details)
        frame["args"].update(extra)
        self.channel.outbound.send_frame(frame)

    def _relay(self, payload):
        if not self.channel.session.check():
            self._error(401, "Sign in with rpc/auth_ssl before relaying.")
            return
        try:
            destination, body = wire.split_relay(payload)
        except wire.RelayFrameError as e:
            self._error(400, f"Not a relayed frame: {e}.")
            return
        target = self.factory.peers.get(destination)
        if target is None or not self.factory.registry.can_relay(self.connection_id, destination):
            self._log.debug(
                "{connection_id} cannot reach {destination}",
                connection_id=self.connection_id,
                destination=destination,
            )
            self._error(404, f"No reachable connection {destination}.", destination=destination)
            return
        target.deliver(wire.address(self.connection_id, body))

    def _reply_received(self, message):
        request_id = message.get("id")
        if message.get("namespace") == "error":
            self._log.info(
                "{connection_id} answered {request_id} with an error: {args}",
                connection_id=self.connection_id,
                request_id=request_id,
                args=message.get("args"),
            )
        elif request_id == wire.IDENTIFY_ID:
            self._identified(message.get("args"))
        elif request_id == wire.CHECKSUMS_ID:
            self._checksums_received(message.get("args"))
        else:
            self._log.debug(
                "ignoring a reply to {request_id} from {connection_id}",
                request_id=request_id,
                connection_id=self.connection_id,
            )

    def _identified(self, args):
        # Only a label: the role comes from the key the connection signs in with.
        claimed = args.get("type") if isinstance(args, dict) else None
        self._claimed = claimed if isinstance(claimed, str) else None
        label = wire.parse_label(args)
        self.factory.registry.labelled(self.connection_id, label)
        self._log.info(
            "bridge connection {connection_id} calls itself {label}",
            connection_id=self.connection_id,
            label=label,
        )
        self._check_claim()

    def _check_claim(self):
        session = self.channel.session
        if (
            self._claimed == wire.SERVER
            and session.check()
            and session.role != wire.SERVER
            and not self._warned_claim
        ):
            self._warned_claim = True
            self._log.warn(
                "bridge connection {connection_id} from {peer} claims to be a server but "
                "signed in with key {fingerprint}, which is not in the server keys file: "
                "it is a client",
                connection_id=self.connection_id,
                peer=self.peer_host,
                fingerprint=session.key_fingerprint,
            )

    def _checksums_received(self, args):
        registry = self.factory.registry
        if not self.channel.session.check() or registry.role(self.connection_id) != wire.SERVER:
            return
        try:
            fingerprints = wire.parse_checksums(args)
        except ValueError as e:
            self._log.warn(
                "server {connection_id} sent a bad key list: {error}",
                connection_id=self.connection_id,
                error=str(e),
            )
            return
        registry.accepts(self.connection_id, fingerprints)
        self._log.info(
            "server {connection_id} accepts {count} client key name(s)",
            connection_id=self.connection_id,
            count=len(fingerprints),
        )

    # Sign-in (called by the auth_ssl wrapper, after the reply is sent)

    def signed_in_to_bridge(self):
        """The connection proved a registered key, which decided its role: tell it (and
        others) who it reaches."""
        session = self.channel.session
        self.factory.registry.signed_in(
            self.connection_id, session.key_fingerprint, session.role, session.key_aliases
        )
        self._log.info(
            "bridge connection {connection_id} is a {role} (key {fingerprint})",
            connection_id=self.connection_id,
            role=session.role,
            fingerprint=session.key_fingerprint,
        )
        self._check_claim()
        self._ask_checksums()

    def _ask_checksums(self):
        if (
            not self._asked_checksums
            and self.channel.session.check()
            and self.factory.registry.role(self.connection_id) == wire.SERVER
        ):
            self._asked_checksums = True
            self.channel.outbound.send_frame(wire.checksums_request())

    # Outgoing

    def deliver(self, data):
        """Send ``data`` (a frame's bytes) within the connection's buffer limit."""
        self.channel.outbound.send_bounded(self.factory.prepare(data))

    def announce(self, ids):
        """Send the ``events/bridge`` frame listing ``ids``, who each one is, and this
        connection's own id."""
        details = self.factory.registry.details(ids)
        data = envelope.encode(wire.bridge_event(ids, self.connection_id, details))
        self.channel.outbound.send_bounded(self.factory.prepare(data))

    def end(self, ending):
        """Close the connection (the channel has logged why); a peer too slow for the
        relay is told so."""
        if ending is TOO_SLOW:
            self.close_with(CLOSE_POLICY, "Too slow: relay buffer full")
            return
        super().end(ending)


class BridgeServerFactory(SysadmServerFactory):
    """Builds :class:`BridgeServerProtocol` connections sharing the router (identify and
    auth_ssl), the token store, the ban list and the :class:`Registry`.

    ``settings.subscriber_buffer_bytes`` bounds each connection's waiting frames and
    ``settings.slow_subscriber`` should be ``"disconnect"``.
    """

    protocol = BridgeServerProtocol
    _log = Logger()

    def __init__(self, reactor, settings, router, tokens, bans, new_id=new_connection_id):
        # No event hub: a bridge session subscribes to nothing.
        super().__init__(reactor, settings, router, None, tokens, bans)
        self.server = f"sysadm-bridge/{sysadmd.__version__}"
        self._new_id = new_id
        self.peers = {}
        self.registry = Registry(self._announce)

    def register(self, protocol):
        """Give an opened connection a unique id."""
        connection_id = self._new_id()
        while connection_id in self.peers:
            connection_id = self._new_id()
        self.peers[connection_id] = protocol
        self.registry.add(connection_id)
        return connection_id

    def unregister(self, protocol):
        """A connection is gone."""
        if self.peers.get(protocol.connection_id) is protocol:
            del self.peers[protocol.connection_id]
            self.registry.remove(protocol.connection_id)

    def _announce(self, connection_id, ids):
        protocol = self.peers.get(connection_id)
        if protocol is not None:
            protocol.announce(ids)


def register_calls(router, authenticator, factory):
    """The bridge's own calls: ``rpc/identify`` and ``rpc/auth_ssl`` (nothing else).

    ``authenticator.auth_ssl`` signs the session in; with
    :class:`sysadmd.bridge.auth.BridgeSignIn` it also sets the session's ``role``."""

    def identify(session, args):
        return {"type": "bridge", "version": sysadmd.__version__}

    @defer.inlineCallbacks
    def auth_ssl(session, args):
        result = yield defer.maybeDeferred(authenticator.auth_ssl, session, args)
        if isinstance(args, dict) and "encrypted_string" in args and session.check():
            protocol = factory.peers.get(session.connection_id)
            if protocol is not None:
                return Reply(result, after=protocol.signed_in_to_bridge)
        return result

    router.register("rpc", "identify", identify, policy.PUBLIC)
    router.register("rpc", "auth_ssl", auth_ssl, policy.PUBLIC)
