"""Run the real bridge (``twistd -n sysadm-bridge``) and talk to it as a bridge client.

:class:`BridgeDaemon` is the harness's :class:`Daemon` running the bridge plugin.
:class:`BridgeClient` is a synchronous ``websockets`` client that answers the bridge's
identify, signs in with an Ed25519 key (signed here with ``cryptography`` directly, not
with sysadmd's code), follows ``events/bridge`` and relays envelopes to servers.

Relayed sessions go inside the encrypted tunnel (``sysadmd.protocol.tunnel``, the one
implementation of the wire both ends speak) once :meth:`BridgeClient.open_tunnel` pinned a
server's fingerprint, or on their own for a client made with ``pins`` (it opens a tunnel
to a listed server the bridge says has a pinned key, before its first message there).
Without a tunnel a session is plaintext, which a daemon serves only with ``[bridge]
legacy_clients = yes``; its relayed ``rpc/auth_ssl`` then signs the relay binding spelled
out here (:func:`relay_text`), independently of ``sysadmd.protocol.relay``.
"""

import json
import os
import re
import subprocess
import time
from collections import defaultdict

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from websockets.sync.client import connect

from sysadmd.protocol import tunnel
from sysadmd.protocol.tunnel import Initiator, TunnelError
from tests.integration.harness import ADMIN, Daemon

BRIDGE_CONFIG = """\
[server]
listen = {listen}
state_dir = {state_dir}
ping_interval = 0

[auth]
failure_delay = 0.2
"""


class BridgeDaemon(Daemon):
    """A running ``twistd -n sysadm-bridge``; ``keys_file`` is its ``[auth] keys_file``
    (clients), ``server_keys_file`` its ``[auth] server_keys_file`` (servers)."""

    plugin = "sysadm-bridge"
    listening = re.compile(r"sysadm-bridge listening on (wss?://[^\s]+)")
    ready = re.compile(r"sysadm-bridge \S+ ready")

    def __init__(self, tmp_path, listen="tcp:0:interface=127.0.0.1", config=BRIDGE_CONFIG, **kwargs):
        os.makedirs(tmp_path, exist_ok=True)
        super().__init__(tmp_path, config.replace("{listen}", listen), **kwargs)
        self.keys_file = os.path.join(self.state_dir, "keys")
        self.server_keys_file = os.path.join(self.state_dir, "server_keys")

    @property
    def port(self):
        """The bound port."""
        return int(self.url.rsplit(":", 1)[1])

    def register(self, user, public_line):
        """``sysadmd-admin key add`` an OpenSSH public key line to the bridge's keys file;
        returns the fingerprint."""
        return add_key(self.keys_file, user, public_line)

    def register_server(self, user, public_line):
        """Pair a server: its key into the bridge's server keys file (the only way to
        become a server); returns the fingerprint."""
        return add_key(self.server_keys_file, user, public_line)


def add_key(keys_file, user, public_line):
    """Register ``public_line`` for ``user`` in ``keys_file`` with the real admin command."""
    result = subprocess.run(
        [ADMIN, "key", "add", "--user", user, "--keys-file", keys_file, "-"],
        input=public_line + "\n", capture_output=True, text=True, check=True,
    )
    return result.stdout.strip()


def new_key():
    """A fresh Ed25519 private key."""
    return ed25519.Ed25519PrivateKey.generate()


def public_line(key, comment="test"):
    """The OpenSSH public line of ``key``."""
    line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    return f"{line} {comment}"


def export_key(daemon):
    """The daemon's bridge key, from the real ``sysadmd-admin bridge export-key``; its
    fingerprint (printed on stderr) is kept as ``daemon.bridge_fingerprint``."""
    result = subprocess.run(
        [ADMIN, "bridge", "export-key", "--config", str(daemon.config_path)],
        capture_output=True, text=True, check=True,
    )
    [fingerprint] = re.findall(r"^fingerprint (SHA256:\S+)$", result.stderr, re.MULTILINE)
    daemon.bridge_fingerprint = fingerprint
    return result.stdout.strip()


def relay_text(server_fingerprint, connection_id, test_string):
    """What a relayed client signs for ``rpc/auth_ssl`` (issue 13): the scheme, the
    server's bridge key fingerprint, the client's own connection id and the test string."""
    return f"sysadm-relay-v1\n{server_fingerprint}\n{connection_id}\n{test_string}"


def _sign(key, test_string):
    import base64

    return base64.b64encode(key.sign(test_string.encode("utf-8"))).decode()


# The largest message a harness client puts together from tunnel fragments.
TUNNEL_MAX_MESSAGE = 64 << 20


class BridgeClient:
    """A client connection to a bridge (see the module docstring). ``pins``: the
    ``SHA256:`` fingerprints of the servers whose sessions open a tunnel on their own.
    Once a server's tunnel is over, relaying to it or waiting for its reply raises
    :class:`TunnelError` until :meth:`open_tunnel` opens a new one."""

    def __init__(self, url, identify_as="client", hostname=None, pins=(), **kwargs):
        kwargs.setdefault("open_timeout", 10)
        kwargs.setdefault("max_size", None)
        self._connection = connect(url, **kwargs)
        self.ws = self._connection.__enter__()
        self.identify_as = identify_as
        self.hostname = hostname  # sent in the identify answer when given
        self.identified = False
        self.bridge_frames = []  # envelopes from the bridge itself
        self.bridge_events = []  # available_connections lists, in order
        self.bridge_args = []  # the whole args of each bridge event, in order
        self._seen_events = 0
        self.relayed = defaultdict(list)  # sender id -> decoded envelopes
        self.raw_relayed = []  # (sender, payload text) in order
        self.pins = frozenset(pins)
        self.tunnels = {}  # server id -> its established sysadmd.protocol.tunnel.Tunnel
        self.pinned = {}  # server id -> the fingerprint its tunnel proved
        self.control = defaultdict(list)  # sender -> plaintext "noise:..." payloads
        self.tunnel_errors = defaultdict(list)  # sender -> why its tunnel ended
        self._ids = 0

    # Receiving

    def pump(self, timeout):
        """Read one frame and file it; returns False on timeout."""
        try:
            text = self.ws.recv(timeout)
        except TimeoutError:
            return False
        if isinstance(text, bytes):
            text = text.decode()
        if text.lstrip().startswith("{"):
            message = json.loads(text)
            if message.get("namespace") == "rpc" and message.get("name") == "identify":
                self.identified = True
                if self.identify_as is not None:
                    args = {"type": self.identify_as}
                    if self.hostname is not None:
                        args["hostname"] = self.hostname
                    self.send({"namespace": "rpc", "name": "response", "id": message["id"], "args": args})
            elif message.get("namespace") == "events" and message.get("name") == "bridge":
                assert message["id"] == "", message
                self.bridge_events.append(message["args"]["available_connections"])
                self.bridge_args.append(message["args"])
            else:
                self.bridge_frames.append(message)
        else:
            sender, newline, payload = text.partition("\n")
            assert newline, text
            self.raw_relayed.append((sender, payload))
            if payload.startswith(tunnel.CONTROL):
                self.control[sender].append(payload)
                if payload.startswith(tunnel.ERROR) and sender in self.tunnels:
                    del self.tunnels[sender]
                    self.tunnel_errors[sender].append(payload[len(tunnel.ERROR):])
            elif sender in self.tunnels:
                self._unseal(sender, payload)
            else:
                try:
                    self.relayed[sender].append(json.loads(payload))
                except ValueError:
                    pass
        return True

    def _unseal(self, sender, payload):
        try:
            message = self.tunnels[sender].open(payload)
        except TunnelError as e:
            del self.tunnels[sender]
            self.tunnel_errors[sender].append(str(e))
            return
        if message is not None:
            self.relayed[sender].append(json.loads(message))

    def wait_for(self, predicate, timeout=10, what="a condition"):
        """Pump frames until ``predicate()`` returns something truthy; return it."""
        deadline = time.monotonic() + timeout
        while True:
            found = predicate()
            if found:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}")
            self.pump(min(remaining, 0.5))

    def quiet(self, seconds):
        """Pump everything that arrives within ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.pump(max(0.01, deadline - time.monotonic()))

    def next_bridge_event(self, timeout=10):
        """The next ``available_connections`` list not returned yet."""
        self.wait_for(lambda: len(self.bridge_events) > self._seen_events, timeout, "a bridge event")
        self._seen_events += 1
        return self.bridge_events[self._seen_events - 1]

    def bridge_event_where(self, predicate, timeout=10):
        """The first later bridge event whose list satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        while True:
            ids = self.next_bridge_event(max(0.01, deadline - time.monotonic()))
            if predicate(ids):
                return ids

    @property
    def available(self):
        """The last list the bridge sent, or None."""
        return self.bridge_events[-1] if self.bridge_events else None

    @property
    def connection_id(self):
        """This connection's id on the bridge, as its last bridge event says."""
        return self.bridge_args[-1]["connection_id"] if self.bridge_args else None

    @property
    def connections(self):
        """Who each listed connection is (role, fingerprint, hostname), as last told."""
        return self.bridge_args[-1]["connections"] if self.bridge_args else {}

    def server_with_key(self, fingerprint):
        """The listed connection the bridge says is the server with this key, or None."""
        for connection_id in self.available or ():
            entry = self.connections.get(connection_id, {})
            if entry.get("role") == "server" and entry.get("fingerprint") == fingerprint:
                return connection_id
        return None

    # To the bridge

    def send(self, message):
        """Send a dict as JSON, or text as it is."""
        self.ws.send(json.dumps(message) if isinstance(message, dict) else message)

    def bridge_call(self, namespace, name, args=None, timeout=10):
        """A request to the bridge itself; returns its reply."""
        self._ids += 1
        request_id = f"b-{self._ids}"
        self.send({"namespace": namespace, "name": name, "id": request_id,
                   "args": {} if args is None else args})

        def reply():
            for frame in self.bridge_frames:
                if frame.get("id") == request_id:
                    self.bridge_frames.remove(frame)
                    return frame
            return None

        return self.wait_for(reply, timeout, f"the bridge's reply to {namespace}/{name}")

    def sign_in(self, key):
        """rpc/auth_ssl with ``key``; returns the stage 2 reply."""
        stage1 = self.bridge_call("rpc", "auth_ssl")
        assert stage1["name"] == "response", stage1
        return self.bridge_call(
            "rpc", "auth_ssl", {"encrypted_string": _sign(key, stage1["args"]["test_string"])}
        )

    def bridge_error(self, timeout=10):
        """The next error frame from the bridge itself (``"id": null``)."""
        def error():
            for frame in self.bridge_frames:
                if frame.get("namespace") == "error":
                    self.bridge_frames.remove(frame)
                    return frame
            return None

        return self.wait_for(error, timeout, "an error from the bridge")

    # Through the bridge

    def relay(self, destination, message):
        """Send ``message`` (dict or text) to ``destination`` through the bridge: sealed in
        its tunnel when there is one (opened first for a pinned server, see ``pins``)."""
        payload = json.dumps(message) if isinstance(message, dict) else message
        self._auto_tunnel(destination)
        self._check_tunnel(destination)
        established = self.tunnels.get(destination)
        if established is None:
            self.relay_raw(destination, payload)
            return
        for frame in established.seal(payload.encode("utf-8")):
            self.relay_raw(destination, frame)

    def relay_raw(self, destination, payload):
        """Send the text ``payload`` to ``destination`` as it is, never sealed."""
        self.send(f"{destination}\n{payload}")

    def _auto_tunnel(self, destination):
        if destination in self.tunnels or destination in self.pinned or not self.pins:
            return
        entry = self.connections.get(destination, {})
        if entry.get("role") == "server" and entry.get("fingerprint") in self.pins:
            self.open_tunnel(destination, entry["fingerprint"])

    # The tunnel

    def _check_tunnel(self, server):
        # A session that was tunnelled never goes on in plaintext (no silent downgrade).
        if server in self.pinned and server not in self.tunnels:
            reasons = "; ".join(self.tunnel_errors[server]) or "it ended"
            raise TunnelError(f"the tunnel to {server} is over ({reasons}); open a new one")

    def _next_control(self, sender, timeout, what):
        return self.wait_for(lambda: self.control[sender] and self.control[sender].pop(0), timeout, what)

    def open_tunnel(self, server, pinned, timeout=10):
        """The tunnel to ``server`` proving the bridge key ``pinned`` (``SHA256:...``):
        noise:offer, the offer checked against the pin, hello, welcome. Raises
        :class:`TunnelError` when the server cannot prove it or refuses; returns the
        established tunnel (also kept in ``self.tunnels``)."""
        self.control[server].clear()
        self.relay_raw(server, tunnel.OFFER)
        offer = self._next_control(server, timeout, f"{server}'s tunnel offer")
        static, rekey = tunnel.check_offer(offer, pinned)
        initiator = Initiator(static, rekey, TUNNEL_MAX_MESSAGE)
        self.relay_raw(server, initiator.hello())
        answer = self._next_control(server, timeout, f"{server}'s tunnel welcome")
        established = initiator.welcome(answer)
        self.tunnels[server] = established
        self.pinned[server] = pinned
        return established

    def tunnel_error(self, server, timeout=10):
        """Why ``server``'s tunnel ended (its noise:error, or what did not open here),
        once it has."""
        return self.wait_for(lambda: server not in self.tunnels and self.tunnel_errors[server],
                             timeout, f"the end of {server}'s tunnel")[-1]

    def call(self, server, namespace, name, args=None, timeout=10):
        """A request relayed to ``server``; returns its reply."""
        self._ids += 1
        request_id = f"r-{self._ids}"
        self.relay(server, {"namespace": namespace, "name": name, "id": request_id,
                            "args": {} if args is None else args})

        def reply():
            for frame in self.relayed[server]:
                if frame.get("id") == request_id and frame.get("name") in ("response", "error"):
                    self.relayed[server].remove(frame)
                    return frame
            self._check_tunnel(server)
            return None

        return self.wait_for(reply, timeout, f"{server}'s reply to {namespace}/{name}")

    def key_sign_in(self, server, key, server_fingerprint, connection_id=None):
        """Relayed ``rpc/auth_ssl`` to ``server`` with ``key``; returns ``(stage 1 reply,
        stage 2 reply)``. Inside a tunnel the signature covers ``server_fingerprint`` and
        the tunnel's handshake hash (``tunnel.binding_text``), and stage 1 must say so;
        in plaintext it covers ``server_fingerprint`` and ``connection_id`` (default: this
        connection's own)."""
        self._auto_tunnel(server)
        stage1 = self.call(server, "rpc", "auth_ssl")
        assert stage1["name"] == "response", stage1
        test_string = stage1["args"]["test_string"]
        established = self.tunnels.get(server)
        if established is not None:
            expected = tunnel.binding_description(server_fingerprint, established.handshake_hash)
            assert stage1["args"].get("bind") == expected, stage1
            text = tunnel.binding_text(server_fingerprint, established.handshake_hash, test_string)
        else:
            text = relay_text(server_fingerprint, connection_id or self.connection_id, test_string)
        stage2 = self.call(server, "rpc", "auth_ssl", {"encrypted_string": _sign(key, text)})
        return stage1, stage2

    def next_event(self, server, frame_name, predicate=lambda args: True, timeout=10):
        """The next event ``frame_name`` relayed from ``server`` whose args satisfy
        ``predicate`` (earlier non-matching ones are discarded)."""
        def event():
            frames = self.relayed[server]
            while frames:
                frame = frames.pop(0)
                if frame.get("name") == frame_name and predicate(frame.get("args")):
                    return frame
            return None

        return self.wait_for(event, timeout, f"a {frame_name} event from {server}")

    def close(self):
        """Close the connection."""
        self.ws.close()
