"""Who may reach whom through the bridge: pure bookkeeping, no I/O.

A client reaches a server (and the server reaches it back) when the server's list of
accepted keys names the key the client signed in with: by its ``SHA256:`` fingerprint or
by another name of the same key (its ``MD5:`` name, see ``sysadmd.bridge.wire``). Servers
never reach servers, clients never reach clients, and nothing reaches or is reached by a
connection before it signs in. A connection's role is given when it signs in (the bridge
decides it from its own key files); what a peer says of itself is only a label.

The registry calls ``announce(connection_id, ids)`` with the full sorted list a connection
can reach whenever that list changes, and once right after the connection signs in.
"""

from collections import defaultdict

from sysadmd.bridge.wire import CLIENT, SERVER


class _Peer:
    __slots__ = ("id", "role", "fingerprint", "names", "checksums", "signed_in", "label")

    def __init__(self, connection_id):
        self.id = connection_id
        self.role = CLIENT
        self.fingerprint = None
        # Every name of the signed-in key (its fingerprint first): what servers list.
        self.names = ()
        self.checksums = frozenset()
        self.signed_in = False
        self.label = None

    def details(self):
        entry = {"role": self.role, "fingerprint": self.fingerprint}
        if self.label is not None:
            entry["hostname"] = self.label
        return entry


class Registry:
    """The connections of one bridge and what each can reach.

    Lookups are indexed by fingerprint, so a change costs the size of the lists it
    touches, not the number of connections.
    """

    def __init__(self, announce):
        self._announce = announce
        self._peers = {}
        self._announced = {}
        # fingerprint -> ids of signed-in servers that accept it
        self._accepting = defaultdict(set)
        # fingerprint -> ids of signed-in clients holding it
        self._holders = defaultdict(set)

    def __contains__(self, connection_id):
        return connection_id in self._peers

    def __len__(self):
        return len(self._peers)

    def role(self, connection_id):
        """``"server"`` or ``"client"``."""
        return self._peers[connection_id].role

    def add(self, connection_id):
        """A new connection (reaching nothing until it signs in)."""
        if connection_id in self._peers:
            raise ValueError(f"connection id {connection_id!r} is already in use")
        self._peers[connection_id] = _Peer(connection_id)

    def remove(self, connection_id):
        """A connection is gone; those that could reach it are told."""
        peer = self._peers.get(connection_id)
        if peer is None:
            return
        self._change(peer, lambda: None, removing=True)
        del self._peers[connection_id]
        self._announced.pop(connection_id, None)

    def labelled(self, connection_id, label):
        """The connection calls itself ``label`` (its identify ``hostname``, or None):
        shown to others, trusted for nothing. Not announced by itself."""
        self._peers[connection_id].label = label

    def signed_in(self, connection_id, fingerprint, role=CLIENT, aliases=()):
        """The connection proved the key ``fingerprint`` (also named ``aliases``, e.g.
        its ``MD5:`` name), which makes it a ``role`` (``"server"`` or ``"client"``); it
        is told its list."""
        peer = self._peers[connection_id]
        role = SERVER if role == SERVER else CLIENT
        # Those who reach it must learn its new key even if their lists stay the same.
        rekeyed = peer.signed_in and (peer.fingerprint, peer.role) != (fingerprint, role)
        names = tuple(dict.fromkeys([fingerprint, *aliases]))

        def apply():
            peer.signed_in = True
            peer.fingerprint = fingerprint
            peer.names = names
            peer.role = role

        self._change(peer, apply, force=True, force_others=rekeyed)

    def accepts(self, connection_id, fingerprints):
        """A server's list of the client key fingerprints it accepts."""
        peer = self._peers[connection_id]

        def apply():
            peer.checksums = frozenset(fingerprints)

        self._change(peer, apply)

    def available(self, connection_id):
        """The ids ``connection_id`` can reach now (a frozenset)."""
        return self._announced.get(connection_id, frozenset())

    def can_relay(self, sender, destination):
        """Whether ``sender`` may send to ``destination``."""
        return destination in self.available(sender)

    def details(self, ids):
        """``{id: {"role", "fingerprint"[, "hostname"]}}`` of the signed-in connections
        among ``ids``."""
        found = {}
        for connection_id in ids:
            peer = self._peers.get(connection_id)
            if peer is not None and peer.signed_in:
                found[connection_id] = peer.details()
        return found

    # Internals

    def _reach(self, peer):
        if not peer.signed_in:
            return frozenset()
        if peer.role == SERVER:
            found = set()
            for fingerprint in peer.checksums:
                found.update(self._holders.get(fingerprint, ()))
            return frozenset(found)
        found = set()
        for name in peer.names:
            found.update(self._accepting.get(name, ()))
        return frozenset(found)

    def _index(self, peer, add):
        if not peer.signed_in:
            return
        if peer.role == SERVER:
            entries = [(self._accepting, fingerprint) for fingerprint in peer.checksums]
        else:
            entries = [(self._holders, name) for name in peer.names if name is not None]
        for index, fingerprint in entries:
            if add:
                index[fingerprint].add(peer.id)
            else:
                index[fingerprint].discard(peer.id)
                if not index[fingerprint]:
                    del index[fingerprint]

    def _change(self, peer, apply, force=False, removing=False, force_others=False):
        before = self._announced.get(peer.id, frozenset())
        self._index(peer, add=False)
        apply()
        if removing:
            peer.signed_in = False
        else:
            self._index(peer, add=True)
        after = self._reach(peer)
        if not removing:
            self._publish(peer.id, after, force)
        for other in sorted(before | after):
            if other != peer.id and other in self._peers:
                self._publish(other, self._reach(self._peers[other]), force_others and other in after)

    def _publish(self, connection_id, ids, force=False):
        if not force and self._announced.get(connection_id, frozenset()) == ids:
            return
        self._announced[connection_id] = ids
        if self._peers[connection_id].signed_in:
            self._announce(connection_id, sorted(ids))
