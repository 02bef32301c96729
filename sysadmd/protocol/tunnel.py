"""The encrypted tunnel between a ``sysadm`` client and a sysadmd server through a bridge
that neither trusts: ``Noise_NK_25519_ChaChaPoly_BLAKE2s`` (the ``noiseprotocol`` package).

The bridge relays text frames ``"<connection id>\\n<payload>"`` (``sysadmd.bridge.wire``).
Inside a tunnel every payload is one Noise message, base64; before it, three plaintext
steps::

    client -> server   noise:offer
    server -> client   noise:offer {"key": "<ssh public key line>", "static": "<base64 X25519>",
                                    "signature": "<base64>", "rekey_messages": N}
    client -> server   noise:hello <base64: Noise handshake message 1, -> e, es>
    server -> client   noise:welcome <base64: Noise handshake message 2, <- e, ee>
    both ways          <base64: Noise transport message>
    either way         noise:error <reason>          (then the session is over)

The offer says which static key the server proves in the handshake: ``key`` is its bridge
key (the one whose ``SHA256:`` fingerprint the client pins with ``--server``; ``sysadmd-admin
bridge export-key`` prints it), and ``signature`` is that key's signature of
:data:`STATIC_CONTEXT` and the static key. The client checks the fingerprint and the
signature before sending anything, so a bridge that swaps the offer is refused, and a
peer without the static key's private half cannot complete the handshake (``es``).

Transport messages carry at most :data:`FRAGMENT` bytes of a message each, behind one flag
byte (more fragments follow, or this is the last), so a message of any size up to the
receiver's limit goes through. Noise's nonces make every message count: a flipped byte,
a replayed, dropped or reordered message fails to decrypt (:class:`TunnelError`) and the
session ends. Both sides rekey (Noise ``REKEY``) after every ``rekey_messages`` messages
sent in one direction (the server's ``[bridge] rekey_messages``, announced in the offer).

A key signature of ``rpc/auth_ssl`` inside the tunnel covers the handshake hash
(:func:`binding_text`): it cannot be forwarded to another session.

The client imports this module too (one implementation of the wire both ends speak); it
imports nothing of sysadmd but ``sysadmd.protocol``.
"""

import base64
import binascii
import json

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from noise.connection import Keypair, NoiseConnection

from sysadmd.protocol.keydigests import fingerprint
from sysadmd.protocol.keysign import sign, verify

PROTOCOL_NAME = b"Noise_NK_25519_ChaChaPoly_BLAKE2s"
PROLOGUE = b"sysadm-tunnel-v1"
STATIC_CONTEXT = b"sysadm-noise-static-v1\n"
BIND_SCHEME = "sysadm-noise-v1"

OFFER = "noise:offer"
HELLO = "noise:hello "
WELCOME = "noise:welcome "
ERROR = "noise:error "
CONTROL = "noise:"

MAX_NOISE_MESSAGE = 65535
TAG_BYTES = 16
# Plaintext bytes of one transport message: the flag byte and a fragment of a message.
FRAGMENT = MAX_NOISE_MESSAGE - TAG_BYTES - 1
MORE = b"\x01"
LAST = b"\x00"
DEFAULT_REKEY_MESSAGES = 100000


class TunnelError(Exception):
    """The tunnel cannot go on (a message that does not decrypt, a bad offer...): the
    session ends, and the message says why."""


def b64(data):
    """Standard base64 text of ``data``."""
    return base64.b64encode(data).decode("ascii")


def unb64(text, what):
    """The bytes of base64 ``text``; :class:`TunnelError` naming ``what`` otherwise."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise TunnelError(f"{what} is not base64") from None


def new_static_key():
    """A new X25519 private key (the server's static key), raw 32 bytes."""
    return x25519.X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def static_public(private_bytes):
    """The raw public half of a raw X25519 private key."""
    key = x25519.X25519PrivateKey.from_private_bytes(private_bytes)
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def make_offer(bridge_key, static_private, rekey_messages=DEFAULT_REKEY_MESSAGES):
    """The server's offer text: its bridge public key, its static key, the bridge key's
    signature of the static key, and how often both sides rekey."""
    public = static_public(static_private)
    line = bridge_key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode("ascii")
    offer = {
        "key": line,
        "static": b64(public),
        "signature": b64(sign(bridge_key, STATIC_CONTEXT + public)),
        "rekey_messages": rekey_messages,
    }
    return OFFER + " " + json.dumps(offer, separators=(",", ":"))


def check_offer(text, pinned):
    """``(static public key, rekey_messages)`` from the offer ``text`` once it is proven
    to come from the server whose bridge key has the fingerprint ``pinned``; else
    :class:`TunnelError` saying what is wrong."""
    if not isinstance(text, str) or not text.startswith(OFFER + " "):
        raise TunnelError("the server did not offer an encrypted tunnel")
    try:
        offer = json.loads(text[len(OFFER) + 1:])
        key = serialization.load_ssh_public_key(offer["key"].encode("ascii"))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise TunnelError("the server's tunnel offer cannot be read") from None
    found = fingerprint(key)
    if found != pinned:
        raise TunnelError(f"the tunnel is offered by key {found}, not by the pinned server {pinned}")
    public = unb64(offer.get("static"), "the offered static key")
    signature = unb64(offer.get("signature"), "the offer's signature")
    if len(public) != 32 or not verify(key, STATIC_CONTEXT + public, signature):
        raise TunnelError(f"the static key offered is not signed by {pinned}")
    rekey = offer.get("rekey_messages")
    if not isinstance(rekey, int) or isinstance(rekey, bool) or rekey < 1:
        raise TunnelError("the server's tunnel offer has no valid rekey_messages")
    return public, rekey


def binding_text(server_fingerprint, handshake_hash, test_string):
    """What a key signs for ``rpc/auth_ssl`` inside a tunnel: the scheme, the server's
    key fingerprint, the handshake hash (hex) and the test string, one a line. Raises
    ValueError for a part that is empty or holds a line break."""
    parts = (server_fingerprint, handshake_hash.hex(), test_string)
    for part in parts:
        if not isinstance(part, str) or not part or "\n" in part or "\r" in part:
            raise ValueError("binding parts must be non-empty strings on one line")
    return "\n".join((BIND_SCHEME,) + parts)


def binding_description(server_fingerprint, handshake_hash):
    """The ``bind`` entry stage 1 of ``rpc/auth_ssl`` carries inside a tunnel."""
    return {"scheme": BIND_SCHEME, "server": server_fingerprint, "handshake": handshake_hash.hex()}


def _connection(initiator):
    noise = NoiseConnection.from_name(PROTOCOL_NAME)
    if initiator:
        noise.set_as_initiator()
    else:
        noise.set_as_responder()
    noise.set_prologue(PROLOGUE)
    return noise


class Initiator:
    """The client's half of the handshake with the server whose static key is
    ``static`` (from :func:`check_offer`)."""

    def __init__(self, static, rekey_messages, max_message):
        self._noise = _connection(True)
        self._noise.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, static)
        self._noise.start_handshake()
        self._rekey = rekey_messages
        self._max_message = max_message

    def hello(self):
        """The first handshake frame."""
        return HELLO + b64(self._noise.write_message())

    def welcome(self, text):
        """The established :class:`Tunnel` from the server's answer."""
        if not isinstance(text, str) or not text.startswith(WELCOME):
            raise TunnelError(_refusal(text, "the server did not complete the tunnel handshake"))
        try:
            self._noise.read_message(unb64(text[len(WELCOME):], "the handshake answer"))
        except TunnelError:
            raise
        except Exception:
            raise TunnelError("the server could not prove the pinned key (handshake failed)") from None
        return Tunnel(self._noise, self._rekey, self._max_message)


class Responder:
    """The server's half: ``static_private`` (raw X25519), its offer text (see
    :func:`make_offer`) and the rekey period it announced."""

    def __init__(self, static_private, rekey_messages, max_message):
        self._static = static_private
        self._rekey = rekey_messages
        self._max_message = max_message

    def hello(self, text):
        """``(the welcome frame, the established Tunnel)`` for a client's hello."""
        noise = _connection(False)
        noise.set_keypair_from_private_bytes(Keypair.STATIC, self._static)
        noise.start_handshake()
        try:
            noise.read_message(unb64(text[len(HELLO):], "the handshake message"))
            welcome = WELCOME + b64(noise.write_message())
        except TunnelError:
            raise
        except Exception:
            raise TunnelError("the tunnel handshake failed") from None
        return welcome, Tunnel(noise, self._rekey, self._max_message)


def _refusal(text, default):
    if isinstance(text, str) and text.startswith(ERROR):
        return "the server refused the tunnel: " + text[len(ERROR):]
    return default


class Tunnel:
    """An established tunnel: :meth:`seal` turns a message into transport frames,
    :meth:`open` takes them back (``max_message``: the largest message accepted)."""

    def __init__(self, noise, rekey_messages, max_message):
        self._noise = noise
        self._rekey = rekey_messages
        # The owner may lower or raise it as the session goes (e.g. at sign-in).
        self.max_message = max_message
        self.handshake_hash = noise.get_handshake_hash()
        self.sent = 0
        self.received = 0
        self._partial = []
        self._partial_bytes = 0
        self.broken = None

    def seal(self, message):
        """The base64 transport frames (one per fragment) carrying ``message`` (bytes)."""
        if self.broken:
            raise TunnelError(self.broken)
        frames = []
        view = memoryview(message)
        start = 0
        while True:
            piece = view[start:start + FRAGMENT]
            start += FRAGMENT
            flag = MORE if start < len(message) else LAST
            frames.append(b64(self._noise.encrypt(flag + bytes(piece))))
            self.sent += 1
            if self.sent % self._rekey == 0:
                self._noise.rekey_outbound_cipher()
            if flag == LAST:
                return frames

    def open(self, text):
        """The message that the transport frame ``text`` completes, or None while more
        fragments are due. :class:`TunnelError` when it does not decrypt (tampered,
        replayed, dropped or reordered) or the message grows past ``max_message``; the
        tunnel is then broken for good."""
        if self.broken:
            raise TunnelError(self.broken)
        try:
            data = unb64(text, "a tunnel message")
            plain = self._noise.decrypt(data)
        except TunnelError as e:
            self.broken = str(e)
            raise
        except Exception:
            self.broken = ("a tunnel message did not decrypt: it was altered, replayed, "
                           "dropped or reordered on the way")
            raise TunnelError(self.broken) from None
        self.received += 1
        if self.received % self._rekey == 0:
            self._noise.rekey_inbound_cipher()
        if not plain or plain[:1] not in (MORE, LAST):
            self.broken = "a tunnel message has no fragment flag"
            raise TunnelError(self.broken)
        self._partial.append(plain[1:])
        self._partial_bytes += len(plain) - 1
        if self._partial_bytes > self.max_message:
            self.broken = f"a tunnel message is larger than {self.max_message} bytes"
            raise TunnelError(self.broken)
        if plain[:1] == MORE:
            return None
        message = b"".join(self._partial)
        self._partial = []
        self._partial_bytes = 0
        return message
