"""Jobs and their logs in SQLite (``<state_dir>/dispatcher.sqlite``), off the reactor
thread (the database and its worker are in ``sysadmd.dispatcher.database``).

A write that fails because the database cannot be written (a full or read-only file
system, an I/O error) is not dropped: :class:`Store` keeps it, and every write after it,
in order, and tries them again with backoff until they are committed, so a job's record
is never lost while the daemon runs, and a later write never lands before an earlier one.
While writes fail, a new job is recorded only if the retry it triggers succeeds.
"""

import json
import os
import sqlite3
from collections import deque

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from sysadmd.dispatcher import database as db

RETRY_FIRST = 1.0
RETRY_MAX = 30.0


class Unwritable(Exception):
    """The database cannot be written now (a full or read-only file system, an I/O
    error); ``str()`` names the state directory and the reason."""


class _Blocked(Exception):
    """Not tried: an earlier write of the same round failed, and records keep their order."""

    def __str__(self):
        return "not tried: an earlier write failed"


def _retryable(failure):
    """Whether trying ``failure``'s write again may succeed: the file system refused it
    (full, read-only, I/O error, locked), or it was not tried. Anything else (a constraint,
    a bug) would fail forever and must not hold up the writes behind it."""
    return failure.check(_Blocked, sqlite3.OperationalError, OSError) is not None


class _Round:
    """The writes sent since the last failure. Once one of them fails, the worker skips
    the later ones (they may already be queued on its thread): only the worker sees the
    failure in time to stop them overtaking it."""

    def __init__(self):
        self.broken = False


class _Write:
    """A store operation as the worker runs it for a :class:`_Round`."""

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


class _Record:
    """One write not yet committed. ``refusable``: give up (refuse the job) rather than
    retry, because the job it records never started."""

    __slots__ = ("what", "function", "args", "refusable", "deferred", "sent")

    def __init__(self, what, function, args, refusable):
        self.what = what
        self.function = function
        self.args = args
        self.refusable = refusable
        self.deferred = defer.Deferred()
        self.sent = False


def _outputs(job, indexes):
    """The outputs rows of commands ``indexes``, and what each records (for the log of
    records that could not be saved)."""
    rows, what = [], []
    for index in indexes:
        log = job.logs.get(index)
        body, dropped = (log.body(), log.dropped) if log is not None else ("", 0)
        rc = job.return_codes.get(index)
        rows.append((job.seq, index, body, dropped, rc))
        what.append(f"job {job.job_id} command {index + 1} ended with {rc}")
    return rows, what


class Store:
    """The dispatcher's persistence; every method returns a Deferred and runs on the
    worker that ``open_worker()`` returns (a :class:`ThreadWorker`, or a
    :class:`SyncWorker` in tests). The worker is made by :meth:`open`, at service start:
    a thread made earlier would not survive twistd's daemonizing fork.

    Writes (``insert``, ``running``, ``output``, ``finish``) are committed in the order
    they were asked for. One that fails with an error of the file system is kept with
    every write after it and retried, from ``reactor.callLater``, after 1 s, then 2, 4...
    up to 30 s between tries, until they are committed; their Deferreds fire then. An
    ``insert`` is not kept: it fails with :class:`Unwritable` and the job is refused; one
    asked for while writes are failing retries the kept writes at once, before itself.
    """

    log = Logger()

    def __init__(self, open_worker, log_cap):
        self._open_worker = open_worker
        self._worker = None
        self._log_cap = log_cap
        self._reactor = None
        self._records = deque()
        self._round = _Round()
        self._held = False
        self._in_flight = 0
        self._idle = []
        self._round_wanted = False
        self._resending = False
        self._proven = False
        self._retry_call = None
        self._delay = RETRY_FIRST
        self._failing = None
        self._closing = False
        # Job seq -> indexes of its finished commands whose output is not yet written:
        # it goes with the job's next record (its next command's start, or its finish).
        self._outputs_due = {}

    def open(self, reactor):
        """Start the worker (which opens the database); ``reactor`` times the retries."""
        self._reactor = reactor
        self._closing = False
        self._worker = self._open_worker()

    @property
    def failing(self):
        """Why writes are failing (the database's error), or None while they work."""
        return self._failing

    @property
    def unsaved(self):
        """How many writes wait to be committed (in flight or kept for a retry)."""
        return len(self._records)

    def startup(self, now, now_iso, cutoff):
        """Record jobs left running by the last daemon as finished and interrupted, prune
        history finished before ``cutoff`` (None: keep all). Fires with ``(pending jobs in
        order, the highest seq used, the interrupted job ids, the number pruned)``."""
        return self._worker.run(db.startup, now, now_iso, cutoff)

    def insert(self, *jobs):
        """Record new pending jobs, all or none; fails with :class:`Unwritable` when the
        database cannot be written."""
        rows = [
            (
                job.seq, job.job_id, job.queue, json.dumps(job.commands), job.timeout,
                job.event_system, json.dumps(job.extra), job.state, job.time_started,
                job.time_finished, job.finished_at, json.dumps(job.flags()),
            )
            for job in jobs
        ]
        what = ", ".join(f"job {job.job_id} queued" for job in jobs)
        return self._write(what, db.insert_jobs, (rows,), refusable=True)

    def running(self, job):
        """Record that the job started."""
        return self._write(f"job {job.job_id} started", db.mark_running, (job.seq, job.time_started))

    def command_ended(self, job, index):
        """Command ``index`` of the job ended: its log (at most its cap,
        ``store_log_bytes``) and return code are written with the job's next record."""
        self._outputs_due.setdefault(job.seq, []).append(index)

    def save_outputs(self, job):
        """Record the outputs of the job's commands ended since its last record; returns
        the write's Deferred, or None when there is nothing to write."""
        indexes = self._outputs_due.pop(job.seq, None)
        if not indexes:
            return None
        rows, what = _outputs(job, indexes)
        return self._write("; ".join(what), db.save_outputs, (rows,))

    def finish(self, job):
        """Record that the job finished (its flags and finish time), with the outputs of
        its commands ended since its last record, in one write."""
        rows, what = _outputs(job, self._outputs_due.pop(job.seq, ()))
        flags = job.flags()
        what.append(f"job {job.job_id} finished" + "".join(f", {name}" for name in flags))
        args = (rows, job.seq, job.time_finished, job.finished_at, flags)
        return self._write("; ".join(what), db.finish_job, args)

    def prune(self, cutoff):
        """Delete jobs finished before ``cutoff``; fires with how many."""
        return self._worker.run(db.prune, cutoff)

    def details(self, job_id):
        """The newest recorded job named ``job_id``, with its logs, or None."""
        return self._worker.run(db.details, job_id, self._log_cap)

    def history(self, limit):
        """Up to ``limit`` finished jobs, newest first, without logs."""
        return self._worker.run(db.history, limit)

    @defer.inlineCallbacks
    def close(self):
        """Wait for the writes in flight, try the kept ones once more, log those that
        still cannot be saved (their Deferreds fail with :class:`Unwritable`), and close
        the database."""
        if self._worker is None:
            return
        self._closing = True
        if self._retry_call is not None:
            self._retry_call.cancel()
            self._retry_call = None
        yield self._when_idle()
        if self._held:
            self._start_round()
            yield self._when_idle()
        lost, self._records = list(self._records), deque()
        if lost:
            self.log.error(
                "dispatcher: {count} job records could not be saved in {path} ({reason}) and "
                "are lost: {records}. Free space in the state directory {state_dir}; jobs "
                "recorded as running will show as interrupted after the restart.",
                count=len(lost),
                path=self._worker.path,
                state_dir=self._state_dir(),
                reason=self._failing,
                records="; ".join(record.what for record in lost),
            )
            error = self._unwritable()
            for record in lost:
                record.deferred.errback(Failure(error))
        worker, self._worker = self._worker, None
        yield worker.close()

    # -- the ordered, retried writes ------------------------------------------------

    def _state_dir(self):
        return os.path.dirname(os.path.abspath(self._worker.path))

    def _unwritable(self):
        state_dir = self._state_dir()
        return Unwritable(f"the state directory {state_dir} cannot be written (full?): {self._failing}")

    def _write(self, what, function, args, refusable=False):
        if self._worker is None or self._closing:
            return defer.fail(Unwritable("the dispatcher database is closed"))
        record = _Record(what, function, args, refusable)
        self._records.append(record)
        if not (self._held or self._resending):
            self._send(record)
        elif refusable and not self._resending:
            # A new job is the one thing that waits for the disk: find out now, not at
            # the next timed retry.
            self._retry()
        return record.deferred

    def _send(self, record):
        record.sent = True
        self._in_flight += 1
        d = self._worker.run(_Write(self._round, record.function), *record.args)
        d.addBoth(self._written, record)

    def _written(self, result, record):
        self._in_flight -= 1
        done = not isinstance(result, Failure) or not _retryable(result)
        self._proven = not isinstance(result, Failure)
        if done:
            self._records.remove(record)
        else:
            if self._failing is None or not result.check(_Blocked):
                self._writes_failed(result)
            record.sent = False
            self._held = True
            if record.refusable:
                self._records.remove(record)
                result, done = Failure(self._unwritable()), True
        self._check_recovered()
        if not self._in_flight and self._held:
            if self._round_wanted:
                self._start_round()
            elif self._retry_call is None and not self._closing:
                self._retry_call = self._reactor.callLater(self._delay, self._retry)
                self._delay = min(self._delay * 2, RETRY_MAX)
        # Last: what the caller does next (more writes, even a retry) sees a settled store.
        if done and isinstance(result, Failure):
            record.deferred.errback(result)
        elif done:
            record.deferred.callback(result)
        if not self._in_flight:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    def _writes_failed(self, failure):
        if self._failing is None:
            self.log.error(
                "dispatcher: the database {path} cannot be written: {reason}. The state "
                "directory {state_dir} may be full (or read-only). Job records are kept in "
                "memory and retried; new jobs are refused until a write succeeds.",
                path=self._worker.path,
                state_dir=self._state_dir(),
                reason=str(failure.value),
            )
        self._failing = str(failure.value)

    def _check_recovered(self):
        # Recovered once every write asked for so far is committed (a write failed before
        # all of them), and at least one was written since the last failure.
        if (self._failing is not None and self._proven and not self._held
                and not self._in_flight and not self._resending):
            self._recovered()

    def _recovered(self):
        self.log.info(
            "dispatcher: the database {path} can be written again; delayed job records are saved",
            path=self._worker.path,
        )
        self._failing = None
        self._delay = RETRY_FIRST

    def _retry(self):
        if self._retry_call is not None:
            if self._retry_call.active():
                self._retry_call.cancel()
            self._retry_call = None
        if self._in_flight:
            # Those come back failed (not tried); they must be sent again before the rest.
            self._round_wanted = True
        else:
            self._start_round()

    def _start_round(self):
        self._round_wanted = False
        self._held = False
        self._round = _Round()
        # Writes asked for meanwhile (by the callbacks of those that succeed, with a
        # worker that answers at once) queue behind the ones being sent again.
        self._resending = True
        try:
            sent = True
            while sent and not self._held:
                sent = False
                for record in list(self._records):
                    if self._held:
                        break
                    if not record.sent:
                        self._send(record)
                        sent = True
        finally:
            self._resending = False
        self._check_recovered()
        if self._held:
            # The worker answered at once that the round failed: new jobs behind it
            # get their answer now rather than at the next retry.
            for record in [r for r in self._records if r.refusable and not r.sent]:
                self._records.remove(record)
                record.deferred.errback(Failure(self._unwritable()))

    def _when_idle(self):
        if not self._in_flight:
            return defer.succeed(None)
        d = defer.Deferred()
        self._idle.append(d)
        return d
