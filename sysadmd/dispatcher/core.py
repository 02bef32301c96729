"""The dispatcher: queues, jobs, their processes, events and persistence, tied together.

Everything here runs on the reactor thread; the store does its I/O on its own thread and
answers with Deferreds. A job's life: ``submit`` reserves its id and queues it; once its
row is committed it gets its pending event and may start; it starts when its queue has
room; it finishes once, whatever happens (success, failure, kill, timeout, shutdown).
"""

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Dict

from twisted.internet import defer, task
from twisted.logger import Logger

from sysadmd.dispatcher import events
from sysadmd.dispatcher.job import (
    FINISHED,
    PENDING,
    RUNNING,
    DispatcherUnavailable,
    DuplicateJob,
    InvalidJob,
    Job,
    check_job,
)
from sysadmd.dispatcher.queue import JobQueue, default_queue
from sysadmd.dispatcher.runner import JobRun
from sysadmd.util.process import ExecutableLookup
from sysadmd.dispatcher.store import Unwritable

PRUNE_EVERY = 3600.0
ANNOUNCE_PER_TURN = 256
DAY = 86400.0


@dataclass
class Settings:
    """The ``[dispatcher]`` options, parsed (see ``sysadmd.config.schema``)."""

    queues: Dict[str, int] = field(default_factory=lambda: OrderedDict(no_queue=0))
    max_processes: int = 64
    default_timeout: float = 0.0
    kill_grace: float = 5.0
    update_interval: float = 1.0
    event_log_bytes: int = 65536
    store_log_bytes: int = 10 * 1024 * 1024
    history_days: float = 30.0
    env: Dict[str, str] = field(default_factory=dict)
    cwd: str = "/"


class Dispatcher:
    """Runs jobs; see the package docstring for ``submit``, the plugin API.

    ``listener(args)`` callables added with :meth:`add_listener` get every event's args.
    """

    log = Logger()

    def __init__(self, reactor, store, settings):
        self._reactor = reactor
        self._store = store
        self.settings = settings
        self.queues = OrderedDict(
            (name, JobQueue(name, limit)) for name, limit in settings.queues.items()
        )
        self.default_queue = default_queue(settings.queues)
        self._live = {}
        self._saving = {}
        self._runs = {}
        self._listeners = []
        self._seq = 0
        self._state = "new"
        self._started = None
        self._waiters = []
        self._scheduling = False
        self._prune_loop = None
        self._throttle = events.UpdateThrottle(reactor, settings.update_interval, self._publish)
        self._lookup = ExecutableLookup(reactor)

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
        self._state = "starting"
        now = self._reactor.seconds()
        cutoff = now - self.settings.history_days * DAY if self.settings.history_days else None
        try:
            self._store.open(self._reactor)
            d = self._store.startup(now, events.iso_time(now), cutoff)
        except Exception:
            d = defer.fail()
        d.addCallbacks(self._recovered, self._start_failed)
        self._started = d
        return d

    def _recovered(self, result):
        pending, last, interrupted, pruned = result
        self._seq = last
        for job_id in interrupted:
            self.log.warn(
                "job {job_id} was running when the daemon last stopped; recorded as interrupted",
                job_id=job_id,
            )
        if pruned:
            self.log.info("dispatcher history: {count} old jobs pruned", count=pruned)
        if self._state != "starting":
            return
        self._state = "ready"
        for job in pending:
            if job.queue not in self.queues:
                self.log.warn(
                    "job {job_id}: queue {queue} is no longer configured; using {default}",
                    job_id=job.job_id,
                    queue=job.queue,
                    default=self.default_queue,
                )
                job.queue = self.default_queue
            self._live[job.job_id] = job
            self.queues[job.queue].add(job)
            self._publish(job)
        if pending:
            self.log.info("dispatcher: {count} pending jobs queued again", count=len(pending))
        if self.settings.history_days:
            self._prune_loop = task.LoopingCall(self._prune)
            self._prune_loop.clock = self._reactor
            self._prune_loop.start(PRUNE_EVERY, now=False)
        self._schedule()
        self._release_waiters()

    def _start_failed(self, failure):
        self.log.failure("the dispatcher's database cannot be used; no job can run", failure)
        self._state = "failed"
        self._release_waiters()

    def _release_waiters(self):
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            self._check_ready(d)

    def _check_ready(self, d):
        if self._state == "ready":
            d.callback(None)
        elif self._state in ("new", "starting"):
            self._waiters.append(d)
        else:
            reason = "its database failed" if self._state == "failed" else "the daemon is stopping"
            d.errback(DispatcherUnavailable(f"The dispatcher is unavailable: {reason}."))

    def when_ready(self):
        """A Deferred that fires once the last run's jobs are recovered, or fails with
        :class:`DispatcherUnavailable`."""
        d = defer.Deferred()
        self._check_ready(d)
        return d

    def _prune(self):
        cutoff = self._reactor.seconds() - self.settings.history_days * DAY
        d = self._store.prune(cutoff)
        d.addErrback(lambda f: self.log.failure("pruning dispatcher history failed", f))
        return d

    @defer.inlineCallbacks
    def stop(self):
        """Stop: no job starts any more; running jobs get SIGTERM (SIGKILL after the grace
        period) and are recorded as interrupted; fires once every child has exited and the
        database is closed. Pending jobs stay queued for the next start."""
        started, self._started = self._started, None
        self._state = "stopping"
        self._release_waiters()
        if started is not None:
            yield started
        if self._prune_loop is not None and self._prune_loop.running:
            self._prune_loop.stop()
        runs = list(self._runs.values())
        for run in runs:
            run.job.interrupted = True
            run.kill()
        if runs:
            self.log.info("dispatcher: waiting for {count} running jobs to stop", count=len(runs))
        yield defer.DeferredList([run.done for run in runs])
        self._throttle.close()
        if started is not None:
            try:
                yield self._store.close()
            except Exception:
                self.log.failure("closing the dispatcher database failed")
        self._state = "stopped"

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
        if self._state != "ready":
            raise DispatcherUnavailable("The dispatcher is unavailable: the daemon is stopping.")
        live = [job_id for job_id, _, _ in checked if job_id in self._live]
        if live:
            raise DuplicateJob(f"Already pending or running: {', '.join(live)}")
        jobs = []
        for job_id, commands, argvs in checked:
            self._seq += 1
            job = Job(self._seq, job_id, commands, queue, timeout, event_system, extra, argvs)
            self._live[job_id] = job
            self.queues[queue].add(job)
            jobs.append(job)
        # One write for all: recorded all or none.
        d = self._store.insert(*jobs)
        return d.addCallbacks(self._recorded, self._not_recorded, callbackArgs=(jobs,), errbackArgs=(jobs,))

    def _recorded(self, _, jobs):
        self._announce(deque(jobs))
        return [job.job_id for job in jobs]

    def _announce(self, jobs):
        # A big request's pending events go out ANNOUNCE_PER_TURN per reactor turn, so
        # connections send between them: one turn's burst must fit in a subscriber's
        # buffer (subscriber_buffer_bytes), or a client that reads well would miss events.
        # A job starts only once announced, so its running event never comes first.
        if self._state != "ready":
            return
        for _ in range(min(len(jobs), ANNOUNCE_PER_TURN)):
            job = jobs.popleft()
            job.announced = True
            if job.state == PENDING:
                self._publish(job)
                self._schedule()
        if jobs:
            self._reactor.callLater(0, self._announce, jobs)

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
            if job.state == PENDING:
                self.queues[job.queue].discard(job)
                self._forget(job)
                self._schedule()
        ids = ", ".join(job.job_id for job in jobs)
        job_s = "job" if len(jobs) == 1 else "jobs"
        what = f"{job_s.capitalize()} {ids} could not be recorded"
        if failure.check(Unwritable):
            raise DispatcherUnavailable(f"{what}: {failure.value} — {job_s} not started.")
        raise DispatcherUnavailable(f"{what}.")

    def _forget(self, job):
        if self._live.get(job.job_id) is job:
            del self._live[job.job_id]

    # -- running --------------------------------------------------------------------

    def _schedule(self):
        # Not re-entrant: a job that finishes at once (cannot start) frees room while we
        # are still starting others; the loop below sees that room, instead of recursing.
        if self._scheduling:
            return
        self._scheduling = True
        try:
            limit = self.settings.max_processes
            while self._state == "ready" and len(self._runs) < limit:
                job = self._next_startable()
                if job is None:
                    break
                self.queues[job.queue].take(job)
                self._start_job(job)
        finally:
            self._scheduling = False

    def _next_startable(self):
        # Over all queues, the oldest job that may start: when max_processes frees a
        # place, it goes to the job waiting longest, whatever its queue.
        best = None
        for queue in self.queues.values():
            job = queue.startable()
            if job is not None and (best is None or job.seq < best.seq):
                best = job
        return best

    def _start_job(self, job):
        job.state = RUNNING
        job.time_started = events.iso_time(self._reactor.seconds())
        self._store.running(job).addErrback(self._write_failed, job)
        timeout = job.timeout if job.timeout is not None else self.settings.default_timeout
        settings = self.settings
        run = JobRun(
            self._reactor, job, settings.env, settings.cwd, settings.kill_grace,
            settings.store_log_bytes, self, timeout, self._lookup,
        )
        self._runs[job.seq] = run
        run.start()

    def command_started(self, job, index):
        """JobRun: the job started, or moved on to its next command."""
        self._save_outputs(job)
        self._throttle.changed(job)

    def command_output(self, job, index):
        """JobRun: output was appended to the current command's log."""
        self._throttle.output(job)

    def command_finished(self, job, index, rc):
        """JobRun: a command ended with return code ``rc``. Its log and return code are
        saved with what JobRun reports next, in the same reactor turn: the next command's
        start or the job's end (one write with the finish)."""
        job.return_codes[index] = rc
        job.unsaved_outputs.append(index)

    def _save_outputs(self, job):
        if job.unsaved_outputs:
            indexes, job.unsaved_outputs = job.unsaved_outputs, []
            self._store.output(job, indexes).addErrback(self._write_failed, job)

    def job_finished(self, job):
        """JobRun (or a kill of a pending job): the job is over."""
        now = self._reactor.seconds()
        job.state = FINISHED
        job.finished_at = now
        job.time_finished = events.iso_time(now)
        self._throttle.forget(job)
        self._runs.pop(job.seq, None)
        queue = self.queues[job.queue]
        queue.discard(job)
        self._forget(job)
        # Until its finish is committed (later, if the disk is full), log answers from here.
        self._saving[job.job_id] = job
        indexes, job.unsaved_outputs = job.unsaved_outputs, []
        d = self._store.finish(job, indexes)
        d.addErrback(self._write_failed, job)
        d.addBoth(self._saved, job)
        self._log_unless_clean(job)
        self._publish(job)
        self._schedule()

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

    def _saved(self, _, job):
        if self._saving.get(job.job_id) is job:
            del self._saving[job.job_id]

    # -- requests -------------------------------------------------------------------

    def kill(self, job_ids):
        """Kill live jobs: a pending one leaves its queue and finishes at once; a running
        one is stopped (SIGTERM, then SIGKILL). Returns the ids found."""
        found = []
        for job_id in job_ids:
            job = self._live.get(job_id)
            if job is None:
                continue
            found.append(job_id)
            job.killed = True
            if job.state == PENDING:
                self.job_finished(job)
            else:
                self._runs[job.seq].kill()
        return found

    def list_jobs(self):
        """``list``'s answer: queue -> job id -> commands, state, queue_position."""
        return {name: queue.listing() for name, queue in self.queues.items()}

    def details(self, job_id):
        """A Deferred of the full ``process_details`` of the live job, or else of the
        newest recorded one, named ``job_id`` (None when there is none)."""
        job = self._live.get(job_id) or self._saving.get(job_id)
        if job is not None:
            return defer.succeed(events.process_details(job))
        d = self._store.details(job_id)
        return d.addCallback(lambda found: None if found is None else events.process_details(found))

    def history(self, limit):
        """A Deferred of up to ``limit`` finished jobs, newest first (no logs)."""
        return self._store.history(limit).addCallback(lambda jobs: [events.summary(j) for j in jobs])
