"""Local sign-in (``[auth] local_login``): the tray of the original SysAdm client, on the
same machine, signs in to 127.0.0.1 with its user's name and an empty password.

The original server took the name on trust when that user was logged in locally. Here the
kernel says who the client is, as PostgreSQL's ``ident`` and ``peer`` methods do: on a TCP
connection whose two ends are loopback addresses, the socket table names the uid that
opened the client's end (:func:`sysadmd.util.sockets.socket_owner`). The sign-in succeeds
only when the requested name is that uid's account and the account has access by the same
group rules as PAM (:func:`sysadmd.auth.groups.role_for_system_user`). Relayed and REST
clients have no socket of their own to look up, so they never sign in this way.
"""

import pwd

from twisted.internet.threads import deferToThreadPool

from sysadmd.auth.groups import role_for_system_user
from sysadmd.util.net import is_loopback
from sysadmd.util.sockets import socket_owner


def loopback_ends(addresses):
    """``((client_host, client_port), (server_host, server_port))`` of a connection whose
    ``addresses`` are ``(local, peer)`` Twisted addresses (a transport's ``getHost()`` and
    ``getPeer()``), when it is TCP with both ends on loopback; else None."""
    if not addresses:
        return None
    local, peer = addresses
    ends = []
    for address in (peer, local):
        if getattr(address, "type", None) != "TCP":
            return None
        host, port = getattr(address, "host", None), getattr(address, "port", None)
        if not isinstance(host, str) or not isinstance(port, int) or not is_loopback(host):
            return None
        ends.append((host, port))
    return tuple(ends)


def session_ends(session):
    """The loopback ends of ``session``'s own connection (see :func:`loopback_ends`), or
    None. A direct WebSocket connection's session carries its ``socket_addresses``
    (set by :class:`sysadmd.server.protocol.SysadmServerProtocol`); other sessions have
    none."""
    return loopback_ends(session.socket_addresses)


class LocalLogin:
    """Decides a local sign-in: the access of ``username`` when it owns the client end of
    the connection ``ends``, else None.

    The lookup blocks (it reads the socket table, or runs ``sockstat``), so it runs in
    ``threadpool`` (the password checks' pool: the daemon-wide
    :class:`~sysadmd.auth.limits.CheckLimiter` bounds how many run at once, which matters
    because loopback is exempt from bans). ``owner_of(client, server)`` is
    :func:`~sysadmd.util.sockets.socket_owner` unless a test gives another.
    """

    def __init__(self, reactor, full_groups, limited_groups, threadpool=None, owner_of=socket_owner):
        self._reactor = reactor
        self._full_groups = tuple(full_groups)
        self._limited_groups = tuple(limited_groups)
        self._threadpool = threadpool
        self._owner_of = owner_of

    def check(self, ends, username):
        """A Deferred firing with 'full', 'limited' or None."""
        pool = self._threadpool if self._threadpool is not None else self._reactor.getThreadPool()
        return deferToThreadPool(self._reactor, pool, self.decide, ends, username)

    def decide(self, ends, username):
        """The blocking decision (see :meth:`check`)."""
        client, server = ends
        try:
            account = pwd.getpwnam(username)
        except (KeyError, TypeError, ValueError):
            return None
        owner = self._owner_of(client, server)
        if owner is None or owner != account.pw_uid:
            return None
        return role_for_system_user(username, self._full_groups, self._limited_groups)
