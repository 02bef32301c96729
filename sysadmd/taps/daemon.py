"""``twistd sysadmd``: command-line options and the service tree.

    twistd -n sysadmd [--config PATH] [--listen ENDPOINT] [--set SECTION.KEY=VALUE]
"""




from sysadmd.auth.service import build_auth
from sysadmd.auth.settings import KeySettings
from sysadmd.bridge.links import BridgeLinksService, prepare_links
from sysadmd.channel.router import Router
from sysadmd.channel.settings import ConnectionSettings
from sysadmd.config import ConfigError, ConfigErrors, find_default_config
from sysadmd.dispatcher import api as dispatcher_api
from sysadmd.dispatcher.service import build_dispatcher
from sysadmd.events import handlers as event_handlers
from sysadmd.events.heads import HeadsService
from sysadmd.events.hub import EventHub
from sysadmd.events.retention import Retention
from sysadmd.events.sources import SourcesService
from sysadmd.protocol.framing import prepare_text
from sysadmd.rpc import handlers as rpc_handlers
from sysadmd.server.endpoints import is_loopback_endpoint, prepare_endpoints
from sysadmd.server.factory import SysadmServerFactory
from sysadmd.server.frontdoor import FrontDoorFactory
from sysadmd.server.listening import ListenService
from sysadmd.server.service import ConnectionsService
from sysadmd.taps.app import (
    DaemonService,
    Options,
    check_state_dir,
    connection_cap,
    exit_with,
    raise_open_file_limit,
)
from sysadmd.taps.discovery import discover_sources
from sysadmd.taps.sections import load_daemon_config
from sysadmd.web.dashboard import Dashboard
from sysadmd.web.metrics import Metrics, SysadmdCollector, registry_for
from sysadmd.web.rest import RestGateway
from sysadmd.web.site import Health, build_site

# What twistd reads from this module (twisted/plugins/sysadmd_plugins.py).
__all__ = ["Options", "makeService"]


def _check_sources(config, factories, errors):
    wanted = config["events"]["sources"]
    unknown = [name for name in wanted if name != "all" and name not in factories]
    if unknown or ("all" in wanted and len(wanted) > 1):
        installed = ", ".join(sorted(factories)) or "none"
        what = f"unknown source(s): {', '.join(unknown)}" if unknown else "'all' cannot be combined with names"
        errors.append(ConfigError(config.source, "events", "sources", f"{what} (installed: {installed})"))


def _check_conformance(config, errors):
    # The echo mode answers anyone without authentication: never off this machine.
    if not config["server"]["conformance_echo"]:
        return
    exposed = [d for d in config["server"]["listen"] if not is_loopback_endpoint(d)]
    if exposed:
        errors.append(
            ConfigError(
                config.source, "server", "conformance_echo",
                "refused: every [server] listen endpoint must be tcp or ssl with a loopback "
                f"interface= (e.g. tcp:0:interface=127.0.0.1), not {', '.join(exposed)}",
            )
        )


def load(options):
    """Discover sources and read the configuration named by ``options``."""
    factories = discover_sources()
    path = options["config"] or find_default_config()
    overrides = list(options["set"])
    if options["listen"]:
        overrides.append("server.listen=" + " ".join(options["listen"]))
    config = load_daemon_config(
        path, overrides=overrides, source_options={n: f.options for n, f in factories.items()}
    )
    return config, factories


def build_service(options, reactor):
    """Wire the daemon's services; raises :class:`ConfigErrors` for every problem."""
    config, factories = load(options)
    errors = []
    check_state_dir(config, errors)
    _check_sources(config, factories, errors)
    _check_conformance(config, errors)
    if not errors:
        tokens, bans, authenticator, auth_threads = build_auth(reactor, config, errors)
        descriptions = prepare_endpoints(reactor, config, errors)
        dispatcher_service = build_dispatcher(reactor, config, errors)
        bridges = prepare_links(config, errors)
    if errors:
        raise ConfigErrors(errors)

    router = Router()
    events = config["events"]
    retention = Retention(reactor, config.state_dir, events["retain_events"], events["retain_seconds"],
                          events["retain_bytes"])
    hub = EventHub(prepare_text, retention)
    factory = SysadmServerFactory(
        reactor, ConnectionSettings.from_config(config), router, hub, tokens, bans
    )
    dispatcher = dispatcher_service.dispatcher
    # events/subscribe {"name": "job-output", ...}: the dispatcher's followers.
    hub.add_stream(dispatcher.followers)
    register_calls(router, authenticator, hub, dispatcher, bridges.keys, reactor)

    top = DaemonService(reactor, config.source)
    # The dispatcher starts first and stops last, after connections and sources.
    for child in (
        dispatcher_service,
        # Password checks' threads: started before the ports open, stopped after they close.
        auth_threads,
        # Heads while there are subscribers; the logs' files close after the sources stop.
        HeadsService(reactor, hub, events["heads_interval"]),
        SourcesService(reactor, hub, factories, config, services={"dispatcher": dispatcher}),
        ConnectionsService(reactor, factory),
        # Relayed clients share the factory's parts; their links close before the dispatcher stops.
        BridgeLinksService(reactor, bridges, factory),
        ListenService(
            reactor, descriptions, front_door(reactor, config, factory, authenticator, dispatcher), config.source
        ),
    ):
        child.setServiceParent(top)
    return top


def register_calls(router, authenticator, hub, dispatcher, bridge_keys, reactor=None):
    """Every call the daemon answers, each with its access level (see the README's
    "Who may call what"; ``tests/architecture/test_access.py`` lists them)."""
    rpc_handlers.register(router)
    authenticator.register(router)
    event_handlers.register(router, hub)
    dispatcher_api.register(router, dispatcher)
    # rpc/settings edits the keys file in the reactor's threads (inline without one).
    KeySettings(bridge_keys, reactor).register(router)


def front_door(reactor, config, factory, authenticator, dispatcher=None):
    """The factory the ports listen with: WebSocket upgrades go to ``factory``, plain
    HTTP (dashboard, REST, /health) to the web site."""
    gateway = RestGateway(factory.parts, authenticator, config["server"]["max_message_bytes"])
    health = Health(reactor, lambda: {"connections": factory.open_connections})
    dashboard = Dashboard() if config["server"]["dashboard"] else None
    metrics = None
    if config["server"]["metrics"]:
        collector = SysadmdCollector(factory, dispatcher, authenticator)
        metrics = Metrics(registry_for(collector), config["server"]["metrics_allow"])
    site = build_site(
        gateway, health, dashboard, max_body_bytes=config["server"]["max_message_bytes"],
        metrics=metrics, browser=factory.browser,
        request_timeout=config["server"]["http_request_timeout"], reactor=reactor,
    )
    # WebSocket and HTTP connections share the factory's count, capped below the
    # descriptor limit so that jobs and /health keep descriptors of their own.
    try:
        factory.admission.max_total = connection_cap(config)
    except ConfigError as e:
        raise ConfigErrors([e]) from None
    return FrontDoorFactory(
        reactor, factory, site, config["server"]["handshake_timeout"], factory.admission
    )


def makeService(options, reactor=None):
    """twistd's entry point (see ``twisted/plugins/sysadmd_plugins.py``)."""
    raise_open_file_limit()
    if reactor is None:
        from twisted.internet import reactor
    try:
        return build_service(options, reactor)
    except ConfigErrors as e:
        exit_with(e.errors)
