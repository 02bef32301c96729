"""The built-in ``life-preserver`` event source (frame name ``life_preserver``)."""

import os

from twisted.plugin import IPlugin
from zope.interface import implementer

from sysadmd.config.options import Option, choice, number, string
from sysadmd.interfaces import IEventSourceFactory
from sysadmd.lifepreserver.source import BACKENDS, LifePreserverSource


def _nonempty(text):
    value = string(text)
    if not value:
        raise ValueError("a value is needed")
    return value


def _absolute(text):
    value = _nonempty(text)
    if not os.path.isabs(value):
        raise ValueError(f"{value!r} is not an absolute path")
    return value


@implementer(IPlugin, IEventSourceFactory)
class LifePreserverFactory:
    """Snapshot and replication events from Life Preserver's logs or from zfs."""

    name = "life-preserver"
    options = {
        "backend": Option(
            "auto",
            choice(*BACKENDS),
            "lpreserver (follow its logs), zfs (list snapshots), or auto: lpreserver when "
            "<log_dir>/lpreserver.log exists, else zfs when the zfs command exists, else idle.",
        ),
        "log_dir": Option(
            "/var/log/lpreserver", _absolute, "Directory of lpreserver.log and error.log."
        ),
        "poll_interval": Option(
            "1", number(0.05), "Seconds between reads of the lpreserver logs."
        ),
        "interval": Option("60", number(1), "Seconds between snapshot listings (zfs backend)."),
        "zfs_command": Option(
            "zfs",
            _nonempty,
            "The zfs program: a path, or a name searched in /sbin, /bin, /usr/sbin, /usr/bin, "
            "/usr/local/sbin and /usr/local/bin.",
        ),
        "command_timeout": Option(
            "30", number(0.1), "Seconds a zfs listing may take before it is killed."
        ),
    }

    def build(self, context):
        """A new :class:`LifePreserverSource` configured from ``context``."""
        return LifePreserverSource.from_context(context)


life_preserver = LifePreserverFactory()
