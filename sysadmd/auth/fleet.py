"""``rpc/auth_fleet``: the machine's fleet agent signs in, as itself or as a local user.

The ``sysadm-fleet`` agent beside the daemon forwards requests of NATS users, each mapped
to a local user, and must act as that user here. It holds a key of ``[auth]
fleet_keys_file`` (``label <OpenSSH public key>`` lines, as the keys file; ``sysadmd-admin
fleet init`` writes one) and signs in with it in two stages, as ``rpc/auth_ssl`` does::

    stage 1  {}                                   -> {"test_string": ...}
    stage 2  {"signature": <base64>,              -> [token, lifetime]
              "user": U (optional),
              "access": "limited" | "full" (optional, default limited)}

The signature covers :func:`sysadmd.protocol.fleetauth.signed_text` (the scheme, the test
string, the user, the access), so neither the user nor the access can be changed after
signing. Without a user the session is ``fleet:<label>`` with limited access (enough to
follow the events). With one, the password backends must know the user
(``role_of``); the access granted is the lower of the one asked for and the user's own,
so a limited user never gets full access through the fleet.

Only keys of the fleet keys file sign in here, never those of ``[auth] keys_file``, and
fleet keys do not work with ``rpc/auth_ssl``. Stage 2 is a guess like any login (a
failure slot, the failure delay, the ban count; every refusal the same 401); a malformed
request is a 400 and takes no slot. A relayed session (through a bridge) is refused with
403: the agent talks to its own machine's daemon directly.
"""

from twisted.internet import defer

from sysadmd.auth import policy
from sysadmd.protocol.envelope import RequestError
from sysadmd.protocol.fleetauth import ACCESS_LEVELS, signed_text

# A session signed in without a user is named after its key: no local user name can
# contain ':' (neither users_file names nor system accounts), so it is no one's.
KEY_USER_PREFIX = "fleet:"
MAX_USER_LENGTH = 256
MALFORMED = (
    'args must be empty (stage 1) or {"signature": <base64>, "user": <name> (optional), '
    '"access": "limited" or "full" (optional)}.'
)
RELAYED = "rpc/auth_fleet is for this machine's own fleet agent, not through a bridge."


def lower_access(first, second):
    """The lower of two access levels ('limited' or 'full')."""
    return policy.LIMITED if policy.LIMITED in (first, second) else policy.FULL


def parse_stage2(args):
    """``(signature, user, access)`` of stage 2's ``args``, ``user`` None when absent or
    ''; raises RequestError 400 for anything malformed."""
    if not isinstance(args, dict) or not isinstance(args.get("signature"), str):
        raise RequestError(400, MALFORMED)
    user = args.get("user")
    if user == "":
        user = None  # signed as '' either way
    if user is not None and not (
        isinstance(user, str) and len(user) <= MAX_USER_LENGTH and user.isprintable()
    ):
        raise RequestError(400, '"user" must be a user name (printable, at most 256 characters).')
    access = args.get("access")
    if access is None:
        access = policy.LIMITED
    if access not in ACCESS_LEVELS:
        raise RequestError(400, '"access" must be "limited" or "full".')
    return args["signature"], user, access


class FleetSignIn:
    """``rpc/auth_fleet`` over an :class:`~sysadmd.auth.handlers.Authenticator` (its
    challenges, guesses, backends and grants) and ``keys``, the fleet keys file (a
    :class:`~sysadmd.auth.keys_file.KeysFile`, or None: no key is accepted)."""

    def __init__(self, authenticator, keys):
        self._auth = authenticator
        self.keys = keys

    def auth_fleet(self, session, args):
        """Stage 1 (empty args) -> ``{"test_string"}``; stage 2 -> ``[token, lifetime]``."""
        if session.challenge_binding is not None:
            # A relayed client's challenges are bound to the relay, which this text is not.
            raise RequestError(403, RELAYED)
        if args in (None, "", [], {}):
            return {"test_string": self._auth.new_challenge(session)}
        return self._verify(session, args)

    @defer.inlineCallbacks
    def _verify(self, session, args):
        user, (signer, access), attempt = yield self._auth.guess(
            session, "fleet key", self._check, session, args
        )
        attempt.succeeded()
        return self._auth.grant(
            session, user, access, f"fleet key {signer.fingerprint}", signer.fingerprint
        )

    @defer.inlineCallbacks
    def _check(self, session, args):
        # Fires with (user, (signer, access)), or (user or None, None) when refused.
        encoded, user, access = parse_stage2(args)
        test_string = self._auth.take_challenge(session)
        signer = None
        if test_string is not None:
            signer = self._auth.find_key(
                self.keys, signed_text(test_string, user, access), encoded, "auth_fleet"
            )
        if signer is None:
            return user, None
        if user is None:
            return KEY_USER_PREFIX + signer.user, (signer, policy.LIMITED)
        role = yield self._auth.role_of(user)
        if role is None:
            return user, None
        return user, (signer, lower_access(access, role))
