"""``twistd sysadm-fleet``: command-line options and the service.

    twistd -n --reactor asyncio sysadm-fleet [--config PATH] [--set fleet.KEY=VALUE ...]

Without ``--reactor`` the asyncio reactor is installed here, before anything imports
another one; any other reactor is refused with a one-line error.
"""

import sys

from twisted.python import usage

from sysadmd.client.errors import ClientError
from sysadmd.config import ConfigError, ConfigErrors
from sysadmd.fleet import aio, options
from sysadmd.protocol import fleet as wire

PROGRAM = "sysadm-fleet"


class Options(usage.Options):
    """Command-line options of ``twistd sysadm-fleet``."""

    synopsis = "[--config PATH] [--set fleet.KEY=VALUE ...]"
    optParameters = [
        [
            "config",
            "c",
            None,
            "Configuration file (default: /usr/local/etc/sysadm-fleet.ini, else "
            "/etc/sysadm-fleet.ini, else built-in defaults).",
        ],
    ]

    def __init__(self):
        super().__init__()
        self["set"] = []

    def opt_set(self, assignment):
        """Override one configuration key, e.g. --set fleet.host=nas1 (repeatable)."""
        self["set"].append(assignment)


def read_credentials(config):
    """``(user, password)`` from ``[fleet] credentials``; ConfigError naming it."""
    path = config["fleet"]["credentials"]
    try:
        with open(path, encoding="utf-8") as f:
            return wire.parse_credentials(f.read())
    except OSError as e:
        message = f"cannot read {path}: {e.strerror}"
    except ValueError as e:
        message = f"{path}: {e}"
    raise ConfigError(config.source, options.SECTION, "credentials", message)


def build_service(opts, reactor):
    """The agent's service; raises :class:`ConfigErrors` for every problem found."""
    from sysadmd.fleet.natslink import tls_context
    from sysadmd.fleet.service import FleetService

    config = options.load(opts["config"], opts["set"])
    section = config["fleet"]
    errors = []
    credentials = tls = None
    try:
        credentials = read_credentials(config)
    except ConfigError as e:
        errors.append(e)
    try:
        tls = tls_context(section)
    except (OSError, ValueError) as e:
        errors.append(ConfigError(config.source, options.SECTION, "tls_ca", str(e)))
    agent = None
    try:
        agent = FleetService(reactor, section, *(credentials or (None, None)), tls=tls)
    except ClientError as e:
        errors.append(ConfigError(config.source, options.SECTION, "key", str(e)))
    if errors:
        raise ConfigErrors(errors)
    return agent


def exit_with(errors):
    """One line per error on the real stderr, exit status 1."""
    for error in errors:
        sys.__stderr__.write(f"{PROGRAM}: {error}\n")
    sys.__stderr__.flush()
    raise SystemExit(1)


def makeService(opts, reactor=None):
    """twistd's entry point (see ``twisted/plugins/sysadmd_plugins.py``)."""
    try:
        if reactor is None:
            reactor = aio.install_asyncio_reactor()
        try:
            import nats  # noqa: F401
        except ImportError:
            raise ConfigErrors(["the fleet agent needs nats-py: pip install 'sysadmd[fleet]'"]) from None
        return build_service(opts, reactor)
    except aio.WrongReactor as e:
        exit_with([e])
    except ConfigErrors as e:
        exit_with(e.errors)
