"""Sessions with the local daemon, signed in with the fleet key (``rpc/auth_fleet``).

The agent's own session (no user: the daemon names it ``fleet:<label>``, limited access)
follows the events; requests from NATS go through a session per local user and access
the daemon granted (:class:`UserSessions`), so the daemon's own access rules and logs
apply to them as to anyone signed in there.
"""

from twisted.internet import defer
from twisted.python.failure import Failure

from sysadmd.client.auth import load_private_key
from sysadmd.client.connection import open_direct
from sysadmd.client.errors import ClientError, ErrorReply
from sysadmd.protocol import fleetauth
from sysadmd.util.log import Logger


class FleetSignInRefused(ClientError):
    """The daemon refused the fleet key (not in its fleet keys file, or an unknown user)."""


@defer.inlineCallbacks
def sign_in(session, key, user="", access="limited"):
    """``rpc/auth_fleet`` in two steps on ``session``; fires with the token's reply."""
    challenge = yield session.call("rpc", "auth_fleet", {})
    test_string = challenge.get("test_string") if isinstance(challenge, dict) else None
    if not isinstance(test_string, str):
        raise ClientError(f"the daemon sent no test string for rpc/auth_fleet: {challenge!r}")
    args = {"signature": fleetauth.sign(key, test_string, user, access), "access": access}
    if user:
        args["user"] = user
    try:
        reply = yield session.call("rpc", "auth_fleet", args)
    except ErrorReply as e:
        if e.code == 401:
            who = f"user {user!r}" if user else "the agent"
            raise FleetSignInRefused(
                f"the daemon refused the fleet key for {who} (is its public key in the "
                "daemon's fleet keys file, and the user known there?)"
            ) from None
        raise
    return reply


class DaemonLink:
    """Opens signed-in links to the daemon at ``url`` with the key in ``key_path``."""

    log = Logger()

    def __init__(self, reactor, url, key_path, request_timeout=30.0):
        self._reactor = reactor
        self.url = url
        self._key = load_private_key(key_path)
        self._timeout = request_timeout

    @defer.inlineCallbacks
    def open(self, user="", access="limited"):
        """A new connection signed in as ``user`` (or the agent itself); fires with the
        :class:`~sysadmd.client.connection.DirectLink`."""
        link = yield open_direct(self._reactor, self.url, call_timeout=self._timeout)
        try:
            yield sign_in(link.session, self._key, user, access)
        except BaseException:
            yield link.close()
            raise
        return link


class UserSessions:
    """One open, signed-in link per (local user, access), opened on first use (requests
    arriving meanwhile wait for the same one) and forgotten when it closes, so the next
    request opens a new one."""

    def __init__(self, daemon):
        self._daemon = daemon
        self._links = {}
        self._opening = {}

    def get(self, user, access):
        """A Deferred of the link for ``(user, access)``."""
        key = (user, access)
        link = self._links.get(key)
        if link is not None:
            return defer.succeed(link)
        waiter = defer.Deferred()
        waiters = self._opening.get(key)
        if waiters is None:
            waiters = self._opening[key] = []
            self._daemon.open(user, access).addBoth(self._opened, key)
        waiters.append(waiter)
        return waiter

    def _opened(self, result, key):
        waiters = self._opening.pop(key, [])
        if not isinstance(result, Failure):
            self._links[key] = result
            result.closed.addBoth(self._closed, key, result)
        for waiter in waiters:
            (waiter.errback if isinstance(result, Failure) else waiter.callback)(result)

    def _closed(self, description, key, link):
        if self._links.get(key) is link:
            del self._links[key]

    def close(self):
        """Close every open link; fires when all are gone."""
        links, self._links = list(self._links.values()), {}
        return defer.DeferredList([link.close() for link in links], consumeErrors=True)
