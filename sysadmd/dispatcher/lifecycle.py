"""The dispatcher's life: ``new`` -> ``starting`` -> ``ready`` (or ``failed``, when its
database cannot be used) -> ``stopping`` -> ``stopped``.

Starting opens the store and recovers the last run's jobs: those left running are recorded
as finished and interrupted, history older than ``history_days`` is pruned (and again
every hour), and the pending ones are handed back to be queued again. Requests made
meanwhile wait for ``ready``; in any other state they fail with
:class:`~sysadmd.dispatcher.job.DispatcherUnavailable`. Stopping waits for the running
jobs to be stopped, then closes the store.
"""

from twisted.internet import defer, task

from sysadmd.dispatcher import events
from sysadmd.dispatcher.job import DispatcherUnavailable
from sysadmd.util.log import Logger

PRUNE_EVERY = 3600.0
DAY = 86400.0


class Lifecycle:
    """Starts and stops the dispatcher around its ``store``.

    ``recovered(pending_jobs, last_seq)`` is called once the last run's jobs are
    recovered, when the state becomes ``ready``; ``stopping()`` when the stop begins (no
    job may start any more); ``stop_work()``, once the start is over, returns a Deferred
    that fires when no job runs any more.
    """

    log = Logger()

    def __init__(self, reactor, store, history_days, recovered, stopping, stop_work):
        self._reactor = reactor
        self._store = store
        self._history_days = history_days
        self._recovered_hook = recovered
        self._stopping_hook = stopping
        self._stop_work = stop_work
        self.state = "new"
        self._started = None
        self._waiters = []
        self._prune_loop = None

    @property
    def ready(self):
        """True while requests are served."""
        return self.state == "ready"

    def start(self):
        """Open the database, recover the last run's jobs. Returns a Deferred that fires
        when ready (a failure is logged and makes every request fail)."""
        self.state = "starting"
        now = self._reactor.seconds()
        cutoff = now - self._history_days * DAY if self._history_days else None
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
        for job_id in interrupted:
            self.log.warn(
                "job {job_id} was running when the daemon last stopped; recorded as interrupted",
                job_id=job_id,
            )
        if pruned:
            self.log.info("dispatcher history: {count} old jobs pruned", count=pruned)
        if self.state != "starting":
            return
        self.state = "ready"
        self._recovered_hook(pending, last)
        if self._history_days:
            self._prune_loop = task.LoopingCall(self._prune)
            self._prune_loop.clock = self._reactor
            self._prune_loop.start(PRUNE_EVERY, now=False)
        self._release_waiters()

    def _start_failed(self, failure):
        self.log.failure("the dispatcher's database cannot be used; no job can run", failure)
        self.state = "failed"
        self._release_waiters()

    def _release_waiters(self):
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            self._check_ready(d)

    def _check_ready(self, d):
        if self.state == "ready":
            d.callback(None)
        elif self.state in ("new", "starting"):
            self._waiters.append(d)
        else:
            d.errback(self.unavailable())

    def unavailable(self):
        """The :class:`DispatcherUnavailable` a request gets when not ready."""
        reason = "its database failed" if self.state == "failed" else "the daemon is stopping"
        return DispatcherUnavailable(f"The dispatcher is unavailable: {reason}.")

    def when_ready(self):
        """A Deferred that fires once the last run's jobs are recovered, or fails with
        :class:`DispatcherUnavailable`."""
        d = defer.Deferred()
        self._check_ready(d)
        return d

    def _prune(self):
        cutoff = self._reactor.seconds() - self._history_days * DAY
        d = self._store.prune(cutoff)
        d.addErrback(lambda f: self.log.failure("pruning dispatcher history failed", f))
        return d

    @defer.inlineCallbacks
    def stop(self):
        """No job starts any more; fires once the running jobs have stopped and the
        database is closed."""
        started, self._started = self._started, None
        self.state = "stopping"
        self._stopping_hook()
        self._release_waiters()
        if started is not None:
            yield started
        if self._prune_loop is not None and self._prune_loop.running:
            self._prune_loop.stop()
        yield self._stop_work()
        if started is not None:
            try:
                yield self._store.close()
            except Exception:
                self.log.failure("closing the dispatcher database failed")
        self.state = "stopped"
