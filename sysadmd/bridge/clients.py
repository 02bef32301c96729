"""The clients one bridge link relays, by id: their sessions start with their first
message and end when the bridge stops listing them (one :class:`RelayedClient` each, see
:mod:`sysadmd.bridge.relayed`), and they take turns when the link drains.
"""

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from sysadmd.bridge import original
from sysadmd.bridge.relayed import UNKNOWN_KEY, RelayedClient
from sysadmd.util.log import Logger


@implementer(IPushProducer)
class RelayedClients:
    """The clients one bridge link relays, by id.

    ``write(prepared)`` sends a framed message on the link and ``prepare(payload)`` frames
    bytes for it; ``fingerprint`` is the ``SHA256:...`` of the key the link signs in to
    the bridge with (what relayed ``rpc/auth_ssl`` binds to; without it no relayed key
    signature verifies). ``tunnel_server`` (a :class:`sysadmd.bridge.tunnel.TunnelServer`)
    opens encrypted tunnels; ``legacy`` (``[bridge] legacy_clients``) lets plaintext
    sessions in too, and the original sign-in, with ``keys`` (the daemon's keys file, to
    size a client's test string) and ``public_pem`` (the bridge public key, sent as
    ``new_ssl_key``). Registered as the link transport's producer: when the link's buffer is full every
    client's frames wait in its own bounded queue.
    """

    _log = Logger()

    def __init__(self, nick, daemon, write, prepare, fingerprint=None, legacy=False, keys=None,
                 public_pem=b"", tunnel_server=None):
        self.nick = nick
        self.tunnel = tunnel_server
        self.fingerprint = fingerprint
        self.legacy = legacy
        self.public_pem = public_pem
        self._keys = keys
        self._daemon = daemon
        self._write = write
        self._prepare = prepare
        self._clients = {}
        self.available = frozenset()
        self.keys = {}
        self.paused = False
        # Where the next resume starts (see resumeProducing).
        self._resume_next = 0

    def __len__(self):
        return len(self._clients)

    def key_for_md5(self, md5):
        """The daemon's registered public key named ``md5`` (``md5_keys`` form), or None."""
        return original.key_for_md5(self._keys, md5) if self._keys is not None else None

    def get(self, client_id):
        """The :class:`RelayedClient` of ``client_id``, or None."""
        return self._clients.get(client_id)

    def bridge_event(self, ids, keys=None):
        """The bridge's list of clients that may reach us, and ``keys``, the fingerprint
        of each one's key (``{id: "SHA256:..."}``): sessions of the clients no longer
        listed, or listed with another key, end."""
        self.available = frozenset(ids)
        self.keys = {i: keys[i] for i in self.available if keys and isinstance(keys.get(i), str)}
        for client_id, client in list(self._clients.items()):
            if client_id not in self.available:
                self._log.info(
                    "relayed client {client_id} left bridge {nick}", client_id=client_id, nick=self.nick
                )
                self.end(client_id)
            elif self.keys.get(client_id) != client.key_fingerprint:
                self._log.info(
                    "relayed client {client_id} of bridge {nick} signed in to it with another key",
                    client_id=client_id,
                    nick=self.nick,
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
            key = self.keys.get(client_id)
            client = RelayedClient(self, client_id, self._daemon, self._write, self._prepare, key)
            if self.paused:
                client.outbound.pauseProducing()
            self._clients[client_id] = client
            self._log.info(
                "relayed client {client_id} (key {fingerprint}) connected through bridge {nick}",
                client_id=client_id,
                fingerprint=key or UNKNOWN_KEY,
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
        self.keys = {}

    def pauseProducing(self):
        """The link's buffer is full: every client queues."""
        self.paused = True
        for client in list(self._clients.values()):
            client.outbound.pauseProducing()

    def resumeProducing(self):
        """The link drained: send what waited, starting with the first client the last
        resume did not reach (the ones resumed first refill the link and pause it again:
        always starting with the same one starved the others, whose queues then dropped
        everything)."""
        self.paused = False
        clients = list(self._clients.values())
        if not clients:
            return
        start = self._resume_next % len(clients)
        for n in range(len(clients)):
            if self.paused:
                self._resume_next = start + n
                return
            clients[(start + n) % len(clients)].outbound.resumeProducing()
        self._resume_next = start + 1

    def stopProducing(self):
        """The link is going away."""
        self.close_all()
