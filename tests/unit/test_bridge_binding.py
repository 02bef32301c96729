"""Relayed ``rpc/auth_ssl`` is bound to the server's bridge key and the relayed connection,
and relayed clients' failed logins count on the bridge link and their key (issue 13,
item 1), in memory: the daemon's RelayedClients with a real Authenticator and keys file,
and the client's side of the binding (inside the encrypted tunnel: the pinned key and
the handshake hash, issue 18)."""

import base64
import json
from types import SimpleNamespace

import pytest
from autobahn.websocket.protocol import PreparedMessage
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.internet import defer, task

from sysadmd.auth.bans import BanList
from sysadmd.auth.handlers import Authenticator
from sysadmd.auth.keys_file import KeysFile, fingerprint
from sysadmd.auth.signatures import find_signer
from sysadmd.auth.tokens import TokenStore
from sysadmd.bridge.binding import RelayBinding
from sysadmd.bridge.clients import RelayedClients
from sysadmd.bridge.relayed import ban_key
from sysadmd.bridge.tunnel import TunnelBinding
from sysadmd.channel.channel import ChannelParts
from sysadmd.channel.router import Router
from sysadmd.channel.settings import ConnectionSettings
from sysadmd.client import binding as client_binding
from sysadmd.client.auth import sign_in_with_key
from sysadmd.client.errors import ClientError
from sysadmd.protocol import relay, tunnel

SERVER_FP = "SHA256:" + "S" * 43
OTHER_FP = "SHA256:" + "O" * 43
HANDSHAKE = bytes(range(32))


class KeyUsers:
    """Every registered key's user has full access."""

    name = "keys"

    def authenticate(self, username, password):
        return defer.succeed(None)

    def role_of(self, username):
        return defer.succeed("full")


class Link:
    """A daemon's auth_ssl behind one bridge link whose key is ``SERVER_FP``."""

    def __init__(self, tmp_path, max_failures=3, tunnel_server=None):
        self.clock = task.Clock()
        self.keys = KeysFile(str(tmp_path / "keys"))
        self.bans = BanList(self.clock, max_failures, 600, 3600, ban_loopback=True)
        router = Router()
        Authenticator(
            self.clock, TokenStore(self.clock, 900), self.bans, [KeyUsers()], self.keys, find_signer, 0
        ).register(router, ("auth_ssl",))
        daemon = SimpleNamespace(parts=ChannelParts(
            ConnectionSettings(auth_timeout=0), router, TokenStore(self.clock, 900), None, self.clock
        ))
        self.written = []
        self.clients = RelayedClients(
            "test", daemon, self.written.append,
            lambda p: PreparedMessage(p, isBinary=False, applyMask=True, doNotCompress=False),
            # Plaintext sessions are what the relay binding is for (legacy_clients = yes).
            SERVER_FP, legacy=True, tunnel_server=tunnel_server,
        )

    def key(self, user="alice"):
        key = ed25519.Ed25519PrivateKey.generate()
        self.keys.add(user, key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ))
        return key

    def call(self, client_id, args):
        self.clients.relayed(client_id, json.dumps(
            {"namespace": "rpc", "name": "auth_ssl", "id": "a", "args": args}
        ).encode())
        [prepared] = self.written
        self.written.clear()
        to, _, payload = prepared.payload.partition(b"\n")
        assert to.decode() == client_id
        return json.loads(payload)

    def stage2(self, client_id, key, text):
        signature = base64.b64encode(key.sign(text.encode())).decode()
        return self.call(client_id, {"encrypted_string": signature})


def test_the_text_is_the_scheme_the_server_the_connection_and_the_test_string():
    """The exact bytes."""
    expected = "sysadm-relay-v1\nSHA256:abc\nconn-1\ntest-string"
    assert relay.relay_challenge_text("SHA256:abc", "conn-1", "test-string") == expected
    assert relay.RELAY_SCHEME == "sysadm-relay-v1"
    daemon_side = RelayBinding(SERVER_FP, "c1")
    assert daemon_side.describe() == {"bind": {"scheme": "sysadm-relay-v1", "server": SERVER_FP, "connection": "c1"}}
    assert daemon_side.text("t") == relay.relay_challenge_text(SERVER_FP, "c1", "t")


@pytest.mark.parametrize("parts", [
    ("SHA256:a\nconn-2", "conn-1", "t"), ("SHA256:a", "", "t"), (None, "c", "t"), ("f", "c", "t\r"),
])
def test_a_part_that_could_pose_as_another_binding_is_refused(parts):
    """Line breaks (or missing parts) would let one binding's text equal another's."""
    with pytest.raises(ValueError):
        relay.relay_challenge_text(*parts)


def test_the_daemon_tunnel_binding_describes_what_the_client_expects():
    """TunnelBinding.describe() is exactly the client's expected ``bind`` entry, and both
    sign the same text."""
    daemon_side = TunnelBinding(SERVER_FP, HANDSHAKE)
    client_side = client_binding.ChallengeBinding(SERVER_FP, HANDSHAKE)
    assert daemon_side.describe() == {"bind": client_side.expected()} == {
        "bind": {"scheme": "sysadm-noise-v1", "server": SERVER_FP, "handshake": HANDSHAKE.hex()}
    }
    assert daemon_side.text("t") == client_side.text("t") == tunnel.binding_text(SERVER_FP, HANDSHAKE, "t")


def test_a_relayed_auth_ssl_accepts_only_a_signature_bound_to_this_server_and_connection(tmp_path):
    """Stage 1 says the binding; the bare test string, or one bound to another server or
    another connection, is refused with 401; the right binding signs in."""
    link = Link(tmp_path, max_failures=10)
    key = link.key()
    link.clients.bridge_event(["c1"], {"c1": fingerprint(key.public_key())})
    wrong = [
        lambda t: t,
        lambda t: relay.relay_challenge_text(OTHER_FP, "c1", t),
        lambda t: relay.relay_challenge_text(SERVER_FP, "c2", t),
    ]
    for build in wrong:
        challenge = link.call("c1", {})["args"]
        assert challenge["bind"] == {"scheme": "sysadm-relay-v1", "server": SERVER_FP, "connection": "c1"}
        reply = link.stage2("c1", key, build(challenge["test_string"]))
        assert reply["namespace"] == "error" and reply["args"]["code"] == 401
    challenge = link.call("c1", {})["args"]
    reply = link.stage2("c1", key, relay.relay_challenge_text(SERVER_FP, "c1", challenge["test_string"]))
    assert reply["name"] == "response" and len(reply["args"][0]) == 64


def test_relayed_clients_are_banned_by_link_and_key_across_connection_ids(tmp_path):
    """Failed logins of one client key count together whatever its connection id, so
    reconnecting to the bridge does not reset them; another key is not affected."""
    link = Link(tmp_path, max_failures=3)
    key = link.key()
    other = link.key("bob")
    fp, other_fp = fingerprint(key.public_key()), fingerprint(other.public_key())
    codes = []
    for n in range(4):
        client_id = f"conn-{n}"  # a new connection to the bridge each time
        link.clients.bridge_event([client_id, "other"], {client_id: fp, "other": other_fp})
        link.call(client_id, {})
        reply = link.stage2(client_id, key, "not what the daemon asked")
        codes.append(reply["args"]["code"])
        assert link.clients.get(client_id).peer_host == f"bridge:test:{fp}"
    assert codes == [401, 401, 401, 429]
    assert link.bans.is_banned(ban_key("test", fp))
    assert not link.bans.is_banned(ban_key("test", other_fp))
    challenge = link.call("other", {})["args"]
    reply = link.stage2("other", other, relay.relay_challenge_text(SERVER_FP, "other", challenge["test_string"]))
    assert reply["name"] == "response"


def test_clients_whose_key_the_bridge_did_not_say_share_one_count(tmp_path):
    """Without a key in the bridge event (an older bridge) all the link's clients count
    on one key, so none escapes by reconnecting."""
    link = Link(tmp_path)
    link.clients.bridge_event(["c1", "c2"])
    assert link.clients.get("c1") is None
    link.call("c1", {})
    link.call("c2", {})
    assert link.clients.get("c1").peer_host == link.clients.get("c2").peer_host == "bridge:test:unknown-key"


def test_a_client_listed_with_another_key_loses_its_session(tmp_path):
    """If the bridge now lists a client id with another key, its session (counted on the
    old key) ends; its next message starts one counted on the new key."""
    link = Link(tmp_path)
    link.clients.bridge_event(["c1"], {"c1": "SHA256:one"})
    link.call("c1", {})
    first = link.clients.get("c1")
    link.clients.bridge_event(["c1"], {"c1": "SHA256:two"})
    assert link.clients.get("c1") is None and first.closed
    link.call("c1", {})
    assert link.clients.get("c1").peer_host == "bridge:test:SHA256:two"


# The client's side


class FakeSession:
    """Answers auth_ssl stage 1 with ``stage1`` and records what is signed."""

    def __init__(self, stage1, binding):
        self.stage1 = stage1
        self.challenge_binding = binding
        self.sent = []

    def call(self, namespace, name, args=None):
        self.sent.append(args)
        if not args:
            return defer.succeed(self.stage1)
        return defer.succeed(["t" * 64, 900])


def signed_text(key, session):
    """Which text the client signed (checked against the candidates)."""
    return base64.b64decode(session.sent[-1]["encrypted_string"])


def test_the_client_signs_the_text_bound_to_its_pinned_server_and_own_handshake():
    """The signature verifies over the bound text built from the client's own knowledge."""
    key = ed25519.Ed25519PrivateKey.generate()
    binding = client_binding.ChallengeBinding(SERVER_FP, HANDSHAKE)
    session = FakeSession({"test_string": "ts", **TunnelBinding(SERVER_FP, HANDSHAKE).describe()}, binding)
    result = []
    sign_in_with_key(session, key).addBoth(result.append)
    assert result == [("t" * 64, 900)]
    key.public_key().verify(signed_text(key, session), tunnel.binding_text(SERVER_FP, HANDSHAKE, "ts").encode())


@pytest.mark.parametrize("bind", [
    None,
    {"scheme": "sysadm-noise-v1", "server": OTHER_FP, "handshake": HANDSHAKE.hex()},
    {"scheme": "sysadm-noise-v1", "server": SERVER_FP, "handshake": (b"\x01" * 32).hex()},
    {"scheme": "sysadm-noise-v2", "server": SERVER_FP, "handshake": HANDSHAKE.hex()},
    # The plaintext relay's binding: never signed inside a tunnel.
    {"scheme": "sysadm-relay-v1", "server": SERVER_FP, "connection": "me"},
])
def test_the_client_refuses_to_sign_for_another_binding_or_none(bind):
    """A stage 1 bound elsewhere (or not at all) is a clear error and nothing is signed."""
    key = ed25519.Ed25519PrivateKey.generate()
    stage1 = {"test_string": "ts"}
    if bind is not None:
        stage1["bind"] = bind
    session = FakeSession(stage1, client_binding.ChallengeBinding(SERVER_FP, HANDSHAKE))
    result = []
    sign_in_with_key(session, key).addBoth(result.append)
    assert isinstance(result[0].value, ClientError)
    assert "refusing to sign" in str(result[0].value)
    assert session.sent == [{}]


def test_a_direct_session_signs_the_bare_test_string():
    """Without a binding (a direct connection) nothing changes."""
    key = ed25519.Ed25519PrivateKey.generate()
    session = FakeSession({"test_string": "ts"}, None)
    sign_in_with_key(session, key)
    key.public_key().verify(signed_text(key, session), b"ts")


@pytest.mark.parametrize("value", ["vm", "nas1.example.org", "SHA256:short", "sha256:" + "a" * 43,
                                   "SHA256:" + "a" * 43 + "=", "SHA256:AB:CD:EF", ""])
def test_a_server_that_is_not_a_key_fingerprint_says_what_to_pass(value):
    """Host names and malformed fingerprints are refused with where to get the right one."""
    with pytest.raises(ClientError) as caught:
        client_binding.parse_server_fingerprint(value)
    assert "SHA256:" in str(caught.value) and "sysadmd-admin bridge export-key" in str(caught.value)


def test_a_key_fingerprint_is_accepted_as_it_is():
    """ssh-keygen's form, exactly (base64 is case-sensitive), surrounding blanks aside."""
    key = ed25519.Ed25519PrivateKey.generate()
    fp = fingerprint(key.public_key())
    assert client_binding.parse_server_fingerprint(fp) == fp
    assert client_binding.parse_server_fingerprint(f" {fp}\n") == fp


def test_inside_a_tunnel_auth_ssl_is_bound_to_the_handshake_and_not_to_the_connection(tmp_path):
    """Stage 1 inside a tunnel says the tunnel binding (scheme, server key, handshake
    hash); a signature of the relay binding is refused, one of binding_text signs in."""
    from sysadmd.protocol import tunnel
    from tests.unit.test_bridge_tunnel import PINNED, Client, server

    link = Link(tmp_path, max_failures=10, tunnel_server=server())
    key = link.key()
    client = Client(link).open()
    handshake = client.tunnel.handshake_hash

    def stage1():
        [reply] = client.call({"namespace": "rpc", "name": "auth_ssl", "id": "a", "args": {}})
        assert reply["args"]["bind"] == tunnel.binding_description(PINNED, handshake), reply
        return reply["args"]["test_string"]

    def stage2(text):
        signature = base64.b64encode(key.sign(text.encode())).decode()
        [reply] = client.call({"namespace": "rpc", "name": "auth_ssl", "id": "a",
                               "args": {"encrypted_string": signature}})
        return reply

    reply = stage2(relay.relay_challenge_text(SERVER_FP, "c1", stage1()))
    assert reply["namespace"] == "error" and reply["args"]["code"] == 401
    reply = stage2(tunnel.binding_text(PINNED, handshake, stage1()))
    assert reply["name"] == "response" and len(reply["args"][0]) == 64
