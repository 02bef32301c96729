"""Reaching a daemon through a bridge (``--bridge URL --server SHA256:...``).

The bridge relays text frames: the client sends ``"<server id>\\n<payload>"`` and receives
``"<sender id>\\n<payload>"``; frames from the bridge itself are plain JSON objects. On a
new connection the bridge asks ``rpc/identify`` (we answer that we are a ``client``), the
client signs in to the bridge with ``rpc/auth_ssl`` (the bridge takes keys only), and the
bridge pushes ``{"namespace": "events", "name": "bridge", "args":
{"available_connections": [ids], "connection_id": "<ours>", "connections": {id: {"role",
"fingerprint", "hostname"}}}}``. The server is the offered connection whose role is
``server`` and whose key fingerprint (proved to the bridge, not claimed) is the pinned
``--server``; a host name is only a label and chooses nothing. The client then talks to
it through the relay exactly as it would directly: it authenticates to the server itself,
with its own token and subscriptions, and a key signature is bound to that server and
this connection (``sysadmd.client.binding``).
"""

from twisted.internet import defer
from twisted.logger import Logger

from sysadmd.client.binding import ChallengeBinding
from sysadmd.client.calls import RpcSession
from sysadmd.client.errors import ClientError, ConnectionClosed

SERVER_WAIT = 10.0


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


class BridgeLink:
    """Two sessions on one bridge connection: ``bridge_session`` to the bridge, and
    ``session`` relayed to the server (see the module docstring).

    ``server`` is the fingerprint of the server's bridge key (``SHA256:...``, checked by
    :func:`sysadmd.client.binding.parse_server_fingerprint`); ``server_id`` is the
    connection id it has on the bridge, once offered.
    """

    _log = Logger()

    def __init__(self, clock, connection, server, sign_in, server_wait=SERVER_WAIT):
        self._clock = clock
        self.connection = connection
        self.server = server
        self.server_id = None
        self.connection_id = None
        self.url = f"{connection.url} (server {server})"
        self._sign_in = sign_in
        self._server_wait = server_wait
        self.available = []
        self.connections = {}
        self._waiting = None
        self.bridge_session = RpcSession(clock, connection.send_text, id_prefix="sysadm-bridge-")
        self.session = RpcSession(clock, lambda text: connection.send_text(wrap(self.server_id, text)))
        self.bridge_session.on_request = self._bridge_request
        self.bridge_session.on_event = self._bridge_event
        self.bridge_session.on_unsolicited_error = self._bridge_error
        connection.receiver = self.received
        self.closed = defer.Deferred()
        connection.closed.addCallback(self._connection_ended)

    def received(self, text):
        """Route one incoming frame to the bridge session or the server session."""
        sender, payload = unwrap(text)
        if sender is None:
            self.bridge_session.text_received(payload)
        elif sender == self.server_id:
            self.session.text_received(payload)
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

    def _found(self, connection_id):
        self.server_id = connection_id
        self.session.challenge_binding = ChallengeBinding(self.server, self.connection_id)
        if self._waiting is not None:
            d, timer, self._waiting = self._waiting[0], self._waiting[1], None
            timer.cancel()
            d.callback(self)

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
        if not self.closed.called:
            self.session.connection_lost(ConnectionClosed(description))
            self.closed.callback(description)
            self.connection.close()

    def _connection_ended(self, description):
        lost = ConnectionClosed(f"connection to the bridge {self.connection.url} lost: {description}")
        self.bridge_session.connection_lost(lost)
        if self._waiting is not None:
            d, timer, self._waiting = self._waiting[0], self._waiting[1], None
            timer.cancel()
            d.errback(lost)
        if not self.closed.called:
            self.session.connection_lost(lost)
            self.closed.callback(description)

    @defer.inlineCallbacks
    def start(self):
        """Sign in to the bridge with ``sign_in(bridge_session)`` and wait until the server is
        reachable; fires with this link, or fails with :class:`ClientError`."""
        offered = defer.Deferred()
        timer = self._clock.callLater(self._server_wait, self._not_offered)
        self._waiting = (offered, timer)
        signed_in = defer.maybeDeferred(self._sign_in, self.bridge_session)
        try:
            yield defer.gatherResults([signed_in, offered], consumeErrors=True)
        except defer.FirstError as e:
            if self._waiting is not None:
                self._waiting[1].cancel()
                self._waiting = None
            e.subFailure.raiseException()
        return self

    def _not_offered(self):
        d, self._waiting = self._waiting[0], None
        if self.connection_id is None and self.available:
            d.errback(ClientError(
                f"the bridge {self.connection.url} does not say which key each connection "
                "holds; it is too old for --server SHA256:... (upgrade sysadm-bridge)"
            ))
            return
        offered = []
        for connection_id, fingerprint in sorted(self._servers().items(), key=lambda item: item[1]):
            label = self._label(connection_id)
            offered.append(f"{fingerprint} ({label})" if label else fingerprint)
        d.errback(
            ClientError(
                f"the bridge {self.connection.url} offers no server {self.server} "
                f"(offered servers: {', '.join(offered) or 'none'}); the server must be "
                "connected to the bridge and accept this key"
            )
        )

    def close(self):
        """Close the bridge connection; fires when it is gone."""
        return self.connection.close()
