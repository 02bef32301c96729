"""Signing in: a cached token, a private key (``rpc/auth_ssl``), or a password.

:func:`authenticate` tries, in order:

1. the token in memory (from an earlier sign-in of this run) or in ``--token-file``, with
   ``rpc/auth_token``; a refused token (401) falls through to the next way;
2. ``--key`` with ``rpc/auth_ssl``: the daemon's test string (through a bridge, bound to
   the pinned server and the encrypted tunnel's handshake, see
   ``sysadmd.client.binding``), signed as the daemon checks it (Ed25519; ECDSA, DER,
   SHA-256/384/512 by curve; RSA PKCS#1 v1.5 with SHA-256);
3. the password, from ``SYSADM_PASSWORD`` or a prompt, with ``rpc/auth``.

The new token is kept in memory and, with ``--token-file``, written there (mode 0600,
replaced atomically) as ``{"url", "user", "token"}``; a cached token is offered only to
the URL and user it was issued for.
"""

import base64
import getpass
import json
import os
import sys

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from twisted.internet import defer, threads
from twisted.logger import Logger

from sysadmd.client.errors import ClientError, ErrorReply
from sysadmd.protocol.keysign import CURVE_HASHES, sign

PASSWORD_ENV = "SYSADM_PASSWORD"
PASSPHRASE_ENV = "SYSADM_KEY_PASSPHRASE"


log = Logger()


class AuthFailed(ClientError):
    """The daemon (or bridge) refused the credentials."""


# Keys


def load_private_key(path, passphrase=None, ask_passphrase=None):
    """The private key in ``path``: OpenSSH (``BEGIN OPENSSH PRIVATE KEY``) or PEM
    (PKCS#8, PKCS#1, SEC1). An encrypted key uses ``passphrase``, else
    ``ask_passphrase()``'s answer. Raises :class:`ClientError` for anything unusable."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as e:
        raise ClientError(f"--key: cannot read {path}: {e.strerror}") from None
    loader = (
        serialization.load_ssh_private_key
        if b"BEGIN OPENSSH PRIVATE KEY" in data
        else serialization.load_pem_private_key
    )
    password = passphrase.encode("utf-8") if passphrase is not None else None
    try:
        try:
            key = loader(data, password=password)
        except TypeError:
            if password is not None or ask_passphrase is None:
                raise
            key = loader(data, password=ask_passphrase().encode("utf-8"))
    except TypeError:
        raise ClientError(f"--key: {path} is encrypted; give its passphrase in {PASSPHRASE_ENV}") from None
    except (ValueError, UnsupportedAlgorithm) as e:
        raise ClientError(f"--key: {path} is not a usable private key ({_first_line(e)})") from None
    check_key(key, path)
    return key


def _first_line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def check_key(key, path="the key"):
    """Raise :class:`ClientError` unless ``key`` is a kind the daemon accepts."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name in CURVE_HASHES:
            return
        raise ClientError(f"--key: {path}: the ECDSA curve {key.curve.name} is not accepted (P-256, P-384, P-521)")
    if isinstance(key, rsa.RSAPrivateKey):
        return
    raise ClientError(f"--key: {path}: only Ed25519, ECDSA and RSA keys are accepted")


def sign_challenge(key, test_string):
    """``encrypted_string`` for ``rpc/auth_ssl``: the base64 signature of the UTF-8 test
    string, in the form the daemon checks for this kind of key."""
    try:
        signature = sign(key, test_string.encode("utf-8"))
    except ValueError:
        raise ClientError("--key: only Ed25519, ECDSA and RSA keys are accepted") from None
    return base64.b64encode(signature).decode("ascii")


# Token file


def read_token(path, url, user):
    """The cached token in ``path`` for ``url`` and ``user``, or None (no file, another
    URL or user, or unreadable). A file holding only a token is used for any URL."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text:
        return None
    if not text.startswith("{"):
        return text
    try:
        cached = json.loads(text)
    except ValueError:
        return None
    if not isinstance(cached, dict) or cached.get("url") != url or cached.get("user") != user:
        return None
    token = cached.get("token")
    return token if isinstance(token, str) and token else None


def write_token(path, url, user, token):
    """Write the token file: mode 0600 from the start, replaced atomically. Failures are
    a :class:`ClientError`."""
    directory = os.path.dirname(os.path.abspath(path))
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (json.dumps({"url": url, "user": user, "token": token}) + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError as e:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise ClientError(f"--token-file: cannot write {path}: {e.strerror}") from None


# Passwords


class PasswordSource:
    """The password: ``SYSADM_PASSWORD``, else a prompt on the terminal (asked once, in a
    thread so the reactor keeps running), else a :class:`ClientError`."""

    def __init__(self, reactor, user, environ=None, prompt=getpass.getpass, stdin=None):
        self._reactor = reactor
        self._user = user
        self._environ = os.environ if environ is None else environ
        self._prompt = prompt
        self._stdin = sys.stdin if stdin is None else stdin
        self._password = None

    def get(self):
        """A Deferred firing with the password."""
        if self._password is not None:
            return defer.succeed(self._password)
        if self._environ.get(PASSWORD_ENV):
            self._password = self._environ[PASSWORD_ENV]
            return defer.succeed(self._password)
        if not (self._stdin is not None and self._stdin.isatty()):
            return defer.fail(ClientError(
                f"no password for {self._user}: set {PASSWORD_ENV}, run on a terminal, "
                "or use --token-file or --key"
            ))
        d = threads.deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), self._prompt, f"Password for {self._user}: "
        )

        def keep(password):
            self._password = password
            return password

        return d.addCallback(keep)


# Signing in


class Credentials:
    """What :func:`authenticate` may use. ``passwords`` is a :class:`PasswordSource` (or
    anything with ``get()``); ``key`` a loaded private key; ``token_file`` a path; ``scope``
    the URL tokens are cached for."""

    def __init__(self, user, passwords=None, key=None, token_file=None, scope=""):
        self.user = user
        self.passwords = passwords
        self.key = key
        self.token_file = token_file
        self.scope = scope
        self.token = None

    def cached_token(self):
        """The token from this run, else the token file's."""
        if self.token is not None:
            return self.token
        if self.token_file:
            return read_token(self.token_file, self.scope, self.user)
        return None

    def remember(self, token):
        """Keep ``token`` (and write the token file)."""
        self.token = token
        if self.token_file:
            write_token(self.token_file, self.scope, self.user, token)


def _token_of(reply):
    if isinstance(reply, list) and reply and isinstance(reply[0], str):
        return reply[0], reply[1] if len(reply) > 1 and isinstance(reply[1], (int, float)) else None
    raise ClientError(f"unexpected answer to a sign-in: {reply!r}")


def _refused(error):
    return isinstance(error, ErrorReply) and error.code == 401


@defer.inlineCallbacks
def sign_in_with_key(session, key, who="the daemon"):
    """``rpc/auth_ssl`` in two steps; fires with ``(token, ttl)``.

    A session relayed by a bridge has a ``challenge_binding``: the signed text is then the
    test string bound to the pinned server and the tunnel's handshake, and the server's
    stage 1 must say it checks exactly that binding, else nothing is signed.
    """
    challenge = yield session.call("rpc", "auth_ssl", {})
    test_string = challenge.get("test_string") if isinstance(challenge, dict) else None
    if not isinstance(test_string, str):
        raise ClientError(f"{who} sent no test string for rpc/auth_ssl: {challenge!r}")
    binding = session.challenge_binding
    if binding is not None:
        binding.check(challenge.get("bind"))
        try:
            signed = binding.text(test_string)
        except ValueError:
            raise ClientError(f"{who} sent a test string that cannot be bound: {test_string!r}") from None
    else:
        signed = test_string
    try:
        reply = yield session.call("rpc", "auth_ssl", {"encrypted_string": sign_challenge(key, signed)})
    except ErrorReply as e:
        if _refused(e):
            raise AuthFailed(f"{who} refused the key (401 {e.reason}); is its public key registered?") from None
        raise
    return _token_of(reply)


@defer.inlineCallbacks
def authenticate(session, credentials):
    """Sign ``session`` in (see the module docstring); fires with ``(token, ttl)``."""
    token = credentials.cached_token()
    if token is not None:
        try:
            reply = yield session.call("rpc", "auth_token", {"token": token})
        except ErrorReply as e:
            if not _refused(e):
                raise
            log.debug("the cached token was refused; signing in again")
            credentials.token = None
        else:
            token, ttl = _token_of(reply)
            credentials.remember(token)
            return token, ttl
    if credentials.key is not None:
        token, ttl = yield sign_in_with_key(session, credentials.key)
    else:
        if credentials.passwords is None:
            raise ClientError(f"no way to sign in as {credentials.user}")
        password = yield credentials.passwords.get()
        try:
            reply = yield session.call("rpc", "auth", {"username": credentials.user, "password": password})
        except ErrorReply as e:
            if _refused(e):
                raise AuthFailed(
                    f"authentication failed for user {credentials.user!r} (401 {e.reason})"
                ) from None
            raise
        token, ttl = _token_of(reply)
    credentials.remember(token)
    return token, ttl
