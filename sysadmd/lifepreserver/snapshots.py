"""The ``zfs`` backend: new and destroyed snapshots, from periodic listings.

Every ``interval`` seconds (the first at start) it runs
``zfs list -H -t snapshot -o name`` and compares the names with the known set:
each destroyed snapshot, then each new one (in listing order), becomes a ``snapshot``
event of priority 1, "New snapshot of <dataset>: <snapshot>" or "Destroyed snapshot of
<dataset>: <snapshot>". With no saved set the first listing is the baseline and
publishes nothing; the set is saved in ``state_path``, so snapshots taken or destroyed
while the daemon was down are reported at the next start.

A failing or hung ``zfs`` is killed, logged with backoff, and tried again at the next
interval; a failed listing never counts as "every snapshot was destroyed".
"""

from twisted.internet import defer

from sysadmd.lifepreserver import statefile
from sysadmd.lifepreserver.mapping import SNAPSHOT, event
from sysadmd.util.commands import CommandError, RepeatedFailure, spawn_command
from sysadmd.util.log import Logger
from sysadmd.util.polling import InFlight, start_polling, stop_polling

STATE_VERSION = 1


def list_argv(zfs_command):
    """The listing command."""
    return [zfs_command, "list", "-H", "-t", "snapshot", "-o", "name"]


def parse_names(text):
    """Snapshot names in listing order (lines with an ``@``)."""
    return [line.strip() for line in text.splitlines() if "@" in line]


def snapshot_event(name, verb):
    """The event for snapshot ``name`` ("pool/ds@snap"), ``verb`` "New" or "Destroyed"."""
    dataset, _, snap = name.partition("@")
    return event(f"{verb} snapshot of {dataset}: {snap}", 1, SNAPSHOT)


class ZfsSnapshotBackend:
    """Publishes snapshot events from ``zfs list`` (see the module docstring)."""

    log = Logger()

    def __init__(self, reactor, publish, state_path, zfs_command="zfs", interval=60.0,
                 command_timeout=30.0, source="life-preserver"):
        self._reactor = reactor
        self._publish = publish
        self._state_path = state_path
        self._zfs_command = zfs_command
        self._interval = interval
        self._timeout = command_timeout
        self._source = source
        self._known = None
        self._loop = None
        self._command = None
        self._polling = InFlight()
        self._failures = RepeatedFailure(self.log, source, "zfs list")
        self._save_failures = RepeatedFailure(self.log, source, f"saving {state_path}")
        self._unsaved = False

    def start(self):
        """Load the known set and list now, then every ``interval``."""
        saved = statefile.load(self._state_path)
        if saved is not None and saved.get("version") == STATE_VERSION:
            self._known = list(saved.get("snapshots", []))
        self._loop = start_polling(self._reactor, self._interval, self.poll)

    def stop(self):
        """Stop listing; kills a running ``zfs`` and fires once it has exited."""
        self._loop = stop_polling(self._loop)
        if self._command is not None and not self._command.finished:
            self._command.result.cancel()
            return self._command.ended
        return defer.succeed(None)

    def poll(self):
        """List the snapshots and publish the differences; never fails."""
        command = spawn_command(self._reactor, list_argv(self._zfs_command), self._timeout)
        self._command = command
        d = command.result
        d.addCallback(self._listed)
        d.addErrback(self._failed)
        d.addErrback(lambda f: self.log.failure("{source}: snapshot poll failed", f,
                                                source=self._source))
        return self._polling.track(d)

    def when_idle(self):
        """A Deferred that fires once no listing is running (at once when none is)."""
        return self._polling.when_idle()

    def _listed(self, result):
        if result.exit_code != 0:
            raise CommandError(
                list_argv(self._zfs_command),
                f"exit code {result.exit_code}: {result.first_error_line() or 'no output'}",
            )
        self._failures.succeeded()
        names = parse_names(result.stdout)
        if self._known is None:
            self.log.info("{source}: {count} snapshots now; reporting changes from here on",
                          source=self._source, count=len(names))
        else:
            current = set(names)
            known = set(self._known)
            for name in sorted(known - current):
                self._publish(snapshot_event(name, "Destroyed"))
            for name in names:
                if name not in known:
                    self._publish(snapshot_event(name, "New"))
        if self._known is None or set(self._known) != set(names) or self._unsaved:
            try:
                statefile.save(self._state_path, {"version": STATE_VERSION, "snapshots": names})
            except OSError as e:
                self._unsaved = True
                self._save_failures.failed(e)
            else:
                self._unsaved = False
                self._save_failures.succeeded()
        self._known = names

    def _failed(self, failure):
        if failure.check(defer.CancelledError):
            return None
        failure.trap(CommandError)
        self._failures.failed(failure.value)
        return None
