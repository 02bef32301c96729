"""Session tokens: 256-bit random, kept only in memory, extended on every use.

Tokens are stored under their SHA-256 digest and compared with ``hmac.compare_digest``,
so neither the table lookup nor the comparison leaks the token through timing.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field


@dataclass(eq=False)
class Grant:
    """What a valid token stands for."""

    user: str
    access: str  # "full" or "limited"
    token: str = field(repr=False)
    expires: float = field(repr=False)
    _digest: bytes = field(repr=False, default=b"")
    # Called with the grant when it is revoked (not when it merely expires).
    revoke_listeners: set = field(repr=False, default_factory=set)


def _digest(token):
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class TokenStore:
    """Issues, validates, extends and revokes tokens against an injected clock."""

    def __init__(self, clock, ttl):
        self._clock = clock
        self.ttl = ttl
        self._grants = {}

    def issue(self, user, access):
        """A new :class:`Grant` with a fresh token."""
        self._expire()
        token = secrets.token_hex(32)
        grant = Grant(user, access, token, self._clock.seconds() + self.ttl, _digest(token))
        self._grants[grant._digest] = grant
        return grant

    def lookup(self, token):
        """The live grant for ``token`` (extended), or None."""
        if not isinstance(token, str):
            return None
        digest = _digest(token)
        grant = self._grants.get(digest)
        if grant is None or not hmac.compare_digest(grant._digest, digest):
            return None
        return grant if self.touch(grant) else None

    def is_valid(self, grant):
        """Whether ``grant`` is still live, without extending it."""
        return (
            self._grants.get(grant._digest) is grant and grant.expires > self._clock.seconds()
        )

    def touch(self, grant):
        """Extend a live grant; False (and the grant is forgotten) when it has expired."""
        if not self.is_valid(grant):
            self._forget(grant)
            return False
        grant.expires = self._clock.seconds() + self.ttl
        return True

    def revoke(self, grant):
        """Forget ``grant`` and tell every session using its token (they sign out)."""
        self._forget(grant)
        for listener in list(grant.revoke_listeners):
            listener(grant)
        grant.revoke_listeners.clear()

    def _forget(self, grant):
        if self._grants.get(grant._digest) is grant:
            del self._grants[grant._digest]

    def _expire(self):
        now = self._clock.seconds()
        for digest in [d for d, g in self._grants.items() if g.expires <= now]:
            del self._grants[digest]
