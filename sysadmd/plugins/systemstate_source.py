"""The built-in ``system-state`` event source (frame name ``system_state``)."""

from twisted.plugin import IPlugin
from zope.interface import implementer

from sysadmd.config.options import Option, number, string
from sysadmd.interfaces import IEventSourceFactory
from sysadmd.systemstate.source import SystemStateSource


def _percent(text):
    value = number(0)(text)
    if value > 100:
        raise ValueError(f"{value:g} is above 100 (it is a percentage)")
    return value


def _command(text):
    value = string(text)
    if not value:
        raise ValueError("a command name or path is needed")
    return value


@implementer(IPlugin, IEventSourceFactory)
class SystemStateFactory:
    """Hostname and ZFS pool health, polled and published when they change."""

    name = "system-state"
    options = {
        "interval": Option("60", number(1), "Seconds between polls (the first is at start)."),
        "heartbeat": Option(
            "900", number(1), "Publish the state at least this often even when nothing changed."
        ),
        "capacity_warning": Option(
            "80", _percent, "A pool fuller than this percentage has priority 3 (Warning)."
        ),
        "capacity_critical": Option(
            "90", _percent, "A pool fuller than this percentage has priority 6 (Critical)."
        ),
        "zpool_command": Option(
            "zpool",
            _command,
            "The zpool program: a path, or a name searched in /sbin, /bin, /usr/sbin, "
            "/usr/bin, /usr/local/sbin and /usr/local/bin.",
        ),
        "hostname_command": Option(
            "hostname",
            _command,
            "The program printing the host name: a path, or a name searched like zpool_command's.",
        ),
        "command_timeout": Option(
            "30", number(0.1), "Seconds a zpool or hostname run may take before it is killed."
        ),
    }

    def build(self, context):
        """A new :class:`SystemStateSource` configured from ``context``."""
        return SystemStateSource.from_context(context)


system_state = SystemStateFactory()
