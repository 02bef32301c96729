"""``rpc/auth``, ``rpc/auth_token``, ``rpc/auth_ssl`` and ``rpc/auth_clear``.

Every failure answers the same 401 whatever the cause, no sooner than ``failure_delay``
seconds after the request, and counts toward a ban of the client's address. While an
address is banned its auth calls get 429 without any check. Nothing secret is logged.
"""

import base64
import binascii
import secrets

from twisted.internet import defer, task
from twisted.logger import Logger

from sysadmd.auth import policy
from sysadmd.protocol.envelope import RequestError

CHALLENGE_SECONDS = 30.0
FAILED = "Authentication failed."


class Authenticator:
    """The authentication calls, sharing the token store, ban list and backends.

    ``backends`` are :class:`sysadmd.interfaces.IPasswordBackend` providers tried in
    order; ``keys`` is a :class:`sysadmd.auth.keys_file.KeysFile` (or None);
    ``find_signer(keys, test_string, signature)`` picks the key that signed.
    """

    log = Logger()

    def __init__(self, clock, tokens, bans, backends, keys, find_signer, failure_delay):
        self._clock = clock
        self._tokens = tokens
        self._bans = bans
        self._backends = list(backends)
        self._keys = keys
        self._find_signer = find_signer
        self._failure_delay = failure_delay
        self.failures = 0

    CALLS = ("auth", "auth_token", "auth_ssl", "auth_clear")

    def register(self, router, calls=CALLS):
        """Add the auth calls named in ``calls`` (default: all four) to ``router``."""
        for name in calls:
            # Signing in (and out) is what an unauthenticated client may do.
            router.register("rpc", name, getattr(self, name), policy.PUBLIC)

    def _check_ban(self, session):
        if self._bans.is_banned(session.peer_host):
            raise RequestError(429, "Too many failed logins from this address; try again later.")

    def _grant(self, session, user, access, method, key_fingerprint=None):
        self._bans.record_success(session.peer_host)
        grant = self._tokens.issue(user, access)
        session.sign_in(grant, key_fingerprint)
        self.log.info(
            "{user} authenticated from {peer} by {method} with {access} access",
            user=user,
            peer=session.peer_host,
            method=method,
            access=access,
        )
        return [grant.token, int(self._tokens.ttl)]

    @defer.inlineCallbacks
    def _fail(self, session, started, method, user=None):
        self.failures += 1
        banned = self._bans.record_failure(session.peer_host)
        self.log.warn(
            "failed {method} authentication from {peer}",
            method=method,
            peer=session.peer_host,
            user=user,
        )
        if banned:
            self.log.warn("banned {peer} after repeated failed logins", peer=session.peer_host)
        remaining = started + self._failure_delay - self._clock.seconds()
        if remaining > 0:
            yield task.deferLater(self._clock, remaining, lambda: None)
        raise RequestError(401, FAILED)

    @defer.inlineCallbacks
    def auth(self, session, args):
        """``{"username", "password"}`` -> ``[token, lifetime]``."""
        self._check_ban(session)
        started = self._clock.seconds()
        if not isinstance(args, dict):
            raise RequestError(400, 'args must be {"username": ..., "password": ...}.')
        username, password = args.get("username"), args.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise RequestError(400, '"username" and "password" must be strings.')
        access = None
        if username and password and len(username) <= 256 and len(password) <= 4096:
            for backend in self._backends:
                try:
                    access = yield backend.authenticate(username, password)
                except Exception:
                    self.log.failure("auth backend {backend} failed", backend=backend.name)
                    access = None
                if access is not None:
                    break
        if access is None:
            yield self._fail(session, started, "password", user=username)
        return self._grant(session, username, access, "password")

    @defer.inlineCallbacks
    def auth_token(self, session, args):
        """``{"token"}`` -> ``[token, lifetime]`` for a live token."""
        self._check_ban(session)
        started = self._clock.seconds()
        token = args.get("token") if isinstance(args, dict) else None
        if not isinstance(token, str):
            raise RequestError(400, 'args must be {"token": "<token>"}.')
        grant = self._tokens.lookup(token)
        if grant is None:
            yield self._fail(session, started, "token")
        session.sign_in(grant)
        self._bans.record_success(session.peer_host)
        return [grant.token, int(self._tokens.ttl)]

    def auth_clear(self, session, args):
        """Revoke the session's token and sign out."""
        grant = session.grant
        session.sign_out()  # first, so only the other sessions sharing the token are told
        if grant is not None:
            self.log.info("{user} signed out from {peer}", user=grant.user, peer=session.peer_host)
            self._tokens.revoke(grant)
        return {}

    def auth_ssl(self, session, args):
        """Stage 1 (empty args) -> ``{"test_string"}``; stage 2 ``{"encrypted_string"}``
        -> ``[token, lifetime]``."""
        self._check_ban(session)
        if args in (None, "", [], {}):
            test_string = secrets.token_urlsafe(36)
            session.challenge = (test_string, self._clock.seconds() + CHALLENGE_SECONDS)
            reply = {"test_string": test_string}
            if session.challenge_binding is not None:
                reply.update(session.challenge_binding.describe())
            return reply
        if not isinstance(args, dict) or not isinstance(args.get("encrypted_string"), str):
            raise RequestError(400, 'args must be empty (stage 1) or {"encrypted_string": <base64>}.')
        return self._verify_challenge(session, args["encrypted_string"])

    @defer.inlineCallbacks
    def _verify_challenge(self, session, encoded):
        started = self._clock.seconds()
        challenge, session.challenge = session.challenge, None  # usable once
        signer = None
        if challenge is not None and challenge[1] > started and self._keys is not None:
            try:
                signature = base64.b64decode(encoded, validate=False)
            except (binascii.Error, ValueError):
                signature = b""
            if signature:
                try:
                    keys = self._keys.load()
                except Exception:
                    self.log.failure("cannot read the keys file for auth_ssl")
                    keys = []
                signed = challenge[0]
                if session.challenge_binding is not None:
                    signed = session.challenge_binding.text(signed)
                signer = self._find_signer(keys, signed, signature)
        access = None
        if signer is not None:
            for backend in self._backends:
                access = yield backend.role_of(signer.user)
                if access is not None:
                    break
        if access is None:
            yield self._fail(session, started, "key", user=signer.user if signer else None)
        return self._grant(
            session, signer.user, access, f"key {signer.fingerprint}", signer.fingerprint
        )
