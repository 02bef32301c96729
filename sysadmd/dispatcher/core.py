"""The dispatcher: its parts tied together behind the API the rest of the daemon uses.

Everything here runs on the reactor thread; the store does its I/O on its own thread and
answers with Deferreds. A job's life: ``submit`` reserves its id and queues it (held);
once its row is committed it is announced (its pending event) and may start; it starts
when the scheduler gives it a place; it finishes once, whatever happens (success, failure,
kill, timeout, shutdown). The parts:

- :class:`~sysadmd.dispatcher.lifecycle.Lifecycle`: start (recovery), readiness, pruning,
  stop;
- :class:`~sysadmd.dispatcher.scheduler.Scheduler`: the queues, ``max_processes``, the
  announcement of new jobs;
- :class:`~sysadmd.dispatcher.table.JobTable`: the jobs in memory, by id;
- :class:`~sysadmd.dispatcher.progress.JobProgress`: starts runs and turns what they
  report (:class:`~sysadmd.interfaces.IJobObserver`) into events and records.
"""

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict

from twisted.internet import defer

from sysadmd.dispatcher import events
from sysadmd.dispatcher.follow import OutputFollowers, output_args
from sysadmd.dispatcher.job import (
    FINISHED,
    PENDING,
    DispatcherUnavailable,
    InvalidJob,
    Job,
    check_job,
)
from sysadmd.dispatcher.lifecycle import Lifecycle
from sysadmd.dispatcher.output import Slice
from sysadmd.dispatcher.outputs import OutputDirectory
from sysadmd.dispatcher.progress import JobProgress
from sysadmd.dispatcher.scheduler import Scheduler
from sysadmd.dispatcher.store import Unwritable
from sysadmd.dispatcher.table import JobTable
from sysadmd.util.log import Logger


@dataclass
class Settings:
    """The ``[dispatcher]`` options, parsed (see ``sysadmd.dispatcher.options``)."""

    queues: Dict[str, int] = field(default_factory=lambda: OrderedDict(no_queue=0))
    max_processes: int = 64
    default_timeout: float = 0.0
    kill_grace: float = 5.0
    update_interval: float = 1.0
    event_log_bytes: int = 65536
    store_log_bytes: int = 10 * 1024 * 1024
    history_days: float = 30.0
    max_output_bytes: int = 64 * 1024 * 1024
    output_batch_bytes: int = 16 * 1024
    output_batch_ms: float = 100.0
    env: Dict[str, str] = field(default_factory=dict)
    cwd: str = "/"


class Dispatcher:
    """Runs jobs; see the package docstring for ``submit``, the plugin API.

    ``listener(args)`` callables added with :meth:`add_listener` get every event's args.
    ``queues`` (name -> :class:`~sysadmd.dispatcher.queue.JobQueue`) and ``default_queue``
    are read by the API and the metrics.
    """

    log = Logger()

    def __init__(self, reactor, store, settings, outputs=None):
        self._reactor = reactor
        self._store = store
        self.settings = settings
        if outputs is None:
            outputs = OutputDirectory(None)
        self.outputs = outputs
        self.followers = OutputFollowers(
            reactor, self.find_job, outputs, settings.output_batch_bytes, settings.output_batch_ms)
        self._listeners = []
        self._seq = 0
        self._table = JobTable()
        self._scheduler = Scheduler(
            reactor, settings.queues, settings.max_processes, self._start_job, self._table.running
        )
        self._progress = JobProgress(
            reactor, settings, store, self._table, self._scheduler, self._publish, outputs, self.followers)
        self._lifecycle = Lifecycle(
            reactor, store, settings.history_days, self._recovered, self._stopping, self._stop_jobs
        )

    @property
    def queues(self):
        """The queues by name, in configuration order."""
        return self._scheduler.queues

    @property
    def default_queue(self):
        """The queue of jobs that name none."""
        return self._scheduler.default_queue

    # -- events ---------------------------------------------------------------------

    def add_listener(self, listener):
        """Call ``listener(args)`` with every event from now on."""
        self._listeners.append(listener)

    def remove_listener(self, listener):
        """Stop calling ``listener``."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _publish(self, job):
        if not self._listeners:
            return
        args = events.event(job, self.settings.event_log_bytes)
        for listener in list(self._listeners):
            try:
                listener(args)
            except Exception:
                self.log.failure("a dispatcher event listener failed")

    # -- start and stop -------------------------------------------------------------

    def start(self):
        """Open the database, recover the last run's jobs and start queued ones. Returns
        a Deferred that fires when ready (a failure is logged and makes every request
        fail with :class:`DispatcherUnavailable`)."""
        return self._lifecycle.start()

    def when_ready(self):
        """A Deferred that fires once the last run's jobs are recovered, or fails with
        :class:`DispatcherUnavailable`."""
        return self._lifecycle.when_ready()

    def stop(self):
        """Stop: no job starts any more; running jobs get SIGTERM (SIGKILL after the grace
        period) and are recorded as interrupted; fires once every child has exited and the
        database is closed. Pending jobs stay queued for the next start."""
        return self._lifecycle.stop()

    def _recovered(self, pending, last):
        self._seq = last
        for job in pending:
            if job.queue not in self.queues:
                self.log.warn(
                    "job {job_id}: queue {queue} is no longer configured; using {default}",
                    job_id=job.job_id,
                    queue=job.queue,
                    default=self.default_queue,
                )
                job.queue = self.default_queue
            self._table.add(job)
            # Recovered: recorded already, and its pending event goes out now.
            self._scheduler.add(job, announced=True)
            self._publish(job)
        if pending:
            self.log.info("dispatcher: {count} pending jobs queued again", count=len(pending))
        self._scheduler.accepting = True
        self._scheduler.schedule()

    def _stopping(self):
        self._scheduler.accepting = False

    def _stop_jobs(self):
        runs = self._table.runs()
        for run in runs:
            run.job.interrupted = True
            run.kill()
        if runs:
            self.log.info("dispatcher: waiting for {count} running jobs to stop", count=len(runs))
        d = defer.DeferredList([run.done for run in runs])
        d.addCallback(lambda _: self._progress.close())
        d.addCallback(lambda _: self.followers.close())
        return d.addCallback(lambda _: self.outputs.close())

    def _start_job(self, job):
        self._progress.start(job)

    # -- submitting -----------------------------------------------------------------

    def submit(self, job_id, commands, queue=None, timeout=None, event_system=None, extra=None):
        """Queue one job; see the package docstring. Fires with ``job_id``."""
        d = self.submit_many([(job_id, commands)], queue, timeout, event_system, extra)
        return d.addCallback(lambda ids: ids[0])

    def submit_many(self, jobs, queue=None, timeout=None, event_system=None, extra=None):
        """Queue several jobs (``(job_id, commands)`` pairs) all or none: any invalid job
        or live id and none is queued. Fires with the ids once all are committed."""
        queue = self.default_queue if queue is None else queue
        checked = []
        try:
            for job_id, commands in jobs:
                commands, argvs = check_job(job_id, commands, queue, timeout, event_system, extra, self.queues)
                checked.append((job_id, commands, argvs))
            if not checked:
                raise InvalidJob("no job to run")
            ids = [job_id for job_id, _, _ in checked]
            if len(set(ids)) != len(ids):
                raise InvalidJob("the same job id appears twice")
        except InvalidJob:
            return defer.fail()
        d = self.when_ready()
        d.addCallback(lambda _: self._enqueue(checked, queue, timeout, event_system, extra))
        return d

    def _enqueue(self, checked, queue, timeout, event_system, extra):
        if not self._lifecycle.ready:
            raise self._lifecycle.unavailable()
        jobs = [
            Job(self._seq + n, job_id, commands, queue, timeout, event_system, extra, argvs)
            for n, (job_id, commands, argvs) in enumerate(checked, 1)
        ]
        self._table.reserve(jobs)
        self._seq += len(jobs)
        for job in jobs:
            self._scheduler.add(job)
        # One write for all: recorded all or none.
        d = self._store.insert(*jobs)
        return d.addCallbacks(self._recorded, self._not_recorded, callbackArgs=(jobs,), errbackArgs=(jobs,))

    def _recorded(self, _, jobs):
        self._scheduler.announce(jobs, self._publish)
        return [job.job_id for job in jobs]

    def _not_recorded(self, failure, jobs):
        for job in jobs:
            if failure.check(Unwritable):
                # The store has logged why (once); this is the refused job.
                self.log.warn(
                    "job {job_id} could not be recorded; it will not run: {reason}",
                    job_id=job.job_id,
                    reason=str(failure.value),
                )
            else:
                self.log.failure(
                    "job {job_id} could not be recorded; it will not run", failure, job_id=job.job_id
                )
            if job.state == PENDING:  # not killed meanwhile
                self._scheduler.discard(job)
                self._table.forget(job)
        self._scheduler.schedule()
        ids = ", ".join(job.job_id for job in jobs)
        job_s = "job" if len(jobs) == 1 else "jobs"
        what = f"{job_s.capitalize()} {ids} could not be recorded"
        if failure.check(Unwritable):
            raise DispatcherUnavailable(f"{what}: {failure.value} — {job_s} not started.")
        raise DispatcherUnavailable(f"{what}.")

    # -- requests -------------------------------------------------------------------

    def kill(self, job_ids):
        """Kill live jobs: a pending one leaves its queue and finishes at once; a running
        one is stopped (SIGTERM, then SIGKILL). Returns the ids found."""
        found = []
        for job_id in job_ids:
            hit = self._table.kill(job_id)
            if hit is None:
                continue
            found.append(job_id)
            job, run = hit
            if run is None:
                self._progress.job_finished(job)
            else:
                run.kill()
        return found

    def snapshot(self):
        """The current state as event args: one ``pending`` or ``running`` event per live
        job (what a client that missed events is sent after a gap)."""
        limit = self.settings.event_log_bytes
        return [events.event(job, limit) for job in self._table.live()]

    def list_jobs(self):
        """``list``'s answer: queue -> job id -> commands, state, queue_position."""
        return self._scheduler.listing()

    def details(self, job_id):
        """A Deferred of the full ``process_details`` of the live job, or else of the
        newest recorded one, named ``job_id`` (None when there is none)."""
        job = self._table.find(job_id)
        if job is not None:
            if job.state == PENDING:
                return defer.succeed(events.process_details(job))
            return self._live_details(job)
        d = self._store.details(job_id)
        return d.addCallback(lambda found: None if found is None else events.process_details(found))

    def _live_details(self, job):
        # Memory holds only the logs' tails; the output file has them all. It is read off
        # the reactor thread: should the job move on meanwhile (a command ends, the job
        # finishes), that read may lack what came since, so it is read again.
        seen = _progress(job)

        def read(logs):
            if _progress(job) != seen:
                return self._live_details(job)
            return _details_with(job, logs)

        return self._store.file_logs(job).addCallback(read)

    def find_job(self, job_id):
        """A Deferred of the live job named ``job_id``, else of the newest recorded one
        (with its return codes), else of None."""
        job = self._table.find(job_id)
        if job is not None:
            return defer.succeed(job)
        return self._store.find(job_id)

    def read_output(self, job_id, offset, limit):
        """A Deferred of ``output``'s answer (:func:`~sysadmd.dispatcher.follow.output_args`)
        for up to ``limit`` bytes from ``offset`` of the job's output; None for an unknown
        job. ValueError when ``offset`` is past the end of a finished job's output."""

        def found(job):
            if job is None:
                return None
            output = self.outputs.reader(job.seq) if job.state != PENDING else None
            end = output.end if output is not None else 0
            if offset > end and job.state == FINISHED:
                raise ValueError(f"offset {offset} is past the end of the output ({end} bytes)")
            if output is None:
                piece = Slice(offset, offset, [])
            else:
                piece = output.read(offset, limit, final=job.state == FINISHED)
                if not piece.chunks:
                    piece = Slice(offset, offset, [])
            return output_args(job, output, piece)

        return self.find_job(job_id).addCallback(found)

    def history(self, limit):
        """A Deferred of up to ``limit`` finished jobs, newest first (no logs)."""
        return self._store.history(limit).addCallback(lambda jobs: [events.summary(j) for j in jobs])


def _progress(job):
    """What changes as ``job`` moves on: its state and each command's end."""
    return job.state, job.current, len(job.return_codes)


def _details_with(job, logs):
    """``job``'s process_details with ``logs`` (from its output file) instead of the
    tails it holds, when it has a file."""
    if logs is None:
        return events.process_details(job)
    held = job.logs
    job.logs = logs
    try:
        return events.process_details(job)
    finally:
        job.logs = held
