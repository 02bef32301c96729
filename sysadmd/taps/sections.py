"""The daemon's ini schema, gathered from the parts that own each section."""

from sysadmd.auth.options import AUTH
from sysadmd.bridge.options import BRIDGE
from sysadmd.config import load_config
from sysadmd.dispatcher.options import DISPATCHER
from sysadmd.events.options import EVENTS
from sysadmd.server.options import SERVER

SECTIONS = {
    "server": SERVER,
    "auth": AUTH,
    "events": EVENTS,
    "dispatcher": DISPATCHER,
    "bridge": BRIDGE,
}


def load_daemon_config(path=None, text=None, overrides=(), source_options=None, source=None):
    """:func:`sysadmd.config.load_config` with the daemon's sections and its
    ``[source:NAME]`` sections."""
    return load_config(
        SECTIONS, path=path, text=text, overrides=overrides, source_options=source_options,
        source=source, event_sources=True,
    )
