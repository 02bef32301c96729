"""The TLS certificate and key for ssl: endpoints."""

import datetime
import ipaddress
import os
import re
import shutil
import stat
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sysadmd.server.tls import TLSFilesError, certificate_fingerprint, ensure_certificate


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _load_cert(path):
    with open(path, "rb") as handle:
        return x509.load_pem_x509_certificate(handle.read())


def _load_key(path):
    with open(path, "rb") as handle:
        return serialization.load_pem_private_key(handle.read(), password=None)


def _san(cert):
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


@pytest.fixture
def paths(tmp_path):
    base = tmp_path / "state" / "tls"
    return str(base / "cert.pem"), str(base / "key.pem")


def test_generates_private_key_and_self_signed_certificate(tmp_path, paths):
    """Missing files are made: key 0600, new directories 0700, a matching cert."""
    cert_path, key_path = paths
    assert ensure_certificate(cert_path, key_path, True, "host.example.org") is True
    assert _mode(key_path) == 0o600
    assert _mode(tmp_path / "state") == 0o700
    assert _mode(tmp_path / "state" / "tls") == 0o700
    cert, key = _load_cert(cert_path), _load_key(key_path)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert cert.issuer == cert.subject
    cert.public_key().verify(
        cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"


def test_certificate_names_and_validity(paths):
    """SAN holds the host name, localhost and both loopback addresses; ten years."""
    cert_path, key_path = paths
    ensure_certificate(cert_path, key_path, True, "host.example.org")
    cert = _load_cert(cert_path)
    san = _san(cert)
    assert san.get_values_for_type(x509.DNSName) == ["host.example.org", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")
    ]
    now = datetime.datetime.now(datetime.timezone.utc)
    assert cert.not_valid_before_utc <= now
    lifetime = cert.not_valid_after_utc - now
    assert datetime.timedelta(days=3649) < lifetime <= datetime.timedelta(days=3650)
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca is False


def test_ip_and_long_host_names(tmp_path):
    """An IP host name goes in as an address; a name over 64 characters keeps its SAN."""
    cert_path, key_path = str(tmp_path / "c1.pem"), str(tmp_path / "k1.pem")
    ensure_certificate(cert_path, key_path, True, "192.0.2.7")
    assert ipaddress.ip_address("192.0.2.7") in _san(_load_cert(cert_path)).get_values_for_type(
        x509.IPAddress
    )
    long_name = ".".join(["a" * 30] * 3)
    cert_path, key_path = str(tmp_path / "c2.pem"), str(tmp_path / "k2.pem")
    ensure_certificate(cert_path, key_path, True, long_name)
    cert = _load_cert(cert_path)
    assert long_name in _san(cert).get_values_for_type(x509.DNSName)


def test_existing_files_are_left_alone(paths):
    """A second call changes nothing and says so."""
    cert_path, key_path = paths
    ensure_certificate(cert_path, key_path, True, "h")
    before = [open(path, "rb").read() for path in paths]
    assert ensure_certificate(cert_path, key_path, True, "h") is False
    assert ensure_certificate(cert_path, key_path, False, "h") is False
    assert [open(path, "rb").read() for path in paths] == before


def test_missing_without_generate_is_a_clear_error(paths):
    """Without tls_generate a missing file is named, and nothing is created."""
    cert_path, key_path = paths
    with pytest.raises(TLSFilesError) as caught:
        ensure_certificate(cert_path, key_path, False, "h")
    message = str(caught.value)
    assert cert_path in message and key_path in message
    assert "tls_generate" in message
    assert not os.path.exists(os.path.dirname(cert_path))


def test_certificate_without_key_is_never_overwritten(paths):
    """A certificate whose key is missing is an error, not a reason to replace it."""
    cert_path, key_path = paths
    ensure_certificate(cert_path, key_path, True, "h")
    os.unlink(key_path)
    before = open(cert_path, "rb").read()
    with pytest.raises(TLSFilesError, match="key .* is missing"):
        ensure_certificate(cert_path, key_path, True, "h")
    assert open(cert_path, "rb").read() == before
    assert not os.path.exists(key_path)


def test_existing_key_gets_a_new_certificate(paths):
    """When only the certificate is missing, it is made for the existing key."""
    cert_path, key_path = paths
    ensure_certificate(cert_path, key_path, True, "h")
    key_before = open(key_path, "rb").read()
    os.unlink(cert_path)
    assert ensure_certificate(cert_path, key_path, True, "h") is True
    assert open(key_path, "rb").read() == key_before
    cert = _load_cert(cert_path)
    assert cert.public_key().public_numbers() == _load_key(key_path).public_key().public_numbers()


def test_fingerprint_format_and_value(paths):
    """SHA256: then the upper-case colon-separated hex of the certificate's SHA-256."""
    cert_path, key_path = paths
    ensure_certificate(cert_path, key_path, True, "h")
    value = certificate_fingerprint(cert_path)
    assert re.fullmatch(r"SHA256:([0-9A-F]{2}:){31}[0-9A-F]{2}", value)
    digest = _load_cert(cert_path).fingerprint(hashes.SHA256())
    assert value == "SHA256:" + digest.hex(":").upper()


def test_fingerprint_matches_openssl(paths):
    """The digits are those of ``openssl x509 -fingerprint -sha256``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: cannot compare with its output "
                    "(apt-get install openssl; make test installs it)")
    cert_path, key_path = paths
    ensure_certificate(cert_path, key_path, True, "h")
    output = subprocess.run(
        [openssl, "x509", "-noout", "-fingerprint", "-sha256", "-in", cert_path],
        check=True, capture_output=True, text=True,
    ).stdout
    assert output.strip().split("=", 1)[1] == certificate_fingerprint(cert_path)[len("SHA256:"):]


def test_fingerprint_of_missing_or_bad_file(tmp_path):
    """An unreadable or non-PEM certificate is a TLSFilesError naming it."""
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(TLSFilesError, match="missing.pem"):
        certificate_fingerprint(missing)
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(TLSFilesError, match="bad.pem"):
        certificate_fingerprint(str(bad))
