"""A job's progress: starting its run, and turning what the run reports into events,
records in the store and the start of the jobs behind it.

A running job's events: one when it starts and at each command change, and while output
arrives at most one per ``update_interval`` (:class:`~sysadmd.dispatcher.events.UpdateThrottle`).
Its records: started; each finished command's log and return code, written with what the
run reports next (the next command's start, or the job's finish in the same write); the
finish.
"""

from zope.interface import implementer

from sysadmd.dispatcher import events
from sysadmd.dispatcher.job import FINISHED, RUNNING
from sysadmd.dispatcher.runner import JobRun
from sysadmd.dispatcher.store import Unwritable
from sysadmd.interfaces import IJobObserver
from sysadmd.util.log import Logger
from sysadmd.util.process import ExecutableLookup


@implementer(IJobObserver)
class JobProgress:
    """Starts jobs (:meth:`start`) and observes their runs (see the module docstring).

    ``settings`` are the dispatcher's :class:`~sysadmd.dispatcher.core.Settings`;
    ``publish(job)`` sends the job's event; ``outputs`` (an
    :class:`~sysadmd.dispatcher.outputs.OutputDirectory`) keeps each job's output file and
    ``followers`` (:class:`~sysadmd.dispatcher.follow.OutputFollowers`) are woken as it grows.
    """

    log = Logger()

    def __init__(self, reactor, settings, store, table, scheduler, publish, outputs, followers):
        self._reactor = reactor
        self._outputs = outputs
        self._followers = followers
        self._settings = settings
        self._store = store
        self._table = table
        self._scheduler = scheduler
        self._publish = publish
        self._throttle = events.UpdateThrottle(reactor, settings.update_interval, publish)
        # One for all jobs: a queue running the same program looks it up once a second.
        self._lookup = ExecutableLookup(reactor)

    def start(self, job):
        """Run ``job`` (already moved to its queue's running jobs)."""
        job.state = RUNNING
        job.time_started = events.iso_time(self._reactor.seconds())
        self._store.running(job).addErrback(self._write_failed, job)
        settings = self._settings
        timeout = job.timeout if job.timeout is not None else settings.default_timeout
        output = self._outputs.start(job)
        # With a file, memory holds only what events show; log reads the file.
        cap = settings.event_log_bytes if output is not None else settings.store_log_bytes
        run = JobRun(
            self._reactor, job, settings.env, settings.cwd, settings.kill_grace,
            cap, self, timeout, self._lookup, output,
        )
        self._table.started(run)
        run.start()

    def command_started(self, job, index):
        """The job started, or moved on to its next command: the previous command's
        output is saved, the running event sent."""
        d = self._store.save_outputs(job)
        if d is not None:
            d.addErrback(self._write_failed, job)
        self._throttle.changed(job)

    def command_output(self, job, index):
        """Output arrived (in the job's file already): its followers are woken, and a
        running event sent, throttled."""
        self._followers.written(job)
        self._throttle.output(job)

    def command_finished(self, job, index, return_code):
        """A command ended; its log and return code are saved with what comes next."""
        job.return_codes[index] = return_code
        self._store.command_ended(job, index)

    def job_finished(self, job):
        """The job is over (its run ended, or it was killed while pending): recorded,
        announced, and its place given to the next job."""
        now = self._reactor.seconds()
        job.state = FINISHED
        job.finished_at = now
        job.time_finished = events.iso_time(now)
        self._throttle.forget(job)
        self._outputs.finished(job)
        self._scheduler.discard(job)
        # Until its finish is committed (later, if the disk is full), log answers from the table.
        self._table.finished(job)
        d = self._store.finish(job)
        d.addErrback(self._write_failed, job)
        d.addBoth(lambda _: self._table.saved(job))
        self._log_unless_clean(job)
        self._publish(job)
        self._followers.written(job)
        self._scheduler.schedule()

    def close(self):
        """No more events: cancel the throttle's timers."""
        self._throttle.close()

    def _log_unless_clean(self, job):
        # A clean run is in the history; one line per job would cost more than the job
        # (Twisted formats each line at once) and bury the failures.
        flags = job.flags()
        codes = [job.return_codes[i] for i in sorted(job.return_codes)]
        if not flags and codes and not any(codes):
            return
        self.log.info(
            "job {job_id} finished: return codes {codes}{flags}",
            job_id=job.job_id,
            codes=codes,
            flags="".join(f", {name}" for name in flags),
        )

    def _write_failed(self, failure, job):
        # Unwritable: kept and retried until stop, where the store logs what was lost.
        if not failure.check(Unwritable):
            self.log.failure("recording job {job_id} failed", failure, job_id=job.job_id)
