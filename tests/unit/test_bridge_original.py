"""The original SysAdm way through a bridge, in memory (issue 14, "Through a bridge, the
original way"): pairing by ``md5_keys``, the relayed ``auth_ssl {"md5_key"}`` flow with its
base64 payloads and original dialect (``[bridge] legacy_clients``), and the raw-RSA
signature a daemon's link makes for an RSA bridge key."""

import base64
import hashlib
import json
from types import SimpleNamespace

import pytest
from autobahn.websocket.protocol import PreparedMessage
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from twisted.internet import task

from sysadmd.auth.bans import BanList
from sysadmd.auth.handlers import Authenticator
from sysadmd.auth.keys_file import KeysFile
from sysadmd.auth.signatures import find_signer, verify_challenge
from sysadmd.auth.tokens import TokenStore
from sysadmd.bridge import original, wire
from sysadmd.bridge.auth import BridgeKeys
from sysadmd.bridge.clients import RelayedClients
from sysadmd.bridge.links import accepted_checksums
from sysadmd.bridge.registry import Registry
from sysadmd.channel.channel import ChannelParts
from sysadmd.channel.router import Router
from sysadmd.channel.settings import ConnectionSettings
from sysadmd.events import handlers as event_handlers
from sysadmd.events.hub import EventHub
from sysadmd.protocol.framing import prepare_text
from sysadmd.protocol.keydigests import md5_key
from sysadmd.rpc import handlers as rpc_handlers
from tests.original_rsa import rsa_private_encrypt
from tests.unit.test_bridge_binding import KeyUsers
from tests.unit.test_bridge_registry import Announcements

SERVER_FP = "SHA256:" + "S" * 43
_RSA = {}


def rsa_key(bits=2048):
    """An RSA private key of ``bits``, made once per size."""
    if bits not in _RSA:
        _RSA[bits] = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return _RSA[bits]


def openssh(key):
    return key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )


def qt_md5(key):
    """What the Qt client computes: base64(md5(QSslKey::toPem())), spelled out here."""
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----\n") and pem.endswith(b"-----END PUBLIC KEY-----\n")
    return base64.b64encode(hashlib.md5(pem).digest()).decode()


class Link:
    """A daemon (auth, events, rpc) behind one bridge link whose key is ``bridge_key``."""

    def __init__(self, tmp_path, legacy=True, tunnel_server=None):
        self.clock = task.Clock()
        self.keys = KeysFile(str(tmp_path / "keys"))
        self.hub = EventHub(prepare_text)
        self.hub.add_source("system-state", "system_state", True)
        router = Router()
        tokens = TokenStore(self.clock, 900)
        self.bans = bans = BanList(self.clock, 5, 600, 3600, ban_loopback=True)
        rpc_handlers.register(router)
        Authenticator(self.clock, tokens, bans, [KeyUsers()], self.keys, find_signer, 0).register(router)
        event_handlers.register(router, self.hub)
        daemon = SimpleNamespace(parts=ChannelParts(
            ConnectionSettings(auth_timeout=0), router, tokens, self.hub, self.clock
        ))
        self.bridge_key = ed25519.Ed25519PrivateKey.generate()
        self.written = []
        self.clients = RelayedClients(
            "test", daemon, self.written.append,
            lambda p: PreparedMessage(p, isBinary=False, applyMask=True, doNotCompress=False),
            SERVER_FP, legacy=legacy, keys=self.keys,
            public_pem=original.bridge_public_pem(self.bridge_key), tunnel_server=tunnel_server,
        )
        self.clients.bridge_event(["qt"], {"qt": "SHA256:" + "Q" * 43})

    def send(self, payload):
        """Relay ``payload`` (a dict, sent as compact JSON like Qt, or bytes) from "qt"."""
        if isinstance(payload, dict):
            payload = json.dumps(payload, separators=(",", ":")).encode()
        self.clients.relayed("qt", payload)

    def take(self):
        """The payloads written to "qt" since the last call (bytes, undecoded)."""
        frames, self.written[:] = list(self.written), []
        out = []
        for prepared in frames:
            client_id, _, payload = prepared.payload.partition(b"\n")
            assert client_id == b"qt"
            out.append(payload)
        return out

    def original_sign_in(self, key):
        """Stage 1 with md5_key (plain JSON both ways), stage 2 in base64; returns the
        decoded test string and the decoded stage-2 reply."""
        self.send({"args": {"md5_key": qt_md5(key)}, "id": "sysadm-client-auth-auto",
                   "name": "auth_ssl", "namespace": "rpc"})
        [plain] = self.take()
        stage1 = json.loads(plain)
        assert stage1["name"] == "response", stage1
        text = base64.b64decode(stage1["args"]["test_string"]).decode("latin-1")
        new_key = base64.b64decode(stage1["args"]["new_ssl_key"])
        assert b" PUBLIC KEY--" in new_key  # what makes the Qt client switch to base64
        signature = rsa_private_encrypt(key, text.encode("latin-1"))
        self.send(base64.b64encode(json.dumps({
            "args": {"encrypted_string": base64.b64encode(signature).decode()},
            "id": "sysadm-client-auth-auto", "name": "auth_ssl", "namespace": "rpc",
        }, separators=(",", ":")).encode()))
        [encoded] = self.take()
        return text, json.loads(base64.b64decode(encoded))


def test_rsa_private_encrypt_is_openssls_and_verifies():
    """The blinded CRT signature equals the textbook one (PKCS#1 type 1 is deterministic)
    and verifies in the original form."""
    key = rsa_key()
    data = b"test string from a bridge"
    signature = original.rsa_private_encrypt(key, data)
    assert signature == rsa_private_encrypt(key, data)
    assert key.public_key().recover_data_from_signature(signature, padding.PKCS1v15(), None) == data
    with pytest.raises(ValueError):
        original.rsa_private_encrypt(key, b"x" * 246)


def test_the_link_signs_raw_rsa_for_an_rsa_bridge_key_and_the_usual_form_otherwise():
    """An RSA bridge key answers an (original) bridge's challenge as RSA_private_encrypt of
    the test string; an Ed25519 key signs as before. Both verify at a sysadmd bridge."""
    key = rsa_key()
    signature = original.sign_for_bridge(key, "challenge-123")
    assert signature == rsa_private_encrypt(key, b"challenge-123")
    assert verify_challenge(key.public_key(), "challenge-123", signature)
    other = ed25519.Ed25519PrivateKey.generate()
    signature = original.sign_for_bridge(other, "challenge-123")
    assert verify_challenge(other.public_key(), "challenge-123", signature)


def test_challenge_length_fits_the_qt_clients_buffer_and_pkcs1():
    """At least half the modulus (Qt's buffer is twice the text), at most modulus - 11."""
    assert original.challenge_length(rsa_key().public_key()) == 192
    for bits in (3072, 4096):
        public = rsa.RSAPublicNumbers(65537, (1 << (bits - 1)) | 1).public_key()
        length = original.challenge_length(public)
        assert bits // 16 <= length <= bits // 8 - 11
    assert original.challenge_length(None) == 192


def test_md5_key_is_what_the_qt_client_computes():
    """base64(md5(public key PEM)), one function for the bridge and the daemon."""
    key = rsa_key()
    assert md5_key(key.public_key()) == qt_md5(key)


def test_checksums_answers_parse_md5_keys_and_sha256_keys():
    """A server's answer may carry either list or both; md5 names are tagged."""
    assert wire.parse_checksums({"md5_keys": ["abc=="]}) == ["MD5:abc=="]
    assert wire.parse_checksums({"sha256_keys": ["SHA256:x"], "md5_keys": ["abc=="]}) == [
        "SHA256:x", "MD5:abc=="]
    for bad in ({}, {"md5_keys": "abc"}, {"md5_keys": [1]}, ["SHA256:x"]):
        with pytest.raises(ValueError):
            wire.parse_checksums(bad)


def test_a_server_listing_md5_keys_reaches_the_client_holding_that_key():
    """A client is indexed under its fingerprint and its MD5 name: an original server's
    md5_keys list pairs it, and stops when the key is no longer listed."""
    announced = Announcements()
    registry = Registry(announced)
    registry.add("srv")
    registry.signed_in("srv", "SHA256:server", "server")
    registry.add("qt")
    registry.signed_in("qt", "SHA256:qt", "client", aliases=("MD5:qtmd5==",))
    registry.accepts("srv", wire.parse_checksums({"md5_keys": ["qtmd5=="]}))
    assert registry.available("qt") == {"srv"} and registry.available("srv") == {"qt"}
    assert registry.details(["srv"])["srv"]["fingerprint"] == "SHA256:server"
    registry.accepts("srv", wire.parse_checksums({"md5_keys": ["other=="]}))
    assert registry.available("qt") == frozenset()


def test_the_bridge_knows_the_md5_name_of_each_registered_key(tmp_path):
    """BridgeKeys gives a signed-in key's MD5 name, from either key file."""
    clients, servers = KeysFile(str(tmp_path / "keys")), KeysFile(str(tmp_path / "server_keys"))
    key = rsa_key()
    [registered] = [clients.add("alice", openssh(key))]
    keys = BridgeKeys(clients, servers)
    fingerprint = clients.load()[0].fingerprint
    assert keys.aliases_of(fingerprint) == (wire.md5_name(qt_md5(key)),)
    assert keys.aliases_of("SHA256:unknown") == ()
    assert registered is not None


def test_the_daemon_answers_checksums_with_both_digests(tmp_path):
    """The link's list_ssl_checksums answer names each accepted key both ways."""
    keys = KeysFile(str(tmp_path / "keys"))
    key = rsa_key()
    keys.add("alice", openssh(key))
    answer = accepted_checksums(keys)
    assert answer == {"sha256_keys": [keys.load()[0].fingerprint], "md5_keys": [qt_md5(key)]}
    assert accepted_checksums(KeysFile(str(tmp_path / "missing"))) == {"sha256_keys": [], "md5_keys": []}


def test_the_original_flow_signs_in_and_then_speaks_base64_and_the_original_dialect(tmp_path):
    """md5_key stage 1: plain JSON reply, base64 test string of 192 printable characters,
    new_ssl_key the bridge public key; stage 2 raw RSA of the decoded text in base64(JSON);
    then every payload is base64(JSON) both ways and errors carry string codes."""
    link = Link(tmp_path)
    key = rsa_key()
    link.keys.add("alice", openssh(key))
    text, reply = link.original_sign_in(key)
    assert len(text) == 192 and text.isprintable() and text.isascii()
    assert reply["name"] == "response" and isinstance(reply["args"], list) and len(reply["args"]) == 2
    client = link.clients.get("qt")
    assert client.original and client.channel.dialect == "original"
    link.send(base64.b64encode(b'{"args":"system-state","id":"sysadm-client-event-auto",'
                               b'"name":"subscribe","namespace":"events"}'))
    [encoded] = link.take()
    assert json.loads(base64.b64decode(encoded))["id"] == "sysadm-client-event-auto"
    link.hub.publish("system-state", {"priority": "1 - Information"})
    [encoded] = link.take()
    event = json.loads(base64.b64decode(encoded))
    assert (event["name"], event["id"]) == ("system-state", "")
    link.send(base64.b64encode(b'{"args":{"action":"nope"},"id":"x","name":"dispatcher","namespace":"rpc"}'))
    [encoded] = link.take()
    error = json.loads(base64.b64decode(encoded))
    assert error["namespace"] == "error" and isinstance(error["args"]["code"], str)


def test_a_wrong_signature_is_refused_in_base64_and_stage_1_starts_over_plain(tmp_path):
    """A signature by an unregistered key gets the 401 in base64 (the client still
    decodes); its next md5_key stage 1 is plain JSON and answered so."""
    link = Link(tmp_path)
    link.keys.add("alice", openssh(rsa_key()))
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _, reply = link.original_sign_in(stranger)
    assert reply["namespace"] == "error" and reply["args"]["code"] == "401"
    _, reply = link.original_sign_in(rsa_key())
    assert reply["name"] == "response"


def test_legacy_clients_no_refuses_the_plaintext_md5_flow_and_ends_the_session(tmp_path):
    """With [bridge] legacy_clients = no, the original client's first message (stage 1
    with md5_key, plaintext) is answered 403 like any plaintext relayed message, and its
    session ends: the original flow never starts."""
    link = Link(tmp_path, legacy=False)
    link.keys.add("alice", openssh(rsa_key()))
    link.send({"args": {"md5_key": qt_md5(rsa_key())}, "id": "a", "name": "auth_ssl", "namespace": "rpc"})
    [plain] = link.take()
    error = json.loads(plain)
    assert error["namespace"] == "error" and error["id"] is None and error["args"]["code"] == 403
    assert "legacy_clients = no" in error["args"]["details"]
    assert link.clients.get("qt") is None


def test_legacy_clients_no_refuses_the_md5_flow_inside_a_tunnel_too(tmp_path):
    """Inside an encrypted tunnel (where plaintext refusal does not apply) stage 1 with
    md5_key still gets a 403 that says why: its signature would not be bound."""
    from tests.unit.test_bridge_tunnel import Client, server

    link = Link(tmp_path, legacy=False, tunnel_server=server())
    link.keys.add("alice", openssh(rsa_key()))
    client = Client(link, "qt").open()
    [error] = client.call({"args": {"md5_key": qt_md5(rsa_key())}, "id": "a", "name": "auth_ssl", "namespace": "rpc"})
    assert error["namespace"] == "error" and error["args"]["code"] == "403"
    assert "legacy_clients" in error["args"]["details"]
    assert not link.clients.get("qt").original


def test_a_bound_stage_1_after_the_original_one_requires_a_bound_signature(tmp_path):
    """Starting the bound flow again puts the binding back: the bare test string's
    signature no longer signs in."""
    link = Link(tmp_path)
    key = rsa_key()
    link.keys.add("alice", openssh(key))
    link.send({"args": {"md5_key": qt_md5(key)}, "id": "a", "name": "auth_ssl", "namespace": "rpc"})
    link.take()
    # The session speaks base64 from the original stage 1 on, whatever comes next.
    link.send({"args": {}, "id": "b", "name": "auth_ssl", "namespace": "rpc"})
    [encoded] = link.take()
    stage1 = json.loads(base64.b64decode(encoded))
    assert "bind" in stage1["args"]
    signature = rsa_private_encrypt(key, stage1["args"]["test_string"].encode())
    link.send({"args": {"encrypted_string": base64.b64encode(signature).decode()}, "id": "c",
               "name": "auth_ssl", "namespace": "rpc"})
    [encoded] = link.take()
    assert json.loads(base64.b64decode(encoded))["args"]["code"] == "401"


def test_a_refused_original_stage_1_leaves_an_earlier_challenge_bound(tmp_path):
    """A banned client's md5_key stage 1 gets 429 and does not unbind the challenge it
    got from a bound stage 1 before."""
    link = Link(tmp_path)
    link.send({"args": {}, "id": "a", "name": "auth_ssl", "namespace": "rpc"})
    link.take()
    client = link.clients.get("qt")
    for _ in range(5):
        link.bans.record_failure(client.peer_host)
    link.send({"args": {"md5_key": qt_md5(rsa_key())}, "id": "b", "name": "auth_ssl", "namespace": "rpc"})
    [plain] = link.take()
    assert json.loads(plain)["args"]["code"] == "429"
    assert client.session.challenge_binding is client.binding and not client.original
