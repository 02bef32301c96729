"""The dispatcher's writes to its database, in one ordered journal with an explicit state:

``HEALTHY``
    Writes are sent to the worker as they are asked for; the worker commits them in that
    order. A write that fails because the database cannot be written (a full or
    read-only file system, an I/O error) moves the journal to ``RETRYING``; one that
    fails for another reason (a constraint, a bug) would fail forever: it is reported to
    its caller and dropped.
``RETRYING``
    The failed write and every write after it are kept, in order (none may land before
    an earlier one, and none is lost while the daemon runs). They are sent again as one
    *round*, in order, after a delay from Twisted's ``backoffPolicy`` (1 s, 2, 4... up to
    30 s), or at once for a new job, which waits for the disk rather than run without a
    record: a new job's write (``refusable``) that fails is not kept, its job is refused
    with :class:`Unwritable`. A write asked for while a round is out joins it. A round
    that commits everything kept means ``HEALTHY`` again. Within a round the worker skips
    the writes after one that failed (it may already hold them when the reactor hears of
    the failure), so a later write cannot overtake it.
``STOPPED``
    :meth:`Journal.close` tried the kept writes once more and logged those that still
    could not be saved (their Deferreds fail with :class:`Unwritable`); every write fails
    so from then on.

The failure is logged once, with the reason and the state directory, and the recovery
once. A write's Deferred fires when it is committed.
"""

import os
import sqlite3
from collections import deque

from twisted.application.internet import backoffPolicy
from twisted.internet import defer
from twisted.python.failure import Failure

from sysadmd.util.log import Logger
from sysadmd.util.timers import cancel_call

HEALTHY = "healthy"
RETRYING = "retrying"
STOPPED = "stopped"

RETRY_FIRST = 1.0
RETRY_MAX = 30.0
# No jitter: one database, one writer; exact delays keep the log and the tests readable.
RETRY_POLICY = backoffPolicy(RETRY_FIRST, RETRY_MAX, factor=2.0, jitter=lambda: 0.0)


class Unwritable(Exception):
    """The database cannot be written now (a full or read-only file system, an I/O
    error); ``str()`` names the state directory and the reason."""


class _Blocked(Exception):
    """Not tried: an earlier write of the same round failed, and records keep their order."""

    def __str__(self):
        return "not tried: an earlier write failed"


def _retryable(failure):
    """Whether trying ``failure``'s write again may succeed: the file system refused it
    (full, read-only, I/O error, locked), or it was not tried."""
    return failure.check(_Blocked, sqlite3.OperationalError, OSError) is not None


class _Round:
    """The writes sent since the last failure; ``broken`` once one of them failed, on the
    worker's thread (the only place that sees it in time to stop the later ones)."""

    def __init__(self):
        self.broken = False


class _Write:
    """A journal entry's operation as the worker runs it within a :class:`_Round`."""

    def __init__(self, round_, function):
        self._round = round_
        self._function = function

    def __call__(self, conn, *args):
        if self._round.broken:
            raise _Blocked()
        try:
            return self._function(conn, *args)
        except (sqlite3.OperationalError, OSError):
            self._round.broken = True
            raise

    def rolled_back(self):
        """The transaction holding this write was rolled back (a failed COMMIT)."""
        self._round.broken = True


class _Entry:
    """One write not yet committed. ``refusable``: give up (refuse the job) rather than
    keep it, because the job it records never started."""

    __slots__ = ("what", "function", "args", "refusable", "deferred", "sent")

    def __init__(self, what, function, args, refusable):
        self.what = what
        self.function = function
        self.args = args
        self.refusable = refusable
        self.deferred = defer.Deferred()
        self.sent = False


class Journal:
    """The ordered writes to the database of ``worker`` (see the module docstring);
    ``reactor`` times the retries."""

    log = Logger()

    def __init__(self, reactor, worker, retry_policy=RETRY_POLICY):
        self._reactor = reactor
        self._worker = worker
        self._policy = retry_policy
        self.state = HEALTHY
        self.failing = None  # why writes fail (the database's error), while RETRYING
        self._entries = deque()  # every write not yet committed, in order
        self._round = _Round()
        self._broken = False  # the current round failed (as the reactor has heard)
        self._in_flight = 0
        self._sending = False
        self._round_wanted = False
        self._attempt = 0
        self._retry_call = None
        self._closing = False
        self._idle = []

    @property
    def unsaved(self):
        """How many writes wait to be committed (sent, or kept for a retry)."""
        return len(self._entries)

    def write(self, what, function, args, refusable=False):
        """Run ``function(conn, *args)`` in order after every earlier write; a Deferred
        that fires once it is committed. ``what`` names it in the log if it is lost."""
        if self.state == STOPPED or self._closing:
            return defer.fail(Unwritable("the dispatcher database is closed"))
        entry = _Entry(what, function, args, refusable)
        self._entries.append(entry)
        if self._sending:
            pass  # the round being sent takes it, after those before it
        elif not self._broken:
            self._send(entry)
        elif refusable or len(self._entries) == 1:
            # A new job is the one thing that waits for the disk: find out now, not at
            # the next timed retry. So is a write with nothing kept before it.
            self._retry()
        else:
            self._wait()
        return entry.deferred

    def _send(self, entry):
        entry.sent = True
        self._in_flight += 1
        d = self._worker.run(_Write(self._round, entry.function), *entry.args)
        d.addBoth(self._written, entry)

    def _written(self, result, entry):
        self._in_flight -= 1
        done = not isinstance(result, Failure) or not _retryable(result)
        if done:
            self._entries.remove(entry)
        else:
            entry.sent = False
            self._broken = True
            if self.state == HEALTHY or not result.check(_Blocked):
                self._failed(result)
            if entry.refusable:
                self._entries.remove(entry)
                result, done = Failure(self._unwritable()), True
        if not self._in_flight and not self._sending:
            self._settle()
        # Last: what the caller does next (more writes, even a retry) sees a settled journal.
        if done and isinstance(result, Failure):
            entry.deferred.errback(result)
        elif done:
            entry.deferred.callback(result)
        if not self._in_flight:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    def _failed(self, failure):
        if self.state == HEALTHY:
            self.log.error(
                "dispatcher: the database {path} cannot be written: {reason}. The state "
                "directory {state_dir} may be full (or read-only). Job records are kept in "
                "memory and retried; new jobs are refused until a write succeeds.",
                path=self._worker.path,
                state_dir=self._state_dir(),
                reason=str(failure.value),
            )
            self.state = RETRYING
        self.failing = str(failure.value)

    def _settle(self):
        """Nothing is in flight: recovered, or the next round (now or after the delay)."""
        if self.state != RETRYING:
            return
        if not self._broken:
            self._recovered()
        elif self._round_wanted:
            self._start_round()
        else:
            self._wait()

    def _wait(self):
        if self._retry_call is None and not self._closing and not self._in_flight and self._entries:
            self._retry_call = self._reactor.callLater(self._policy(self._attempt), self._retry)
            self._attempt += 1

    def _recovered(self):
        self.log.info(
            "dispatcher: the database {path} can be written again; delayed job records are saved",
            path=self._worker.path,
        )
        self.state = HEALTHY
        self.failing = None
        self._attempt = 0

    def _retry(self):
        self._retry_call = cancel_call(self._retry_call)
        if self._in_flight:
            # Those come back failed (not tried); they must be sent again before the rest.
            self._round_wanted = True
        else:
            self._start_round()

    def _start_round(self):
        self._round_wanted = False
        self._round = _Round()
        self._broken = False
        # Writes asked for meanwhile (by the callbacks of those that succeed, with a
        # worker that answers at once) queue behind the ones being sent again.
        self._sending = True
        try:
            while not self._broken:
                entry = next((e for e in self._entries if not e.sent), None)
                if entry is None:
                    break
                self._send(entry)
        finally:
            self._sending = False
        if self._broken:
            # The worker answered at once that the round failed: new jobs behind it get
            # their answer now rather than at the next retry.
            for entry in [e for e in self._entries if e.refusable and not e.sent]:
                self._entries.remove(entry)
                entry.deferred.errback(Failure(self._unwritable()))
        if not self._in_flight:
            self._settle()

    def _when_idle(self):
        if not self._in_flight:
            return defer.succeed(None)
        d = defer.Deferred()
        self._idle.append(d)
        return d

    @defer.inlineCallbacks
    def close(self):
        """Wait for the writes in flight, try the kept ones once more, log those that
        still cannot be saved (their Deferreds fail with :class:`Unwritable`): STOPPED."""
        self._closing = True
        self._retry_call = cancel_call(self._retry_call)
        yield self._when_idle()
        if self._broken and self._entries:
            self._start_round()
            yield self._when_idle()
        lost, self._entries = list(self._entries), deque()
        if lost:
            self.log.error(
                "dispatcher: {count} job records could not be saved in {path} ({reason}) and "
                "are lost: {records}. Free space in the state directory {state_dir}; jobs "
                "recorded as running will show as interrupted after the restart.",
                count=len(lost),
                path=self._worker.path,
                state_dir=self._state_dir(),
                reason=self.failing,
                records="; ".join(entry.what for entry in lost),
            )
            error = self._unwritable()
            for entry in lost:
                entry.deferred.errback(Failure(error))
        self.state = STOPPED

    def _state_dir(self):
        return os.path.dirname(os.path.abspath(self._worker.path))

    def _unwritable(self):
        return Unwritable(
            f"the state directory {self._state_dir()} cannot be written (full?): {self.failing}"
        )
