"""The built-in ``system-state`` event source (frame name ``system_state``): hostname and
ZFS pool health, polled and published when they change."""

from sysadmd.config.options import Option, number
from sysadmd.events.plugin import SourcePlugin, command_timeout, program
from sysadmd.systemstate.source import SystemStateSource


def _percent(text):
    value = number(0)(text)
    if value > 100:
        raise ValueError(f"{value:g} is above 100 (it is a percentage)")
    return value


system_state = SourcePlugin("system-state", SystemStateSource, {
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
    "zpool_command": program("zpool"),
    "hostname_command": program(
        "hostname",
        "The program printing the host name: a path, or a name searched like zpool_command's.",
    ),
    "command_timeout": command_timeout("a zpool or hostname run"),
})
