"""``rpc/settings``: the public keys of ``rpc/auth_ssl``, managed by signed-in users.

Actions (``{"action": ...}``), each needing a signed-in user (limited or full):

``list_ssl_checksums``
    ``{"sha256_keys": [...], "md5_keys": [...]}``: every key of the keys file (the keys
    this daemon accepts), in file order, by ``SHA256:`` fingerprint and by
    ``base64(md5(public key PEM))`` (:mod:`sysadmd.protocol.keydigests`). Bridges ask it
    to pair clients with servers; sysadmd bridges read ``sha256_keys``, original ones
    ``md5_keys``.
``register_ssl_cert {"pub_key", "nickname"?, "email"?}``
    Registers a key for the signed-in user. ``pub_key`` is a PEM public key, an OpenSSH
    public key line, or the base64 of a PEM key (what the original Qt client sends).
    ``nickname`` and ``email`` become the key's comment in the keys file,
    ``nickname <email>``. Answers ``{"user", "fingerprint"}``; registering a key the
    user already has changes nothing; a key of another user is refused (409).
``list_ssl_certs {"user"?}``
    ``{"<user>": {"<base64 of the key's PEM>": "Nickname: ...\\nEmail: ...\\nFingerprint:
    SHA256:...\\nType: ..."}}``: the shape the original server answered and the Qt
    client's key page reads (it shows the text and takes the nickname from it). Own keys;
    full users may name another ``user``. A user without keys is left out (``{}``).
``revoke_ssl_cert {"pub_key", "user"?}``
    Removes one key of ``user`` (default: the signed-in user; another user's only for
    full users, 403 otherwise). ``pub_key`` is anything ``register_ssl_cert`` takes, the
    key name ``list_ssl_certs`` gives, or a ``SHA256:`` fingerprint. Answers
    ``{"user", "fingerprint"}``; 404 when that user has no such key.

The keys file is read and rewritten (atomically, under its lock, see
:class:`~sysadmd.auth.keys_file.KeysFile`) in a thread: the lock may be held by a
running ``sysadmd-admin``, which must not stall the reactor.
"""

import base64
import binascii
import re

from twisted.internet.threads import deferToThreadPool

from sysadmd.auth import policy
from sysadmd.auth.keys_file import (
    KeysFileError,
    clean_comment,
    fingerprint,
    parse_public_key,
)
from sysadmd.auth.users_file import validate_username
from sysadmd.protocol.envelope import RequestError
from sysadmd.protocol.keydigests import MD5_KEYS, SHA256_KEYS, md5_key, public_pem
from sysadmd.util.log import Logger

ACTIONS = ("list_ssl_checksums", "register_ssl_cert", "list_ssl_certs", "revoke_ssl_cert")
# Every action needs a signed-in user; who may touch which keys is checked per request.
ACCESS = {action: policy.LIMITED for action in ACTIONS}

# Bounds on what a client may store in the keys file's comments.
MAX_LABEL = 200
MAX_KEY_TEXT = 16 * 1024

_FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")
_COMMENT = re.compile(r"^(?P<nickname>.*?)\s*<(?P<email>[^<>]*)>$")


def checksums(keys):
    """The ``list_ssl_checksums`` answer for the :class:`KeysFile` ``keys`` (blocking)."""
    registered = keys.load()
    return {
        SHA256_KEYS: [key.fingerprint for key in registered],
        MD5_KEYS: [md5_key(key.public_key) for key in registered],
    }


def key_name(public_key):
    """The name ``list_ssl_certs`` gives a key: the base64 of its public PEM, as the
    original Qt client registers it (``QSslKey::toPem().toBase64()``)."""
    return base64.b64encode(public_pem(public_key)).decode("ascii")


def key_text(value):
    """The key text (PEM or OpenSSH line) in a submitted ``pub_key``: the value itself,
    or the PEM its base64 holds. Raises RequestError 400."""
    if not isinstance(value, str) or not value.strip():
        raise RequestError(400, '"pub_key" must be a public key (PEM, OpenSSH, or base64 of a PEM key).')
    if len(value) > MAX_KEY_TEXT:
        raise RequestError(400, f'"pub_key" is longer than {MAX_KEY_TEXT} characters.')
    text = value.strip()
    if text.startswith("-----BEGIN") or " " in text:
        return text
    try:
        decoded = base64.b64decode("".join(text.split()), validate=True).decode("ascii")
    except (binascii.Error, ValueError):
        decoded = ""
    if decoded.lstrip().startswith("-----BEGIN"):
        return decoded
    raise RequestError(400, '"pub_key" must be a public key (PEM, OpenSSH, or base64 of a PEM key).')


def _parse(value):
    try:
        return parse_public_key(key_text(value))
    except ValueError as e:
        raise RequestError(400, f"Cannot use this public key: {e}.") from None


def _label(args, name):
    value = args.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise RequestError(400, f'"{name}" must be a string.')
    value = clean_comment(value).replace("<", "").replace(">", "")
    if len(value) > MAX_LABEL:
        raise RequestError(400, f'"{name}" is longer than {MAX_LABEL} characters.')
    return value


def make_comment(nickname, email):
    """The keys file comment for a key registered with ``nickname`` and ``email``:
    ``nickname <email>``, ``nickname``, ``<email>``, or None (keep the key's own)."""
    if email:
        return f"{nickname} <{email}>".strip()
    return nickname or None


def split_comment(comment):
    """``(nickname, email)`` of a key comment written by :func:`make_comment` (any other
    comment is all nickname)."""
    match = _COMMENT.match(comment)
    if match:
        return match.group("nickname"), match.group("email")
    return comment, ""


def describe(key):
    """The text ``list_ssl_certs`` shows for a :class:`RegisteredKey`."""
    nickname, email = split_comment(key.comment)
    return (
        f"Nickname: {nickname}\nEmail: {email}\nFingerprint: {key.fingerprint}\n"
        f"Type: {key.key_type}"
    )


class KeySettings:
    """The ``rpc/settings`` call over the :class:`~sysadmd.auth.keys_file.KeysFile`
    ``keys``. The file work runs in the ``reactor``'s thread pool; without a reactor (a
    listing of the calls in a test) it runs inline."""

    log = Logger()

    def __init__(self, keys, reactor=None):
        self._keys = keys
        self._reactor = reactor

    def register(self, router):
        """Add ``rpc/settings`` to ``router``."""
        router.register("rpc", "settings", self.settings, ACCESS)

    def _in_thread(self, function, *args):
        if self._reactor is None:
            return function(*args)
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), function, *args)

    def settings(self, session, args):
        """Dispatch one ``rpc/settings`` request by its ``action``."""
        action = args.get("action") if isinstance(args, dict) else None
        if action not in ACTIONS:
            raise RequestError(
                404, f"Unknown settings action {action!r} (known: {', '.join(ACTIONS)})."
            )
        return getattr(self, action)(session, args)

    def _target(self, session, args):
        # The user whose keys a request is about: the caller's own unless a full user
        # names another.
        user = args.get("user")
        if user in (None, ""):
            return session.user
        if not isinstance(user, str):
            raise RequestError(400, '"user" must be a user name.')
        if user != session.user and session.access != policy.FULL:
            raise RequestError(403, "Only users with full access may manage other users' keys.")
        return user

    def list_ssl_checksums(self, session, args):
        """Every accepted key by SHA-256 fingerprint and by MD5 of its PEM."""
        return self._in_thread(self._checksums)

    def _checksums(self):
        try:
            return checksums(self._keys)
        except Exception:
            # A damaged keys file accepts no key, as rpc/auth_ssl then does.
            self.log.failure("cannot read the keys file {path}", path=self._keys.path)
            return {SHA256_KEYS: [], MD5_KEYS: []}

    def register_ssl_cert(self, session, args):
        """Register ``pub_key`` for the signed-in user."""
        try:
            validate_username(session.user)
        except ValueError:
            raise RequestError(400, f"Keys cannot be registered for the user name {session.user!r}.") from None
        public_key, openssh_line = _parse(args.get("pub_key"))
        comment = make_comment(_label(args, "nickname"), _label(args, "email"))
        return self._in_thread(
            self._add, session.user, public_key, openssh_line, comment, session.peer_host
        )

    def _add(self, user, public_key, openssh_line, comment, peer):
        wanted = fingerprint(public_key)
        for key in self._load():
            if key.fingerprint == wanted:
                if key.user == user:
                    return {"user": user, "fingerprint": wanted}
                raise RequestError(409, "This key is registered to another user.")
        try:
            # The canonical OpenSSH line keeps an OpenSSH key's own comment when no
            # nickname or email replaces it.
            key = self._keys.add(user, openssh_line, comment)
        except KeysFileError as e:
            if "already registered" in str(e):
                raise RequestError(409, "This key is registered to another user.") from None
            self.log.error("cannot register a key in {path}: {error}", path=self._keys.path, error=str(e))
            raise RequestError(500, "The keys file cannot be updated; the failure is logged.") from None
        self.log.info(
            "{user} registered key {fingerprint} from {peer}",
            user=user, fingerprint=key.fingerprint, peer=peer,
        )
        return {"user": user, "fingerprint": key.fingerprint}

    def list_ssl_certs(self, session, args):
        """The keys of the signed-in user (or, for a full user, of ``user``)."""
        user = self._target(session, args)
        return self._in_thread(self._list, user)

    def _list(self, user):
        mine = {key_name(key.public_key): describe(key) for key in self._load() if key.user == user}
        return {user: mine} if mine else {}

    def revoke_ssl_cert(self, session, args):
        """Remove one key of the signed-in user (or, for a full user, of ``user``)."""
        user = self._target(session, args)
        value = args.get("pub_key")
        if isinstance(value, str) and _FINGERPRINT.match(value.strip()):
            wanted = value.strip()
        else:
            wanted = fingerprint(_parse(value)[0])
        return self._in_thread(self._remove, user, wanted, session.user, session.peer_host)

    def _remove(self, user, wanted, by, peer):
        try:
            removed = self._keys.remove(wanted, user=user)
        except KeysFileError as e:
            self.log.error("cannot revoke a key in {path}: {error}", path=self._keys.path, error=str(e))
            raise RequestError(500, "The keys file cannot be updated; the failure is logged.") from None
        if not removed:
            raise RequestError(404, f"No such key is registered for {user!r}.")
        self.log.info(
            "{by} revoked key {fingerprint} of {user} from {peer}",
            by=by, fingerprint=wanted, user=user, peer=peer,
        )
        return {"user": user, "fingerprint": wanted}

    def _load(self):
        try:
            return self._keys.load()
        except KeysFileError as e:
            self.log.error("cannot read the keys file {path}: {error}", path=self._keys.path, error=str(e))
            raise RequestError(500, "The keys file cannot be read; the failure is logged.") from None
