"""A fake process reactor: ``spawnProcess`` records a :class:`FakeProcess` instead of
forking, and the test (or a fake program) makes the process write output and exit.

``FakeProcessReactor.programs`` maps an executable's path to a fake program: a callable
given the new :class:`FakeProcess`, run in the next reactor turn (``advance(0)``), as a
real child's output arrives after the spawn. :func:`answer` and :func:`hang` make the
common ones.
"""

import signal as signals

from twisted.internet import error
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

SIGNAL_NUMBERS = {"TERM": signals.SIGTERM, "KILL": signals.SIGKILL}


class FakeProcess:
    """What ``spawnProcess`` returned: records signals; the test drives the protocol.

    ``dies_on``: signal names after which the process exits (killed by that signal) in
    the next reactor turn; by default it only records them. ``group_alive``: after the
    process itself has exited, something of its process group still takes signals.
    """

    def __init__(self, reactor, protocol, executable, args, env, path, child_fds):
        self._reactor = reactor
        self.protocol = protocol
        self.executable = executable
        self.args = args
        self.env = env
        self.path = path
        self.child_fds = child_fds
        self.signals = []
        self.dies_on = set()
        self.group_alive = False
        self.lost = False
        self.exited = False
        self.ended = False
        self.pid = 4242

    def closeStdin(self):
        pass

    def loseConnection(self):
        self.lost = True

    def signalProcess(self, name):
        if self.exited and not self.group_alive:
            raise error.ProcessExitedAlready()
        self.signals.append(name)
        if name in self.dies_on:
            self._reactor.callLater(0, self._die, name)

    def _die(self, name):
        if not self.exited:
            self.exit(signal=SIGNAL_NUMBERS[name])

    def write(self, data, stderr=False):
        """The process writes ``data`` to stdout (or stderr)."""
        self.protocol.childDataReceived(2 if stderr else 1, data)

    def exit(self, code=0, signal=None):
        """The process exits (and its pipes close)."""
        self.exit_only(code, signal)
        self.end(code, signal)

    def exit_only(self, code=0, signal=None):
        """The process exits; its pipes stay open."""
        self.exited = True
        self.protocol.processExited(_reason(code, signal))

    def end(self, code=0, signal=None):
        """Its pipes close: ``processEnded``."""
        self.ended = True
        self.protocol.processEnded(_reason(code, signal))


def _reason(code, signal):
    if signal is None and code == 0:
        return Failure(error.ProcessDone(0))
    return Failure(error.ProcessTerminated(exitCode=code if signal is None else None, signal=signal))


class FakeProcessReactor(MemoryReactorClock):
    """A clock and memory reactor that records spawned processes."""

    def __init__(self):
        super().__init__()
        self.processes = []
        self.programs = {}

    def spawnProcess(self, processProtocol, executable, args=(), env=None, path=None,
                     uid=None, gid=None, usePTY=False, childFDs=None):
        process = FakeProcess(self, processProtocol, executable, list(args), env, path, childFDs)
        self.processes.append(process)
        processProtocol.makeConnection(process)
        program = self.programs.get(executable)
        if program is not None:
            self.callLater(0, program, process)
        return process


def answer(stdout="", stderr="", code=0):
    """A fake program that prints ``stdout`` and ``stderr`` and exits with ``code``."""

    def run(process):
        if stdout:
            process.write(stdout.encode("utf-8"))
        if stderr:
            process.write(stderr.encode("utf-8"), stderr=True)
        process.exit(code)

    return run


def hang(process):
    """A fake program that never ends on its own; SIGTERM kills it."""
    process.dies_on = {"TERM", "KILL"}
