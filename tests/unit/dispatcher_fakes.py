"""Helpers for the dispatcher's unit tests: a started dispatcher on the fake process
reactor of ``tests.unit.process_fakes``, and ways to read its results."""

from twisted.python.failure import Failure

from sysadmd.dispatcher.core import Dispatcher, Settings
from sysadmd.dispatcher.database import SyncWorker
from sysadmd.dispatcher.output import HEAD_BYTES
from sysadmd.dispatcher.outputs import OutputDirectory
from sysadmd.dispatcher.queue import parse_queues
from sysadmd.dispatcher.store import Store
from tests.unit.process_fakes import FakeProcess, FakeProcessReactor

__all__ = ["ENV", "FakeProcess", "FakeProcessReactor", "make_dispatcher", "Caller", "result_of", "states"]

ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}


def make_dispatcher(tmp_path, queues="no_queue:0 pkg_queue:1", reactor=None, head_bytes=HEAD_BYTES,
                    worker=SyncWorker, **settings):
    """A started dispatcher on a ``worker`` (SyncWorker) store in ``tmp_path`` with its
    output files in ``tmp_path/output``, its events collected; returns ``(reactor,
    dispatcher, events)``."""
    reactor = reactor or FakeProcessReactor()
    settings.setdefault("env", dict(ENV))
    settings.setdefault("cwd", str(tmp_path))
    config = Settings(queues=parse_queues(queues), **settings)
    path = str(tmp_path / "dispatcher.sqlite")
    outputs = OutputDirectory(str(tmp_path / "output"), config.max_output_bytes, head_bytes)
    outputs.open()
    store = Store(lambda: worker(path), config.store_log_bytes, outputs)
    dispatcher = Dispatcher(reactor, store, config, outputs)
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
