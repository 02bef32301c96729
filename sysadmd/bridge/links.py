"""The daemon's links to the bridges of ``[bridge] connections``.

Each bridge gets a ``ClientService`` that keeps one connection open, retrying with
exponential backoff capped at 60 seconds. ``stopService`` closes every link (code 1001),
which ends the sessions of the clients it relayed, and fires once they are closed.
"""

from dataclasses import dataclass
from typing import Any, List, Optional

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.application.internet import ClientService
from twisted.application.service import Service
from twisted.internet import defer, ssl
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

from sysadmd.auth.keys_file import KeysFile, KeysFileError
from sysadmd.auth.settings import checksums
from sysadmd.bridge.keys import BridgeKeyError, ensure_private_key, key_fingerprint
from sysadmd.bridge.link import Backoff, BridgeLinkFactory
from sysadmd.bridge.tunnel import TunnelServer
from sysadmd.config import ConfigError
from sysadmd.protocol.keydigests import MD5_KEYS, SHA256_KEYS
from sysadmd.util.log import Logger
from sysadmd.util.services import OrderedService

log = Logger()


@dataclass
class BridgePlan:
    """What the ``[bridge]`` section asks for, checked and loaded."""

    bridges: List[Any]
    keys: KeysFile
    keepalive: float
    legacy_clients: bool = False
    key: Any = None
    tunnel_server: Any = None
    fingerprint: Optional[str] = None
    trust: Any = None


def accepted_checksums(keys):
    """The ``list_ssl_checksums`` answer's args, as ``rpc/settings`` gives it
    (:func:`sysadmd.auth.settings.checksums`: ``sha256_keys`` and ``md5_keys``, what
    original bridges pair by); an unreadable keys file accepts none (and is logged)."""
    try:
        return checksums(keys)
    except (KeysFileError, OSError):
        log.failure("cannot read the keys file {path} for the bridges", path=keys.path)
        return {SHA256_KEYS: [], MD5_KEYS: []}


def _load_trust(path):
    with open(path, "rb") as handle:
        certificates = x509.load_pem_x509_certificates(handle.read())
    return ssl.trustRootFromCertificates(
        [ssl.Certificate.loadPEM(c.public_bytes(serialization.Encoding.PEM)) for c in certificates]
    )


def prepare_links(config, errors):
    """A :class:`BridgePlan` from ``config``; problems go to ``errors``. The key is
    loaded (or generated) only when a bridge is configured."""
    section = config["bridge"]
    plan = BridgePlan(
        bridges=list(section["connections"].values()),
        keys=KeysFile(config.path("auth", "keys_file", "keys")),
        keepalive=section["keepalive"],
        legacy_clients=section["legacy_clients"],
    )
    if not plan.bridges:
        return plan
    path = config.path("bridge", "key", "bridge_key")
    try:
        plan.key, generated = ensure_private_key(path)
    except BridgeKeyError as e:
        errors.append(ConfigError(config.source, "bridge", "key", str(e)))
        return plan
    plan.fingerprint = key_fingerprint(plan.key)
    try:
        plan.tunnel_server = TunnelServer(
            plan.key, plan.fingerprint, section["rekey_messages"], config["server"]["max_message_bytes"]
        )
    except ValueError as e:
        errors.append(ConfigError(config.source, "bridge", "key", f"cannot sign tunnel offers with it: {e}"))
    if generated:
        log.info(
            "generated the bridge key {path} ({fingerprint}); register it on each bridge "
            "with the output of: sysadmd-admin bridge export-key",
            path=path,
            fingerprint=plan.fingerprint,
        )
    ca_file = config.path("bridge", "ca_file")
    if ca_file and any(b.secure for b in plan.bridges):
        try:
            plan.trust = _load_trust(ca_file)
        except (OSError, ValueError) as e:
            errors.append(ConfigError(config.source, "bridge", "ca_file", f"cannot use {ca_file}: {e}"))
    return plan


def _endpoint(reactor, address, trust):
    endpoint = HostnameEndpoint(reactor, address.host, address.port)
    if address.secure:
        options = ssl.optionsForClientTLS(address.host, trustRoot=trust)
        endpoint = wrapClientTLS(options, endpoint)
    return endpoint


class BridgeLinkService(Service):
    """Keeps the link to one bridge."""

    def __init__(self, reactor, address, plan, daemon, backoff=None):
        self.name = address.nick
        self.factory = BridgeLinkFactory(
            reactor,
            address,
            daemon,
            plan.key,
            plan.fingerprint,
            lambda: accepted_checksums(plan.keys),
            plan.keepalive,
            backoff or Backoff(),
            keys=plan.keys,
            legacy_clients=plan.legacy_clients,
            tunnel_server=plan.tunnel_server,
        )
        self._client = ClientService(
            _endpoint(reactor, address, plan.trust),
            self.factory,
            retryPolicy=self.factory.backoff,
            clock=reactor,
        )

    def startService(self):
        """Start connecting."""
        super().startService()
        self._client.startService()

    @defer.inlineCallbacks
    def stopService(self):
        """Close the link (1001) and stop retrying; fires when the connection is gone."""
        super().stopService()
        if self.factory.current is not None:
            yield self.factory.current.going_away()
        yield self._client.stopService()


class BridgeLinksService(OrderedService):
    """One :class:`BridgeLinkService` per configured bridge; ``daemon`` is the daemon's
    server factory, whose router, hub, tokens and limits relayed clients share."""

    def __init__(self, reactor, plan, daemon):
        super().__init__()
        self.setName("bridges")
        for address in plan.bridges:
            BridgeLinkService(reactor, address, plan, daemon).setServiceParent(self)
