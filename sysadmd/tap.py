"""``twistd sysadmd``: command-line options and the service tree.

    twistd -n sysadmd [--config PATH] [--listen ENDPOINT] [--set SECTION.KEY=VALUE]
"""

import os
import resource
import signal
import sys

from twisted.python import usage

import sysadmd

from sysadmd.auth.service import build_auth
from sysadmd.bridge.links import BridgeLinksService, prepare_links, register_settings
from sysadmd.config import ConfigError, ConfigErrors, find_default_config, load_config
from sysadmd.dispatcher import api as dispatcher_api
from sysadmd.dispatcher.service import build_dispatcher
from sysadmd.events import handlers as event_handlers
from sysadmd.events.discovery import discover_sources
from sysadmd.events.hub import EventHub
from sysadmd.events.sources import SourcesService
from sysadmd.rpc import handlers as rpc_handlers
from sysadmd.server.endpoints import is_loopback_endpoint, prepare_endpoints
from sysadmd.server.factory import SysadmServerFactory
from sysadmd.server.framing import prepare_text
from sysadmd.server.frontdoor import FrontDoorFactory
from sysadmd.server.listening import ListenService
from sysadmd.server.router import Router
from sysadmd.server.service import ConnectionsService, OrderedService
from sysadmd.server.settings import ConnectionSettings
from sysadmd.web.dashboard import Dashboard
from sysadmd.web.metrics import Metrics, SysadmdCollector, registry_for
from sysadmd.web.rest import RestGateway
from sysadmd.web.site import Health, build_site


class Options(usage.Options):
    """Command-line options of ``twistd sysadmd``."""

    synopsis = "[--config PATH] [--listen ENDPOINT ...] [--set SECTION.KEY=VALUE ...]"
    optParameters = [
        [
            "config",
            "c",
            None,
            "Configuration file (default: /usr/local/etc/sysadmd.ini, else /etc/sysadmd.ini, "
            "else built-in defaults).",
        ],
    ]

    def __init__(self):
        super().__init__()
        self["listen"] = []
        self["set"] = []

    def opt_listen(self, endpoint):
        """Listen on ENDPOINT instead of [server] listen (repeatable)."""
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def opt_set(self, assignment):
        """Override one configuration key, e.g. --set server.state_dir=/tmp/x (repeatable)."""
        self["set"].append(assignment)


def _check_state_dir(config, errors):
    path = config.state_dir
    try:
        os.makedirs(path, mode=0o750, exist_ok=True)
    except OSError as e:
        errors.append(ConfigError(config.source, "server", "state_dir", f"cannot create {path}: {e.strerror}"))
        return
    if not os.access(path, os.W_OK | os.X_OK):
        errors.append(ConfigError(config.source, "server", "state_dir", f"{path} is not writable"))


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
    config = load_config(
        path, overrides=overrides, source_options={n: f.options for n, f in factories.items()}
    )
    return config, factories


def build_service(options, reactor):
    """Wire the daemon's services; raises :class:`ConfigErrors` for every problem."""
    config, factories = load(options)
    errors = []
    _check_state_dir(config, errors)
    _check_sources(config, factories, errors)
    _check_conformance(config, errors)
    if not errors:
        tokens, bans, authenticator = build_auth(reactor, config, errors)
        descriptions = prepare_endpoints(reactor, config, errors)
        dispatcher_service = build_dispatcher(reactor, config, errors)
        bridges = prepare_links(config, errors)
    if errors:
        raise ConfigErrors(errors)

    router = Router()
    hub = EventHub(prepare_text)
    factory = SysadmServerFactory(
        reactor, ConnectionSettings.from_config(config), router, hub, tokens, bans
    )
    rpc_handlers.register(router)
    authenticator.register(router)
    event_handlers.register(router, hub)
    dispatcher = dispatcher_service.dispatcher
    dispatcher_api.register(router, dispatcher)
    register_settings(router, bridges.keys)

    top = DaemonService(reactor, config.source)
    # The dispatcher starts first and stops last, after connections and sources.
    for child in (
        dispatcher_service,
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


def front_door(reactor, config, factory, authenticator, dispatcher=None):
    """The factory the ports listen with: WebSocket upgrades go to ``factory``, plain
    HTTP (dashboard, REST, /health) to the web site."""
    gateway = RestGateway(
        reactor, factory.router, factory.hub, factory.tokens, authenticator,
        config["server"]["max_message_bytes"],
    )
    health = Health(reactor, lambda: {"connections": factory.open_connections})
    dashboard = Dashboard() if config["server"]["dashboard"] else None
    metrics = None
    if config["server"]["metrics"]:
        collector = SysadmdCollector(factory, dispatcher, authenticator)
        metrics = Metrics(registry_for(collector), config["server"]["metrics_allow"])
    site = build_site(
        gateway, health, dashboard, max_body_bytes=config["server"]["max_message_bytes"],
        metrics=metrics,
    )
    return FrontDoorFactory(
        reactor, factory, site, config["server"]["handshake_timeout"],
        config["server"]["max_connections_per_ip"],
    )


class DaemonService(OrderedService):
    """The top service: a bind failure at start becomes one line on stderr and exit 1,
    and SIGTERM is a clean shutdown with exit status 0. ``program`` names it in the log
    and on stderr (the bridge is another program built the same way)."""

    def __init__(self, reactor, source, program="sysadmd"):
        super().__init__()
        self._reactor = reactor
        self.source = source
        self.program = program

    def startService(self):
        """Start children; take over SIGTERM once the reactor runs."""
        super().startService()
        self._reactor.callWhenRunning(self._handle_sigterm)

    def _handle_sigterm(self):
        # twistd re-raises SIGTERM at exit (status -15); service managers expect 0 from
        # an orderly stop, so SIGTERM here just stops the reactor.
        daemon_pid = os.getpid()

        def stop(signum, frame):
            if os.getpid() != daemon_pid:
                # A child between fork and exec (a dispatcher job) inherits this handler:
                # it must die of SIGTERM as the job would, not swallow it.
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            self.log.info("received SIGTERM, shutting down")
            self._reactor.callFromThread(self._reactor.stop)

        signal.signal(signal.SIGTERM, stop)
        # Only now: from this line on, SIGTERM is an orderly stop with status 0.
        self.log.info("{program} {version} ready", program=self.program, version=sysadmd.__version__)

    def privilegedStartService(self):
        """Bind listening ports, reporting failure as a configuration error."""
        try:
            super().privilegedStartService()
        except ConfigError as e:
            _exit_with([e], self.program)


def _exit_with(errors, program="sysadmd"):
    # twistd has replaced sys.stderr with its log by now; the user reads the real one.
    stream = sys.__stderr__
    for error in errors:
        stream.write(f"{program}: {error}\n")
    stream.flush()
    raise SystemExit(1)


def raise_open_file_limit():
    """Every client connection is a file descriptor: raise the soft RLIMIT_NOFILE to the
    hard limit (no privilege needed). Returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft, hard
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def makeService(options, reactor=None):
    """twistd's entry point (see ``twisted/plugins/sysadmd_plugins.py``)."""
    raise_open_file_limit()
    if reactor is None:
        from twisted.internet import reactor
    try:
        return build_service(options, reactor)
    except ConfigErrors as e:
        _exit_with(e.errors)
