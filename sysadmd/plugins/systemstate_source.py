"""The built-in ``system-state`` event source (frame name ``system_state``): hostname,
ZFS pool health and updates, polled and published when they change."""

from sysadmd.config.options import Option, boolean, choice, number
from sysadmd.events.plugin import SourcePlugin, command_timeout, program
from sysadmd.systemstate.source import SystemStateSource
from sysadmd.systemstate.updates import split_command


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
    "updates": Option(
        "auto", choice("auto", "apt", "pkg", "none"),
        "Where the event's updates field comes from: apt (Debian and derivatives: "
        "apt-get -s dist-upgrade from the local package lists, /var/run/reboot-required, "
        "dpkg's lock), pkg (FreeBSD: pkg upgrade -n, freebsd-version -k against -r, pkg's "
        "lock), none (no updates field), or auto: pkg on FreeBSD, apt where "
        "/etc/debian_version exists or os-release's ID or ID_LIKE says debian or ubuntu "
        "(and apt-get is installed), none elsewhere.",
    ),
    "updates_interval": Option(
        "3600", number(60),
        "Seconds between checks for updates (the first is at start; until it ends the "
        "status is checkingforupdates). Checks run in the background, never delaying an event.",
    ),
    "updates_refresh": Option(
        "no", boolean,
        "yes: refresh the package lists before each check (apt-get update, pkg update: "
        "network, and command_timeout must allow for it); no: check against the lists "
        "the system already has (refreshed by cron, unattended-upgrades or the administrator).",
    ),
    "updates_command": Option(
        "", split_command,
        "A program (with arguments, split like a shell would, run without one) replacing "
        "the built-in check unless updates is none: it prints noupdates, updatesavailable, "
        "rebootrequired or updaterunning on its first line and any details on the next "
        "lines, and exits 0; anything else is a failed check (logged, the last status kept).",
    ),
    "command_timeout": command_timeout(
        "a zpool, hostname or update check run (each program of a check)"
    ),
})
