"""Jobs and their logs in SQLite (``<state_dir>/dispatcher.sqlite``), off the reactor
thread (the database and its worker are in ``sysadmd.dispatcher.database``).

Every write goes through the ordered :class:`~sysadmd.dispatcher.journal.Journal`: a write
that fails because the database cannot be written (a full state directory) is kept, with
every write after it, in order, and retried until committed (``RETRYING``); meanwhile a
new job is recorded only if the retry it triggers succeeds, else it is refused
(:class:`~sysadmd.dispatcher.journal.Unwritable`). The journal's module describes its
states.
"""

import json

from twisted.internet import defer

from sysadmd.dispatcher import database as db
from sysadmd.dispatcher.journal import HEALTHY, RETRYING, STOPPED, Journal, Unwritable

__all__ = ["HEALTHY", "RETRYING", "STOPPED", "Store", "Unwritable"]


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

    Writes (``insert``, ``running``, ``save_outputs``, ``finish``) go through the
    :class:`Journal`; an ``insert`` is refusable (see the module docstring). The store
    also knows which commands' outputs are due with a job's next record.
    """

    def __init__(self, open_worker, log_cap, outputs=None):
        self._open_worker = open_worker
        # The jobs' output files (an OutputDirectory): logs are read from them, and they
        # go with their records.
        self._outputs = outputs
        self._worker = None
        self._journal = None
        self._log_cap = log_cap
        # Job seq -> indexes of its finished commands whose output is not yet written:
        # it goes with the job's next record (its next command's start, or its finish).
        self._outputs_due = {}

    def open(self, reactor):
        """Start the worker (which opens the database); ``reactor`` times the retries."""
        self._worker = self._open_worker()
        self._journal = Journal(reactor, self._worker)

    @property
    def state(self):
        """The journal's state: HEALTHY, RETRYING or STOPPED (None before :meth:`open`)."""
        return None if self._journal is None else self._journal.state

    @property
    def failing(self):
        """Why writes are failing (the database's error), or None while they work."""
        return None if self._journal is None else self._journal.failing

    @property
    def unsaved(self):
        """How many writes wait to be committed (in flight or kept for a retry)."""
        return 0 if self._journal is None else self._journal.unsaved

    def _write(self, what, function, args, refusable=False):
        if self._journal is None:
            return defer.fail(Unwritable("the dispatcher database is closed"))
        return self._journal.write(what, function, args, refusable)

    def startup(self, now, now_iso, cutoff):
        """Record jobs left running by the last daemon as finished and interrupted, prune
        history finished before ``cutoff`` (None: keep all). Fires with ``(pending jobs in
        order, the highest seq used, the interrupted job ids, the number pruned)``."""
        d = self._worker.run(db.startup, now, now_iso, cutoff)

        def pruned(result):
            pending, last, interrupted, seqs = result
            return pending, last, interrupted, self._remove_outputs(seqs)

        return d.addCallback(pruned)

    def _remove_outputs(self, seqs):
        if self._outputs is not None:
            self._outputs.remove(seqs)
        return len(seqs)

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
        """Delete jobs finished before ``cutoff`` and their output files; fires with how
        many."""
        return self._worker.run(db.prune, cutoff).addCallback(self._remove_outputs)

    def details(self, job_id):
        """The newest recorded job named ``job_id``, with its logs (from its output file
        when it has one), or None."""
        return self._worker.run(db.details, job_id, self._log_cap, self._file_logs)

    def find(self, job_id):
        """The newest recorded job named ``job_id`` with its return codes (no logs), or
        None."""
        return self._worker.run(db.find, job_id)

    def file_logs(self, job):
        """A Deferred of ``job``'s logs read from its output file (``{index: CommandLog}``,
        each the last ``store_log_bytes``), or of None when it has no file."""
        return self._worker.run(lambda conn: db.logs_from(self._file_logs, job, self._log_cap))

    def _file_logs(self, seq, commands, cap):
        if self._outputs is None:
            return None
        return self._outputs.logs(seq, commands, cap)

    def history(self, limit):
        """Up to ``limit`` finished jobs, newest first, without logs."""
        return self._worker.run(db.history, limit)

    @defer.inlineCallbacks
    def close(self):
        """Close the journal (see :meth:`Journal.close`), then the database."""
        if self._worker is None:
            return
        yield self._journal.close()
        worker, self._worker = self._worker, None
        yield worker.close()
