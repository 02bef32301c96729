"""The password backends of ``[auth] backends``: ``users`` (the users file) and ``pam``.

Both do their slow, blocking work (Argon2id, PAM, NSS lookups) in a thread pool: the
daemon gives them :class:`sysadmd.auth.limits.CheckThreads`' pool, whose size is
``[auth] max_concurrent_checks``, so no more than that many hashes (64 MiB each for
Argon2id) are ever computed at once; without one they use the reactor's. A backend that
breaks (an unreadable users file, a PAM error) is logged and answers None, so the next
backend is still tried and the daemon stays up.
"""

import pam
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from sysadmd.auth.groups import role_for_system_user
from sysadmd.interfaces import IPasswordBackend
from sysadmd.util.log import Logger

# With these services pam_rootok lets root (our caller) in with any password.
_UNSAFE_PAM_SERVICES = ("su", "su-l")


def _in_thread(reactor, threadpool, function, *args):
    pool = threadpool if threadpool is not None else reactor.getThreadPool()
    return deferToThreadPool(reactor, pool, function, *args)


@implementer(IPasswordBackend)
class UsersBackend:
    """Checks passwords against a :class:`~sysadmd.auth.users_file.UsersFile`, in
    ``threadpool`` (default: the reactor's)."""

    name = "users"
    log = Logger()

    def __init__(self, reactor, users_file, threadpool=None):
        self._reactor = reactor
        self._users_file = users_file
        self._threadpool = threadpool

    def authenticate(self, username, password):
        """See :meth:`sysadmd.interfaces.IPasswordBackend.authenticate`."""
        d = _in_thread(self._reactor, self._threadpool, self._users_file.verify, username, password)
        d.addErrback(self._failed)
        return d

    def role_of(self, username):
        """See :meth:`sysadmd.interfaces.IPasswordBackend.role_of`."""
        d = _in_thread(self._reactor, self._threadpool, self._users_file.role_of, username)
        d.addErrback(self._failed)
        return d

    def _failed(self, failure):
        self.log.error(
            "users backend cannot use {path}: {error}",
            path=self._users_file.path,
            error=failure.getErrorMessage(),
        )
        return None


@implementer(IPasswordBackend)
class PamBackend:
    """Checks system accounts' passwords with PAM, then grants by group membership.

    ``pam_factory`` makes a ``pam.pam()``-like authenticator; tests replace it. The
    work runs in ``threadpool`` (default: the reactor's).
    """

    name = "pam"
    log = Logger()

    def __init__(
        self, reactor, service, full_groups, limited_groups, pam_factory=pam.pam, threadpool=None
    ):
        if service in _UNSAFE_PAM_SERVICES:
            raise ValueError(
                f"PAM service {service!r} accepts any password when run as root; "
                "use a service such as 'login' or 'system'"
            )
        if not service:
            raise ValueError("a PAM service name is needed, e.g. 'login'")
        self._reactor = reactor
        self._service = service
        self._full_groups = tuple(full_groups)
        self._limited_groups = tuple(limited_groups)
        self._pam_factory = pam_factory
        self._threadpool = threadpool

    def authenticate(self, username, password):
        """See :meth:`sysadmd.interfaces.IPasswordBackend.authenticate`."""
        d = _in_thread(self._reactor, self._threadpool, self._authenticate, username, password)
        d.addErrback(self._failed, username)
        return d

    def _authenticate(self, username, password):
        if not isinstance(username, str) or not isinstance(password, str):
            return None
        if "\0" in username or "\0" in password:
            return None
        # A fresh handle per call: one PAM handle must not be shared between threads.
        if not self._pam_factory().authenticate(username, password, service=self._service):
            return None
        return self._role(username)

    def role_of(self, username):
        """See :meth:`sysadmd.interfaces.IPasswordBackend.role_of`."""
        d = _in_thread(self._reactor, self._threadpool, self._role, username)
        d.addErrback(self._failed, username)
        return d

    def _role(self, username):
        return role_for_system_user(username, self._full_groups, self._limited_groups)

    def _failed(self, failure, username):
        self.log.error(
            "pam backend failed for {username!r} (service {service}): {error}",
            username=username,
            service=self._service,
            error=failure.getErrorMessage(),
        )
        return None
