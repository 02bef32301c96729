"""Reaching a daemon through a bridge (``--bridge URL --server SHA256:...``).

The bridge relays text frames: the client sends ``"<server id>\\n<payload>"`` and receives
``"<sender id>\\n<payload>"``; frames from the bridge itself are plain JSON objects. On a
new connection the bridge asks ``rpc/identify`` (we answer that we are a ``client``), the
client signs in to the bridge with ``rpc/auth_ssl`` (the bridge takes keys only), and the
bridge pushes ``{"namespace": "events", "name": "bridge", "args":
{"available_connections": [ids], "connection_id": "<ours>", "connections": {id: {"role",
"fingerprint", "hostname"}}}}``. The server is the offered connection whose role is
``server`` and whose key fingerprint (proved to the bridge, not claimed) is the pinned
``--server``; a host name is only a label and chooses nothing.

The bridge is not trusted with anything else: the client then opens an encrypted tunnel
to that server (``sysadmd.protocol.tunnel``: ``noise:offer``, checked against the pinned
fingerprint before anything else is sent, then ``noise:hello`` and ``noise:welcome``), and
every payload to or from the server is a sealed tunnel message from then on. Inside it
the client talks to the server exactly as it would directly: it authenticates to the
server itself, with its own token and subscriptions, and a key signature is bound to the
pinned key and this tunnel's handshake (``sysadmd.client.binding``). A server that cannot
prove the pinned key is refused (:class:`TunnelRefused`); a message that does not open,
or a ``noise:error``, ends the link (:class:`TunnelBroken`). Nothing is ever sent to the
server in plaintext but the tunnel's own ``noise:`` steps, and each new link (a
reconnection too) makes a new handshake.
"""

from twisted.internet import defer
from twisted.logger import Logger

from sysadmd.client.binding import ChallengeBinding
from sysadmd.client.calls import RpcSession
from sysadmd.client.errors import (
    ClientError,
    ConnectionClosed,
    TunnelBroken,
    TunnelRefused,
)
from sysadmd.protocol import tunnel
from sysadmd.protocol.tunnel import TunnelError

SERVER_WAIT = 10.0
# The largest message taken from the server: a reply carries up to 4 MiB of job output
# (as JSON, so escaped), and a refused bigger one would end the session.
MAX_MESSAGE = 64 * 1024 * 1024
# How much of a reason given by the far end is shown (it could be anything).
REASON_CHARS = 300


def wrap(destination, payload):
    """The frame that relays ``payload`` (text) to ``destination``."""
    if "\n" in destination:
        raise ValueError("a bridge connection id cannot contain a newline")
    return f"{destination}\n{payload}"


def unwrap(text):
    """``(sender, payload)`` of a relayed frame, or ``(None, text)`` for a frame from the
    bridge itself (a JSON object, or anything without an id line)."""
    if text.lstrip().startswith("{"):
        return None, text
    sender, newline, payload = text.partition("\n")
    if not newline:
        return None, text
    return sender, payload


def printable(text):
    """``text`` fit for the one error line: a reason from the far end (or forged by the
    bridge) must not bring control characters to the terminal."""
    text = "".join(c if c.isprintable() else "?" for c in text[:REASON_CHARS])
    return text or "no reason given"


class BridgeLink:
    """Two sessions on one bridge connection: ``bridge_session`` to the bridge, and
    ``session`` relayed to the server inside the encrypted tunnel (see the module
    docstring).

    ``server`` is the fingerprint of the server's bridge key (``SHA256:...``, checked by
    :func:`sysadmd.client.binding.parse_server_fingerprint`); ``server_id`` is the
    connection id it has on the bridge, once offered; ``tunnel`` the established
    :class:`sysadmd.protocol.tunnel.Tunnel`, and ``broken`` the :class:`TunnelBroken`
    that ended it, if one did.
    """

    _log = Logger()

    def __init__(self, clock, connection, server, sign_in, server_wait=SERVER_WAIT, max_message=MAX_MESSAGE):
        self._clock = clock
        self.connection = connection
        self.server = server
        self.server_id = None
        self.connection_id = None
        self.url = f"{connection.url} (server {server})"
        self._sign_in = sign_in
        self._server_wait = server_wait
        self._max_message = max_message
        self.available = []
        self.connections = {}
        self._waiting = None
        self.tunnel = None
        self.broken = None
        self._initiator = None
        self._step = self._ignore
        self.bridge_session = RpcSession(clock, connection.send_text, id_prefix="sysadm-bridge-")
        self.session = RpcSession(clock, self._seal)
        self.bridge_session.on_request = self._bridge_request
        self.bridge_session.on_event = self._bridge_event
        self.bridge_session.on_unsolicited_error = self._bridge_error
        connection.receiver = self.received
        self.closed = defer.Deferred()
        connection.closed.addCallback(self._connection_ended)

    def received(self, text):
        """Route one incoming frame to the bridge session or the server's tunnel."""
        sender, payload = unwrap(text)
        if sender is None:
            self.bridge_session.text_received(payload)
        elif sender == self.server_id:
            self._step(payload)
        else:
            self._log.debug("ignoring a frame relayed from {sender}", sender=sender)

    def _bridge_request(self, frame):
        if frame.get("namespace") == "rpc" and frame.get("name") == "identify":
            self.bridge_session.send_frame(
                {"namespace": "rpc", "name": "response", "id": frame.get("id"), "args": {"type": "client"}}
            )

    def _bridge_event(self, frame):
        if frame.get("name") != "bridge":
            return
        args = frame.get("args")
        available = args.get("available_connections") if isinstance(args, dict) else None
        if not isinstance(available, list):
            return
        self.available = [str(item) for item in available]
        connections = args.get("connections")
        self.connections = connections if isinstance(connections, dict) else {}
        own = args.get("connection_id")
        if self.connection_id is None and isinstance(own, str) and own:
            self.connection_id = own
        if self.server_id is not None:
            if self.server_id not in self._servers():
                self._server_gone(f"the bridge no longer offers server {self.server}")
            return
        found = [i for i, fingerprint in self._servers().items() if fingerprint == self.server]
        if found and self.connection_id is not None:
            self._found(found[0])

    def _servers(self):
        """``{id: fingerprint}`` of the offered connections the bridge says are servers."""
        servers = {}
        for connection_id in self.available:
            entry = self.connections.get(connection_id)
            if isinstance(entry, dict) and entry.get("role") == "server":
                fingerprint = entry.get("fingerprint")
                if isinstance(fingerprint, str):
                    servers[connection_id] = fingerprint
        return servers

    def _label(self, connection_id):
        entry = self.connections.get(connection_id)
        hostname = entry.get("hostname") if isinstance(entry, dict) else None
        # a label the peer chose: shown only when it cannot garble the error line
        return hostname if isinstance(hostname, str) and hostname.isprintable() else None

    # The tunnel: offer, hello, welcome, then sealed messages

    def _found(self, connection_id):
        self.server_id = connection_id
        self._step = self._offered
        self._send_plain(tunnel.OFFER)

    def _offered(self, payload):
        self._step = self._ignore
        try:
            if payload.startswith(tunnel.ERROR):
                raise TunnelError("the server refused the tunnel: " + payload[len(tunnel.ERROR):])
            static, rekey_messages = tunnel.check_offer(payload, self.server)
        except TunnelError as e:
            self._refused(str(e))
            return
        self._initiator = tunnel.Initiator(static, rekey_messages, self._max_message)
        self._step = self._welcomed
        self._send_plain(self._initiator.hello())

    def _welcomed(self, payload):
        self._step = self._ignore
        try:
            self.tunnel = self._initiator.welcome(payload)
        except TunnelError as e:
            self._refused(str(e))
            return
        self._initiator = None
        self.session.challenge_binding = ChallengeBinding(self.server, self.tunnel.handshake_hash)
        self._step = self._opened
        self._log.debug("encrypted tunnel to server {server} open", server=self.server)
        self._settle()

    def _opened(self, payload):
        if payload.startswith(tunnel.ERROR):
            self._broke(payload[len(tunnel.ERROR):], tell_server=False)
            return
        try:
            message = self.tunnel.open(payload)
        except TunnelError as e:
            self._broke(str(e), tell_server=True)
            return
        if message is not None:
            self.session.text_received(message.decode("utf-8", "replace"))

    def _ignore(self, payload):
        self._log.debug("ignoring a frame from the server outside the tunnel's steps")

    def _seal(self, text):
        if self.tunnel is None:
            # Never plaintext: the link is handed out only once the tunnel is open.
            raise ClientError(f"no encrypted tunnel to {self.server} is open")
        for frame in self.tunnel.seal(text.encode("utf-8")):
            self.connection.send_text(wrap(self.server_id, frame))

    def _send_plain(self, step):
        self.connection.send_text(wrap(self.server_id, step))

    def _refused(self, reason):
        """The server did not prove the pinned key (or refused the tunnel): nothing more is
        sent, the start fails and the connection closes."""
        refused = TunnelRefused(
            f"cannot open the encrypted tunnel to {self.server} through the bridge "
            f"{self.connection.url}: {printable(reason)}"
        )
        self._settle(refused)
        self._end(refused)

    def _broke(self, reason, tell_server):
        """End everything: a message did not open, or the server said ``noise:error``."""
        self.broken = TunnelBroken(f"the encrypted tunnel to {self.server} broke: {printable(reason)}")
        self._log.warn("the encrypted tunnel to {server} broke: {reason}", server=self.server, reason=reason)
        self.tunnel = None
        self._step = self._ignore
        if tell_server:
            # The protocol's way to end the server's session at once (not only once the
            # bridge says we left).
            self._send_plain(tunnel.ERROR + reason)
        self._end(self.broken)

    def _end(self, error):
        """The server session is over (``error``, a :class:`ConnectionClosed`): calls fail
        with it, ``closed`` fires and the bridge connection closes."""
        if not self.closed.called:
            self.session.connection_lost(error)
            self.closed.callback(str(error))
            self.connection.close()

    # Starting and ending

    def _settle(self, error=None):
        """Fire :meth:`start`'s wait: with this link, or failing with ``error``."""
        if self._waiting is None:
            return
        (d, timer), self._waiting = self._waiting, None
        if timer.active():
            timer.cancel()
        if error is None:
            d.callback(self)
        else:
            d.errback(error)

    def _bridge_error(self, args):
        args = args if isinstance(args, dict) else {}
        destination = args.get("destination")
        if self.server_id is None or (destination is not None and destination != self.server_id):
            # nothing is relayed yet, or not about our server
            self._log.debug("the bridge says: {args}", args=args)
            return
        details = args.get("details")
        self._server_gone(f"the bridge cannot relay to server {self.server}" + (f": {details}" if details else ""))

    def _server_gone(self, description):
        gone = ConnectionClosed(description)
        self._settle(gone)
        self._end(gone)

    def _connection_ended(self, description):
        lost = ConnectionClosed(f"connection to the bridge {self.connection.url} lost: {description}")
        self.bridge_session.connection_lost(lost)
        self._settle(lost)
        if not self.closed.called:
            self.session.connection_lost(lost)
            self.closed.callback(description)

    @defer.inlineCallbacks
    def start(self):
        """Sign in to the bridge with ``sign_in(bridge_session)``, wait until the server is
        offered and open the tunnel to it; fires with this link, or fails with
        :class:`ClientError` (:class:`TunnelRefused` when the server did not prove the
        pinned key)."""
        offered = defer.Deferred()
        timer = self._clock.callLater(self._server_wait, self._too_late)
        self._waiting = (offered, timer)
        signed_in = defer.maybeDeferred(self._sign_in, self.bridge_session)
        try:
            yield defer.gatherResults([signed_in, offered], consumeErrors=True)
        except defer.FirstError as e:
            # The wait ends too when the sign-in failed first (its error is consumed).
            self._settle(e.subFailure.value)
            e.subFailure.raiseException()
        return self

    def _too_late(self):
        if self.server_id is not None:
            error = ClientError(
                f"the server {self.server} did not open the encrypted tunnel within "
                f"{self._server_wait:g} s (through the bridge {self.connection.url})"
            )
            self._step = self._ignore
        elif self.connection_id is None and self.available:
            error = ClientError(
                f"the bridge {self.connection.url} does not say which key each connection "
                "holds; it is too old for --server SHA256:... (upgrade sysadm-bridge)"
            )
        else:
            offered = []
            for connection_id, fingerprint in sorted(self._servers().items(), key=lambda item: item[1]):
                label = self._label(connection_id)
                offered.append(f"{fingerprint} ({label})" if label else fingerprint)
            error = ClientError(
                f"the bridge {self.connection.url} offers no server {self.server} "
                f"(offered servers: {', '.join(offered) or 'none'}); the server must be "
                "connected to the bridge and accept this key"
            )
        self._settle(error)

    def close(self):
        """Close the bridge connection; fires when it is gone."""
        return self.connection.close()
