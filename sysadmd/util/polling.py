"""The one poll a periodic source may have running."""

from twisted.internet import defer, task


class InFlight:
    """Tracks a source's running poll, so a second request can see it is busy and tests
    can wait until it has finished."""

    def __init__(self):
        self._current = None

    @property
    def busy(self):
        """True while a tracked poll runs."""
        return self._current is not None

    def track(self, d):
        """Track ``d`` (a poll that never fails) until it fires; returns it."""
        self._current = d

        def done(_):
            self._current = None

        d.addBoth(done)
        return d

    def when_idle(self):
        """A Deferred that fires once no poll is running (at once when none is)."""
        if self._current is None:
            return defer.succeed(None)
        # Added after the LoopingCall's own callbacks, so the next poll is scheduled
        # before a waiter runs.
        waiter = defer.Deferred()
        self._current.addBoth(lambda result: (waiter.callback(None), result)[1])
        return waiter


def start_polling(reactor, interval, poll):
    """Call ``poll`` now and then every ``interval`` seconds on ``reactor``; returns the
    ``LoopingCall`` for :func:`stop_polling`. ``poll`` must not raise (a raise would end
    the loop)."""
    loop = task.LoopingCall(poll)
    loop.clock = reactor
    loop.start(interval, now=True)
    return loop


def stop_polling(loop):
    """Stop ``loop`` (a :func:`start_polling` result, or None) if it runs; returns None."""
    if loop is not None and loop.running:
        loop.stop()
    return None
