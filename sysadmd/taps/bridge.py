"""``twistd sysadm-bridge``: command-line options and the service tree.

    twistd -n sysadm-bridge [--config PATH] [--listen ENDPOINT] [--set SECTION.KEY=VALUE]

The bridge shares the daemon's configuration rules, error reporting, WebSocket server,
limits and ``rpc/auth_ssl``; see ``sysadmd.bridge.wire`` for what it adds.
"""

from sysadmd.bridge import schema
from sysadmd.bridge.auth import build_bridge_auth
from sysadmd.bridge.server import BridgeServerFactory, register_calls
from sysadmd.channel.outbound import DISCONNECT
from sysadmd.channel.router import Router
from sysadmd.channel.settings import ConnectionSettings
from sysadmd.config import ConfigError, ConfigErrors, find_default_config, load_config
from sysadmd.server.endpoints import prepare_endpoints
from sysadmd.server.listening import ListenService
from sysadmd.server.service import ConnectionsService
from sysadmd.taps import app

PROGRAM = "sysadm-bridge"


class Options(app.Options):
    """Command-line options of ``twistd sysadm-bridge`` (the daemon's, other defaults)."""

    optParameters = [
        [
            "config",
            "c",
            None,
            "Configuration file (default: /usr/local/etc/sysadm-bridge.ini, else "
            "/etc/sysadm-bridge.ini, else built-in defaults).",
        ],
    ]


def load(options):
    """Read the configuration named by ``options``."""
    path = options["config"] or find_default_config(schema.DEFAULT_PATHS)
    overrides = list(options["set"])
    if options["listen"]:
        overrides.append("server.listen=" + " ".join(options["listen"]))
    return load_config(schema.SECTIONS, path, overrides=overrides)


def settings_from_config(config):
    """The per-connection limits of the bridge: the daemon's, with the relay buffer
    (a peer that does not read is disconnected) and none of the daemon-only modes."""
    return ConnectionSettings.from_config(
        config,
        subscriber_buffer_bytes=config["relay"]["buffer_bytes"],
        slow_subscriber=DISCONNECT,
        compression=False,
        conformance_echo=False,
    )


def build_service(options, reactor):
    """Wire the bridge's services; raises :class:`ConfigErrors` for every problem."""
    config = load(options)
    errors = []
    app.check_state_dir(config, errors)
    if not errors:
        tokens, bans, authenticator = build_bridge_auth(reactor, config, errors)
        descriptions = prepare_endpoints(reactor, config, errors)
    if errors:
        raise ConfigErrors(errors)

    router = Router()
    factory = BridgeServerFactory(reactor, settings_from_config(config), router, tokens, bans)
    register_calls(router, authenticator, factory)
    # As the daemon: connections stop below the descriptor limit, so accept() never
    # fails with EMFILE and the bridge's own files and links keep descriptors.
    try:
        factory.admission.max_total = app.connection_cap(config)
    except ConfigError as e:
        raise ConfigErrors([e]) from None

    top = app.DaemonService(reactor, config.source, program=PROGRAM)
    for child in (
        ConnectionsService(reactor, factory),
        ListenService(reactor, descriptions, factory, config.source, program=PROGRAM),
    ):
        child.setServiceParent(top)
    return top


def makeService(options, reactor=None):
    """twistd's entry point (see ``twisted/plugins/sysadmd_plugins.py``)."""
    app.raise_open_file_limit()
    if reactor is None:
        from twisted.internet import reactor
    try:
        return build_service(options, reactor)
    except ConfigErrors as e:
        app.exit_with(e.errors, PROGRAM)
