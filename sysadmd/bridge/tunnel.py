"""The daemon's end of the encrypted tunnels of relayed clients (the protocol is in
``sysadmd.protocol.tunnel``).

The static key is derived from the bridge key (HKDF-SHA256 over its private bytes): no
second secret to keep, and a new bridge key is a new static key. The offer, signed by the
bridge key, is made once at start.

Frames to a tunnel client are sealed when they are written to the link, not when they are
queued: a frame dropped from a slow client's queue (``slow_subscriber = drop``) never took
a nonce, so the tunnel stays in step.
"""

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sysadmd.protocol import tunnel

STATIC_INFO = b"sysadm-noise-static-v1"


def derive_static(bridge_key):
    """This daemon's X25519 static private key (raw), from its bridge key."""
    secret = bridge_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=STATIC_INFO).derive(secret)


class TunnelServer:
    """What every relayed tunnel of this daemon shares: its offer text and its responder.
    ``fingerprint`` names the bridge key (what clients pin); ``max_message`` bounds a
    message put together from fragments."""

    def __init__(self, bridge_key, fingerprint, rekey_messages, max_message):
        static = derive_static(bridge_key)
        self.fingerprint = fingerprint
        self.rekey_messages = rekey_messages
        self.offer = tunnel.make_offer(bridge_key, static, rekey_messages)
        self._responder = tunnel.Responder(static, rekey_messages, max_message)

    def accept(self, hello):
        """``(welcome frame, Tunnel)`` for a client's hello; TunnelError when it fails."""
        return self._responder.hello(hello)


class TunnelBinding:
    """``rpc/auth_ssl`` inside a tunnel: the signature covers this server's key and the
    tunnel's handshake hash. Provides what ``Session.challenge_binding`` expects."""

    def __init__(self, server_fingerprint, handshake_hash):
        self.server_fingerprint = server_fingerprint
        self.handshake_hash = handshake_hash

    def text(self, test_string):
        """The string the client must have signed for ``test_string``."""
        return tunnel.binding_text(self.server_fingerprint, self.handshake_hash, test_string)

    def describe(self):
        """What stage 1 adds to its reply."""
        return {"bind": tunnel.binding_description(self.server_fingerprint, self.handshake_hash)}


class Unsealed:
    """A frame for a tunnel client, queued as plaintext and sealed when written (see the
    module docstring). Sized like the frame it becomes, for the queue's bound."""

    __slots__ = ("message", "payloadHybi", "payload")

    def __init__(self, message):
        self.message = message
        self.payloadHybi = message
        self.payload = b""


class SealedFrames:
    """Several WebSocket frames sent as one prepared message (a message sealed into more
    than one fragment): ``sendPreparedMessage`` writes ``payloadHybi`` as it is."""

    __slots__ = ("payloadHybi", "payload", "binary", "doNotCompress")

    def __init__(self, frames):
        self.payloadHybi = b"".join(frame.payloadHybi for frame in frames)
        self.payload = b""
        self.binary = False
        self.doNotCompress = True
