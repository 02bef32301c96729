"""One outgoing WebSocket connection from the daemon to a bridge.

On open the daemon answers the bridge's identify as a ``server`` (the bridge decides the
role from its ``server_keys_file``, not from this answer), signs in with ``rpc/auth_ssl``
using ``[bridge] key`` (an RSA key signs in the original raw-RSA form, which original
bridges check and sysadmd bridges accept), answers ``rpc/settings list_ssl_checksums``
with the names of the keys in its ``[auth] keys_file`` (``sha256_keys`` and, for
original bridges, ``md5_keys``), follows ``events/bridge`` (the clients listed and
the key each signed in with) and hands relayed frames to
:class:`sysadmd.bridge.clients.RelayedClients`, whose ``rpc/auth_ssl`` is bound to this
link's key fingerprint (see ``sysadmd.bridge.wire`` for the frames).
"""

import base64
import json
import random
import socket

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.protocol import PreparedMessage
from twisted.application.internet import backoffPolicy
from twisted.internet import defer, task

import sysadmd
from sysadmd.bridge import wire
from sysadmd.bridge.clients import RelayedClients
from sysadmd.bridge.original import bridge_public_pem, sign_for_bridge
from sysadmd.protocol import envelope, tunnel
from sysadmd.server.eager import no_delay
from sysadmd.server.protocol import CLOSE_GOING_AWAY
from sysadmd.util.log import Logger

AUTH_CHALLENGE_ID = "sysadmd_bridge_auth_challenge"
AUTH_ANSWER_ID = "sysadmd_bridge_auth_answer"
KEEPALIVE_ID = "sysadmd_bridge_keepalive"
MAX_DELAY = 60.0
CLOSE_TIMEOUT = 5.0
# Room for the id line in front of a relayed message of max_message_bytes.
ID_LINE_ALLOWANCE = 1024


def prepare_masked(payload):
    """A client-side (masked) text frame of ``payload`` bytes."""
    return PreparedMessage(payload, isBinary=False, applyMask=True, doNotCompress=False)


class Backoff:
    """``ClientService``'s retry policy (Twisted's ``backoffPolicy``), also counting links
    that ended before signing in.

    ``ClientService`` counts only failed TCP connections; a bridge that accepts the TCP
    connection and then refuses the handshake or the key would otherwise be retried
    every second (and ban us). Its ``prepareConnection`` cannot count those: a connection
    lost while it is pending is an input its state machine refuses. The delay grows by
    1.5 per failure up to ``MAX_DELAY`` seconds, jitter included.
    """

    def __init__(self, jitter=random.random):
        self._policy = backoffPolicy(maxDelay=MAX_DELAY, jitter=jitter)
        self.unsigned = 0

    def __call__(self, attempt):
        """Seconds to wait before attempt number ``attempt`` (from 1)."""
        # backoffPolicy adds its jitter after applying its own cap.
        return min(self._policy(attempt + self.unsigned), MAX_DELAY)

    def link_ended(self, signed_in):
        """A connection ended; it had signed in or not."""
        self.unsigned = 0 if signed_in else self.unsigned + 1


class BridgeLinkProtocol(WebSocketClientProtocol):
    """The daemon's connection to one bridge."""

    _log = Logger()

    clients = None
    signed_in = False
    _keepalive = None
    _announced = None
    _warned_keys = False

    def connectionMade(self):
        """Prepare the Deferred that :meth:`going_away` returns."""
        self.lost = defer.Deferred()
        no_delay(self.transport)
        super().connectionMade()

    def onOpen(self):
        """Start signing in, and relay for clients from now on."""
        factory = self.factory
        self.clients = RelayedClients(
            factory.nick, factory.daemon, self._write_prepared, prepare_masked, factory.fingerprint,
            legacy=factory.legacy_clients, keys=factory.keys, public_pem=factory.public_pem,
            tunnel_server=factory.tunnel_server,
        )
        self.transport.registerProducer(self.clients, True)
        self._announced = None
        self._keepalive = None
        factory.opened(self)
        self._log.info("connected to bridge {nick} at {url}", nick=factory.nick, url=factory.url)
        self._send(
            {"namespace": "rpc", "name": "auth_ssl", "id": AUTH_CHALLENGE_ID, "args": {}}
        )

    def connectionLost(self, reason):
        """End every relayed session."""
        try:
            super().connectionLost(reason)
        finally:
            if self._keepalive_running():
                self._keepalive.stop()
            if self.clients is not None:
                self.clients.close_all()
            self.factory.lost(self)
            self.lost.callback(None)

    def onClose(self, wasClean, code, reason):
        """Log the end of an opened link."""
        if self.clients is not None:
            self._log.info(
                "disconnected from bridge {nick} (code {code})", nick=self.factory.nick, code=code
            )

    # Incoming

    def onMessage(self, payload, isBinary):
        """Relayed frames go to the clients; envelopes are the bridge's."""
        if not isBinary and not wire.is_for_bridge(payload):
            try:
                client_id, body = wire.split_relay(payload)
            except wire.RelayFrameError as e:
                self._log.warn("bridge {nick} sent a bad frame: {error}", nick=self.factory.nick, error=str(e))
                return
            self.clients.relayed(client_id, body)
            return
        try:
            message = json.loads(payload.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            message = None
        if not isinstance(message, dict):
            self._log.warn("bridge {nick} sent a frame that is not JSON", nick=self.factory.nick)
            return
        if wire.is_reply(message):
            self._reply(message)
        elif message.get("namespace") == "events" and message.get("name") == "bridge":
            self._bridge_event(message.get("args"))
        else:
            self._request(message)

    def _request(self, message):
        request_id = message.get("id")
        key = (message.get("namespace"), message.get("name"))
        args = message.get("args")
        if key == ("rpc", "identify"):
            result = {"type": wire.SERVER, "hostname": socket.gethostname(), "version": sysadmd.__version__}
        elif key == ("rpc", "settings") and isinstance(args, dict) and args.get("action") == "list_ssl_checksums":
            self._announced = self.factory.checksums()
            result = wire.checksums_reply(self._announced)["args"]
        else:
            self._send(envelope.error(request_id, 404, f"Unknown call {key[0]}/{key[1]}."))
            return
        self._send({"namespace": key[0], "name": "response", "id": request_id, "args": result})

    def _reply(self, message):
        request_id = message.get("id")
        args = message.get("args")
        if message.get("namespace") == "error":
            details = args.get("details") if isinstance(args, dict) else args
            if request_id in (AUTH_CHALLENGE_ID, AUTH_ANSWER_ID):
                self._log.error(
                    "bridge {nick} refused key {fingerprint}: {details}; add the output of "
                    "'sysadmd-admin bridge export-key' to the bridge's server keys file",
                    nick=self.factory.nick,
                    fingerprint=self.factory.fingerprint,
                    details=details,
                )
                self._close(1000, "Sign-in refused")
            elif request_id is None:
                self._log.debug("bridge {nick}: {details}", nick=self.factory.nick, details=details)
            return
        if request_id == AUTH_CHALLENGE_ID:
            test_string = args.get("test_string") if isinstance(args, dict) else None
            if not isinstance(test_string, str):
                self._log.error("bridge {nick} sent no test string", nick=self.factory.nick)
                self._close(1000, "Bad auth_ssl reply")
                return
            try:
                signature = sign_for_bridge(self.factory.key, test_string)
            except ValueError as e:
                self._log.error("cannot sign bridge {nick}'s test string: {error}",
                                nick=self.factory.nick, error=str(e))
                self._close(1000, "Bad auth_ssl reply")
                return
            self._send({
                "namespace": "rpc",
                "name": "auth_ssl",
                "id": AUTH_ANSWER_ID,
                "args": {"encrypted_string": base64.b64encode(signature).decode("ascii")},
            })
        elif request_id == AUTH_ANSWER_ID:
            self.signed_in = True
            self._log.info(
                "signed in to bridge {nick} with key {fingerprint}",
                nick=self.factory.nick,
                fingerprint=self.factory.fingerprint,
            )
            self._start_keepalive()

    def _bridge_event(self, args):
        ids = args.get("available_connections") if isinstance(args, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            self._log.warn("bridge {nick} sent a bad bridge event", nick=self.factory.nick)
            return
        keys = wire.connection_keys(args)
        if not keys and ids and not self._warned_keys:
            self._warned_keys = True
            self._log.warn(
                "bridge {nick} does not say which key each client signed in with; failed "
                "logins of all its clients count together",
                nick=self.factory.nick,
            )
        self.clients.bridge_event(ids, keys)

    # Keepalive

    def _start_keepalive(self):
        interval = self.factory.keepalive
        if interval > 0 and not self._keepalive_running():
            self._keepalive = task.LoopingCall(self._tick)
            self._keepalive.clock = self.factory.reactor
            self._keepalive.start(interval, now=False)

    def _keepalive_running(self):
        return self._keepalive is not None and self._keepalive.running

    def _tick(self):
        self._send({"namespace": "rpc", "name": "identify", "id": KEEPALIVE_ID, "args": {}})
        if self._announced is not None:
            current = self.factory.checksums()
            if current != self._announced:
                self._announced = current
                self._log.info(
                    "telling bridge {nick} that the accepted keys changed", nick=self.factory.nick
                )
                self._send(wire.checksums_reply(current))

    # Outgoing

    def _send(self, frame):
        if self.state == self.STATE_OPEN:
            self.sendMessage(envelope.encode(frame))

    def _write_prepared(self, prepared):
        if self.state == self.STATE_OPEN:
            self.sendPreparedMessage(prepared)

    def _close(self, code, reason):
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code, reason.encode("utf-8"), isReply=False)

    def going_away(self, timeout=CLOSE_TIMEOUT):
        """Close with 1001 because the daemon stops; fires when the connection is gone
        (or after ``timeout`` seconds, when the caller drops it)."""
        self._close(CLOSE_GOING_AWAY, "Server shutting down")
        waiting = defer.Deferred()

        def gone(result):
            if not waiting.called:
                waiting.callback(None)
            return result

        self.lost.addBoth(gone)
        waiting.addTimeout(timeout, self.factory.reactor)
        return waiting.addErrback(lambda _: None)


class BridgeLinkFactory(WebSocketClientFactory):
    """Builds the link to one bridge: ``address`` (a
    :class:`sysadmd.bridge.urls.BridgeAddress`), the daemon's server factory ``daemon``
    (whose router, hub, tokens and settings relayed clients share), the private ``key``
    and ``checksums()`` returning the ``list_ssl_checksums`` answer's args. ``keys`` (the
    daemon's keys file) and ``legacy_clients`` serve relayed plaintext and original clients
    (:mod:`sysadmd.bridge.original`); ``tunnel_server`` opens relayed clients' encrypted
    tunnels (:mod:`sysadmd.bridge.tunnel`)."""

    protocol = BridgeLinkProtocol
    noisy = False
    _log = Logger()

    def __init__(self, reactor, address, daemon, key, fingerprint, checksums, keepalive, backoff,
                 keys=None, legacy_clients=False, tunnel_server=None):
        super().__init__(
            url=address.url, reactor=reactor, useragent=f"sysadmd/{sysadmd.__version__}"
        )
        self.reactor = reactor
        self.nick = address.nick
        self.daemon = daemon
        self.key = key
        self.fingerprint = fingerprint
        self.checksums = checksums
        self.keys = keys
        self.legacy_clients = legacy_clients
        self.tunnel_server = tunnel_server
        self.public_pem = bridge_public_pem(key)
        self.keepalive = keepalive
        self.backoff = backoff
        self.current = None
        settings = daemon.parts.settings
        # A tunnel frame is base64 of up to one Noise message, whatever the message limit.
        largest = max(settings.max_message_bytes, tunnel.MAX_NOISE_MESSAGE * 4 // 3 + 4) + ID_LINE_ALLOWANCE
        self.setProtocolOptions(
            maxMessagePayloadSize=largest,
            maxFramePayloadSize=largest,
            openHandshakeTimeout=settings.handshake_timeout,
            closeHandshakeTimeout=CLOSE_TIMEOUT,
            autoPingInterval=settings.ping_interval,
            autoPingTimeout=settings.ping_interval,
            failByDrop=False,
        )

    def opened(self, protocol):
        """A link completed its handshake."""
        self.current = protocol

    def lost(self, protocol):
        """A link ended; the backoff learns whether it had signed in."""
        if self.current is protocol:
            self.current = None
        self.backoff.link_ended(protocol.signed_in)
        if not protocol.signed_in:
            self._log.warn(
                "no sign-in to bridge {nick} ({count} failed link(s) in a row); retrying with backoff",
                nick=self.nick,
                count=self.backoff.unsigned,
            )
