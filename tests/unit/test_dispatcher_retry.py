"""Writes that fail because the state directory cannot be written (full): kept in order,
retried with backoff, new jobs refused meanwhile, flushed at stop. The failure is
injected into the store's connection; no disk is filled."""

import sqlite3

import pytest
from twisted.internet import defer, task
from twisted.logger import capturedLogs, formatEvent

from sysadmd.dispatcher.api import DispatcherCall
from sysadmd.dispatcher.core import Dispatcher, Settings
from sysadmd.dispatcher.database import SyncWorker, fire, run_batch
from sysadmd.dispatcher.job import DispatcherUnavailable, Job
from sysadmd.dispatcher.queue import parse_queues
from sysadmd.dispatcher.store import Store, Unwritable
from sysadmd.protocol.envelope import RequestError
from tests.unit.dispatcher_fakes import ENV, Caller, FakeProcessReactor, result_of

FULL = "database or disk is full"


class FullDisk:
    """A connection that behaves as if its file system were full while ``full`` is set:
    a COMMIT of a transaction that changed something fails with SQLite's SQLITE_FULL
    message (reads still work). ``refuse(sql)`` may instead return an exception for one
    statement; with ``auto_rollback`` SQLite is made to undo the whole transaction first,
    as it may for SQLITE_FULL. ``refused`` counts the writes refused."""

    def __init__(self, conn):
        self._conn = conn
        self.full = False
        self.refuse = lambda sql: None
        self.auto_rollback = False
        self.refused = 0
        self._changes = 0

    def execute(self, sql, *args):
        self._check(sql)
        if sql == "BEGIN IMMEDIATE":
            self._changes = self._conn.total_changes
        if sql == "COMMIT" and self.full and self._conn.total_changes != self._changes:
            self.refused += 1
            raise sqlite3.OperationalError(FULL)
        return self._conn.execute(sql, *args)

    def executemany(self, sql, *args):
        self._check(sql)
        return self._conn.executemany(sql, *args)

    def _check(self, sql):
        error = self.refuse(sql)
        if error is not None:
            self.refused += 1
            if self.auto_rollback:
                self._conn.execute("ROLLBACK")
            raise error

    def __getattr__(self, name):
        return getattr(self._conn, name)


class FullDiskWorker(SyncWorker):
    """A SyncWorker on a :class:`FullDisk` connection (``.disk``)."""

    def __init__(self, path):
        super().__init__(path)
        self.disk = self._conn = FullDisk(self._conn)


class StepWorker(FullDiskWorker):
    """Like ThreadWorker, operations wait in a queue and run in batches (one transaction
    each), but only when the test calls :meth:`step`: a test can have writes waiting on
    the worker before the store hears that an earlier one failed."""

    def __init__(self, path):
        super().__init__(path)
        self.waiting = []

    def run(self, function, *args):
        d = defer.Deferred()
        self.waiting.append((function, args, d))
        return d

    def step(self, count=None):
        """Run the first ``count`` waiting operations (all by default) as one batch."""
        count = len(self.waiting) if count is None else count
        batch, self.waiting = self.waiting[:count], self.waiting[count:]
        fire([d for _, _, d in batch], run_batch(self._conn, [(f, a) for f, a, _ in batch]))

    def close(self):
        self.step()
        return super().close()


def rows(tmp_path):
    """job_id -> state, as committed (seen from another connection)."""
    conn = sqlite3.connect(str(tmp_path / "dispatcher.sqlite"))
    try:
        return dict(conn.execute("SELECT job_id, state FROM jobs ORDER BY seq"))
    finally:
        conn.close()


def outputs(tmp_path):
    """(job_id, command index) -> (return code, log), as committed."""
    conn = sqlite3.connect(str(tmp_path / "dispatcher.sqlite"))
    try:
        query = "SELECT job_id, idx, return_code, log FROM outputs JOIN jobs USING (seq)"
        return {(r[0], r[1]): (r[2], r[3]) for r in conn.execute(query)}
    finally:
        conn.close()


def messages(logged):
    return [formatEvent(event) for event in logged]


def full_disk_dispatcher(tmp_path, reactor=None, **settings):
    """A started dispatcher whose store's connection is a FullDisk: ``(reactor,
    dispatcher, disk)``."""
    reactor = reactor or FakeProcessReactor()
    settings.setdefault("env", dict(ENV))
    settings.setdefault("cwd", str(tmp_path))
    config = Settings(queues=parse_queues("no_queue:0 pkg_queue:1"), **settings)
    workers = []

    def open_worker():
        workers.append(FullDiskWorker(str(tmp_path / "dispatcher.sqlite")))
        return workers[-1]

    dispatcher = Dispatcher(reactor, Store(open_worker, config.store_log_bytes), config)
    result_of(dispatcher.start())
    return reactor, dispatcher, workers[-1].disk


def call(dispatcher, args):
    """The handler's answer, or ``(code, details)`` of its RequestError."""
    try:
        return result_of(defer.maybeDeferred(DispatcherCall(dispatcher), Caller(), args))
    except RequestError as e:
        return e.code, e.details


def test_failed_writes_are_kept_and_retried_with_backoff_until_saved(tmp_path):
    """A job that ends while the disk is full: its output and finish records are kept,
    retried after 1, 2, 4, 8, 16 and then every 30 s, and committed once there is room;
    the failure is logged once with the reason and a hint, the recovery once."""
    reactor, dispatcher, disk = full_disk_dispatcher(tmp_path)
    dispatcher.submit("a", "echo a")
    disk.full = True
    with capturedLogs() as logged:
        reactor.processes[0].write(b"a\n")
        reactor.processes[0].exit(0)
        assert rows(tmp_path) == {"a": "running"}
        tries = []
        for _ in range(250):
            before = disk.refused
            reactor.advance(0.5)
            if disk.refused != before:
                tries.append(reactor.seconds())
        assert tries == [1, 3, 7, 15, 31, 61, 91, 121]
        assert rows(tmp_path) == {"a": "running"}
        disk.full = False
        reactor.advance(30)
        assert rows(tmp_path) == {"a": "finished"}
        assert outputs(tmp_path) == {("a", 0): (0, "a\n")}
        reactor.advance(300)
    text = messages(logged)
    failing = [m for m in text if "cannot be written" in m]
    assert len(failing) == 1
    assert FULL in failing[0] and f"state directory {tmp_path} may be full" in failing[0]
    assert len([m for m in text if "can be written again" in m]) == 1
    assert not [m for m in text if "recording job" in m], "a kept write is not an error"
    assert dispatcher._store.failing is None and dispatcher._store.unsaved == 0
    details = result_of(dispatcher.details("a"))
    assert details["state"] == "finished" and details["return_codes/echo a"] == "0"


def test_log_answers_from_memory_while_the_finish_is_not_saved(tmp_path):
    """While a finished job's record waits for room, log shows it finished, not the
    'running' row the database still has."""
    reactor, dispatcher, disk = full_disk_dispatcher(tmp_path)
    dispatcher.submit("a", "true")
    disk.full = True
    reactor.processes[0].exit(0)
    assert rows(tmp_path) == {"a": "running"}
    details = result_of(dispatcher.details("a"))
    assert details["state"] == "finished" and details["return_codes/true"] == "0"


def test_a_run_while_writes_fail_is_refused_with_503(tmp_path):
    """While writes fail a run request is refused with 503 naming the state directory,
    nothing starts and nothing is listed; a running job goes on. Once there is room, the
    next run first saves the kept records, then its own, and starts."""
    reactor, dispatcher, disk = full_disk_dispatcher(tmp_path)
    assert call(dispatcher, {"action": "run", "a": "echo a", "b": "sleep 60"}) == {"started": ["a", "b"]}
    disk.full = True
    reactor.processes[0].write(b"a\n")
    reactor.processes[0].exit(0)
    code, message = call(dispatcher, {"action": "run", "c": "true", "d": "true"})
    assert code == 503
    assert message == (
        f"Jobs c, d could not be recorded: the state directory {tmp_path} cannot be written "
        f"(full?): {FULL} — jobs not started."
    )
    assert len(reactor.processes) == 2 and reactor.processes[1].signals == []
    listed = call(dispatcher, {"action": "list"})["jobs"]
    assert list(listed["no_queue"]) == ["b"] and listed["pkg_queue"] == {}
    assert rows(tmp_path) == {"a": "running", "b": "running"}

    disk.full = False
    assert call(dispatcher, {"action": "run", "c": "echo c"}) == {"started": ["c"]}
    assert rows(tmp_path) == {"a": "finished", "b": "running", "c": "running"}
    assert reactor.processes[-1].args == ["echo", "c"]
    assert dispatcher._store.failing is None
    reactor.processes[1].exit(0)
    assert rows(tmp_path)["b"] == "finished"


def test_the_refusal_message(tmp_path):
    """One job refused while the disk is full: 503, 'Job <id> could not be recorded: the
    state directory <dir> cannot be written (full?): <reason> — job not started.'; the
    failure is logged for the job, and the id stays free."""
    reactor, dispatcher, disk = full_disk_dispatcher(tmp_path)
    disk.full = True
    with capturedLogs() as logged:
        reply = call(dispatcher, {"action": "run", "x": "true"})
    assert reply == (
        503,
        f"Job x could not be recorded: the state directory {tmp_path} cannot be written "
        f"(full?): {FULL} — job not started.",
    )
    text = messages(logged)
    assert any("job x could not be recorded; it will not run" in m and FULL in m for m in text)
    assert reactor.processes == [] and rows(tmp_path) == {}
    disk.full = False
    assert call(dispatcher, {"action": "run", "x": "true"}) == {"started": ["x"]}


def test_submit_fails_with_dispatcher_unavailable_while_writes_fail(tmp_path):
    """The plugin API: submit fails with DispatcherUnavailable, all or none."""
    reactor, dispatcher, disk = full_disk_dispatcher(tmp_path)
    disk.full = True
    with pytest.raises(DispatcherUnavailable, match=r"cannot be written \(full\?\)"):
        result_of(dispatcher.submit_many([("p", "true"), ("q", "true")]))
    assert dispatcher.list_jobs() == {"no_queue": {}, "pkg_queue": {}}


def store_on(tmp_path, worker_class=StepWorker):
    """A Store on a task.Clock, with its worker: ``(clock, store, worker)``."""
    clock = task.Clock()
    workers = []

    def open_worker():
        workers.append(worker_class(str(tmp_path / "dispatcher.sqlite")))
        return workers[-1]

    store = Store(open_worker, 1000)
    store.open(clock)
    return clock, store, workers[0]


def jobs(*ids):
    return [Job(seq, job_id, ["true"], "no_queue") for seq, job_id in enumerate(ids, 1)]


def collect(d, into):
    d.addBoth(into.append)
    return d


def test_a_write_queued_behind_a_failed_one_is_not_committed_before_it(tmp_path):
    """A's start fails at COMMIT; B's finish was already waiting on the worker and there
    is room again when it runs: it is not tried (it would overtake A's). The retry then
    writes both, in order, and only then do their Deferreds fire."""
    clock, store, worker = store_on(tmp_path)
    a, b = jobs("a", "b")
    store.insert(a, b)
    worker.step()
    a.time_started = "t"
    b.finished_at, b.time_finished = 5.0, "t5"
    fired = []
    collect(store.running(a), fired)
    collect(store.finish(b), fired)
    worker.disk.full = True
    worker.step(1)
    worker.disk.full = False
    worker.step()
    assert rows(tmp_path) == {"a": "pending", "b": "pending"}
    assert fired == [] and store.unsaved == 2
    clock.advance(1)
    assert rows(tmp_path) == {"a": "pending", "b": "pending"}, "nothing is sent twice"
    worker.step()
    assert rows(tmp_path) == {"a": "running", "b": "finished"}
    assert fired == [None, None] and store.unsaved == 0 and store.failing is None


@pytest.mark.parametrize("auto_rollback", [False, True])
def test_a_failed_statement_stops_the_writes_after_it_in_the_same_batch(tmp_path, auto_rollback):
    """In one batch (one transaction), A's update fails with SQLITE_FULL while B's would
    fit: B is not committed ahead of A, whether SQLite rolled the transaction back or not;
    a read in the batch still answers. The retry writes A then B."""
    clock, store, worker = store_on(tmp_path)
    a, b = jobs("a", "b")
    store.insert(a, b)
    worker.step()
    worker.disk.auto_rollback = auto_rollback
    starts = "UPDATE jobs SET state = ?, time_started"
    worker.disk.refuse = lambda sql: sqlite3.OperationalError(FULL) if sql.startswith(starts) else None
    a.time_started = "t"
    b.finished_at, b.time_finished = 5.0, "t5"
    store.running(a)
    store.finish(b)
    read = []
    collect(store.history(10), read)
    worker.step()
    assert rows(tmp_path) == {"a": "pending", "b": "pending"}
    assert store.failing == FULL
    if not auto_rollback:
        assert read == [[]]
    worker.disk.refuse = lambda sql: None
    clock.advance(1)
    worker.step()
    assert rows(tmp_path) == {"a": "running", "b": "finished"}


def test_an_error_that_retrying_cannot_fix_is_not_kept(tmp_path):
    """A write failing for another reason than the file system (a constraint, a bug) is
    reported to its caller and dropped: it does not hold up the writes behind it."""
    clock, store, worker = store_on(tmp_path, FullDiskWorker)
    a, b = jobs("a", "b")
    result_of(store.insert(a))
    with pytest.raises(sqlite3.IntegrityError):
        result_of(store.insert(a))
    result_of(store.insert(b))
    assert rows(tmp_path) == {"a": "pending", "b": "pending"}
    assert store.failing is None and clock.getDelayedCalls() == []


def test_stop_tries_once_more_and_saves_what_it_can(tmp_path):
    """At stop the kept writes are tried at once (not at the next retry): with room again
    the job's finish is saved and no retry timer is left behind."""
    reactor, dispatcher, disk = full_disk_dispatcher(tmp_path, history_days=0)
    dispatcher.submit("a", "true")
    disk.full = True
    reactor.processes[0].exit(0)
    disk.full = False
    with capturedLogs() as logged:
        result_of(dispatcher.stop())
    assert rows(tmp_path) == {"a": "finished"}
    assert reactor.getDelayedCalls() == []
    assert any("can be written again" in m for m in messages(logged))


def test_stop_logs_what_could_not_be_saved(tmp_path):
    """Still full at stop: the one more try fails, the lost records are named in one
    error, stop completes, no retry timer is left; after a restart the job shows as
    interrupted, as it must without its finish record."""
    reactor, dispatcher, disk = full_disk_dispatcher(tmp_path, history_days=0)
    dispatcher.submit("a", "true")
    dispatcher.submit("b", "sleep 60")
    disk.full = True
    reactor.processes[0].exit(0)
    refused = disk.refused
    with capturedLogs() as logged:
        stopped = dispatcher.stop()
        reactor.processes[1].exit(signal=15)
        result_of(stopped)
    assert disk.refused == refused + 1
    assert reactor.getDelayedCalls() == []
    lost = [m for m in messages(logged) if "could not be saved" in m]
    assert len(lost) == 1
    assert "2 job records" in lost[0] and FULL in lost[0]
    assert (
        "job a command 1 ended with 0; job a finished; "
        "job b command 1 ended with -15; job b finished, interrupted"
    ) in lost[0]
    assert rows(tmp_path) == {"a": "running", "b": "running"}
    _, again, _ = full_disk_dispatcher(tmp_path, history_days=0)
    assert result_of(again.details("a"))["interrupted"] == "true"


def test_a_kept_log_write_is_capped_at_store_log_bytes(tmp_path):
    """The log a kept write holds is the capped tail (store_log_bytes), as always."""
    reactor, dispatcher, disk = full_disk_dispatcher(tmp_path, store_log_bytes=50)
    dispatcher.submit("j", "yes")
    disk.full = True
    for i in range(1000):
        reactor.processes[0].write(b"%09d\n" % i)
    reactor.processes[0].exit(0)
    record = dispatcher._store._journal._entries[0]
    assert record.function.__name__ == "finish_job"
    (seq, index, body, dropped, rc), = record.args[0]
    assert len(body) == 50 and dropped == 1000 * 10 - 50
    disk.full = False
    reactor.advance(1)
    assert outputs(tmp_path)[("j", 0)] == (0, "".join("%09d\n" % i for i in range(995, 1000)))


def test_a_closed_store_refuses_writes(tmp_path):
    """After close a write fails with Unwritable rather than raising."""
    clock, store, worker = store_on(tmp_path, FullDiskWorker)
    result_of(store.close())
    with pytest.raises(Unwritable):
        result_of(store.insert(*jobs("a")))
