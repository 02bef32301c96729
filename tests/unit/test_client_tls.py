"""Certificate pinning: fingerprint forms, and the verify callback's decision."""

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL, crypto

from sysadmd.client.connection import tls_for
from sysadmd.client.errors import ClientError
from sysadmd.client.tls import PinnedCertificate, format_fingerprint, parse_fingerprint
from sysadmd.server.tls import _self_signed

DIGEST = hashlib.sha256(b"certificate").digest()
COLON = "SHA256:" + ":".join(f"{b:02X}" for b in DIGEST)


@pytest.mark.parametrize("text", [
    COLON,
    COLON.lower(),
    COLON[len("SHA256:"):],
    "sha256:" + DIGEST.hex(),
    "SHA256:" + base64.b64encode(DIGEST).decode().rstrip("="),
    "SHA256:" + base64.b64encode(DIGEST).decode(),
    "  " + COLON + "\n",
])
def test_fingerprint_forms_name_the_same_digest(text):
    assert parse_fingerprint(text) == DIGEST


@pytest.mark.parametrize("text", [
    "", "SHA256:", "SHA256:AB:CD", COLON + ":00", "SHA1:" + DIGEST.hex(),
    "SHA256:" + base64.b64encode(DIGEST[:20]).decode(), "SHA256:not base64 at all!",
])
def test_other_text_is_refused_with_a_clear_message(text):
    with pytest.raises(ClientError, match="is not a SHA-256 fingerprint"):
        parse_fingerprint(text)


def test_format_matches_what_the_daemon_logs():
    assert format_fingerprint(DIGEST) == COLON


def certificate():
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed(key, "nas1")
    return crypto.X509.from_cryptography(cert), cert.fingerprint(hashes.SHA256())


def test_the_pinned_leaf_is_accepted_and_another_is_refused():
    x509, digest = certificate()
    pin = PinnedCertificate("nas1", digest)
    assert pin.verify(None, x509, 18, 0, False) is True  # self-signed: OpenSSL says no, the pin says yes
    assert not pin.mismatch
    other = PinnedCertificate("nas1", DIGEST)
    assert other.verify(None, x509, 0, 0, True) is False  # a CA would trust it; the pin does not
    assert other.mismatch and other.seen == digest


def test_only_the_leaf_decides():
    x509, _ = certificate()
    pin = PinnedCertificate("nas1", DIGEST)
    assert pin.verify(None, x509, 20, 1, False) is True
    assert pin.seen is None


def test_connections_verify_the_peer_and_send_the_host_name():
    pin = PinnedCertificate("nas1.example.org", DIGEST)
    connection = pin.clientConnectionForTLS(object())
    assert isinstance(connection, SSL.Connection)
    assert connection.get_context().get_verify_mode() == SSL.VERIFY_PEER
    assert connection.get_servername() == b"nas1.example.org"
    assert PinnedCertificate("127.0.0.1", DIGEST).clientConnectionForTLS(object()).get_servername() is None


def test_tls_choice_by_url():
    assert tls_for("ws://127.0.0.1:12150", None) is None
    assert isinstance(tls_for("wss://127.0.0.1:12150", DIGEST), PinnedCertificate)
    assert not isinstance(tls_for("wss://nas1:12150", None), PinnedCertificate)
    with pytest.raises(ClientError, match="--fingerprint needs a wss:// URL"):
        tls_for("ws://127.0.0.1:12150", DIGEST)
    with pytest.raises(ClientError, match="is not a WebSocket URL"):
        tls_for("http://x", None)
