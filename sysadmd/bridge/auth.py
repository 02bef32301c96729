"""Sign-in on the bridge: ``rpc/auth_ssl`` against the bridge's keys file, nothing else.

The daemon's :class:`sysadmd.auth.handlers.Authenticator` does the work (challenge,
signature check, failure delay, bans); the bridge only needs every registered key to be
good enough, which :class:`KeyHolders` says.
"""

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from sysadmd.auth.bans import BanList
from sysadmd.auth.handlers import Authenticator
from sysadmd.auth.keys_file import KeysFile, KeysFileError
from sysadmd.auth.signatures import find_signer
from sysadmd.auth.tokens import TokenStore
from sysadmd.config import ConfigError
from sysadmd.interfaces import IPasswordBackend

log = Logger()

ACCESS = "limited"


@implementer(IPasswordBackend)
class KeyHolders:
    """The bridge's only "backend": no passwords, and whoever holds a key registered in
    the bridge's keys file may connect (the user name there is just a label)."""

    name = "keys"

    def authenticate(self, username, password):
        """Passwords never sign in to a bridge."""
        return defer.succeed(None)

    def role_of(self, username):
        """Any registered key's user may connect."""
        return defer.succeed(ACCESS)


def build_bridge_auth(reactor, config, errors):
    """Return ``(tokens, bans, authenticator)`` for the bridge; problems go to ``errors``."""
    auth = config["auth"]
    tokens = TokenStore(reactor, auth["token_ttl"])
    bans = BanList(
        reactor, auth["max_failures"], auth["failure_window"], auth["ban_seconds"], auth["ban_loopback"]
    )
    path = config.path("auth", "keys_file", "keys")
    keys = KeysFile(path)
    try:
        if not keys.load():
            log.warn(
                "No key is registered yet; register servers' and clients' public keys with: "
                "sysadmd-admin key add --user NAME --keys-file {path} KEY.pub",
                path=path,
            )
    except (KeysFileError, OSError) as e:
        errors.append(ConfigError(config.source, "auth", "keys_file", str(e)))
    authenticator = Authenticator(
        reactor, tokens, bans, [KeyHolders()], keys, find_signer, auth["failure_delay"]
    )
    return tokens, bans, authenticator
