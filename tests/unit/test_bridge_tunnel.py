"""The daemon's end of relayed clients' encrypted tunnels (``sysadmd.bridge.tunnel`` and
``RelayedClient``), in memory: the offer, the handshake, sealed requests and replies,
the binding of rpc/auth_ssl, and what a tampering bridge gets."""

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from sysadmd.bridge.tunnel import TunnelServer, derive_static
from sysadmd.protocol import tunnel
from sysadmd.protocol.keydigests import fingerprint
from sysadmd.protocol.tunnel import Initiator, TunnelError
from tests.unit.test_bridge_relayed import Link

KEY = ed25519.Ed25519PrivateKey.generate()
PINNED = fingerprint(KEY.public_key())


def server(rekey=tunnel.DEFAULT_REKEY_MESSAGES):
    return TunnelServer(KEY, PINNED, rekey, 1 << 20)


class Client:
    """A relayed client speaking the tunnel to ``link``'s daemon as ``client_id``."""

    def __init__(self, link, client_id="c1"):
        self.link = link
        self.id = client_id
        link.clients.bridge_event([client_id])

    def raw(self):
        """The payloads written to this client since the last call (text)."""
        frames, self.link.written[:] = list(self.link.written), []
        out = []
        for prepared in frames:
            data = prepared.payloadHybi
            # One or more masked frames; take their payloads back.
            out += [payload for payload in unframe(data)]
        texts = []
        for payload in out:
            client_id, _, body = payload.partition(b"\n")
            assert client_id.decode() == self.id
            texts.append(body.decode())
        return texts

    def send(self, text):
        self.link.clients.relayed(self.id, text.encode())

    def open(self):
        self.send(tunnel.OFFER)
        [offer] = self.raw()
        static, rekey = tunnel.check_offer(offer, PINNED)
        initiator = Initiator(static, rekey, 1 << 20)
        self.send(initiator.hello())
        [welcome] = self.raw()
        self.tunnel = initiator.welcome(welcome)
        return self

    def call(self, frame):
        for sealed in self.tunnel.seal(json.dumps(frame).encode()):
            self.send(sealed)
        return self.replies()

    def replies(self):
        out = []
        for text in self.raw():
            message = self.tunnel.open(text)
            if message is not None:
                out.append(json.loads(message))
        return out


def unframe(data):
    """The payloads of masked WebSocket text frames concatenated in ``data``."""
    payloads = []
    while data:
        length = data[1] & 0x7F
        offset = 2
        if length == 126:
            length = int.from_bytes(data[2:4], "big")
            offset = 4
        elif length == 127:
            length = int.from_bytes(data[2:10], "big")
            offset = 10
        mask = data[offset:offset + 4]
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(data[offset + 4:offset + 4 + length]))
        payloads.append(body)
        data = data[offset + 4 + length:]
    return payloads


def test_the_static_key_is_derived_from_the_bridge_key():
    assert derive_static(KEY) == derive_static(KEY)
    assert derive_static(KEY) != derive_static(ed25519.Ed25519PrivateKey.generate())


def test_a_tunnel_session_signs_in_and_is_answered_sealed():
    link = Link(legacy=False, tunnel_server=server())
    client = Client(link).open()
    [reply] = client.call({"namespace": "rpc", "name": "auth", "id": "a", "args": {"username": "admin", "password": "right"}})
    assert reply["name"] == "response" and reply["id"] == "a"
    [reply] = client.call({"namespace": "rpc", "name": "identify", "id": 2, "args": {}})
    assert reply["args"]["type"] == "server"


def test_auth_ssl_inside_the_tunnel_is_bound_to_the_handshake():
    link = Link(legacy=False, tunnel_server=server())
    client = Client(link).open()
    session = link.clients.get("c1").session
    assert session.challenge_binding.describe() == {"bind": {
        "scheme": "sysadm-noise-v1", "server": PINNED, "handshake": client.tunnel.handshake_hash.hex()}}
    assert session.challenge_binding.text("t") == tunnel.binding_text(PINNED, client.tunnel.handshake_hash, "t")


def test_without_legacy_clients_plaintext_is_refused_and_nothing_runs():
    link = Link(legacy=False, tunnel_server=server())
    client = Client(link)
    client.send(json.dumps({"namespace": "rpc", "name": "auth", "id": 1,
                            "args": {"username": "admin", "password": "right"}}))
    [notice] = client.raw()
    notice = json.loads(notice)
    assert notice["args"]["code"] == 403 and "legacy_clients = no" in notice["args"]["details"]
    assert link.clients.get("c1") is None


@pytest.mark.parametrize("attack", ["flip", "replay", "garbage"])
def test_a_tampered_message_ends_the_session_with_a_clear_error(attack):
    link = Link(legacy=False, tunnel_server=server())
    client = Client(link).open()
    [sealed] = client.tunnel.seal(json.dumps({"namespace": "rpc", "name": "identify", "id": 1, "args": {}}).encode())
    if attack == "flip":
        raw = bytearray(tunnel.unb64(sealed, "x"))
        raw[-1] ^= 0x80
        client.send(tunnel.b64(bytes(raw)))
    elif attack == "replay":
        client.send(sealed)
        assert client.replies()[0]["args"]["type"] == "server"
        client.send(sealed)
    else:
        client.send("@@@")
    [error] = client.raw()
    assert error.startswith(tunnel.ERROR)
    assert link.clients.get("c1") is None


def test_a_hello_to_a_server_with_another_key_fails_both_ends():
    link = Link(legacy=False, tunnel_server=TunnelServer(ed25519.Ed25519PrivateKey.generate(), PINNED, 10, 1 << 20))
    client = Client(link)
    client.send(tunnel.OFFER)
    [offer] = client.raw()
    with pytest.raises(TunnelError, match="not by the pinned server"):
        tunnel.check_offer(offer, PINNED)


def test_rekeying_every_two_messages_keeps_both_ends_in_step():
    link = Link(legacy=False, tunnel_server=server(rekey=2))
    client = Client(link).open()
    client.call({"namespace": "rpc", "name": "auth", "id": "a", "args": {"username": "admin", "password": "right"}})
    for n in range(6):
        [reply] = client.call({"namespace": "rpc", "name": "identify", "id": n, "args": {}})
        assert reply["id"] == n


def test_plaintext_after_the_offer_is_refused_too():
    """Without legacy_clients nothing but tunnel steps and sealed messages is taken, at
    any point of a session."""
    link = Link(legacy=False, tunnel_server=server())
    client = Client(link)
    client.send(tunnel.OFFER)
    assert client.raw()[0].startswith(tunnel.OFFER + " ")
    client.send(json.dumps({"namespace": "rpc", "name": "auth", "id": 1,
                            "args": {"username": "admin", "password": "right"}}))
    [notice] = client.raw()
    assert json.loads(notice)["args"]["code"] == 403
    assert link.clients.get("c1") is None


def test_a_sealed_message_for_an_ended_session_is_told_to_open_a_new_tunnel():
    link = Link(legacy=False, tunnel_server=server())
    client = Client(link).open()
    link.clients.end("c1")
    [sealed] = client.tunnel.seal(b'{"namespace": "rpc", "name": "identify", "id": 1, "args": {}}')
    client.send(sealed)
    [error] = client.raw()
    assert error == tunnel.ERROR + "no tunnel: this session ended; open a new one"


def test_before_sign_in_a_tunnel_holds_no_more_than_twice_the_small_limit():
    """A stranger cannot make the daemon put together a message of the full limit: past
    twice preauth_max_message_bytes the session ends; a little over it is a 400."""
    link = Link(legacy=False, tunnel_server=server(), preauth_max_message_bytes=1000)
    client = Client(link).open()
    [reply] = client.call({"namespace": "rpc", "name": "identify", "id": 1, "args": {}, "pad": "x" * 1200})
    assert reply["args"]["code"] == 400
    for sealed in client.tunnel.seal(b"x" * 2500):
        client.send(sealed)
    assert client.raw()[-1] == tunnel.ERROR + "a tunnel message is larger than 2000 bytes"
    assert link.clients.get("c1") is None


def test_the_original_sign_in_is_refused_inside_a_tunnel_even_with_legacy_clients():
    link = Link(legacy=True, tunnel_server=server())
    client = Client(link).open()
    assert link.clients.get("c1").legacy is False
    [reply] = client.call({"namespace": "rpc", "name": "auth_ssl", "id": 1, "args": {"md5_key": "AAAA"}})
    # Refused in the original dialect, which is what an md5_key sign-in speaks.
    assert reply["name"] == "error" and reply["args"]["code"] == "403"
