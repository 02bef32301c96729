"""The bridge's WebSocket protocol in memory: ids, identify, auth_ssl, roles from the key
files, the bridge event, checksums, relay, limits. Connections are driven through
StringTransports on a task.Clock."""

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.internet import task
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from sysadmd.auth.bans import BanList
from sysadmd.auth.handlers import Authenticator
from sysadmd.auth.keys_file import KeysFile, fingerprint
from sysadmd.auth.signatures import find_signer
from sysadmd.auth.tokens import TokenStore
from sysadmd.bridge.auth import BridgeKeys, BridgeSignIn, KeyHolders
from sysadmd.bridge.server import BridgeServerFactory, register_calls
from sysadmd.channel.router import Router
from sysadmd.channel.settings import ConnectionSettings
from sysadmd.interfaces import IPasswordBackend
from tests.unit.wsfake import Peer


class Bridge:
    """A bridge factory wired like ``sysadm-bridge``, with sequential ids."""

    def __init__(self, tmp_path, **settings):
        settings.setdefault("handshake_timeout", 0)
        settings.setdefault("ping_interval", 0)
        settings.setdefault("slow_subscriber", "disconnect")
        self.clock = task.Clock()
        self.keys = KeysFile(str(tmp_path / "keys"))
        self.server_keys = KeysFile(str(tmp_path / "server_keys"))
        self.tokens = TokenStore(self.clock, 900)
        self.bans = BanList(self.clock, 3, 600, 3600, ban_loopback=True)
        router = Router()
        keys = BridgeKeys(self.keys, self.server_keys)
        authenticator = BridgeSignIn(
            Authenticator(self.clock, self.tokens, self.bans, [KeyHolders()], keys, find_signer, 0),
            keys,
        )
        ids = iter(f"id{n}" for n in range(1, 1000))
        self.factory = BridgeServerFactory(
            self.clock, ConnectionSettings(**settings), router, self.tokens, self.bans,
            new_id=lambda: next(ids),
        )
        self.factory.setProtocolOptions(closeHandshakeTimeout=0)
        register_calls(router, authenticator, self.factory)

    def key(self, user, keys_file=None):
        """A new key registered in the bridge's (client) keys file."""
        key = ed25519.Ed25519PrivateKey.generate()
        line = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        (keys_file or self.keys).add(user, line)
        return key

    def server_key(self, user):
        """A new key registered in the bridge's server keys file."""
        return self.key(user, self.server_keys)

    def connect(self, role="client", host="10.0.0.1", hostname=None):
        """A connection that answered identify as ``role`` (and ``hostname``)."""
        conn = Conn(self, host)
        [ask] = conn.envelopes()
        assert ask == {"namespace": "rpc", "name": "identify", "id": "sysadm_bridge_request_ident", "args": {}}
        if role is not None:
            args = {"type": role}
            if hostname is not None:
                args["hostname"] = hostname
            conn.reply("sysadm_bridge_request_ident", args)
        return conn


class Conn(Peer):
    """A peer that sorts what it receives into envelopes and relayed frames."""

    def __init__(self, bridge, host):
        self.bridge = bridge
        super().__init__(bridge.factory, host=host)
        self.id = self.protocol.connection_id

    def handshake(self, origin=None):
        """The base class drops everything after the HTTP response; keep the frames the
        bridge sends right after the handshake (its identify request)."""
        transport = self.transport
        clear = transport.clear

        def keep_frames():
            frames = transport.value().partition(b"\r\n\r\n")[2]
            clear()
            transport.io.write(frames)

        transport.clear = keep_frames
        try:
            return super().handshake(origin)
        finally:
            del transport.clear

    def texts(self):
        return [p.decode() for op, p in self.frames() if op == 1]

    def envelopes(self):
        return [json.loads(t) for t in self.texts() if t.startswith("{")]

    def reply(self, request_id, args):
        self.send({"namespace": "rpc", "name": "response", "id": request_id, "args": args})

    def sign_in(self, key):
        """rpc/auth_ssl; returns every envelope received after stage 2."""
        self.request("rpc", "auth_ssl", {}, "s1")
        [challenge] = self.envelopes()
        signature = key.sign(challenge["args"]["test_string"].encode())
        self.request("rpc", "auth_ssl", {"encrypted_string": base64.b64encode(signature).decode()}, "s2")
        return self.envelopes()


def events(envelopes):
    return [e["args"]["available_connections"] for e in envelopes if e.get("name") == "bridge"]


def full_events(envelopes):
    return [e["args"] for e in envelopes if e.get("name") == "bridge"]


def server(bridge, accepts, user="srv", hostname=None):
    """A connection signed in with a server key that answered the checksums request with
    ``accepts``."""
    conn = bridge.connect("server", hostname=hostname)
    key = bridge.server_key(user)
    conn.key = fingerprint(key.public_key())
    received = conn.sign_in(key)
    assert received[0]["id"] == "s2" and received[0]["name"] == "response", received
    assert {"namespace": "rpc", "name": "settings", "id": "bridge_request_list_keys",
            "args": {"action": "list_ssl_checksums"}} in received
    conn.reply("bridge_request_list_keys", {"sha256_keys": accepts})
    return conn


def client(bridge, user="cli"):
    conn = bridge.connect("client")
    key = bridge.key(user)
    received = conn.sign_in(key)
    assert received[0]["id"] == "s2" and received[0]["name"] == "response", received
    return conn, fingerprint(key.public_key()), received


def test_every_connection_gets_a_unique_id_and_is_asked_to_identify(tmp_path):
    """The identify request goes out as soon as the handshake completes."""
    bridge = Bridge(tmp_path)
    first, second = bridge.connect(), bridge.connect()
    assert first.id == "id1" and second.id == "id2"
    assert set(bridge.factory.peers) == {"id1", "id2"}


def test_sign_in_reply_comes_before_the_first_bridge_event(tmp_path):
    """Right after signing in a client gets its (here empty) list, after the reply."""
    bridge = Bridge(tmp_path)
    _, _, received = client(bridge)
    assert [e.get("name") for e in received] == ["response", "bridge"]
    assert received[1] == {"namespace": "events", "name": "bridge", "id": "",
                           "args": {"available_connections": [], "connection_id": "id1",
                                    "connections": {}}}


def test_clients_see_only_servers_that_accept_their_key(tmp_path):
    """Reachability follows the servers' list_ssl_checksums answers, both ways."""
    bridge = Bridge(tmp_path)
    c1, key1, _ = client(bridge, "c1")
    c2, key2, _ = client(bridge, "c2")
    a = server(bridge, [key1, key2], "a")
    b = server(bridge, [key1], "b")
    assert events(c1.envelopes()) == [[a.id], sorted([a.id, b.id])]
    assert events(c2.envelopes()) == [[a.id]]
    assert events(a.envelopes())[-1] == sorted([c1.id, c2.id])
    assert events(b.envelopes())[-1] == [c1.id]


def test_relay_forwards_the_payload_untouched_with_the_sender_id(tmp_path):
    """The bridge swaps the id line and never parses the payload (here not JSON)."""
    bridge = Bridge(tmp_path)
    c1, key1, _ = client(bridge)
    a = server(bridge, [key1])
    c1.frames(), a.frames()
    c1.send(f"{a.id}\nnot json {{ at all\nsecond line")
    assert a.texts() == [f"{c1.id}\nnot json {{ at all\nsecond line"]
    a.send(f"{c1.id}\n{{\"id\": 1}}")
    assert c1.texts() == [f"{a.id}\n{{\"id\": 1}}"]


def test_relay_before_signing_in_is_refused(tmp_path):
    """An unauthenticated connection cannot relay, even to a valid id."""
    bridge = Bridge(tmp_path)
    _, key1, _ = client(bridge)
    a = server(bridge, [key1])
    a.frames()
    stranger = bridge.connect()
    stranger.send(f"{a.id}\nhello")
    [error] = stranger.envelopes()
    assert error["namespace"] == "error" and error["id"] is None and error["args"]["code"] == 401
    assert a.frames() == []


def test_relay_to_an_unreachable_id_gets_404(tmp_path):
    """Unknown ids and known but unreachable ones answer the same 404 naming the id."""
    bridge = Bridge(tmp_path)
    c1, key1, _ = client(bridge, "c1")
    c2, _, _ = client(bridge, "c2")
    a = server(bridge, [key1])
    c2.envelopes()
    for destination in (a.id, c1.id, "no-such-id"):
        c2.send(f"{destination}\nhello")
        [error] = c2.envelopes()
        assert error["args"]["code"] == 404 and error["args"]["destination"] == destination
    assert [t for t in a.texts() if not t.startswith("{")] == []


def test_a_frame_without_id_line_gets_400(tmp_path):
    """A relay frame needs '<id>\\n'."""
    bridge = Bridge(tmp_path)
    c1, _, _ = client(bridge)
    c1.send("just text")
    [error] = c1.envelopes()
    assert error["args"]["code"] == 400


def test_a_gone_server_disappears_from_its_clients_lists(tmp_path):
    """Closing a server's connection sends its clients their list without it."""
    bridge = Bridge(tmp_path)
    c1, key1, _ = client(bridge)
    a = server(bridge, [key1], "a")
    b = server(bridge, [key1], "b")
    c1.envelopes()
    a.protocol.connectionLost(Failure(ConnectionDone()))
    assert events(c1.envelopes()) == [[b.id]]
    c1.send(f"{a.id}\nhello")
    assert c1.envelopes()[0]["args"]["code"] == 404


def test_a_key_not_in_the_keys_file_is_refused_and_counts_toward_a_ban(tmp_path):
    """Failed auth_ssl answers 401; three failures ban the address (429 at handshake)."""
    bridge = Bridge(tmp_path)
    stranger_key = ed25519.Ed25519PrivateKey.generate()
    for _ in range(3):
        conn = bridge.connect(host="10.0.0.9")
        [reply] = conn.sign_in(stranger_key)
        assert reply["namespace"] == "error" and reply["args"]["code"] == 401
    refused = Peer(bridge.factory, host="10.0.0.9")
    assert refused.status == 429


def test_unauthenticated_connections_close_after_auth_timeout(tmp_path):
    """The daemon's auth_timeout applies (1008)."""
    bridge = Bridge(tmp_path, auth_timeout=30)
    conn = bridge.connect()
    bridge.clock.advance(31)
    assert conn.close_code() == 1008


def test_relays_count_as_activity_for_the_idle_timeout(tmp_path):
    """Relayed frames reset the idle timer; silence closes with 1000."""
    bridge = Bridge(tmp_path, idle_timeout=100)
    c1, key1, _ = client(bridge)
    a = server(bridge, [key1])
    for _ in range(3):
        bridge.clock.advance(60)
        c1.send(f"{a.id}\nping")
    c1.frames()
    assert c1.protocol.state == c1.protocol.STATE_OPEN
    bridge.clock.advance(101)
    assert c1.close_code() == 1000


def test_a_stalled_destination_is_closed_at_the_buffer_limit(tmp_path):
    """Frames for a peer that does not read wait within [relay] buffer_bytes; beyond, that
    peer is closed with 1008 and the sender is unaffected."""
    bridge = Bridge(tmp_path, subscriber_buffer_bytes=4096)
    c1, key1, _ = client(bridge)
    a = server(bridge, [key1])
    a.frames()
    a.protocol.channel.outbound.pauseProducing()  # as the transport does when its buffer is full
    c1.send(f"{a.id}\n" + "x" * 1000)  # one waits (about 2.3 KiB held, see queued_size)
    assert a.protocol.channel.outbound.queued_bytes > 0 and a.frames() == []
    for _ in range(3):
        c1.send(f"{a.id}\n" + "x" * 1000)
    assert a.protocol.channel.outbound.closed
    assert a.close_code() == 1008
    assert c1.protocol.state == c1.protocol.STATE_OPEN


def test_a_server_may_update_its_accepted_keys_unasked(tmp_path):
    """A later list_ssl_checksums response replaces the list."""
    bridge = Bridge(tmp_path)
    c1, key1, _ = client(bridge)
    a = server(bridge, [])
    assert events(c1.envelopes()) == []
    a.reply("bridge_request_list_keys", {"sha256_keys": [key1]})
    assert events(c1.envelopes()) == [[a.id]]
    a.reply("bridge_request_list_keys", {"sha256_keys": "not a list"})
    assert events(c1.envelopes()) == []


def test_checksums_from_a_client_are_ignored(tmp_path):
    """Only servers say which keys they accept."""
    bridge = Bridge(tmp_path)
    c1, key1, _ = client(bridge, "c1")
    c2, _, _ = client(bridge, "c2")
    c2.reply("bridge_request_list_keys", {"sha256_keys": [key1]})
    assert events(c1.envelopes()) == []


def test_bridge_calls_are_identify_and_auth_ssl_only(tmp_path):
    """Identify says "bridge"; password login does not exist on a bridge."""
    bridge = Bridge(tmp_path)
    conn = bridge.connect()
    conn.request("rpc", "identify", {}, "i")
    [reply] = conn.envelopes()
    assert reply["args"]["type"] == "bridge"
    conn.request("rpc", "auth", {"username": "a", "password": "b"}, "p")
    [reply] = conn.envelopes()
    assert reply["namespace"] == "error" and reply["args"]["code"] in (401, 404)


def test_interfaces():
    """The bridge's backend and the relay producer provide their interfaces."""
    from types import SimpleNamespace

    from sysadmd.bridge.clients import RelayedClients

    verifyObject(IPasswordBackend, KeyHolders())
    verifyObject(IPushProducer, RelayedClients("n", SimpleNamespace(), None, None))


def test_unidentified_connection_counts_as_a_client(tmp_path):
    """A peer that never answers identify is treated as a client."""
    bridge = Bridge(tmp_path)
    conn = bridge.connect(role=None)
    key = bridge.key("quiet")
    conn.sign_in(key)
    a = server(bridge, [fingerprint(key.public_key())])
    assert events(conn.envelopes()) == [[a.id]]


# Roles come from the bridge's key files (issue 13, item 1)


def test_a_client_key_claiming_to_be_a_server_stays_a_client(tmp_path):
    """A peer signed in with a client key that answers identify as a server of the
    victim's host name and sends an accept list holding the victim's key is never asked
    for that list, is never offered to the victim, and cannot reach it; the bridge warns."""
    from twisted.logger import capturedLogs

    bridge = Bridge(tmp_path)
    real = server(bridge, [], "web1", hostname="web1")
    victim, victim_key, _ = client(bridge, "victim")
    real.reply("bridge_request_list_keys", {"sha256_keys": [victim_key]})
    victim.envelopes()
    with capturedLogs() as logged:
        fake = bridge.connect("server", hostname="web1")
        received = fake.sign_in(bridge.key("mallory"))
        assert received[0]["name"] == "response"
        assert not any(e.get("id") == "bridge_request_list_keys" for e in received)
        fake.reply("bridge_request_list_keys", {"sha256_keys": [victim_key]})
    assert bridge.factory.registry.role(fake.id) == "client"
    assert events(victim.envelopes()) == []  # the victim's list never changed
    assert bridge.factory.registry.available(victim.id) == {real.id}
    fake.send(f"{victim.id}\nhello")
    assert fake.envelopes()[-1]["args"]["code"] == 404
    assert [t for t in victim.texts() if not t.startswith("{")] == []
    warnings = [e for e in logged if "claims to be a server" in e.get("log_format", "")]
    assert len(warnings) == 1 and warnings[0]["connection_id"] == fake.id


def test_a_server_key_makes_a_server_whatever_identify_says(tmp_path):
    """The role follows the key: a server key signs in a server even when its identify
    answer says client (or nothing)."""
    bridge = Bridge(tmp_path)
    c1, key1, _ = client(bridge)
    quiet = bridge.connect(role=None)
    received = quiet.sign_in(bridge.server_key("web2"))
    assert {"namespace": "rpc", "name": "settings", "id": "bridge_request_list_keys",
            "args": {"action": "list_ssl_checksums"}} in received
    quiet.reply("bridge_request_list_keys", {"sha256_keys": [key1]})
    assert bridge.factory.registry.role(quiet.id) == "server"
    assert events(c1.envelopes()) == [[quiet.id]]


def test_the_bridge_event_says_who_each_connection_is(tmp_path):
    """Each event has the receiver's own id and, for each listed id, its role, the
    fingerprint it proved and its label when it gave one."""
    bridge = Bridge(tmp_path)
    c1, key1, _ = client(bridge, "c1")
    a = server(bridge, [key1], "a", hostname="web1")
    b = server(bridge, [key1], "b")
    *_, last = full_events(c1.envelopes())
    assert last == {
        "available_connections": sorted([a.id, b.id]),
        "connection_id": c1.id,
        "connections": {
            a.id: {"role": "server", "fingerprint": a.key, "hostname": "web1"},
            b.id: {"role": "server", "fingerprint": b.key},
        },
    }
    *_, seen_by_a = full_events(a.envelopes())
    assert seen_by_a == {"available_connections": [c1.id], "connection_id": a.id,
                         "connections": {c1.id: {"role": "client", "fingerprint": key1}}}


@pytest.mark.parametrize("hostname", ["web\n1", "x" * 254, "", 7, None])
def test_a_label_that_cannot_be_shown_is_left_out(tmp_path, hostname):
    """Control characters, over-long or non-string host names give no label."""
    bridge = Bridge(tmp_path)
    c1, key1, _ = client(bridge)
    server(bridge, [key1], hostname=hostname)
    *_, last = full_events(c1.envelopes())
    [entry] = last["connections"].values()
    assert "hostname" not in entry


def test_both_key_files_sign_in_and_a_key_in_both_is_a_server(tmp_path):
    """BridgeKeys serves the authenticator every key of both files (a duplicate once) and
    gives the server role only for the server keys file."""
    bridge = Bridge(tmp_path)
    client_key = bridge.key("alice")
    server_key = bridge.server_key("web1")
    line = server_key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    bridge.keys.add("web1-as-client", line)
    keys = BridgeKeys(bridge.keys, bridge.server_keys)
    loaded = [k.fingerprint for k in keys.load()]
    assert sorted(loaded) == sorted({fingerprint(client_key.public_key()), fingerprint(server_key.public_key())})
    assert keys.role_of(fingerprint(server_key.public_key())) == "server"
    assert keys.role_of(fingerprint(client_key.public_key())) == "client"


def test_an_unreadable_server_keys_file_gives_no_server_role(tmp_path):
    """A damaged server keys file makes nobody a server (it is logged)."""
    bridge = Bridge(tmp_path)
    (tmp_path / "server_keys").write_text("not a key line\n")
    keys = BridgeKeys(bridge.keys, bridge.server_keys)
    assert keys.role_of("SHA256:anything") == "client"
