"""``rpc/auth``, ``rpc/auth_token``, ``rpc/auth_ssl``, ``rpc/auth_clear`` and (in
:mod:`sysadmd.auth.fleet`) ``rpc/auth_fleet``.

Every guess (a password, a token, a signed challenge; REST Basic and Bearer alike) takes a
failure slot of the client's address before it is checked (see
:mod:`sysadmd.auth.bans`): while the address is banned, or its failures and guesses in
flight reach ``max_failures``, it gets 429 without any check. Password checks run through
the daemon-wide :class:`~sysadmd.auth.limits.CheckLimiter` (429 when its queue is full).
Every failure answers the same 401 whatever the cause, no sooner than ``failure_delay``
seconds after the request. A malformed request (400) is not a guess and takes no slot.
Nothing secret is logged.

``rpc/auth`` with an empty password is a local sign-in when ``[auth] local_login`` is on
and the connection is loopback TCP (see :mod:`sysadmd.auth.local`): a guess like any
other, whose check is the socket table instead of a password.
"""

import base64
import binascii
import secrets

from twisted.internet import defer, task

from sysadmd.auth import policy
from sysadmd.auth.fleet import FleetSignIn
from sysadmd.auth.limits import CheckLimiter, ChecksBusy
from sysadmd.auth.local import session_ends
from sysadmd.protocol.envelope import RequestError
from sysadmd.util.log import Logger

CHALLENGE_SECONDS = 30.0
# rpc/auth_ssl's test string: 144 random bytes as 192 URL-safe base64 characters. The
# original Qt client writes the RSA block into a buffer twice the test string's length
# (a 2048-bit key's 256-byte block overflows it below 128 characters), and PKCS#1 v1.5
# signs at most 245 bytes with such a key.
CHALLENGE_BYTES = 144
FAILED = "Authentication failed."
BANNED = "Too many failed logins from this address; try again later."
BUSY = "Too many logins in progress; try again later."


class Authenticator:
    """The authentication calls, sharing the token store, ban list and backends.

    ``backends`` are :class:`sysadmd.interfaces.IPasswordBackend` providers tried in
    order; ``keys`` is a :class:`sysadmd.auth.keys_file.KeysFile` (or None);
    ``find_signer(keys, test_string, signature)`` picks the key that signed;
    ``limiter`` (a :class:`~sysadmd.auth.limits.CheckLimiter`, by default one with the
    default bounds) runs the backends' password checks and local sign-in lookups;
    ``local`` (a :class:`~sysadmd.auth.local.LocalLogin`, or None when ``[auth]
    local_login`` is off) decides empty-password sign-ins on loopback connections;
    ``fleet_keys`` (a :class:`~sysadmd.auth.keys_file.KeysFile`, or None for none) holds
    the keys ``rpc/auth_fleet`` accepts (:class:`~sysadmd.auth.fleet.FleetSignIn`).
    """

    log = Logger()

    def __init__(
        self, clock, tokens, bans, backends, keys, find_signer, failure_delay, limiter=None,
        local=None, fleet_keys=None,
    ):
        self._clock = clock
        self._tokens = tokens
        self._bans = bans
        self._backends = list(backends)
        self._keys = keys
        self._find_signer = find_signer
        self._failure_delay = failure_delay
        self.checks = limiter if limiter is not None else CheckLimiter()
        self._local = local
        self.fleet = FleetSignIn(self, fleet_keys)
        self.failures = 0

    CALLS = ("auth", "auth_token", "auth_ssl", "auth_clear", "auth_fleet")

    def register(self, router, calls=CALLS):
        """Add the auth calls named in ``calls`` (default: all five) to ``router``."""
        for name in calls:
            # Signing in (and out) is what an unauthenticated client may do.
            router.register("rpc", name, getattr(self, name), policy.PUBLIC)

    def _check_ban(self, session):
        if self._bans.is_banned(session.peer_host):
            raise RequestError(429, BANNED)

    @defer.inlineCallbacks
    def guess(self, session, method, check, *args):
        """Check one guess of ``session``'s client.

        A slot is reserved first (429 when there is none). ``check(*args)`` fires with
        ``(user, result)``, ``result`` None for a wrong guess, which stays counted and
        answers 401 no sooner than the failure delay; an error of ``check`` (400 for a
        malformed request, 429 when the checks are busy) releases the slot. Fires with
        ``(user, result, attempt)``; the caller settles ``attempt``.
        """
        started = self._clock.seconds()
        attempt = self._bans.reserve(session.peer_host)
        if attempt is None:
            raise RequestError(429, BANNED)
        try:
            user, result = yield check(*args)
        except BaseException:
            attempt.release()
            raise
        if result is None:
            yield self._fail(session, attempt, started, method, user)
        return user, result, attempt

    def grant(self, session, user, access, method, key_fingerprint=None):
        """Sign ``session`` in as ``user`` with ``access``, log it (``method`` says how),
        and return the reply of every sign-in: ``[token, lifetime]``."""
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
    def _fail(self, session, attempt, started, method, user=None):
        self.failures += 1
        banned = attempt.failed()
        self.log.warn(
            "failed {method} authentication from {peer}",
            method=method,
            peer=session.peer_host,
            user=user,
        )
        if banned:
            self.log.warn(
                "banned {key} after repeated failed logins",
                key=attempt.key,
                peer=session.peer_host,
            )
        remaining = started + self._failure_delay - self._clock.seconds()
        if remaining > 0:
            yield task.deferLater(self._clock, remaining, lambda: None)
        raise RequestError(401, FAILED)

    @defer.inlineCallbacks
    def auth(self, session, args):
        """``{"username", "password"}`` -> ``[token, lifetime]``; an empty password is a
        local sign-in where one is possible (see :meth:`_local_ends`)."""
        ends = self._local_ends(session, args)
        if ends is not None:
            user, access, attempt = yield self.guess(
                session, "local", self._local_check, ends, args["username"]
            )
            attempt.succeeded()
            return self.grant(session, user, access, "local socket owner")
        user, access, attempt = yield self.guess(session, "password", self._password, args)
        attempt.succeeded()
        return self.grant(session, user, access, "password")

    def _local_ends(self, session, args):
        # A local sign-in: local_login on, a well-formed request with an empty password,
        # and the session's own connection is loopback TCP. Anything else takes the
        # password path, where an empty password is an ordinary failure.
        if self._local is None or not isinstance(args, dict) or args.get("password") != "":
            return None
        username = args.get("username")
        if not isinstance(username, str) or not username or len(username) > 256:
            return None
        return session_ends(session)

    def _local_check(self, ends, username):
        try:
            checked = self.checks.run(self._local.check, ends, username)
        except ChecksBusy:
            raise RequestError(429, BUSY) from None
        checked.addErrback(self._local_failed)
        return checked.addCallback(lambda access: (username, access))

    def _local_failed(self, failure):
        # An unreadable socket table is a refusal (401), not an internal error.
        self.log.failure("local sign-in lookup failed", failure)
        return None

    def _password(self, args):
        if not isinstance(args, dict):
            raise RequestError(400, 'args must be {"username": ..., "password": ...}.')
        username, password = args.get("username"), args.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise RequestError(400, '"username" and "password" must be strings.')
        if not (username and password and len(username) <= 256 and len(password) <= 4096):
            return defer.succeed((username, None))
        try:
            checked = self.checks.run(self._ask_backends, username, password)
        except ChecksBusy:
            raise RequestError(429, BUSY) from None
        return checked.addCallback(lambda access: (username, access))

    @defer.inlineCallbacks
    def _ask_backends(self, username, password):
        for backend in self._backends:
            try:
                access = yield backend.authenticate(username, password)
            except Exception:
                self.log.failure("auth backend {backend} failed", backend=backend.name)
                access = None
            if access is not None:
                return access
        return None

    @defer.inlineCallbacks
    def check_token(self, session, token):
        """The live grant of ``token`` for ``session``'s client, as a guess: the same
        slot, failure delay, ban count and answers (401, 429) as a password; a token that
        is not a string is a malformed request (400). Used by rpc/auth_token and REST
        Bearer; the caller attaches the grant to the session."""
        _, grant, attempt = yield self.guess(session, "token", self._token, token)
        # A token proves an earlier login, not a password: the failures stay counted.
        attempt.release()
        return grant

    def _token(self, token):
        if not isinstance(token, str):
            raise RequestError(400, 'args must be {"token": "<token>"}.')
        grant = self._tokens.lookup(token)
        return defer.succeed((grant.user if grant is not None else None, grant))

    @defer.inlineCallbacks
    def auth_token(self, session, args):
        """``{"token"}`` -> ``[token, lifetime]`` for a live token."""
        token = args.get("token") if isinstance(args, dict) else None
        grant = yield self.check_token(session, token)
        session.sign_in(grant)
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
        if args in (None, "", [], {}):
            reply = {"test_string": self.new_challenge(session)}
            if session.challenge_binding is not None:
                reply.update(session.challenge_binding.describe())
            return reply
        return self._verify_challenge(session, args)

    def auth_fleet(self, session, args):
        """``rpc/auth_fleet``: see :meth:`sysadmd.auth.fleet.FleetSignIn.auth_fleet`."""
        return self.fleet.auth_fleet(session, args)

    def new_challenge(self, session):
        """Stage 1 of a key sign-in: a new random test string for ``session``, valid for
        ``CHALLENGE_SECONDS`` and one attempt (429 while its address is banned)."""
        self._check_ban(session)
        test_string = secrets.token_urlsafe(CHALLENGE_BYTES)
        session.challenge = (test_string, self._clock.seconds() + CHALLENGE_SECONDS)
        return test_string

    def take_challenge(self, session):
        """The test string of ``session``'s live challenge, or None; either way the
        challenge is used up (one attempt each)."""
        challenge, session.challenge = session.challenge, None
        if challenge is None or challenge[1] <= self._clock.seconds():
            return None
        return challenge[0]

    def find_key(self, keys, signed, encoded, what):
        """The key of ``keys`` (a :class:`~sysadmd.auth.keys_file.KeysFile`, or None) that
        signed ``signed`` (str) with ``encoded`` (the base64 signature), or None. A keys
        file that cannot be read accepts no key (and the failure is logged, naming
        ``what`` asked)."""
        if keys is None:
            return None
        try:
            signature = base64.b64decode(encoded, validate=False)
        except (binascii.Error, ValueError):
            return None
        if not signature:
            return None
        try:
            registered = keys.load()
        except Exception:
            self.log.failure("cannot read the keys file for {what}", what=what)
            return None
        return self._find_signer(registered, signed, signature)

    @defer.inlineCallbacks
    def role_of(self, user):
        """The access the first backend that knows ``user`` gives them, or None."""
        for backend in self._backends:
            access = yield backend.role_of(user)
            if access is not None:
                return access
        return None

    @defer.inlineCallbacks
    def _verify_challenge(self, session, args):
        (user, (signer, access), attempt) = yield self.guess(
            session, "key", self._signed_by, session, args
        )
        attempt.succeeded()
        return self.grant(session, user, access, f"key {signer.fingerprint}", signer.fingerprint)

    @defer.inlineCallbacks
    def _signed_by(self, session, args):
        # Fires with (user, (signer, access)), or (user or None, None) when refused.
        if not isinstance(args, dict) or not isinstance(args.get("encrypted_string"), str):
            raise RequestError(400, 'args must be empty (stage 1) or {"encrypted_string": <base64>}.')
        signed = self.take_challenge(session)
        signer = None
        if signed is not None:
            if session.challenge_binding is not None:
                signed = session.challenge_binding.text(signed)
            signer = self.find_key(self._keys, signed, args["encrypted_string"], "auth_ssl")
        access = (yield self.role_of(signer.user)) if signer is not None else None
        user = signer.user if signer is not None else None
        return user, ((signer, access) if access is not None else None)
