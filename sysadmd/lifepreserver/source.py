"""The running ``life-preserver`` source: picks a backend and runs it.

``backend = auto`` picks ``lpreserver`` when ``<log_dir>/lpreserver.log`` exists, else
``zfs`` when the ``zfs`` command is present, else the source stays idle and says so once
in the log. The hub caches the last event for new subscribers (``replay_last``).
"""

import os

from twisted.internet import defer
from zope.interface import implementer

from sysadmd.interfaces import IEventSource
from sysadmd.lifepreserver.lpreserver import LpreserverBackend
from sysadmd.lifepreserver.snapshots import ZfsSnapshotBackend
from sysadmd.util.commands import COMMAND_CWD, MINIMAL_ENV
from sysadmd.util.log import Logger
from sysadmd.util.process import find_executable

BACKENDS = ("auto", "lpreserver", "zfs")


@implementer(IEventSource)
class LifePreserverSource:
    """Publishes ``life_preserver`` events (see the module docstring)."""

    name = "life-preserver"
    frame_name = "life_preserver"
    replay_last = True
    config_section = "source:life-preserver"

    log = Logger()

    def __init__(self, reactor, state_dir, backend="auto", log_dir="/var/log/lpreserver",
                 interval=60.0, poll_interval=1.0, zfs_command="zfs", command_timeout=30.0):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
        self._reactor = reactor
        self._state_dir = state_dir
        self._backend_setting = backend
        self._log_dir = log_dir
        self._interval = interval
        self._poll_interval = poll_interval
        self._zfs_command = zfs_command
        self._timeout = command_timeout
        self.backend = None
        self.backend_name = None

    @classmethod
    def from_context(cls, context):
        """Build from a :class:`sysadmd.events.context.SourceContext`."""
        config = context.config
        return cls(
            context.reactor,
            context.state_dir,
            backend=config["backend"],
            log_dir=config["log_dir"],
            interval=config["interval"],
            poll_interval=config["poll_interval"],
            zfs_command=config["zfs_command"],
            command_timeout=config["command_timeout"],
        )

    def choose_backend(self):
        """The backend to run: ``"lpreserver"``, ``"zfs"`` or None (idle)."""
        if self._backend_setting != "auto":
            return self._backend_setting
        if os.path.exists(os.path.join(self._log_dir, "lpreserver.log")):
            return "lpreserver"
        if find_executable(self._zfs_command, MINIMAL_ENV, COMMAND_CWD)[0] is not None:
            return "zfs"
        return None

    def start(self, publish):
        """Start the chosen backend (or stay idle, saying why once)."""
        self.backend_name = self.choose_backend()
        if self.backend_name == "lpreserver":
            self.backend = LpreserverBackend(
                self._reactor,
                publish,
                self._log_dir,
                os.path.join(self._state_dir, "life-preserver.lpreserver.json"),
                poll_interval=self._poll_interval,
                source=self.name,
            )
        elif self.backend_name == "zfs":
            self.backend = ZfsSnapshotBackend(
                self._reactor,
                publish,
                os.path.join(self._state_dir, "life-preserver.snapshots.json"),
                zfs_command=self._zfs_command,
                interval=self._interval,
                command_timeout=self._timeout,
                source=self.name,
            )
        else:
            self.log.info(
                "{source}: idle: no {log} and no zfs command ({zfs!r}); nothing to watch",
                source=self.name,
                log=os.path.join(self._log_dir, "lpreserver.log"),
                zfs=self._zfs_command,
            )
            return defer.succeed(None)
        self.log.info("{source}: using the {backend} backend", source=self.name,
                      backend=self.backend_name)
        self.backend.start()
        return defer.succeed(None)

    def stop(self):
        """Stop the backend; fires when it has stopped."""
        if self.backend is None:
            return defer.succeed(None)
        return defer.maybeDeferred(self.backend.stop)
