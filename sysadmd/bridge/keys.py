"""The private key a daemon signs in to bridges with (``[bridge] key``).

It may be any key ``rpc/auth_ssl`` accepts (Ed25519, ECDSA P-256/384/521, RSA >= 2048), in
PEM (PKCS#8 or traditional) or OpenSSH private key format, without a passphrase. When the
file is missing an Ed25519 key is generated (mode 0600). Its public half, in OpenSSH
format, goes into each bridge's keys file.
"""

import os
import socket

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from sysadmd.auth.keys_file import check_supported, fingerprint
from sysadmd.util.files import atomic_write, make_private_dirs


class BridgeKeyError(Exception):
    """The bridge key cannot be read, used or made."""


def load_private_key(path):
    """The private key in ``path``; raises :class:`BridgeKeyError` naming the problem."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as e:
        raise BridgeKeyError(f"cannot read {path}: {e.strerror}") from None
    try:
        if b"BEGIN OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise BridgeKeyError(f"{path} is not an unencrypted private key: {e}") from None
    try:
        check_supported(key.public_key())
    except (ValueError, AttributeError) as e:
        raise BridgeKeyError(f"{path}: {e}") from None
    return key


def ensure_private_key(path):
    """Load ``path``, generating an Ed25519 key there first when it is missing.

    Returns ``(key, generated)``.
    """
    if os.path.exists(path):
        return load_private_key(path), False
    key = ed25519.Ed25519PrivateKey.generate()
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        make_private_dirs(os.path.dirname(os.path.abspath(path)))
        atomic_write(path, data, 0o600)
    except OSError as e:
        raise BridgeKeyError(f"cannot write {path}: {e.strerror}") from None
    return key, True


def public_line(key, comment=None):
    """The key's public half as an OpenSSH line, with ``comment`` (default
    ``sysadmd@<hostname>``)."""
    line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode("ascii")
    comment = f"sysadmd@{socket.gethostname()}" if comment is None else comment
    return f"{line} {comment}" if comment else line


def key_fingerprint(key):
    """``SHA256:...`` of the key's public half, as the keys file shows it."""
    return fingerprint(key.public_key())
