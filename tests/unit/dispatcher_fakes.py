"""A fake process reactor and helpers for the dispatcher's unit tests.

``FakeProcessReactor`` is a ``MemoryReactorClock`` whose ``spawnProcess`` records a
:class:`FakeProcess` instead of forking; a test makes the process write output and exit.
"""

from twisted.internet import error
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from sysadmd.dispatcher.core import Dispatcher, Settings
from sysadmd.dispatcher.queue import parse_queues
from sysadmd.dispatcher.database import SyncWorker
from sysadmd.dispatcher.store import Store

ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}


class FakeProcess:
    """What ``spawnProcess`` returned: records signals; the test drives the protocol."""

    def __init__(self, protocol, executable, args, env, path, child_fds):
        self.protocol = protocol
        self.executable = executable
        self.args = args
        self.env = env
        self.path = path
        self.child_fds = child_fds
        self.signals = []
        self.stdin_closed = False
        self.lost = False
        self.exited = False
        self.pid = 4242

    def closeStdin(self):
        self.stdin_closed = True

    def loseConnection(self):
        self.lost = True

    def signalProcess(self, name):
        if self.exited:
            raise error.ProcessExitedAlready()
        self.signals.append(name)

    def write(self, data, stderr=False):
        """The process writes ``data`` to stdout (or stderr)."""
        if stderr:
            self.protocol.errReceived(data)
        else:
            self.protocol.outReceived(data)

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

    def spawnProcess(self, processProtocol, executable, args=(), env=None, path=None,
                     uid=None, gid=None, usePTY=False, childFDs=None):
        process = FakeProcess(processProtocol, executable, list(args), env, path, childFDs)
        self.processes.append(process)
        processProtocol.makeConnection(process)
        return process


def make_dispatcher(tmp_path, queues="no_queue:0 pkg_queue:1", reactor=None, **settings):
    """A started dispatcher on a SyncWorker store in ``tmp_path``, with its events
    collected; returns ``(reactor, dispatcher, events)``."""
    reactor = reactor or FakeProcessReactor()
    settings.setdefault("env", dict(ENV))
    settings.setdefault("cwd", str(tmp_path))
    config = Settings(queues=parse_queues(queues), **settings)
    path = str(tmp_path / "dispatcher.sqlite")
    store = Store(lambda: SyncWorker(path), config.store_log_bytes)
    dispatcher = Dispatcher(reactor, store, config)
    events = []
    dispatcher.add_listener(events.append)
    dispatcher.start()
    return reactor, dispatcher, events


class Caller:
    """The session fields rpc/dispatcher's audit lines name."""

    user = "admin"
    peer_host = "192.0.2.7"


def result_of(d):
    """The result of a Deferred that has already fired (raising its failure)."""
    results = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def states(events, job_id=None):
    """The event states, optionally of one job."""
    return [e["state"] for e in events if job_id is None or e["process_id"] == job_id]
