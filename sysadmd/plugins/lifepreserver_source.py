"""The built-in ``life-preserver`` event source (frame name ``life_preserver``): snapshot
and replication events from Life Preserver's logs or from zfs."""

import os

from sysadmd.config.options import Option, choice, number
from sysadmd.events.plugin import SourcePlugin, command_timeout, program, required
from sysadmd.lifepreserver.source import BACKENDS, LifePreserverSource


def _absolute(text):
    value = required(text)
    if not os.path.isabs(value):
        raise ValueError(f"{value!r} is not an absolute path")
    return value


life_preserver = SourcePlugin("life-preserver", LifePreserverSource, {
    "backend": Option(
        "auto",
        choice(*BACKENDS),
        "lpreserver (follow its logs), zfs (list snapshots), or auto: lpreserver when "
        "<log_dir>/lpreserver.log exists, else zfs when the zfs command exists, else idle.",
    ),
    "log_dir": Option("/var/log/lpreserver", _absolute, "Directory of lpreserver.log and error.log."),
    "poll_interval": Option("1", number(0.05), "Seconds between reads of the lpreserver logs."),
    "interval": Option("60", number(1), "Seconds between snapshot listings (zfs backend)."),
    "zfs_command": program("zfs"),
    "command_timeout": command_timeout("a zfs listing"),
})
