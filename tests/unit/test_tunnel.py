"""The encrypted tunnel of relayed sessions (``sysadmd.protocol.tunnel``): the published
Noise test vectors for its pattern, the offer, fragments, rekeying and every way a
message can be tampered with."""

import json
import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from noise.connection import Keypair, NoiseConnection

from sysadmd.protocol import tunnel
from sysadmd.protocol.keydigests import fingerprint
from sysadmd.protocol.tunnel import Initiator, Responder, TunnelError

VECTORS = os.path.join(os.path.dirname(__file__), "..", "vectors", "noise_nk_25519_chachapoly_blake2s.json")


def test_the_published_noise_vectors_for_the_pattern():
    """cacophony's vectors for Noise_NK_25519_ChaChaPoly_BLAKE2s: the handshake, the hash
    and the transport messages, byte for byte, with the library and the name we use."""
    [vector] = json.load(open(VECTORS))["vectors"]
    assert vector["protocol_name"].encode() == tunnel.PROTOCOL_NAME
    h = bytes.fromhex
    initiator = NoiseConnection.from_name(tunnel.PROTOCOL_NAME)
    responder = NoiseConnection.from_name(tunnel.PROTOCOL_NAME)
    initiator.set_as_initiator()
    responder.set_as_responder()
    initiator.set_prologue(h(vector["init_prologue"]))
    responder.set_prologue(h(vector["resp_prologue"]))
    with pytest.warns(UserWarning):  # fixed ephemeral keys: only for vectors
        initiator.set_keypair_from_private_bytes(Keypair.EPHEMERAL, h(vector["init_ephemeral"]))
        responder.set_keypair_from_private_bytes(Keypair.EPHEMERAL, h(vector["resp_ephemeral"]))
        initiator.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, h(vector["init_remote_static"]))
        responder.set_keypair_from_private_bytes(Keypair.STATIC, h(vector["resp_static"]))
        initiator.start_handshake()
        responder.start_handshake()
    messages = vector["messages"]
    first = initiator.write_message(h(messages[0]["payload"]))
    assert first == h(messages[0]["ciphertext"])
    assert responder.read_message(first) == h(messages[0]["payload"])
    second = responder.write_message(h(messages[1]["payload"]))
    assert second == h(messages[1]["ciphertext"])
    assert initiator.read_message(second) == h(messages[1]["payload"])
    assert initiator.get_handshake_hash() == responder.get_handshake_hash() == h(vector["handshake_hash"])
    for n, message in enumerate(messages[2:]):
        sender, receiver = (initiator, responder) if n % 2 == 0 else (responder, initiator)
        sealed = sender.encrypt(h(message["payload"]))
        assert sealed == h(message["ciphertext"])
        assert receiver.decrypt(sealed) == h(message["payload"])


@pytest.fixture(params=["ed25519", "p256", "rsa"])
def bridge_key(request):
    return {
        "ed25519": ed25519.Ed25519PrivateKey.generate,
        "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
        "rsa": lambda: rsa.generate_private_key(65537, 2048),
    }[request.param]()


def pair(bridge_key, rekey=tunnel.DEFAULT_REKEY_MESSAGES, max_message=1 << 20):
    """An established ``(client tunnel, server tunnel)`` through the offer and handshake."""
    static = tunnel.new_static_key()
    offer = tunnel.make_offer(bridge_key, static, rekey)
    public, announced = tunnel.check_offer(offer, fingerprint(bridge_key.public_key()))
    assert announced == rekey
    initiator = Initiator(public, announced, max_message)
    welcome, server = Responder(static, rekey, max_message).hello(initiator.hello())
    client = initiator.welcome(welcome)
    assert client.handshake_hash == server.handshake_hash
    return client, server


def roundtrip(sender, receiver, message):
    out = None
    for frame in sender.seal(message):
        assert out is None
        out = receiver.open(frame)
    return out


def test_messages_go_both_ways_fragmented_when_large(bridge_key):
    client, server = pair(bridge_key)
    assert roundtrip(client, server, b'{"id": 1}') == b'{"id": 1}'
    big = os.urandom(3 * tunnel.FRAGMENT + 17)
    assert len(server.seal(big)) == 4
    client2, server2 = pair(bridge_key)
    assert roundtrip(server2, client2, big) == big
    assert roundtrip(server2, client2, b"") == b""


def test_the_offer_of_another_key_or_a_forged_signature_is_refused(bridge_key):
    static = tunnel.new_static_key()
    offer = tunnel.make_offer(bridge_key, static)
    other = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(TunnelError, match="not by the pinned server"):
        tunnel.check_offer(offer, fingerprint(other.public_key()))
    # The bridge swaps the static key for its own: the signature no longer matches.
    body = json.loads(offer[len(tunnel.OFFER) + 1:])
    body["static"] = tunnel.b64(tunnel.static_public(tunnel.new_static_key()))
    with pytest.raises(TunnelError, match="not signed by"):
        tunnel.check_offer(tunnel.OFFER + " " + json.dumps(body), fingerprint(bridge_key.public_key()))
    with pytest.raises(TunnelError, match="did not offer"):
        tunnel.check_offer('{"namespace": "rpc"}', fingerprint(bridge_key.public_key()))


def test_a_server_without_the_static_key_cannot_complete_the_handshake(bridge_key):
    """A peer replaying the real offer but holding another static key fails at es."""
    static = tunnel.new_static_key()
    public, rekey = tunnel.check_offer(tunnel.make_offer(bridge_key, static), fingerprint(bridge_key.public_key()))
    initiator = Initiator(public, rekey, 1 << 20)
    impostor = Responder(tunnel.new_static_key(), rekey, 1 << 20)
    with pytest.raises(TunnelError, match="handshake failed"):
        impostor.hello(initiator.hello())


@pytest.mark.parametrize("attack", ["flip", "replay", "drop", "reorder", "truncate_fragments", "garbage"])
def test_tampering_breaks_the_tunnel_for_good(attack):
    client, server = pair(ed25519.Ed25519PrivateKey.generate())
    frames = [client.seal(b"message %d" % n)[0] for n in range(3)]
    if attack == "flip":
        raw = bytearray(tunnel.unb64(frames[0], "x"))
        raw[5] ^= 1
        sequence = [tunnel.b64(bytes(raw))]
    elif attack == "replay":
        assert server.open(frames[0]) == b"message 0"
        sequence = [frames[0]]
    elif attack == "drop":
        assert server.open(frames[0]) == b"message 0"
        sequence = [frames[2]]
    elif attack == "reorder":
        sequence = [frames[1], frames[0]]
    elif attack == "truncate_fragments":
        fragments = client.seal(os.urandom(2 * tunnel.FRAGMENT))
        assert server.open(frames[0]) == b"message 0"
        sequence = [fragments[1]]  # its first fragment never came
    else:
        sequence = ["not base64 at all!"]
    with pytest.raises(TunnelError) as caught:
        for frame in sequence:
            server.open(frame)
    assert "altered, replayed, dropped or reordered" in str(caught.value) or "base64" in str(caught.value)
    # Broken for good: even the right next frame is refused now.
    with pytest.raises(TunnelError):
        server.open(frames[1])


def test_both_sides_rekey_every_n_messages_in_step():
    client, server = pair(ed25519.Ed25519PrivateKey.generate(), rekey=3)
    for n in range(10):
        assert roundtrip(client, server, b"up %d" % n) == b"up %d" % n
        assert roundtrip(server, client, b"down %d" % n) == b"down %d" % n
    assert client.sent == server.received == 10
    # The keys really change: a sender that skips its rekey is not understood after it.
    client, server = pair(ed25519.Ed25519PrivateKey.generate(), rekey=3)
    client._noise.rekey_outbound_cipher = lambda: None
    for n in range(3):
        assert roundtrip(client, server, b"up %d" % n) == b"up %d" % n
    with pytest.raises(TunnelError):
        roundtrip(client, server, b"up 3")


def test_a_message_over_the_limit_is_refused():
    client, server = pair(ed25519.Ed25519PrivateKey.generate(), max_message=100)
    with pytest.raises(TunnelError, match="larger than 100"):
        roundtrip(client, server, b"x" * 101)


def test_the_binding_covers_the_handshake_hash():
    text = tunnel.binding_text("SHA256:" + "A" * 43, bytes(32), "test")
    assert text.splitlines() == ["sysadm-noise-v1", "SHA256:" + "A" * 43, "00" * 32, "test"]
    with pytest.raises(ValueError):
        tunnel.binding_text("SHA256:x\nother", bytes(32), "test")
