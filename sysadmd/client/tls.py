"""wss: trust a certificate by its SHA-256 fingerprint (``--fingerprint``), or the system's CAs.

The daemon logs its certificate's fingerprint as ``SHA256:AB:CD:...`` (what ``openssl x509
-fingerprint -sha256`` prints); ``SHA256:<base64>`` (the OpenSSH style) names the same
digest. With a pin, the peer's leaf certificate must have exactly that digest and nothing
else is checked (neither CA nor host name): the pin is the whole trust decision.
"""

import base64
import binascii
import hmac
import ipaddress
import re

from cryptography.hazmat.primitives import hashes
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer

from sysadmd.client.errors import ClientError

DIGEST_BYTES = 32
_HEX_PAIRS = re.compile(r"\A[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){31}\Z")
_HEX = re.compile(r"\A[0-9A-Fa-f]{64}\Z")


def parse_fingerprint(text):
    """The 32-byte digest named by ``text``: ``SHA256:AB:CD:...`` (32 colon-separated hex
    pairs, any case), ``SHA256:`` and 64 hex digits, or ``SHA256:<base64>`` (padding
    optional). The ``SHA256:`` prefix may be left out. Raises :class:`ClientError`."""
    value = text.strip()
    if value[:7].upper() == "SHA256:":
        value = value[7:]
    if _HEX_PAIRS.match(value):
        return bytes.fromhex(value.replace(":", ""))
    if _HEX.match(value):
        return bytes.fromhex(value)
    try:
        digest = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != DIGEST_BYTES:
        raise ClientError(
            f"--fingerprint: {text!r} is not a SHA-256 fingerprint "
            "(SHA256:AB:CD:... with 32 hex pairs, or SHA256:<base64>)"
        )
    return digest


def format_fingerprint(digest):
    """``SHA256:AB:CD:...``, the form the daemon logs."""
    return "SHA256:" + ":".join(f"{byte:02X}" for byte in digest)


def _is_ip(host):
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@implementer(IOpenSSLClientConnectionCreator)
class PinnedCertificate:
    """TLS client connections that accept only a leaf certificate with the pinned digest.

    ``seen`` holds the digest of the last certificate the peer showed, so a mismatch can be
    reported with both fingerprints.
    """

    def __init__(self, hostname, digest):
        self.hostname = hostname
        self.digest = digest
        self.seen = None

    def clientConnectionForTLS(self, tlsProtocol):
        """A client-side ``SSL.Connection`` that verifies the peer with :meth:`verify`."""
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_verify(SSL.VERIFY_PEER, self.verify)
        connection = SSL.Connection(context, None)
        connection.set_app_data(tlsProtocol)
        if self.hostname and not _is_ip(self.hostname):
            connection.set_tlsext_host_name(self.hostname.encode("idna"))
        connection.set_connect_state()
        return connection

    def verify(self, connection, certificate, errno, depth, ok):
        """OpenSSL's verify callback: only the leaf (depth 0) decides."""
        if depth != 0:
            return True
        self.seen = certificate.to_cryptography().fingerprint(hashes.SHA256())
        return hmac.compare_digest(self.seen, self.digest)

    @property
    def mismatch(self):
        """True when the peer showed a certificate with another digest."""
        return self.seen is not None and not hmac.compare_digest(self.seen, self.digest)
