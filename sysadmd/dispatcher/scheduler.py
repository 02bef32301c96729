"""Which job starts when: the queues, ``[dispatcher] max_processes`` over all of them,
and the announcement of new jobs.

A new job waits in its queue, held, until it is announced: recorded in the database, then
its pending event sent. A big request is announced ``ANNOUNCE_PER_TURN`` jobs per reactor
turn, so connections send between the bursts: one turn's events must fit in a
subscriber's buffer (``subscriber_buffer_bytes``), or a client that reads well would miss
some. A job starts only once announced, so its running event never comes first.

Then a job starts when its queue has room (``max_running``) and fewer than
``max_processes`` jobs run in all; a freed place goes to the job waiting longest, whatever
its queue.
"""

from collections import OrderedDict, deque

from sysadmd.dispatcher.job import PENDING
from sysadmd.dispatcher.queue import JobQueue, default_queue

ANNOUNCE_PER_TURN = 256


class Scheduler:
    """The queues (``queue_limits``: name -> max_running) and what starts from them.

    ``start(job)`` is called for each job that may start, after it has moved to its
    queue's running jobs; ``running()`` says how many jobs run now. Nothing starts while
    ``accepting`` is False (before recovery, and from the stop on).
    """

    def __init__(self, reactor, queue_limits, max_processes, start, running):
        self._reactor = reactor
        self.queues = OrderedDict((name, JobQueue(name, limit)) for name, limit in queue_limits.items())
        self.default_queue = default_queue(queue_limits)
        self._max_processes = max_processes
        self._start = start
        self._running = running
        self._scheduling = False
        self.accepting = False

    def add(self, job, announced=False):
        """Queue ``job`` (pending); held until :meth:`announce` unless ``announced``."""
        self.queues[job.queue].add(job, held=not announced)

    def discard(self, job):
        """Forget ``job`` wherever it is in its queue."""
        self.queues[job.queue].discard(job)

    def announce(self, jobs, publish):
        """Send the pending event (``publish(job)``) of each of ``jobs`` still pending,
        and let it start, ``ANNOUNCE_PER_TURN`` per reactor turn."""
        self._announce(deque(jobs), publish)

    def _announce(self, jobs, publish):
        if not self.accepting:
            return
        for _ in range(min(len(jobs), ANNOUNCE_PER_TURN)):
            job = jobs.popleft()
            self.queues[job.queue].release(job)
            if job.state == PENDING:
                publish(job)
                self.schedule()
        if jobs:
            self._reactor.callLater(0, self._announce, jobs, publish)

    def schedule(self):
        """Start every job that may start now."""
        # Not re-entrant: a job that finishes at once (cannot start) frees room while we
        # are still starting others; the loop below sees that room, instead of recursing.
        if self._scheduling:
            return
        self._scheduling = True
        try:
            while self.accepting and self._running() < self._max_processes:
                job = self._next()
                if job is None:
                    break
                self.queues[job.queue].take(job)
                self._start(job)
        finally:
            self._scheduling = False

    def _next(self):
        best = None
        for queue in self.queues.values():
            job = queue.startable()
            if job is not None and (best is None or job.seq < best.seq):
                best = job
        return best

    def listing(self):
        """``list``'s answer: queue -> job id -> commands, state, queue_position."""
        return {name: queue.listing() for name, queue in self.queues.items()}

