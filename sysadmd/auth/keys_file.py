"""Public keys for ``rpc/auth_ssl``: which key may log in as which user.

One key a line, ``username <OpenSSH public key line>``, for example::

    alice ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... alice@laptop

Lines starting with ``#`` and blank lines are ignored and kept on rewrite. Accepted key
types are those the original SysAdm clients and OpenSSH share and that are still strong:
Ed25519, ECDSA on P-256/P-384/P-521, and RSA of at least 2048 bits.
"""

import base64
import binascii
from typing import NamedTuple

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from sysadmd.auth.filestore import CachedFile, is_blank_or_comment, join_lines
from sysadmd.auth.users_file import validate_username
from sysadmd.protocol.keydigests import fingerprint

MIN_RSA_BITS = 2048

_SSH_TYPES = {
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
}
_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)


class KeysFileError(Exception):
    """The keys file is damaged, or a key cannot be added."""


class RegisteredKey(NamedTuple):
    """One line of the keys file."""

    user: str
    public_key: object
    fingerprint: str
    openssh_line: str

    @property
    def key_type(self):
        """The OpenSSH key type, e.g. ``ssh-ed25519``."""
        return self.openssh_line.split()[0]

    @property
    def comment(self):
        """The key's comment (often ``user@host``), or ''."""
        parts = self.openssh_line.split(None, 2)
        return parts[2] if len(parts) == 3 else ""


def check_supported(public_key):
    """Raise ValueError unless ``public_key`` is Ed25519, ECDSA P-256/384/521 or RSA >= 2048."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if isinstance(public_key.curve, _CURVES):
            return
        raise ValueError(f"unsupported ECDSA curve {public_key.curve.name}")
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size >= MIN_RSA_BITS:
            return
        raise ValueError(
            f"RSA key of {public_key.key_size} bits is too short (at least {MIN_RSA_BITS})"
        )
    raise ValueError("unsupported key type (use Ed25519, ECDSA or RSA)")


def parse_openssh_line(line):
    """Parse ``type base64 [comment]``; return ``(public_key, canonical_line)``.

    Raises ValueError for anything but one supported, well-formed key.
    """
    parts = line.split(None, 2)
    if len(parts) < 2:
        raise ValueError("expected an OpenSSH public key: type base64 [comment]")
    key_type, body = parts[0], parts[1]
    if key_type not in _SSH_TYPES:
        if key_type.startswith(("ssh-", "ecdsa-", "sk-")):
            raise ValueError(
                f"unsupported key type {key_type!r} (use Ed25519, ECDSA or RSA >= "
                f"{MIN_RSA_BITS} bits)"
            )
        raise ValueError("not an OpenSSH public key line nor a PEM public key")
    try:
        base64.b64decode(body, validate=True)
        public_key = serialization.load_ssh_public_key(f"{key_type} {body}".encode("ascii"))
    except (ValueError, binascii.Error, UnicodeError, UnsupportedAlgorithm):
        raise ValueError(f"malformed {key_type} public key") from None
    check_supported(public_key)
    comment = " ".join(parts[2].split()) if len(parts) == 3 else ""
    return public_key, _openssh_line(public_key, comment)


def clean_comment(text):
    """``text`` as a key comment: one line, control characters and runs of blanks as
    single spaces, without leading or trailing blanks."""
    return " ".join("".join(" " if ch.isspace() or not ch.isprintable() else ch for ch in text).split())


def _openssh_line(public_key, comment):
    line = public_key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode("ascii")
    return f"{line} {comment}" if comment else line


def parse_public_key(data):
    """Turn an OpenSSH public key line or a PEM public key (SubjectPublicKeyInfo or
    PKCS#1 ``RSA PUBLIC KEY``) into ``(public_key, openssh_line)``.

    ``data`` is bytes or str. Raises ValueError for anything else, for more than one key,
    and for unsupported types.
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeError:
            raise ValueError("the public key is not text (OpenSSH or PEM)") from None
    text = data.strip()
    if text.startswith("-----BEGIN"):
        if "PRIVATE KEY-----" in text.splitlines()[0]:
            raise ValueError("this is a private key: give the public key (e.g. the .pub file)")
        try:
            public_key = serialization.load_pem_public_key(text.encode("ascii"))
        except (ValueError, UnicodeError, UnsupportedAlgorithm):
            raise ValueError("malformed PEM public key") from None
        check_supported(public_key)
        return public_key, _openssh_line(public_key, "")
    lines = [line for line in text.splitlines() if not is_blank_or_comment(line)]
    if len(lines) != 1:
        raise ValueError(
            "expected exactly one public key" if lines else "no public key found"
        )
    return parse_openssh_line(lines[0].strip())


class KeysFile:
    """The keys file at ``path``: read (cached by file identity) and edit."""

    def __init__(self, path):
        self.path = path
        self._store = CachedFile(path, self._parse)

    def _parse(self, text):
        keys = []
        seen = {}
        for number, line in enumerate(text.splitlines(), 1):
            if is_blank_or_comment(line):
                continue
            try:
                key = self._parse_line(line)
            except ValueError as error:
                raise KeysFileError(f"{self.path}, line {number}: {error}") from None
            if key.fingerprint in seen:
                raise KeysFileError(
                    f"{self.path}, line {number}: key {key.fingerprint} already listed on "
                    f"line {seen[key.fingerprint]}"
                )
            seen[key.fingerprint] = number
            keys.append(key)
        return keys

    @staticmethod
    def _parse_line(line):
        parts = line.strip().split(None, 1)
        if len(parts) != 2:
            raise ValueError("expected: username <OpenSSH public key>")
        user = validate_username(parts[0])
        public_key, openssh_line = parse_openssh_line(parts[1])
        return RegisteredKey(user, public_key, fingerprint(public_key), openssh_line)

    def load(self):
        """Return the registered keys as a list of :class:`RegisteredKey`, in file order.

        A missing file has none. Raises :class:`KeysFileError` naming the file and line
        of a malformed entry.
        """
        return self._store.read()

    def list(self):
        """Same as :meth:`load`: every registered key."""
        return list(self.load())

    def add(self, user, key_bytes, comment=None):
        """Register the public key ``key_bytes`` (OpenSSH line or PEM) for ``user``.

        ``comment``, when given, replaces the key's own comment (one line; control
        characters and runs of blanks become single spaces). Returns the new
        :class:`RegisteredKey`. Refuses a key already registered (for any user: a key
        must name one user) and unsupported key types.
        """
        try:
            validate_username(user)
            public_key, openssh_line = parse_public_key(key_bytes)
        except ValueError as error:
            raise KeysFileError(str(error)) from None
        if comment is not None:
            openssh_line = _openssh_line(public_key, clean_comment(comment))
        key = RegisteredKey(user, public_key, fingerprint(public_key), openssh_line)

        def edit(text):
            for existing in self._parse(text):
                if existing.fingerprint == key.fingerprint:
                    raise KeysFileError(
                        f"key {key.fingerprint} is already registered for user "
                        f"{existing.user!r}"
                    )
            lines = text.splitlines()
            lines.append(f"{user} {openssh_line}")
            return join_lines(lines), key

        return self._store.update(edit)

    def remove(self, fingerprint_or_user, user=None):
        """Remove the key with this fingerprint (``SHA256:...``), or every key of this
        user; return how many were removed. With ``user``, a fingerprint's key is removed
        only when it is that user's."""
        if fingerprint_or_user.startswith("SHA256:"):
            def matches(key):
                return key.fingerprint == fingerprint_or_user and user in (None, key.user)
        else:
            def matches(key):
                return key.user == fingerprint_or_user

        def edit(text):
            self._parse(text)
            lines = []
            removed = 0
            for line in text.splitlines():
                if not is_blank_or_comment(line) and matches(self._parse_line(line)):
                    removed += 1
                    continue
                lines.append(line)
            return join_lines(lines), removed

        return self._store.update(edit)
