"""The daemon-wide bound on password checks: CheckLimiter and CheckThreads."""

import threading

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, threads
from twisted.logger import capturedLogs

from sysadmd.auth.limits import (
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_MAX_QUEUED,
    CheckLimiter,
    ChecksBusy,
    CheckThreads,
)


class Checks:
    """Checks that finish when the test says so, recording when each started."""

    def __init__(self):
        self.pending = {}
        self.started = []

    def check(self, name):
        self.started.append(name)
        self.pending[name] = defer.Deferred()
        return self.pending[name]

    def finish(self, name, result=None):
        self.pending.pop(name).callback(result)


def test_defaults_are_two_running_and_thirty_two_waiting():
    """The documented defaults of [auth] max_concurrent_checks and max_queued_checks."""
    limiter = CheckLimiter()
    assert (limiter.max_concurrent, limiter.max_queued) == (2, 32)
    assert (DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_QUEUED) == (2, 32)


def test_at_most_max_concurrent_run_and_the_rest_wait_in_order():
    """Checks beyond the bound wait, and start in arrival order as slots free up."""
    checks = Checks()
    limiter = CheckLimiter(2, 10)
    results = {}
    for name in "abcde":
        limiter.run(checks.check, name).addCallback(lambda r, n=name: results.setdefault(n, r))
    assert checks.started == ["a", "b"]
    assert (limiter.running, limiter.queued) == (2, 3)
    checks.finish("b", "B")
    assert checks.started == ["a", "b", "c"]
    assert results == {"b": "B"}
    checks.finish("a", "A")
    checks.finish("c", "C")
    assert checks.started == ["a", "b", "c", "d", "e"]
    assert (limiter.running, limiter.queued) == (2, 0)
    checks.finish("d", "D")
    checks.finish("e", "E")
    assert results == {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}
    assert (limiter.running, limiter.queued) == (0, 0)


def test_a_full_queue_refuses_at_once_and_logs_once():
    """Beyond max_queued waiting checks, run raises ChecksBusy without queueing; the
    warning is logged when refusing starts, not for every refusal."""
    checks = Checks()
    limiter = CheckLimiter(1, 2)
    with capturedLogs() as events:
        for name in "abc":
            limiter.run(checks.check, name)
        for _ in range(5):
            with pytest.raises(ChecksBusy):
                limiter.run(checks.check, "refused")
    assert limiter.refused == 5
    assert (limiter.running, limiter.queued) == (1, 2)
    assert checks.started == ["a"]
    busy = [e for e in events if "busy" in e["log_format"]]
    assert len(busy) == 1
    with capturedLogs() as events:
        checks.finish("a")
    assert any("room again" in e["log_format"] for e in events)
    limiter.run(checks.check, "d")  # room again
    assert limiter.queued == 2


def test_zero_queue_refuses_whatever_cannot_start():
    """max_queued = 0: only max_concurrent checks at a time, nothing waits."""
    checks = Checks()
    limiter = CheckLimiter(1, 0)
    limiter.run(checks.check, "a")
    with pytest.raises(ChecksBusy):
        limiter.run(checks.check, "b")


def test_a_failing_check_frees_its_slot_and_fails_its_caller():
    """An error (or an exception raised at once) ends the check like a result does."""
    limiter = CheckLimiter(1, 5)
    checks = Checks()
    first = limiter.run(checks.check, "a")
    second = limiter.run(lambda: 1 / 0)
    third = limiter.run(checks.check, "c")
    errors = []
    first.addErrback(errors.append)
    second.addErrback(errors.append)
    checks.pending.pop("a").errback(RuntimeError("backend broke"))
    assert {e.type for e in errors} == {RuntimeError, ZeroDivisionError}
    assert checks.started == ["a", "c"]
    checks.finish("c")
    assert third.called
    assert limiter.running == 0


def test_synchronous_checks_do_not_hold_slots():
    """A check that returns a plain value is done at once."""
    limiter = CheckLimiter(1, 0)
    results = [limiter.run(lambda n=n: n * 2) for n in range(5)]
    assert [r.result for r in results] == [0, 2, 4, 6, 8]
    assert limiter.running == 0


def test_cancelling_a_waiting_check_takes_it_out_of_the_queue():
    """A client gone while its check waits does not cost a check."""
    checks = Checks()
    limiter = CheckLimiter(1, 5)
    limiter.run(checks.check, "a")
    waiting = limiter.run(checks.check, "b")
    limiter.run(checks.check, "c")
    waiting.addErrback(lambda f: f.trap(defer.CancelledError))
    waiting.cancel()
    assert limiter.queued == 1
    checks.finish("a")
    assert checks.started == ["a", "c"]


def test_bounds_are_validated():
    """A limiter that could run nothing is a mistake."""
    with pytest.raises(ValueError):
        CheckLimiter(0, 5)
    with pytest.raises(ValueError):
        CheckLimiter(1, -1)


@pytest_twisted.inlineCallbacks
def test_check_threads_run_at_most_size_at_once():
    """The backends' pool has exactly ``size`` threads, whatever is handed to it."""
    service = CheckThreads(2)
    assert service.pool.max == 2
    lock = threading.Lock()
    now = [0]
    peak = [0]
    release = threading.Event()

    def work():
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        release.wait(5)
        with lock:
            now[0] -= 1

    service.startService()
    try:
        done = [threads.deferToThreadPool(reactor, service.pool, work) for _ in range(6)]
        reactor.callLater(0.2, release.set)
        yield defer.gatherResults(done)
    finally:
        service.stopService()
    assert peak[0] == 2
    assert service.pool.joined
    assert not any(t.is_alive() for t in service.pool.threads)
