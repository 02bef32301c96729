"""How many password checks run at once, daemon-wide.

A password check costs what its backend makes it cost: one Argon2id verification of the
users backend takes 64 MiB and a core for a tenth of a second, a failed PAM login sleeps
for seconds. Unauthenticated clients decide how many are asked for, so they are bounded
twice: :class:`CheckLimiter` lets ``max_concurrent`` checks run and ``max_queued`` wait
(in arrival order) and refuses the rest at once, and :class:`CheckThreads` is the thread
pool of exactly ``max_concurrent`` threads the backends do their work in, so that no
other path can hash more at a time either.
"""

from collections import deque

from twisted.application import service
from twisted.internet import defer
from twisted.python.threadpool import ThreadPool

from sysadmd.util.log import Logger

# Two checks at once: 128 MiB of Argon2id memory, a core each on a small machine.
DEFAULT_MAX_CONCURRENT = 2
# 32 waiting: a queue a burst of honest logins (a dashboard reconnecting its tabs) fits
# in, short enough to drain in about 3 s (0.16 s per Argon2id check, two at a time).
DEFAULT_MAX_QUEUED = 32


class ChecksBusy(Exception):
    """Every check slot is taken and the queue is full: try again later."""


class CheckLimiter:
    """Runs checks at most ``max_concurrent`` at once; up to ``max_queued`` more wait
    their turn in arrival order, and any beyond are refused with :class:`ChecksBusy`."""

    log = Logger()

    def __init__(self, max_concurrent=DEFAULT_MAX_CONCURRENT, max_queued=DEFAULT_MAX_QUEUED):
        if max_concurrent < 1 or max_queued < 0:
            raise ValueError("max_concurrent must be at least 1 and max_queued at least 0")
        self.max_concurrent = max_concurrent
        self.max_queued = max_queued
        self.running = 0
        self.refused = 0
        self._waiting = deque()
        self._refusing = False

    @property
    def queued(self):
        """How many checks are waiting for a slot."""
        return len(self._waiting)

    def run(self, function, *args, **kwargs):
        """Call ``function(*args, **kwargs)`` (which may return a Deferred) when a slot is
        free; returns a Deferred of its result.

        Raises :class:`ChecksBusy` at once when the queue is full. Cancelling the Deferred
        of a waiting check takes it out of the queue; a running check runs to its end
        (its thread cannot be stopped) and keeps its slot until then.
        """
        if self.running < self.max_concurrent:
            return self._start(function, args, kwargs)
        if len(self._waiting) >= self.max_queued:
            self.refused += 1
            if not self._refusing:
                self._refusing = True
                self.log.warn(
                    "password checks busy ({running} running, {queued} waiting): "
                    "refusing logins with 429",
                    running=self.running,
                    queued=len(self._waiting),
                )
            raise ChecksBusy()
        entry = [None, function, args, kwargs]
        entry[0] = defer.Deferred(lambda d: self._withdraw(entry))
        self._waiting.append(entry)
        return entry[0]

    def _start(self, function, args, kwargs):
        self.running += 1
        result = defer.maybeDeferred(function, *args, **kwargs)
        result.addBoth(self._finished)
        return result

    def _finished(self, result):
        self.running -= 1
        while self._waiting and self.running < self.max_concurrent:
            waiter, function, args, kwargs = self._waiting.popleft()
            self._start(function, args, kwargs).chainDeferred(waiter)
        if self._refusing and len(self._waiting) < self.max_queued:
            self._refusing = False
            self.log.info(
                "password checks have room again ({refused} refused so far)",
                refused=self.refused,
            )
        return result

    def _withdraw(self, entry):
        try:
            self._waiting.remove(entry)
        except ValueError:
            pass  # already started: its result will be dropped


class CheckThreads(service.Service):
    """The thread pool (``size`` threads) the password backends work in, started and
    stopped with the daemon."""

    name = "auth-checks"

    def __init__(self, size=DEFAULT_MAX_CONCURRENT):
        self.pool = ThreadPool(minthreads=0, maxthreads=size, name="sysadmd-auth-checks")

    def startService(self):
        """Start the threads (work handed over before this waits in the pool's queue)."""
        super().startService()
        self.pool.start()

    def stopService(self):
        """Wait for the checks in progress (a hash or a PAM call each) and end the threads."""
        super().stopService()
        self.pool.stop()
