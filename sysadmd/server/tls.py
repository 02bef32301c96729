"""The certificate and key for ``ssl:`` endpoints, generated when asked and missing.

A generated certificate is self-signed (EC P-256, ten years) for the host name,
``localhost``, 127.0.0.1 and ::1; clients pin it by the fingerprint the daemon logs.
"""

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sysadmd.util.files import atomic_write, make_private_dirs
from sysadmd.util.log import Logger

log = Logger()

VALIDITY = datetime.timedelta(days=3650)
# Backdated a little so a client whose clock is slightly behind still accepts it.
_BACKDATE = datetime.timedelta(minutes=5)


class TLSFilesError(Exception):
    """The certificate or key is missing, unreadable, or cannot be made."""


def ensure_certificate(cert_path, key_path, generate, hostname):
    """Make sure ``cert_path`` and ``key_path`` exist; return True when files were made.

    When both exist nothing is done. When something is missing and ``generate`` is false,
    raise :class:`TLSFilesError`. Otherwise make what is missing: a new P-256 key (mode
    0600), and a self-signed certificate for it; an existing key is reused for a new
    certificate. A certificate without its key is an error: it is never overwritten.
    Missing parent directories are created with mode 0700.
    """
    have_cert = os.path.exists(cert_path)
    have_key = os.path.exists(key_path)
    if have_cert and have_key:
        return False
    if not generate:
        missing = " and ".join(
            path for path, present in ((cert_path, have_cert), (key_path, have_key))
            if not present
        )
        raise TLSFilesError(
            f"TLS file missing: {missing}; provide it, or set tls_generate = yes in "
            "[server] to create a self-signed certificate"
        )
    if have_cert:
        raise TLSFilesError(
            f"certificate {cert_path} exists but its key {key_path} is missing; "
            "restore the key or remove the certificate"
        )
    try:
        if have_key:
            key = _load_key(key_path)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
            _write(key_path, key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ), 0o600)
        cert = _self_signed(key, hostname)
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    except OSError as error:
        raise TLSFilesError(f"cannot write TLS files: {error}") from None
    log.info(
        "generated a self-signed TLS certificate {cert_path} for {hostname}, "
        "fingerprint {fingerprint}",
        cert_path=cert_path,
        hostname=hostname,
        fingerprint=_format_fingerprint(cert),
    )
    return True


def _write(path, data, mode):
    make_private_dirs(os.path.dirname(os.path.abspath(path)))
    atomic_write(path, data, mode)


def _load_key(key_path):
    try:
        with open(key_path, "rb") as handle:
            return serialization.load_pem_private_key(handle.read(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise TLSFilesError(f"cannot use the key {key_path}: {error}") from None


def _names(hostname):
    names = []
    for name in (hostname, "localhost", "127.0.0.1", "::1"):
        if not name:
            continue
        try:
            entry = x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            try:
                # Certificates carry DNS names in their ASCII (IDNA) form.
                entry = x509.DNSName(name.encode("idna").decode("ascii"))
            except UnicodeError:
                log.warn("host name {hostname!r} cannot go in a certificate", hostname=name)
                continue
        if entry not in names:
            names.append(entry)
    return names


def _self_signed(key, hostname):
    # A common name is limited to 64 characters; the SAN carries the full name anyway.
    common_name = hostname if hostname and len(hostname) <= 64 else "sysadmd"
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_names(hostname)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .sign(key, _signature_hash(key))
    )


def _signature_hash(key):
    # An existing Ed25519/Ed448 key signs without a separate hash.
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return None
    return hashes.SHA256()


def _format_fingerprint(cert):
    digest = cert.fingerprint(hashes.SHA256())
    return "SHA256:" + ":".join(f"{byte:02X}" for byte in digest)


def certificate_fingerprint(cert_path):
    """Return the SHA-256 fingerprint of the PEM certificate at ``cert_path`` as
    ``SHA256:AA:BB:...``, the digits ``openssl x509 -fingerprint -sha256`` prints."""
    try:
        with open(cert_path, "rb") as handle:
            cert = x509.load_pem_x509_certificate(handle.read())
    except (OSError, ValueError) as error:
        raise TLSFilesError(f"cannot read the certificate {cert_path}: {error}") from None
    return _format_fingerprint(cert)
