"""The names a public key goes by in ``rpc/settings list_ssl_checksums`` answers.

- ``sha256_keys``: ``SHA256:<base64>`` fingerprints, as ``ssh-keygen -lf``, ``sysadmd-admin``
  and the keys file show them (:func:`fingerprint`; also how clients pin a server behind a
  bridge, ``sysadmd.protocol.tunnel``);
- ``md5_keys``: the base64 of the MD5 of the key's public PEM (SubjectPublicKeyInfo,
  ``-----BEGIN PUBLIC KEY-----``, 64-character lines, final newline): what the original
  SysAdm Qt client and servers send (Qt's ``QSslKey::toPem()`` hashed by
  ``QCryptographicHash::Md5``). MD5 only names a key here, it proves nothing: the key is
  always proven by a signature.

One function for each, so the bridge (which pairs peers by them) and the daemon (which
answers with them) compute the same strings.
"""

import base64
import hashlib

from cryptography.hazmat.primitives import serialization

SHA256_KEYS = "sha256_keys"
MD5_KEYS = "md5_keys"


def openssh_blob(public_key):
    """The key's OpenSSH wire blob (the base64 part of its ``ssh-...`` line, decoded)."""
    line = public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return base64.b64decode(line.split()[1])


def fingerprint(public_key):
    """The key's fingerprint as ``ssh-keygen -lf`` prints it: ``SHA256:<base64>``."""
    digest = hashlib.sha256(openssh_blob(public_key)).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def public_pem(public_key):
    """The public key's PEM (SubjectPublicKeyInfo) bytes, as OpenSSL and Qt write them."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def md5_key(public_key):
    """``base64(md5(public key PEM))``: the ``md5_keys`` name of ``public_key``."""
    # Not a security use: a name the original clients compute, checked by signature later.
    digest = hashlib.md5(public_pem(public_key), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode("ascii")
