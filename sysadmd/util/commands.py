"""Run short external commands (``zpool``, ``zfs``, ``hostname``) without blocking.

A command is a :class:`sysadmd.util.process.ChildProcess` (an argv list, never a shell
string; a small explicit environment; its own process group) spawned through the
injected reactor. Its result is a Deferred firing with a :class:`CommandResult`
``(exit_code, stdout, stderr)`` or failing with a :class:`CommandError` subclass that says
what went wrong in one line.

A command that outlives its timeout gets SIGTERM, then SIGKILL after ``kill_grace``
seconds; its result fails with :class:`CommandTimedOut` at once, so the caller carries on
while the process is being reaped. ``ended`` fires only when the process is really gone,
which is what a source's ``stop`` waits for.
"""

from typing import NamedTuple

from twisted.internet import defer

from sysadmd.util.process import KILL_GRACE, ChildProcess, find_executable

DEFAULT_PATH = "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin"

#: What a command sees of the environment: a predictable PATH and the C locale, so
#: the output we parse does not change with the daemon's locale.
MINIMAL_ENV = {"PATH": DEFAULT_PATH, "LC_ALL": "C", "LANG": "C"}

#: Output beyond this (stdout and stderr together) kills the command.
MAX_OUTPUT = 64 * 1024 * 1024

#: Commands run in the root directory: the daemon's own (so Twisted can posix_spawn)
#: under the deploy units, and never a directory that may be unmounted.
COMMAND_CWD = "/"


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


class RunningCommand:
    """One command: collects its output and turns its end into ``result``.

    ``result`` fires with a :class:`CommandResult` or fails with a
    :class:`CommandError`; cancelling it kills the process. ``ended`` fires (with None)
    once the process has exited and its pipes are closed; ``finished`` is True from then.
    """

    def __init__(self, reactor, argv, timeout, kill_grace=KILL_GRACE, max_output=MAX_OUTPUT):
        self.argv = list(argv)
        self._timeout = timeout
        self._max_output = max_output
        self._out = []
        self._err = []
        self._size = 0
        self.finished = False
        self.result = defer.Deferred(self._cancelled)
        self.ended = defer.Deferred()
        self.process = ChildProcess(
            reactor, self._output, kill_grace=kill_grace, timeout=timeout,
            on_timeout=self._timed_out,
        )

    def spawn(self, executable, env):
        """Start the process (called once, by :func:`spawn_command`); raises OSError."""
        self.process.start(executable, self.argv, env, COMMAND_CWD)
        self.process.ended.addCallback(self._ended)

    def _output(self, fd, data):
        if self.process.stopping:
            return
        self._size += len(data)
        if self._size > self._max_output:
            self._fail(CommandKilled(self.argv, f"produced more than {self._max_output} bytes of output"))
            self.process.stop()
            return
        (self._out if fd == 1 else self._err).append(data)

    def _timed_out(self):
        self._fail(CommandTimedOut(self.argv, f"still running after {self._timeout:g} s"))

    def _cancelled(self, _deferred):
        # Deferred.cancel fires result with CancelledError after this returns.
        self.process.stop()

    def _fail(self, error):
        if not self.result.called:
            self.result.errback(error)

    def _ended(self, exit):
        self.finished = True
        if not self.result.called:
            if exit.signal is not None:
                self.result.errback(CommandKilled(self.argv, f"killed by signal {exit.signal}"))
            else:
                self.result.callback(
                    CommandResult(
                        exit.return_code,
                        b"".join(self._out).decode("utf-8", "replace"),
                        b"".join(self._err).decode("utf-8", "replace"),
                    )
                )
        self.ended.callback(None)

    def _not_started(self, error):
        self.finished = True
        self.result.errback(error)
        self.ended.callback(None)


def spawn_command(reactor, argv, timeout, env=None, kill_grace=KILL_GRACE, max_output=MAX_OUTPUT,
                  lookup=find_executable):
    """Start ``argv`` and return its :class:`RunningCommand`.

    ``argv[0]`` is found by ``lookup`` (:func:`~sysadmd.util.process.find_executable`, or
    an :class:`~sysadmd.util.process.ExecutableLookup`): on ``env``'s PATH unless it holds
    a slash. When it cannot be found, the returned command's ``result`` has already
    failed with :class:`CommandNotFound` and ``ended`` has fired.
    """
    env = dict(MINIMAL_ENV if env is None else env)
    command = RunningCommand(reactor, argv, timeout, kill_grace, max_output)
    executable, _ = lookup(argv[0], env, COMMAND_CWD)
    if executable is None:
        command._not_started(CommandNotFound(argv, "command not found or not executable"))
        return command
    try:
        command.spawn(executable, env)
    except OSError as e:
        command._not_started(CommandError(argv, f"cannot start: {e.strerror or e}"))
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
