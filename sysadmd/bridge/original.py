"""The original SysAdm way through a bridge, on the daemon's side.

**Relayed clients.** The original Qt client, relayed by a bridge, signs in with::

    -> {"namespace": "rpc", "name": "auth_ssl", "id": "sysadm-client-auth-auto",
        "args": {"md5_key": "<base64(md5(its public key PEM))>"}}
    <- {"namespace": "rpc", "name": "response", "id": "sysadm-client-auth-auto",
        "args": {"test_string": "<base64 of printable text>",
                 "new_ssl_key": "<base64 of this server's bridge public key PEM>"}}
    -> base64({"namespace": "rpc", "name": "auth_ssl", "id": "sysadm-client-auth-auto",
               "args": {"encrypted_string": "<base64 signature of the decoded text>"}})
    <- base64({... "args": ["<token>", 900]})

Both stage-1 frames are plain JSON; from the stage-1 reply on, every payload of that
relayed session is base64(JSON) both ways: the original's encryption layer, which its
authors disabled ("temporary bypass"). Its RSA e=3 scheme is not copied: base64 is only
the framing the client expects, and the bridge can read everything. The client switches to
base64 only when ``new_ssl_key`` decodes to a PEM key, and uses it for nothing else: this
server sends its bridge public key (already public, nothing generated per login, and it
names this server), never a fresh key pair. The signature (raw RSA, ``RSA_private_encrypt``
of the decoded text, or any form ``sysadmd.auth.signatures`` accepts) cannot be bound to
this server, so the flow is allowed only while ``[bridge] legacy_clients = yes``; with
``no`` stage 1 answers 403 and the bound flow (``sysadmd.protocol.relay``) is the only
one. The client's channel speaks the ``original`` dialect from stage 1 on.

The test string is sized for the client's key: the Qt client writes the RSA block into a
buffer twice the text's length, so the text is at least half the modulus (and at most what
PKCS#1 padding leaves room for): 3/4 of the modulus bytes, 192 characters for 2048 bits.

**Original bridges.** A daemon linked to an original bridge answers its challenge in the
original raw-RSA form when its bridge key is RSA (:func:`sign_for_bridge`).
"""

import base64
import binascii
import secrets

from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet import defer

from sysadmd.auth.keys_file import KeysFileError
from sysadmd.auth.signatures import sign_challenge
from sysadmd.protocol import envelope
from sysadmd.protocol.envelope import Request
from sysadmd.protocol.keydigests import md5_key, public_pem
from sysadmd.util.log import Logger

log = Logger()

MD5_KEY = "md5_key"
# The test string for a key of unknown size: what a 2048-bit RSA key (the Qt client's) needs.
DEFAULT_CHALLENGE = 192
LEGACY_OFF = (
    "The original SysAdm sign-in through a bridge (auth_ssl with md5_key) is turned off on "
    "this server ([bridge] legacy_clients = no): its signature is not bound to this server. "
    "Use a client that binds rpc/auth_ssl to the server's key (sysadm)."
)


def rsa_private_encrypt(private_key, data):
    """OpenSSL's ``RSA_private_encrypt(data, RSA_PKCS1_PADDING)``: ``data`` in a type-1
    padded block raised to the private exponent, what original SysAdm peers check with
    ``RSA_public_decrypt``. Blinded (the bridge chooses ``data``) and checked with the
    public key before it is returned."""
    numbers = private_key.private_numbers()
    n, e = numbers.public_numbers.n, numbers.public_numbers.e
    size = (n.bit_length() + 7) // 8
    if len(data) > size - 11:
        raise ValueError(f"{len(data)} bytes do not fit a {size * 8}-bit RSA block")
    block = int.from_bytes(b"\x00\x01" + b"\xff" * (size - 3 - len(data)) + b"\x00" + data, "big")
    while True:
        blind = secrets.randbelow(n - 3) + 2
        try:
            unblind = pow(blind, -1, n)
            break
        except ValueError:  # not invertible: n's factor found by chance; try another
            continue
    blinded = block * pow(blind, e, n) % n
    # Chinese remainder theorem, as OpenSSL does it.
    p, q = numbers.p, numbers.q
    m1, m2 = pow(blinded, numbers.dmp1, p), pow(blinded, numbers.dmq1, q)
    signed = (m2 + (numbers.iqmp * (m1 - m2) % p) * q) * unblind % n
    if pow(signed, e, n) != block:
        raise ValueError("RSA signing failed its own check")
    return signed.to_bytes(size, "big")


def sign_for_bridge(private_key, test_string):
    """The signature of a bridge's ``test_string`` with the daemon's bridge key: the
    original raw-RSA form for an RSA key (original and sysadmd bridges both check it),
    the form :func:`sysadmd.auth.signatures.sign_challenge` makes for other keys."""
    if isinstance(private_key, rsa.RSAPrivateKey):
        return rsa_private_encrypt(private_key, test_string.encode("utf-8"))
    return sign_challenge(private_key, test_string)


def challenge_length(public_key):
    """How long a test string ``public_key``'s Qt client can sign without overrunning its
    buffer (see the module docstring); :data:`DEFAULT_CHALLENGE` for an unknown key."""
    if isinstance(public_key, rsa.RSAPublicKey):
        size = public_key.key_size // 8
        return min(max(size * 3 // 4, DEFAULT_CHALLENGE), size - 11)
    return DEFAULT_CHALLENGE


class Unbound:
    """A relayed session's ``challenge_binding`` in the original flow: the client signs
    the bare test string (it cannot bind it), and stage 1 adds nothing."""

    def text(self, test_string):
        """The test string itself."""
        return test_string

    def describe(self):
        """Nothing: the original client reads only ``test_string``."""
        return {}


UNBOUND = Unbound()


def encode(payload):
    """A payload (bytes) in the original framing: its base64."""
    return base64.b64encode(payload)


def decode(payload):
    """A relayed payload (bytes) from an original client: its base64 decoded, or the
    payload itself when it is plain JSON (the client sends stage 1 again in plain JSON) or
    not base64 (it then gets the ordinary 400)."""
    if payload.lstrip()[:1] == b"{":
        return payload
    try:
        return base64.b64decode(b"".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        return payload


class OriginalSignIn:
    """The ``router`` of one relayed client: ``rpc/auth_ssl`` with ``md5_key`` starts the
    original flow (see the module docstring); every other request, and the bound
    ``rpc/auth_ssl``, is the daemon's router's.

    ``client`` provides ``binding`` (its bound ``challenge_binding``), ``legacy`` (``[bridge]
    legacy_clients``), ``bridge_public_pem``, ``key_for_md5(md5)`` (the registered public
    key of that name, or None), ``plain()`` (the original dialect, and plain JSON until
    the flow starts) and ``start_original()`` (base64 framing from the next frame on).
    """

    def __init__(self, router, client):
        self._router = router
        self._client = client

    def __getattr__(self, name):
        # bad_request, errors_by_code, access_table...: the daemon router's.
        return getattr(self._router, name)

    def handle(self, session, request):
        """Answer ``request``: a Deferred firing with ``(frame, after)``."""
        if (request.namespace, request.name) == ("rpc", "auth_ssl"):
            args = request.args
            if isinstance(args, dict) and MD5_KEY in args:
                return self._original_stage1(session, request)
            if args in (None, "", [], {}):
                # A bound stage 1 (again): the signature must be bound.
                session.challenge_binding = self._client.binding
        return self._router.handle(session, request)

    @defer.inlineCallbacks
    def _original_stage1(self, session, request):
        client = self._client
        # An original client: its dialect from now on, and this stage in plain JSON (it
        # sends it so and reads the reply so, also when starting over).
        client.plain()
        if not client.legacy:
            log.info("refused the original sign-in of {peer}: [bridge] legacy_clients = no",
                     peer=session.peer_host)
            return envelope.error(request.id, 403, LEGACY_OFF), None
        md5 = request.args[MD5_KEY]
        if not isinstance(md5, str) or not 0 < len(md5) <= 64:
            return envelope.error(request.id, 400, '"md5_key" must be the base64 MD5 of your public key PEM.'), None
        session.challenge_binding = UNBOUND
        stage1 = Request(request.namespace, request.name, request.id, {})
        frame, after = yield self._router.handle(session, stage1)
        args = frame.get("args") if frame.get("name") == "response" else None
        if not isinstance(args, dict) or session.challenge is None:
            # Refused (banned): an earlier bound challenge stays bound.
            session.challenge_binding = client.binding
            return frame, after
        text = self._sized(session, client.key_for_md5(md5))
        reply = dict(args)
        reply["test_string"] = encode(text.encode("utf-8")).decode("ascii")
        reply["new_ssl_key"] = encode(client.bridge_public_pem).decode("ascii")

        def started():
            # After the plain reply is out: base64 from the next frame on.
            client.start_original()
            if after is not None:
                after()

        return dict(frame, args=reply), started

    @staticmethod
    def _sized(session, public_key):
        # The authenticator's random test string, lengthened with more random text when
        # the client's key needs a longer one.
        test_string, expires = session.challenge
        needed = challenge_length(public_key)
        if len(test_string) < needed:
            test_string += secrets.token_urlsafe(needed)[: needed - len(test_string)]
            session.challenge = (test_string, expires)
        return test_string


def key_for_md5(keys, md5):
    """The public key in ``keys`` (a :class:`sysadmd.auth.keys_file.KeysFile`) whose
    ``md5_keys`` name is ``md5``, or None (also when the file cannot be read)."""
    try:
        registered = keys.load()
    except (KeysFileError, OSError):
        log.failure("cannot read the keys file {path}", path=getattr(keys, "path", None))
        return None
    for key in registered:
        if md5_key(key.public_key) == md5:
            return key.public_key
    return None


def bridge_public_pem(private_key):
    """The PEM of the bridge key's public half (the ``new_ssl_key`` relayed original
    clients get; empty when there is no key)."""
    return public_pem(private_key.public_key()) if private_key is not None else b""
