"""``twistd sysadmd``: command-line options and the service tree.

    twistd -n sysadmd [--config PATH] [--listen ENDPOINT] [--set SECTION.KEY=VALUE]
"""

import os
import signal
import sys

from twisted.python import usage

import sysadmd

from sysadmd.auth.service import build_auth
from sysadmd.config import ConfigError, ConfigErrors, find_default_config, load_config
from sysadmd.events import handlers as event_handlers
from sysadmd.events.discovery import discover_sources
from sysadmd.events.hub import EventHub
from sysadmd.events.sources import SourcesService
from sysadmd.rpc import handlers as rpc_handlers
from sysadmd.server.endpoints import prepare_endpoints
from sysadmd.server.factory import SysadmServerFactory
from sysadmd.server.framing import prepare_text
from sysadmd.server.listening import ListenService
from sysadmd.server.router import Router
from sysadmd.server.service import ConnectionsService, OrderedService
from sysadmd.server.settings import ConnectionSettings


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
    if not errors:
        tokens, bans, authenticator = build_auth(reactor, config, errors)
        descriptions = prepare_endpoints(reactor, config, errors)
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

    top = DaemonService(reactor, config.source)
    for child in (
        SourcesService(reactor, hub, factories, config),
        ConnectionsService(reactor, factory),
        ListenService(reactor, descriptions, factory, config.source),
    ):
        child.setServiceParent(top)
    return top


class DaemonService(OrderedService):
    """The top service: a bind failure at start becomes one line on stderr and exit 1,
    and SIGTERM is a clean shutdown with exit status 0."""

    def __init__(self, reactor, source):
        super().__init__()
        self._reactor = reactor
        self.source = source

    def startService(self):
        """Start children; take over SIGTERM once the reactor runs."""
        super().startService()
        self._reactor.callWhenRunning(self._handle_sigterm)
        self.log.info("sysadmd {version} ready", version=sysadmd.__version__)

    def _handle_sigterm(self):
        # twistd re-raises SIGTERM at exit (status -15); service managers expect 0 from
        # an orderly stop, so SIGTERM here just stops the reactor.
        def stop(signum, frame):
            self.log.info("received SIGTERM, shutting down")
            self._reactor.callFromThread(self._reactor.stop)

        signal.signal(signal.SIGTERM, stop)

    def privilegedStartService(self):
        """Bind listening ports, reporting failure as a configuration error."""
        try:
            super().privilegedStartService()
        except ConfigError as e:
            _exit_with([e])


def _exit_with(errors):
    # twistd has replaced sys.stderr with its log by now; the user reads the real one.
    stream = sys.__stderr__
    for error in errors:
        stream.write(f"sysadmd: {error}\n")
    stream.flush()
    raise SystemExit(1)


def makeService(options, reactor=None):
    """twistd's entry point (see ``twisted/plugins/sysadmd_plugins.py``)."""
    if reactor is None:
        from twisted.internet import reactor
    try:
        return build_service(options, reactor)
    except ConfigErrors as e:
        _exit_with(e.errors)
