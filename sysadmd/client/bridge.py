"""Reaching a daemon through a bridge (``--bridge URL --server ID``).

The bridge relays text frames: the client sends ``"<server id>\\n<payload>"`` and receives
``"<sender id>\\n<payload>"``; frames from the bridge itself are plain JSON objects. On a
new connection the bridge asks ``rpc/identify`` (we answer that we are a ``client``), the
client signs in to the bridge with ``rpc/auth_ssl`` (the bridge takes keys only), and the
bridge pushes ``{"namespace": "events", "name": "bridge", "args":
{"available_connections": [ids]}}`` with every id this client may reach. Once the server
is among them (named by its id, or found by its host name), the client talks to it through
the relay exactly as it would directly: it authenticates to the server itself, with its
own token and subscriptions.
"""

from twisted.internet import defer
from twisted.logger import Logger

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

    ``server`` is the server's connection id on the bridge or, since those ids change
    whenever a server reconnects, its host name: when no offered connection has that id,
    each offered one is asked ``rpc/identify`` through the relay, and the first whose
    ``hostname`` matches (ignoring case) is used. ``server_id`` is the id in use.
    """

    _log = Logger()

    def __init__(self, clock, connection, server, sign_in, server_wait=SERVER_WAIT):
        self._clock = clock
        self.connection = connection
        self.server = server
        self.server_id = None
        self.url = f"{connection.url} (server {server})"
        self._sign_in = sign_in
        self._server_wait = server_wait
        self.available = []
        self.hostnames = {}
        self._probes = {}
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
        """Route one incoming frame to the bridge session, the server session, or the
        identify probe of another offered connection."""
        sender, payload = unwrap(text)
        if sender is None:
            self.bridge_session.text_received(payload)
        elif sender == self.server_id:
            self.session.text_received(payload)
        elif sender in self._probes:
            self._probes[sender].text_received(payload)
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
        if self.server_id is not None:
            if self.server_id not in self.available:
                self._server_gone(f"the bridge no longer offers server {self.server}")
            return
        if self.server in self.available:
            self._found(self.server)
            return
        for connection_id in self.available:
            if connection_id not in self._probes:
                self._probe(connection_id)

    def _probe(self, connection_id):
        probe = RpcSession(
            self._clock, lambda text: self.connection.send_text(wrap(connection_id, text)),
            timeout=self._server_wait, id_prefix="sysadm-probe-",
        )
        self._probes[connection_id] = probe

        def answered(reply):
            hostname = reply.get("hostname") if isinstance(reply, dict) else None
            if isinstance(hostname, str):
                self.hostnames[connection_id] = hostname
                if self.server_id is None and hostname.lower() == self.server.lower():
                    self._found(connection_id)

        d = probe.call("rpc", "identify", {})
        d.addCallbacks(answered, lambda failure: None)

    def _found(self, connection_id):
        self.server_id = connection_id
        for probe in self._probes.values():
            probe.connection_lost(ConnectionClosed("the server was found"))
        if self._waiting is not None:
            d, timer, self._waiting = self._waiting[0], self._waiting[1], None
            timer.cancel()
            d.callback(self)

    def _bridge_error(self, args):
        args = args if isinstance(args, dict) else {}
        destination = args.get("destination")
        if self.server_id is None or (destination is not None and destination != self.server_id):
            # a probe's destination went away, or nothing is relayed yet
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
        for probe in self._probes.values():
            probe.connection_lost(lost)
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
        offered = ", ".join(
            f"{i} ({self.hostnames[i]})" if i in self.hostnames else i for i in self.available
        ) or "none"
        d.errback(
            ClientError(
                f"the bridge {self.connection.url} offers no server {self.server!r} "
                f"(available: {offered}); the server must be connected and accept this key"
            )
        )

    def close(self):
        """Close the bridge connection; fires when it is gone."""
        return self.connection.close()
