"""Build the authentication parts from the configuration."""

import os
import sys

from sysadmd.auth.backends import PamBackend, UsersBackend
from sysadmd.auth.bans import BanList
from sysadmd.auth.handlers import Authenticator
from sysadmd.auth.keys_file import KeysFile
from sysadmd.auth.limits import CheckLimiter, CheckThreads
from sysadmd.auth.local import LocalLogin
from sysadmd.auth.signatures import find_signer
from sysadmd.auth.tokens import TokenStore
from sysadmd.auth.users_file import UsersFile
from sysadmd.config import ConfigError
from sysadmd.util.log import Logger

log = Logger()


def admin_command():
    """The path of ``sysadmd-admin`` beside the running interpreter (the same install)."""
    candidate = os.path.join(os.path.dirname(sys.executable), "sysadmd-admin")
    return candidate if os.path.exists(candidate) else "sysadmd-admin"


def build_auth(reactor, config, errors):
    """Return ``(tokens, bans, authenticator, threads)``; ``threads`` is the service (a
    :class:`CheckThreads`) whose pool the password backends work in, to be started with
    the daemon. Configuration problems go to ``errors``."""
    auth = config["auth"]
    tokens = TokenStore(reactor, auth["token_ttl"])
    bans = BanList(
        reactor, auth["max_failures"], auth["failure_window"], auth["ban_seconds"],
        auth["ban_loopback"], ipv6_prefix=auth["ban_ipv6_prefix"],
    )
    # One bound twice: the limiter queues and refuses, the pool cannot run more anyway.
    threads = CheckThreads(auth["max_concurrent_checks"])
    limiter = CheckLimiter(auth["max_concurrent_checks"], auth["max_queued_checks"])
    backends = []
    for name in auth["backends"]:
        if name == "pam":
            try:
                backends.append(
                    PamBackend(
                        reactor, auth["pam_service"], auth["full_groups"], auth["limited_groups"],
                        threadpool=threads.pool,
                    )
                )
            except ValueError as e:
                errors.append(ConfigError(config.source, "auth", "pam_service", str(e)))
        elif name == "users":
            users_path = config.path("auth", "users_file", "users")
            users = UsersFile(users_path)
            try:
                existing = users.list()
            except Exception as e:
                errors.append(ConfigError(config.source, "auth", "users_file", str(e)))
                continue
            if not existing:
                log.warn(
                    "No user exists yet; create one with: {command} user add admin "
                    "--role full --users-file {path}",
                    command=admin_command(),
                    path=users_path,
                )
            backends.append(UsersBackend(reactor, users, threadpool=threads.pool))
    keys = KeysFile(config.path("auth", "keys_file", "keys"))
    # Never the keys file: a fleet key may act as any local user (sysadmd.auth.fleet).
    fleet_keys = KeysFile(config.path("auth", "fleet_keys_file", "fleet_keys"))
    local = None
    if auth["local_login"]:
        # The same group rules as the pam backend, whichever backends are configured.
        local = LocalLogin(
            reactor, auth["full_groups"], auth["limited_groups"], threadpool=threads.pool
        )
    authenticator = Authenticator(
        reactor, tokens, bans, backends, keys, find_signer, auth["failure_delay"], limiter,
        local=local, fleet_keys=fleet_keys,
    )
    return tokens, bans, authenticator, threads
