"""Each source's recent events, numbered, kept in memory and on disk.

A source's log has an *epoch* (a random name, new only when the log is lost or reset)
and numbers its events 1, 2, 3, ... (``seq``). It keeps the newest events within
``retain_events``, ``retain_seconds`` and ``retain_bytes``, so that a client that lost
its connection can be sent what it missed (:mod:`sysadmd.events.resume`).

On disk (``<state_dir>/events/<source>.log``) it is one header line and one line per
event, appended with a single ``write`` before the event is sent to anyone: a daemon
killed at any moment restarts with every event a client may have seen, so a number is
never given twice to different events. A torn last line (killed mid-write) is cut off at
start; a header that cannot be read means the log is lost, and a new epoch begins. Writes
are not synced one by one: a log that was not closed by a clean stop and was written
during an earlier boot of the machine (its header keeps the boot id) may have lost what
the kernel had not written out, so it starts a new epoch too. The file is rewritten
(atomically) once most of it holds expired events.
"""

import collections
import os
import re
import secrets
import time

from sysadmd.util.files import atomic_write, make_private_dirs
from sysadmd.util.log import Logger

log = Logger()

MAGIC = b"sysadmd-events 1 "  # then the epoch, the seq before the first entry, the boot id
CLOSED = b"closed"  # the last line of a log closed by a clean stop
BOOT_ID = "/proc/sys/kernel/random/boot_id"
ENTRY_OVERHEAD = 120  # bytes of memory an entry costs beyond its payload (tuple, ints)
RETRY_SECONDS = 5.0  # between attempts to write a failed log again
_EPOCH = re.compile(rb"[0-9a-f]{16}")


class SystemClock:
    """The wall clock, for a hub built without a reactor (tests, tools)."""

    seconds = staticmethod(time.time)


def new_epoch():
    """A fresh epoch name."""
    return secrets.token_hex(8)


def boot_id():
    """This boot's id (Linux), or ``-`` where there is none."""
    try:
        with open(BOOT_ID, "rb") as f:
            return f.read().strip().replace(b"-", b"") or b"-"
    except OSError:
        return b"-"


class SourceLog:
    """One source's numbered events (``path`` None: in memory only).

    ``entries`` holds ``(seq, time, payload)`` oldest first; ``head`` is the newest seq
    (0 before the first event)."""

    def __init__(self, name, path, clock, retain_events, retain_seconds, retain_bytes):
        self.name = name
        self._path = path
        self._clock = clock
        self.retain_events = retain_events
        self.retain_seconds = retain_seconds
        self.retain_bytes = retain_bytes
        self.entries = collections.deque()
        self.bytes = 0
        self.head = 0
        self.epoch = None
        self._fd = None
        self._file_entries = 0
        self._failed_at = None  # when the file last failed (None: it works)
        if path is None:
            self.epoch = new_epoch()
        else:
            try:
                self._open()
            except OSError as error:
                self._fail(error, self._clock.seconds())

    @property
    def first_available(self):
        """The oldest retained seq (head + 1 when none is)."""
        return self.entries[0][0] if self.entries else self.head + 1

    def record(self, make):
        """Number and keep a new event; ``make(seq, epoch)`` gives its frame payload.
        Returns ``(seq, payload)``: on disk first, or, when the file just failed, made
        again for the new epoch (the file no longer holds what clients are sent)."""
        seq = self.head + 1
        payload = make(seq, self.epoch)
        now = self._clock.seconds()
        if self._path is not None and not self._store(seq, now, payload):
            payload = make(seq, self.epoch)
        self._keep(seq, now, payload)
        return seq, payload

    def append(self, seq, payload):
        """Keep event ``seq`` (== head + 1) with its frame ``payload``; on disk first."""
        now = self._clock.seconds()
        if self._path is not None:
            self._store(seq, now, payload)
        self._keep(seq, now, payload)

    def _keep(self, seq, now, payload):
        self.head = seq
        self.entries.append((seq, now, payload))
        self.bytes += len(payload) + ENTRY_OVERHEAD
        self.expire(now)

    def expire(self, now=None):
        """Forget events beyond the limits."""
        now = self._clock.seconds() if now is None else now
        entries = self.entries
        oldest = now - self.retain_seconds
        while entries and (
            len(entries) > self.retain_events or self.bytes > self.retain_bytes or entries[0][1] < oldest
        ):
            self.bytes -= len(entries.popleft()[2]) + ENTRY_OVERHEAD
        if self._fd is not None and self._file_entries > 2 * len(entries) + 1000:
            self._rewrite()

    def since(self, seq):
        """The retained ``(seq, time, payload)`` after ``seq``, oldest first."""
        entries = self.entries
        if not entries or seq >= self.head:
            return []
        start = max(0, seq + 1 - entries[0][0])
        return list(entries)[start:]

    def close(self):
        """Close the file, marked as closed cleanly (the log stays valid on disk)."""
        if self._fd is not None:
            try:
                self._write(CLOSED + b"\n")
            finally:
                os.close(self._fd)
                self._fd = None

    # -- the file ---------------------------------------------------------------------

    def _store(self, seq, now, payload):
        """Append an entry to the file; False when the file failed just now. While it
        is failed, events live in memory only, and a rewrite is tried every
        RETRY_SECONDS (a full disk that has room again)."""
        if self._fd is None:
            if self._failed_at is None or now - self._failed_at < RETRY_SECONDS:
                return True
            try:
                self._rewrite()
            except OSError:
                self._failed_at = now
                return True
            self._failed_at = None
            log.info("event log {path} is written again", path=self._path)
        try:
            self._write(b"%d %.3f %s\n" % (seq, now, payload))
        except OSError as error:
            self._fail(error, now)
            return False
        self._file_entries += 1
        return True

    def _fail(self, error, now):
        """The file cannot be written: stop using it and start a new epoch, since after a
        crash it would not hold events clients were sent, and their numbers would be
        given again."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._failed_at = now
        self.epoch = new_epoch()
        # What is kept was sent under the old epoch: a client resuming it gets a gap.
        self.entries.clear()
        self.bytes = 0
        log.error("event log {path} cannot be written ({error}): its events are kept in memory "
                  "under a new epoch until it can be written again", path=self._path,
                  error=error.strerror or str(error))

    def _open(self):
        make_private_dirs(os.path.dirname(self._path))
        try:
            with open(self._path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = None
        loaded = None if data is None else self._load(data)
        if loaded:
            self._rewrite()  # drops what expired, and any torn last line
            return
        if loaded is False:
            log.warn("event log {path} cannot be read: starting a new epoch", path=self._path)
        self.epoch = new_epoch()
        self._rewrite()

    def _load(self, data):
        header, _, body = data.partition(b"\n")
        fields = header[len(MAGIC):].split(b" ")
        if not header.startswith(MAGIC) or len(fields) != 3:
            return False
        epoch, base, boot = fields
        if not _EPOCH.fullmatch(epoch) or not base.isdigit():
            return False
        lines = body.split(b"\n")
        if lines and lines[-1]:
            lines.pop()  # torn: written partly when the daemon died
        clean = bool(lines) and lines[-2:] == [CLOSED, b""]
        if not clean and boot != boot_id():
            # Not closed, and the machine restarted since: what the kernel had not
            # written yet is gone, and its numbers would be given again.
            log.warn("event log {path} was not closed before the machine restarted; events "
                     "may have been lost: starting a new epoch", path=self._path)
            return None
        self.epoch = epoch.decode("ascii")
        self.head = int(base)
        for line in lines:
            if not line or line == CLOSED:
                continue
            try:
                seq_text, time_text, payload = line.split(b" ", 2)
                seq, when = int(seq_text), float(time_text)
            except ValueError:
                log.warn("event log {path}: an unreadable line was skipped", path=self._path)
                continue
            if seq <= self.head:
                continue
            if self.entries and seq != self.head + 1:
                # A hole (a line skipped above): what came before it cannot be replayed
                # in order, so only what follows is kept.
                self.entries.clear()
                self.bytes = 0
            self.head = seq
            self.entries.append((seq, when, payload))
            self.bytes += len(payload) + ENTRY_OVERHEAD
        # Expire by count and size now; by age too (the daemon may have been down).
        self.expire()
        return True

    def _rewrite(self):
        self.close()
        entries = self.entries
        # The header keeps the numbering going after a restart even when all expired.
        base = entries[0][0] - 1 if entries else self.head
        lines = [b"%s%s %d %s\n" % (MAGIC, self.epoch.encode("ascii"), base, boot_id())]
        lines += [b"%d %.3f %s\n" % entry for entry in entries]
        atomic_write(self._path, b"".join(lines))
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND)
        self._file_entries = len(entries)

    def _write(self, data):
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]


class Retention:
    """Opens each source's :class:`SourceLog` under ``state_dir`` (None: in memory)."""

    def __init__(self, clock, state_dir=None, retain_events=10000, retain_seconds=3600,
                 retain_bytes=8 * 1024 * 1024):
        self._clock = clock
        self._dir = None if state_dir is None else os.path.join(state_dir, "events")
        self._limits = (retain_events, retain_seconds, retain_bytes)
        self.logs = {}

    def open(self, name):
        """The log of source ``name``."""
        path = None if self._dir is None else os.path.join(self._dir, f"{name}.log")
        self.logs[name] = source_log = SourceLog(name, path, self._clock, *self._limits)
        return source_log

    def close(self):
        """Close every log's file."""
        for source_log in self.logs.values():
            source_log.close()
