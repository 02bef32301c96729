"""Run short external commands (``zpool``, ``zfs``, ``hostname``) without blocking.

A command is a child process spawned through the injected reactor with an argv list (never
a shell string) and a small explicit environment. Its result is a Deferred firing with a
:class:`CommandResult` ``(exit_code, stdout, stderr)`` or failing with a
:class:`CommandError` subclass that says what went wrong in one line.

A command that outlives its timeout gets SIGTERM, then SIGKILL after ``kill_grace``
seconds; its result fails with :class:`CommandTimedOut` at once, so the caller carries on
while the process is being reaped. ``ended`` fires only when the process is really gone,
which is what a source's ``stop`` waits for.
"""

import os
import shutil
from typing import NamedTuple

from twisted.internet import defer, error
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger

DEFAULT_PATH = "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin"

#: What a command sees of the environment: a predictable PATH and the C locale, so
#: the output we parse does not change with the daemon's locale.
MINIMAL_ENV = {"PATH": DEFAULT_PATH, "LC_ALL": "C", "LANG": "C"}

#: Output beyond this (stdout and stderr together) kills the command.
MAX_OUTPUT = 64 * 1024 * 1024

KILL_GRACE = 5.0


class CommandResult(NamedTuple):
    """A command that ran to its end: its exit code and decoded output."""

    exit_code: int
    stdout: str
    stderr: str

    def first_error_line(self):
        """The first non-empty line of stderr (else of stdout), for log messages."""
        for text in (self.stderr, self.stdout):
            for line in text.splitlines():
                if line.strip():
                    return line.strip()
        return ""


class CommandError(Exception):
    """A command that gave no result: ``argv`` and a one-line ``reason``."""

    def __init__(self, argv, reason):
        super().__init__(argv, reason)
        self.argv = list(argv)
        self.reason = reason

    def __str__(self):
        return f"{self.argv[0]}: {self.reason}"


class CommandNotFound(CommandError):
    """The executable does not exist or is not executable."""


class CommandTimedOut(CommandError):
    """The command was still running at its timeout and was killed."""


class CommandKilled(CommandError):
    """The command was ended by a signal, or produced too much output."""


def resolve_executable(name, env=None):
    """The absolute path of ``name`` (searched on ``env``'s PATH), or None."""
    env = MINIMAL_ENV if env is None else env
    if os.sep in name:
        path = os.path.abspath(name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        return None
    return shutil.which(name, path=env.get("PATH", DEFAULT_PATH))


class RunningCommand(ProcessProtocol):
    """One child process: collects its output and enforces its timeout.

    ``result`` fires with a :class:`CommandResult` or fails with a
    :class:`CommandError`; cancelling it kills the process. ``ended`` fires (with None)
    once the process has exited and its pipes are closed.
    """

    log = Logger()

    def __init__(self, reactor, argv, timeout, kill_grace=KILL_GRACE, max_output=MAX_OUTPUT):
        self._reactor = reactor
        self.argv = list(argv)
        self._timeout = timeout
        self._kill_grace = kill_grace
        self._max_output = max_output
        self._out = []
        self._err = []
        self._size = 0
        self._timeout_call = None
        self._kill_call = None
        self._killing = False
        self.finished = False
        self.result = defer.Deferred(self._cancelled)
        self.ended = defer.Deferred()

    def spawn(self, executable, env):
        """Start the process (called once, by :func:`spawn_command`)."""
        self._reactor.spawnProcess(
            self, executable, self.argv, env=env, path="/", childFDs={0: "w", 1: "r", 2: "r"}
        )
        if self._timeout:
            self._timeout_call = self._reactor.callLater(self._timeout, self._timed_out)

    def connectionMade(self):
        """Nothing is ever written to the command: close its stdin at once."""
        self.transport.closeStdin()

    def outReceived(self, data):
        """Collect stdout."""
        self._collect(self._out, data)

    def errReceived(self, data):
        """Collect stderr."""
        self._collect(self._err, data)

    def _collect(self, into, data):
        if self._killing:
            return
        self._size += len(data)
        if self._size > self._max_output:
            self._terminate(
                CommandKilled(self.argv, f"produced more than {self._max_output} bytes of output")
            )
            return
        into.append(data)

    def _timed_out(self):
        self._timeout_call = None
        self._terminate(CommandTimedOut(self.argv, f"still running after {self._timeout:g} s"))

    def _cancelled(self, _deferred):
        # Deferred.cancel fires result with CancelledError after this returns.
        self._terminate(None)

    def _terminate(self, failure):
        """Fail ``result`` with ``failure`` (unless None) and kill the process."""
        if failure is not None and not self.result.called:
            self.result.errback(failure)
        if self._killing or self.finished:
            return
        self._killing = True
        self._cancel_timeout()
        self._signal("TERM")
        self._kill_call = self._reactor.callLater(self._kill_grace, self._kill)

    def _kill(self):
        self._kill_call = None
        self._signal("KILL")
        # A grandchild may still hold our pipes open; closing our ends lets
        # processEnded fire once the child itself is reaped.
        if self.transport is not None:
            self.transport.loseConnection()

    def _signal(self, name):
        try:
            self.transport.signalProcess(name)
        except (error.ProcessExitedAlready, OSError):
            pass

    def _cancel_timeout(self):
        if self._timeout_call is not None and self._timeout_call.active():
            self._timeout_call.cancel()
        self._timeout_call = None

    def processExited(self, reason):
        """The child is gone; a grandchild holding the pipes must not keep us waiting."""
        if self._killing and self.transport is not None:
            self.transport.loseConnection()

    def processEnded(self, reason):
        """Turn the exit status into ``result``; fire ``ended``."""
        self.finished = True
        self._cancel_timeout()
        if self._kill_call is not None and self._kill_call.active():
            self._kill_call.cancel()
        self._kill_call = None
        if not self.result.called:
            value = reason.value
            if isinstance(value, error.ProcessTerminated) and value.exitCode is None:
                self.result.errback(
                    CommandKilled(self.argv, f"killed by signal {value.signal}")
                )
            else:
                code = value.exitCode if isinstance(value, error.ProcessTerminated) else 0
                self.result.callback(
                    CommandResult(
                        code,
                        b"".join(self._out).decode("utf-8", "replace"),
                        b"".join(self._err).decode("utf-8", "replace"),
                    )
                )
        self.ended.callback(None)


def spawn_command(reactor, argv, timeout, env=None, kill_grace=KILL_GRACE, max_output=MAX_OUTPUT):
    """Start ``argv`` and return its :class:`RunningCommand`.

    ``argv[0]`` is looked up on ``env``'s PATH unless it holds a slash. When it cannot be
    found, the returned command's ``result`` has already failed with
    :class:`CommandNotFound` and ``ended`` has fired.
    """
    env = dict(MINIMAL_ENV if env is None else env)
    command = RunningCommand(reactor, argv, timeout, kill_grace, max_output)
    executable = resolve_executable(argv[0], env)
    if executable is None:
        command.finished = True
        command.result.errback(CommandNotFound(argv, "command not found or not executable"))
        command.ended.callback(None)
        return command
    try:
        command.spawn(executable, env)
    except OSError as e:
        command.finished = True
        command.result.errback(CommandError(argv, f"cannot start: {e.strerror or e}"))
        command.ended.callback(None)
    return command


def run_command(reactor, argv, timeout, env=None, kill_grace=KILL_GRACE, max_output=MAX_OUTPUT):
    """Run ``argv``; a Deferred of :class:`CommandResult` ``(exit_code, stdout, stderr)``.

    It fails with :class:`CommandNotFound`, :class:`CommandTimedOut` (the process was
    killed) or :class:`CommandKilled`; cancelling it kills the process.
    """
    return spawn_command(reactor, argv, timeout, env, kill_grace, max_output).result


class RepeatedFailure:
    """Logs a failure that repeats at every poll with backoff, and its recovery.

    The 1st, 2nd, 4th, 8th, ... consecutive failures are logged (then every 64th), each
    with the count, so a broken command cannot flood the log but stays visible.
    """

    EVERY = 64

    def __init__(self, log, source, what):
        self._log = log
        self._source = source
        self._what = what
        self.count = 0

    def failed(self, problem):
        """Record one failure; returns True when it was logged."""
        self.count += 1
        n = self.count
        if n & (n - 1) == 0 or n % self.EVERY == 0:
            self._log.warn(
                "{source}: {what} failed ({failures} in a row): {problem}",
                source=self._source,
                what=self._what,
                failures=n,
                problem=str(problem),
            )
            return True
        return False

    def succeeded(self):
        """Record a success; logs the recovery after failures."""
        if self.count:
            self._log.info(
                "{source}: {what} works again after {failures} failure(s)",
                source=self._source,
                what=self._what,
                failures=self.count,
            )
        self.count = 0
