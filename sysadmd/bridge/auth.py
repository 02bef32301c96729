"""Sign-in on the bridge: ``rpc/auth_ssl`` against the bridge's two key files, nothing else.

``[auth] server_keys_file`` holds the keys of servers, ``[auth] keys_file`` those of
clients; both sign in, and which file holds the key that signed decides the connection's
role (:class:`BridgeKeys`, :class:`BridgeSignIn`), never what the peer says. The daemon's
:class:`sysadmd.auth.handlers.Authenticator` does the work (challenge, signature check,
failure delay, bans); the bridge only needs every registered key to be good enough,
which :class:`KeyHolders` says.
"""

from twisted.internet import defer
from zope.interface import implementer

from sysadmd.auth.bans import BanList
from sysadmd.auth.handlers import Authenticator
from sysadmd.auth.keys_file import KeysFile, KeysFileError
from sysadmd.auth.signatures import find_signer
from sysadmd.auth.tokens import TokenStore
from sysadmd.bridge.wire import CLIENT, SERVER, md5_name
from sysadmd.config import ConfigError
from sysadmd.interfaces import IPasswordBackend
from sysadmd.protocol.keydigests import md5_key
from sysadmd.util.log import Logger

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


class BridgeKeys:
    """The keys that may sign in to the bridge: ``servers`` (the server keys file) and
    ``clients`` (the keys file), both :class:`sysadmd.auth.keys_file.KeysFile`.

    ``load()`` is what the authenticator checks signatures against; ``role_of`` what a
    signed-in key makes its connection. A key listed in both files is a server's.
    """

    def __init__(self, clients, servers):
        self.clients = clients
        self.servers = servers

    def load(self):
        """Every key of both files (servers' first); raises like
        :meth:`sysadmd.auth.keys_file.KeysFile.load`."""
        servers = self.servers.load()
        known = {key.fingerprint for key in servers}
        return list(servers) + [key for key in self.clients.load() if key.fingerprint not in known]

    def role_of(self, fingerprint):
        """``"server"`` when the key ``fingerprint`` is in the server keys file, else
        ``"client"`` (also when that file cannot be read: a server role is never given
        by default)."""
        try:
            servers = self.servers.load()
        except (KeysFileError, OSError):
            log.failure("cannot read the server keys file {path}", path=self.servers.path)
            return CLIENT
        return SERVER if any(key.fingerprint == fingerprint for key in servers) else CLIENT

    def aliases_of(self, fingerprint):
        """The other names servers may list the key ``fingerprint`` by: its ``MD5:`` name
        (what original SysAdm servers send in ``md5_keys``); empty when it is not found."""
        try:
            keys = self.load()
        except (KeysFileError, OSError):
            log.failure("cannot read the bridge's key files")
            return ()
        for key in keys:
            if key.fingerprint == fingerprint:
                return (md5_name(md5_key(key.public_key)),)
        return ()


class BridgeSignIn:
    """``rpc/auth_ssl`` on the bridge: the daemon's ``authenticator`` signs the session
    in, then the session's ``role`` (and ``key_aliases``, the key's other names) are set
    from ``keys`` (a :class:`BridgeKeys`)."""

    def __init__(self, authenticator, keys):
        self.authenticator = authenticator
        self.keys = keys

    @defer.inlineCallbacks
    def auth_ssl(self, session, args):
        """Stage 1 or 2 of ``rpc/auth_ssl``; after a successful stage 2 the session's
        ``role`` is what its key makes it."""
        result = yield defer.maybeDeferred(self.authenticator.auth_ssl, session, args)
        if session.key_fingerprint is not None:
            session.role = self.keys.role_of(session.key_fingerprint)
            session.key_aliases = self.keys.aliases_of(session.key_fingerprint)
        return result


def _check_keys_file(config, key, keys, errors):
    """Report a damaged key file to ``errors``; returns how many keys it holds."""
    try:
        return len(keys.load())
    except (KeysFileError, OSError) as e:
        errors.append(ConfigError(config.source, "auth", key, str(e)))
        return None


def build_bridge_auth(reactor, config, errors):
    """Return ``(tokens, bans, authenticator)`` for the bridge, the authenticator a
    :class:`BridgeSignIn`; problems go to ``errors``."""
    auth = config["auth"]
    tokens = TokenStore(reactor, auth["token_ttl"])
    bans = BanList(
        reactor, auth["max_failures"], auth["failure_window"], auth["ban_seconds"],
        auth["ban_loopback"], ipv6_prefix=auth["ban_ipv6_prefix"],
    )
    clients = KeysFile(config.path("auth", "keys_file", "keys"))
    servers = KeysFile(config.path("auth", "server_keys_file", "server_keys"))
    for key, keys_file, who in (
        ("server_keys_file", servers, "servers'"),
        ("keys_file", clients, "clients'"),
    ):
        if _check_keys_file(config, key, keys_file, errors) == 0:
            log.warn(
                "No key is registered in {path} yet; register the {who} public keys with: "
                "sysadmd-admin key add --user NAME --keys-file {path} KEY.pub",
                path=keys_file.path,
                who=who,
            )
    keys = BridgeKeys(clients, servers)
    authenticator = Authenticator(
        reactor, tokens, bans, [KeyHolders()], keys, find_signer, auth["failure_delay"]
    )
    return tokens, bans, BridgeSignIn(authenticator, keys)
