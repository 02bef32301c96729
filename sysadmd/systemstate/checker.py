"""Checks for updates in the background, for the system-state source.

:class:`UpdateChecker` runs its backend's check at start and then every ``interval``
seconds, apart from the state polls: a state event never waits for a check, it carries
:attr:`UpdateChecker.current`, which is ``checkingforupdates`` until the first check
ends. When a check changes the field, ``on_change`` is called (the source publishes).

A check that fails (a program missing, failing, killed at the command timeout, output
that cannot be read) never ends the checks: it is logged with backoff, the status and
``last_check`` of the last check that succeeded are kept, and the details say what went
wrong. Before any check has succeeded, the status stays ``checkingforupdates``: the
client has no word for "unknown", and "noupdates" would be a claim we cannot make.
"""

from twisted.internet import defer

from sysadmd.systemstate.updates import (
    CHECK_STATUSES,
    CHECKING,
    CheckResult,
    UpdateCheckFailed,
    iso_time,
)
from sysadmd.util.commands import CommandError, RepeatedFailure
from sysadmd.util.log import Logger
from sysadmd.util.polling import InFlight, start_polling, stop_polling


class UpdateChecker:
    """The ``updates`` field of one source (see the module docstring).

    ``run(argv)`` runs a program for the backend (the source's, so its timeout applies
    and its stop kills what runs); ``reactor`` gives the clock.
    """

    log = Logger()

    def __init__(self, reactor, backend, run, interval=3600.0, source="system-state"):
        self._reactor = reactor
        self._backend = backend
        self._run = run
        self._interval = interval
        self._source = source
        self._loop = None
        self._on_change = None
        self._checking = InFlight()
        self._last_good = None  # (CheckResult, last_check) of the last check that succeeded
        self._failures = RepeatedFailure(self.log, source, f"update check ({backend.name})")
        self._current = {
            "status": CHECKING,
            "details": "Checking for updates for the first time.",
            "last_check": "",
        }

    @property
    def backend(self):
        """The :class:`sysadmd.systemstate.updates.IUpdateBackend` in use."""
        return self._backend

    @property
    def current(self):
        """The ``updates`` field now (a new dict)."""
        return dict(self._current)

    def start(self, on_change):
        """Check now and then every ``interval``; ``on_change()`` after each change."""
        self._on_change = on_change
        self._loop = start_polling(self._reactor, self._interval, self.check)

    def stop(self):
        """No more checks; a check still running ends without effect (the source kills
        its programs)."""
        self._loop = stop_polling(self._loop)
        self._on_change = None

    def check(self):
        """Check once, unless a check runs. Returns a Deferred that never fails."""
        if self._checking.busy:
            return None
        d = defer.maybeDeferred(self._backend.check, self._run)
        d.addCallbacks(self._succeeded, self._failed)
        d.addErrback(lambda f: self.log.failure(
            "{source}: update check crashed", f, source=self._source))
        return self._checking.track(d)

    def when_idle(self):
        """A Deferred that fires once no check is running."""
        return self._checking.when_idle()

    def _now(self):
        return iso_time(self._reactor.seconds())

    def _succeeded(self, result):
        if self._on_change is None:
            return
        if not isinstance(result, CheckResult) or result.status not in CHECK_STATUSES:
            raise UpdateCheckFailed(f"the {self._backend.name} check returned {result!r}")
        self._failures.succeeded()
        last_check = self._now()
        self._last_good = (result, last_check)
        if result.status != self._current["status"]:
            self.log.info("{source}: updates: {status} ({backend})", source=self._source,
                          status=result.status, backend=self._backend.name)
        self._set({"status": result.status, "details": result.details,
                   "last_check": last_check})

    def _failed(self, failure):
        if self._on_change is None:
            return  # stopped: the programs were killed on purpose
        failure.trap(CommandError, UpdateCheckFailed, defer.CancelledError)
        self._failures.failed(failure.value)
        problem = f"The check for updates at {self._now()} failed: {failure.value}"
        if self._last_good is None:
            self._set({"status": CHECKING, "details": problem, "last_check": ""})
            return
        result, last_check = self._last_good
        self._set({"status": result.status, "last_check": last_check,
                   "details": f"{result.details}\n{problem}".strip()})

    def _set(self, field):
        if field != self._current:
            self._current = field
            if self._on_change is not None:
                self._on_change()
