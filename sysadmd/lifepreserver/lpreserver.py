"""The ``lpreserver`` backend: Life Preserver's logs, followed and mapped.

It polls ``<log_dir>/lpreserver.log`` and ``<log_dir>/error.log`` every
``poll_interval`` seconds through :class:`~sysadmd.lifepreserver.follower.LogFollower`,
maps each complete line (:func:`~sysadmd.lifepreserver.mapping.map_line`), and while a
replication runs, follows the ``zfs send -v`` log named in its "Starting replication" line
for progress events, published only when the figure changes and at most once per
``progress_interval`` (the latest figure is published when the interval is over).

The read positions (and the running replication) are saved in ``state_path`` after
every batch, so a restart emits the lines written while the daemon was down, in order,
and nothing twice. The very first start skips what the logs already hold.
"""

import os

from sysadmd.lifepreserver import statefile
from sysadmd.lifepreserver.follower import LogFollower
from sysadmd.lifepreserver.mapping import REPLICATION, event, map_line
from sysadmd.lifepreserver.progress import ReplicationProgress
from sysadmd.util.commands import RepeatedFailure
from sysadmd.util.log import Logger
from sysadmd.util.polling import start_polling, stop_polling
from sysadmd.util.timers import cancel_call

STATE_VERSION = 1

#: The followed logs: file name and whether it is the error log.
LOGS = (("lpreserver.log", False), ("error.log", True))


class LpreserverBackend:
    """Publishes events from Life Preserver's logs (see the module docstring)."""

    log = Logger()

    def __init__(self, reactor, publish, log_dir, state_path, poll_interval=1.0,
                 progress_interval=1.0, source="life-preserver"):
        self._reactor = reactor
        self._publish = publish
        self.log_dir = log_dir
        self._state_path = state_path
        self._poll_interval = poll_interval
        self._progress_interval = progress_interval
        self._source = source
        self._followers = []
        self._failures = {}
        self._loop = None
        self._catching_up = True
        self._replication = None
        self._progress = None
        self._send_log = None
        self._last_progress_at = None
        self._pending = None
        self._pending_call = None
        self._saved = None
        self._save_failures = RepeatedFailure(self.log, source, f"saving {state_path}")

    def start(self):
        """Restore the saved positions (or skip existing lines on a first start), read
        what was written meanwhile, then poll."""
        saved = statefile.load(self._state_path)
        if saved is not None and (
            saved.get("version") != STATE_VERSION or saved.get("log_dir") != self.log_dir
        ):
            saved = None
        positions = saved.get("logs", {}) if saved else {}
        for name, is_error in LOGS:
            path = os.path.join(self.log_dir, name)
            follower = LogFollower(
                path, path + ".old", position=positions.get(name), from_end=saved is None
            )
            self._followers.append((name, is_error, follower))
            self._failures[name] = RepeatedFailure(self.log, self._source, f"reading {path}")
        replication = saved.get("replication") if saved else None
        if replication:
            self._begin_replication(replication.get("dataset", ""), replication.get("send_log"))
        self._save()
        self._loop = start_polling(self._reactor, self._poll_interval, self.poll)

    def stop(self):
        """Stop polling and save the positions."""
        self._loop = stop_polling(self._loop)
        self._cancel_pending()
        if self._followers:
            self._save()

    def poll(self):
        """Read and publish every new complete line, then the replication progress."""
        try:
            self._poll()
        except Exception:
            # A bug must not stop the LoopingCall: log it and poll again next time.
            self.log.failure("{source}: reading the lpreserver logs failed", source=self._source)

    def _poll(self):
        for name, is_error, follower in self._followers:
            try:
                while True:
                    lines = follower.read_lines()
                    for line in lines:
                        self._handle(line, is_error)
                    if not follower.more:
                        break
                self._failures[name].succeeded()
            except OSError as e:
                self._failures[name].failed(e)
        self._catching_up = False
        self._read_progress()
        self._save()

    def _handle(self, line, is_error):
        mapped = map_line(line, error_log=is_error)
        if mapped.replication is not None:
            if mapped.replication[0] == "start":
                _, dataset, send_log = mapped.replication
                self._begin_replication(dataset, send_log, fresh=not self._catching_up)
            else:
                self._end_replication()
        if mapped.event is not None:
            self._publish(mapped.event)

    def _begin_replication(self, dataset, send_log, fresh=False):
        """Watch ``send_log`` for ``dataset``'s progress.

        ``fresh`` (a live "Starting replication" line) skips what the send log holds
        now: it is the previous replication's until zfs send rewrites it.
        """
        self._end_replication()
        self._replication = {"dataset": dataset, "send_log": send_log}
        self._progress = ReplicationProgress(dataset)
        self._send_log = LogFollower(send_log, None, from_end=fresh) if send_log else None
        self._send_failures = RepeatedFailure(self.log, self._source, f"reading {send_log}")

    def _end_replication(self):
        self._cancel_pending()
        self._replication = None
        self._progress = None
        self._send_log = None
        self._last_progress_at = None

    def _read_progress(self):
        if self._send_log is None:
            return
        latest = None
        try:
            while True:
                for line in self._send_log.read_lines():
                    message = self._progress.feed(line)
                    if message is not None:
                        latest = message
                if not self._send_log.more:
                    break
            self._send_failures.succeeded()
        except OSError as e:
            self._send_failures.failed(e)
        if latest is not None:
            self._offer_progress(latest)

    def _offer_progress(self, message):
        now = self._reactor.seconds()
        if self._pending_call is not None:
            self._pending = message
        elif (self._last_progress_at is None
              or now - self._last_progress_at >= self._progress_interval):
            self._emit_progress(message)
        else:
            self._pending = message
            self._pending_call = self._reactor.callLater(
                self._last_progress_at + self._progress_interval - now, self._flush_progress
            )

    def _flush_progress(self):
        self._pending_call = None
        message, self._pending = self._pending, None
        if message is not None:
            self._emit_progress(message)

    def _emit_progress(self, message):
        self._last_progress_at = self._reactor.seconds()
        self._publish(event(message, 0, REPLICATION))

    def _cancel_pending(self):
        self._pending_call = cancel_call(self._pending_call)
        self._pending = None

    def _save(self):
        """Write the positions when they changed since the last write."""
        state = {
            "version": STATE_VERSION,
            "log_dir": self.log_dir,
            "logs": {name: follower.position() for name, _, follower in self._followers},
            "replication": self._replication,
        }
        if state == self._saved:
            return
        try:
            statefile.save(self._state_path, state)
        except OSError as e:
            # Retried at every poll until it works; logged with backoff.
            self._save_failures.failed(e)
            return
        self._save_failures.succeeded()
        self._saved = state
