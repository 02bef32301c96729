"""The dispatcher's persistence: commits, restart recovery, pruning, shutdown, the worker."""

import queue
import sqlite3
import threading
import time

import pytest

from sysadmd.dispatcher.database import ThreadWorker, connect
from sysadmd.dispatcher.job import DispatcherUnavailable
from tests.unit.dispatcher_fakes import FakeProcessReactor, make_dispatcher, result_of, states

DAY = 86400.0


def rows(tmp_path):
    """job_id -> (state, flags) as another connection sees them (i.e. committed)."""
    conn = sqlite3.connect(str(tmp_path / "dispatcher.sqlite"))
    try:
        return {r[0]: (r[1], r[2]) for r in conn.execute("SELECT job_id, state, flags FROM jobs ORDER BY seq")}
    finally:
        conn.close()


def test_every_state_change_is_committed(tmp_path):
    """pending, running and finished are each visible to another connection at once."""
    reactor, dispatcher, events = make_dispatcher(tmp_path)
    dispatcher.submit("a", "sleep 1", queue="pkg_queue")
    dispatcher.submit("b", "true", queue="pkg_queue")
    assert rows(tmp_path) == {"a": ("running", "{}"), "b": ("pending", "{}")}
    reactor.processes[0].exit(0)
    assert rows(tmp_path)["a"] == ("finished", "{}")
    assert rows(tmp_path)["b"] == ("running", "{}")


def test_a_commands_output_is_committed_when_the_next_one_starts(tmp_path):
    """A finished command's log and return code are saved with the next command's start
    (not only at the job's end), and the last one's with the finish."""
    reactor, dispatcher, events = make_dispatcher(tmp_path)
    dispatcher.submit("j", ["echo one", "echo two"])

    def saved():
        conn = sqlite3.connect(str(tmp_path / "dispatcher.sqlite"))
        try:
            return list(conn.execute("SELECT idx, return_code, log FROM outputs ORDER BY idx"))
        finally:
            conn.close()

    reactor.processes[0].write(b"one\n")
    assert saved() == []
    reactor.processes[0].exit(0)
    assert saved() == [(0, 0, "one\n")]
    reactor.processes[1].write(b"two\n")
    reactor.processes[1].exit(0)
    assert saved() == [(0, 0, "one\n"), (1, 0, "two\n")]
    assert rows(tmp_path)["j"] == ("finished", "{}")


def test_database_uses_wal(tmp_path):
    """The database is in WAL mode."""
    conn = connect(str(tmp_path / "x.sqlite"))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_restart_requeues_pending_in_order_and_marks_running_interrupted(tmp_path):
    """After a crash: running jobs are finished with interrupted; pending ones are queued
    again in their original order, each with a pending event, and run."""
    reactor, first, _ = make_dispatcher(tmp_path)
    first.submit("a", "sleep 60", queue="pkg_queue")
    first.submit("x", "yes")
    reactor.processes[1].write(b"y\ny\n")
    for name in ("b", "c", "d"):
        first.submit(name, f"echo {name}", queue="pkg_queue")
    first.kill(["c"])
    # The first dispatcher is never stopped: it "crashed".
    reactor2, second, events = make_dispatcher(tmp_path)
    assert [(e["state"], e["process_id"]) for e in events[:2]] == [("pending", "b"), ("pending", "d")]
    assert [p.args for p in reactor2.processes] == [["echo", "b"]]
    assert second.list_jobs()["pkg_queue"]["d"]["queue_position"] == "1"
    a = result_of(second.details("a"))
    assert a["state"] == "finished" and a["interrupted"] == "true" and "time_finished" in a
    x = result_of(second.details("x"))
    assert x["interrupted"] == "true"
    reactor2.processes[0].exit(0)
    reactor2.processes[1].exit(0)
    assert [e["process_id"] for e in events if e["state"] == "finished"] == ["b", "d"]
    history = result_of(second.history(10))
    # All finished at (fake) time 0: newest first means highest sequence first.
    assert [h["process_id"] for h in history] == ["d", "c", "b", "x", "a"]
    assert history[0] == {
        "state": "finished",
        "process_id": "d",
        "time_started": history[0]["time_started"],
        "time_finished": history[0]["time_finished"],
        "cmd_list": ["echo d"],
        "return_codes/echo d": "0",
        "queue": "pkg_queue",
    }
    assert history[1]["killed"] == "true" and "time_started" not in history[1]


def test_new_jobs_after_restart_get_new_sequence_numbers(tmp_path):
    """Reusing a finished id after a restart keeps both in history; log shows the newest."""
    reactor, first, _ = make_dispatcher(tmp_path)
    first.submit("j", "echo first")
    reactor.processes[0].write(b"first\n")
    reactor.processes[0].exit(0)
    reactor2, second, _ = make_dispatcher(tmp_path)
    second.submit("j", "echo second")
    reactor2.processes[0].write(b"second\n")
    reactor2.processes[0].exit(0)
    assert result_of(second.details("j"))["echo second"] == "second\n"
    assert len(result_of(second.history(10))) == 2


def test_stop_terms_kills_waits_and_records_interrupted(tmp_path):
    """stopService's work: SIGTERM, SIGKILL after kill_grace, fires only when the child has
    exited; the job is recorded interrupted; pending jobs stay for the next start."""
    reactor, dispatcher, events = make_dispatcher(tmp_path, kill_grace=5.0)
    dispatcher.submit("a", "sleep 60", queue="pkg_queue")
    dispatcher.submit("b", "echo b", queue="pkg_queue")
    process = reactor.processes[0]
    stopped = dispatcher.stop()
    assert process.signals == ["TERM"]
    assert not stopped.called
    reactor.advance(5.0)
    assert process.signals == ["TERM", "KILL"]
    assert not stopped.called
    process.exit(signal=9)
    assert stopped.called
    result_of(stopped)
    assert len(reactor.processes) == 1, "nothing starts while stopping"
    assert rows(tmp_path) == {"a": ("finished", '{"interrupted": "true"}'), "b": ("pending", "{}")}
    with pytest.raises(DispatcherUnavailable):
        result_of(dispatcher.submit("c", "true"))
    reactor2, again, events2 = make_dispatcher(tmp_path)
    assert [p.args for p in reactor2.processes] == [["echo", "b"]]
    assert states(events2) == ["pending", "running"]


def test_history_is_pruned_after_history_days(tmp_path):
    """Finished jobs older than history_days go at start and hourly after; 0 keeps all."""
    reactor, dispatcher, _ = make_dispatcher(tmp_path, history_days=30)
    dispatcher.submit("old", "true")
    reactor.processes[0].exit(0)
    reactor.advance(29 * DAY)
    dispatcher.submit("newer", "true")
    reactor.processes[1].exit(0)
    reactor.advance(1.5 * DAY)
    assert [h["process_id"] for h in result_of(dispatcher.history(10))] == ["newer"]
    assert result_of(dispatcher.details("old")) is None

    keep = FakeProcessReactor()
    keep.advance(1000 * DAY)
    _, forever, _ = make_dispatcher(tmp_path, reactor=keep, history_days=0)
    assert [h["process_id"] for h in result_of(forever.history(10))] == ["newer"]
    reactor3 = FakeProcessReactor()
    reactor3.advance(1000 * DAY)
    _, pruned, _ = make_dispatcher(tmp_path, reactor=reactor3, history_days=30)
    assert result_of(pruned.history(10)) == []


def test_history_limit_and_order(tmp_path):
    """history returns at most ``limit`` jobs, newest first."""
    reactor, dispatcher, _ = make_dispatcher(tmp_path)
    for i in range(5):
        dispatcher.submit(f"j{i}", "true")
        reactor.advance(1)
        reactor.processes[i].exit(0)
    assert [h["process_id"] for h in result_of(dispatcher.history(3))] == ["j4", "j3", "j2"]


def test_unusable_database_makes_requests_fail(tmp_path):
    """A database that cannot be opened: requests fail with DispatcherUnavailable, and stop
    still completes."""
    (tmp_path / "dispatcher.sqlite").write_bytes(b"this is not a database" * 100)
    reactor, dispatcher, events = make_dispatcher(tmp_path)
    with pytest.raises(DispatcherUnavailable):
        result_of(dispatcher.submit("j", "true"))
    with pytest.raises(DispatcherUnavailable):
        result_of(dispatcher.when_ready())
    result_of(dispatcher.stop())


class ThreadReactor:
    """Just enough reactor for ThreadWorker: callFromThread and callLater into a queue
    we drain (a callLater runs at the next pump, like the next reactor turn)."""

    def __init__(self):
        self.calls = queue.SimpleQueue()

    def callFromThread(self, f, *args):
        self.calls.put((f, args))

    def callLater(self, delay, f, *args):
        self.calls.put((f, args))

    def pump(self, until, timeout=5.0):
        while not until():
            f, args = self.calls.get(timeout=timeout)
            f(*args)


def test_thread_worker_runs_in_order_on_its_own_thread(tmp_path):
    """Operations run FIFO off the calling thread; one failing does not undo the others;
    close finishes queued work and ends the thread."""
    reactor = ThreadReactor()
    worker = ThreadWorker(reactor, str(tmp_path / "w.sqlite"))
    threads = []

    def create(conn):
        conn.execute("CREATE TABLE t (n INTEGER)")

    def add(conn, n):
        threads.append(threading.current_thread())
        conn.execute("INSERT INTO t VALUES (?)", (n,))

    def broken(conn):
        conn.execute("INSERT INTO t VALUES (99)")
        raise ValueError("boom")

    def read(conn):
        return [r[0] for r in conn.execute("SELECT n FROM t ORDER BY rowid")]

    results = []
    worker.run(create)
    for n in range(5):
        worker.run(add, n)
    worker.run(broken).addErrback(lambda f: results.append(f.check(ValueError)))
    worker.run(read).addCallback(results.append)
    closed = worker.close()
    reactor.pump(lambda: closed.called)
    assert results == [ValueError, [0, 1, 2, 3, 4]]
    assert threads and all(t is not threading.current_thread() for t in threads)
    assert not worker._thread.is_alive()


def test_thread_worker_reports_a_database_it_cannot_open(tmp_path):
    """Every operation fails with the open error."""
    reactor = ThreadReactor()
    worker = ThreadWorker(reactor, str(tmp_path / "missing-dir" / "w.sqlite"))
    failures = []
    worker.run(lambda conn: None).addErrback(lambda f: failures.append(type(f.value)))
    closed = worker.close()
    reactor.pump(lambda: closed.called)
    assert failures == [sqlite3.OperationalError]


def test_thread_worker_hands_one_turns_writes_over_together(tmp_path):
    """What is asked for in one reactor turn reaches the thread at the end of the turn,
    all at once: the operations run in one transaction."""
    reactor = ThreadReactor()
    worker = ThreadWorker(reactor, str(tmp_path / "w.sqlite"))
    seen = []

    def note(conn, n):
        # The same transaction: the row the first operation added is visible, uncommitted.
        conn.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
        conn.execute("INSERT INTO t VALUES (?)", (n,))
        seen.append((n, conn.in_transaction, conn.execute("SELECT COUNT(*) FROM t").fetchone()[0]))

    done = [worker.run(note, 1), worker.run(note, 2)]
    time.sleep(0.2)
    assert seen == []
    reactor.pump(lambda: all(d.called for d in done))
    assert seen == [(1, True, 1), (2, True, 2)]
    closed = worker.close()
    reactor.pump(lambda: closed.called)
