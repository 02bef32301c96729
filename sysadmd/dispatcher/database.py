"""The dispatcher's SQLite database: schema, the worker that owns the connection, and
the operations run on it (each given the connection).

One worker thread owns the connection and runs operations in the order they were asked
for. The operations waiting when it wakes up form one transaction, each in its own
savepoint, committed (WAL, ``synchronous=FULL``) before any of their Deferreds fire:
every state change is committed, and a burst of them costs one fsync.
"""

import json
import os
import queue
import sqlite3
import threading

from twisted.internet import defer
from twisted.python.failure import Failure

from sysadmd.dispatcher.job import FINISHED, PENDING, RUNNING, CommandLog, Job

FILENAME = "dispatcher.sqlite"
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    queue TEXT NOT NULL,
    commands TEXT NOT NULL,
    timeout REAL,
    event_system TEXT,
    extra TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL,
    time_started TEXT,
    time_finished TEXT,
    finished_at REAL,
    flags TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, seq);
CREATE INDEX IF NOT EXISTS jobs_by_id ON jobs (job_id, seq);
CREATE INDEX IF NOT EXISTS jobs_by_finish ON jobs (finished_at);
CREATE TABLE IF NOT EXISTS outputs (
    seq INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    log TEXT,
    dropped INTEGER NOT NULL DEFAULT 0,
    return_code INTEGER,
    PRIMARY KEY (seq, idx)
);
"""
_JOB_COLUMNS = (
    "seq, job_id, queue, commands, timeout, event_system, extra, state, "
    "time_started, time_finished, finished_at, flags"
)


# SQLite gives its -wal, -shm and -journal files the database file's permissions.
_COMPANIONS = ("", "-wal", "-shm", "-journal")


def _private_file(path):
    """Create ``path`` with mode 0600 before SQLite opens it (it holds every job's
    commands and output), and narrow it and its companions if an older version made them
    readable by others; raises ``sqlite3.OperationalError`` when that fails."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        for suffix in _COMPANIONS:
            try:
                mode = os.stat(path + suffix).st_mode
            except FileNotFoundError:
                continue
            if mode & 0o077:
                os.chmod(path + suffix, mode & 0o600)
    except OSError as e:
        raise sqlite3.OperationalError(f"cannot create {path} with mode 0600: {e.strerror}") from None


def connect(path):
    """Open (creating if needed, mode 0600) the database at ``path``; raises
    ``sqlite3.Error``."""
    if path != ":memory:":
        _private_file(path)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise sqlite3.OperationalError(f"cannot use WAL journal mode (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"written by a newer sysadmd (schema {version})")
        conn.executescript(SCHEMA)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.close()
        raise
    return conn


def run_batch(conn, batch):
    """Run ``batch`` ((function, args) pairs) as one transaction; returns one
    ``(ok, value_or_failure)`` per entry. When the transaction as a whole fails (its
    COMMIT, or an error after which SQLite rolled it back), every entry fails with that
    error and each function's ``rolled_back()``, if it has one, is called."""
    results = []
    try:
        conn.execute("BEGIN IMMEDIATE")
        for function, args in batch:
            conn.execute("SAVEPOINT op")
            try:
                value = function(conn, *args)
            except Exception:
                failure = Failure()
                if not conn.in_transaction:
                    # SQLite undid the whole transaction itself (SQLITE_FULL, SQLITE_IOERR).
                    return _rolled_back(conn, batch, failure)
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                results.append((False, failure))
            else:
                conn.execute("RELEASE op")
                results.append((True, value))
        conn.execute("COMMIT")
    except Exception:
        return _rolled_back(conn, batch, Failure())
    return results


def _rolled_back(conn, batch, failure):
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
    for function, _ in batch:
        rolled_back = getattr(function, "rolled_back", None)
        if rolled_back is not None:
            rolled_back()
    return [(False, failure)] * len(batch)


def fire(deferreds, results):
    """Fire each Deferred with its ``(ok, value)`` result (on the reactor thread)."""
    for d, (ok, value) in zip(deferreds, results):
        if ok:
            d.callback(value)
        else:
            d.errback(value)


class ThreadWorker:
    """Owns the connection on one thread; results come back through
    ``reactor.callFromThread``. If the database cannot be opened, every operation fails
    with that error."""

    def __init__(self, reactor, path):
        self._reactor = reactor
        self.path = path
        self._queue = queue.SimpleQueue()  # lists of (function, args, deferred)
        self._pending = []
        self._thread = threading.Thread(target=self._loop, name="sysadmd-dispatcher-db", daemon=True)
        self._thread.start()

    def run(self, function, *args):
        """Run ``function(conn, *args)`` on the worker; a Deferred of its result."""
        d = defer.Deferred()
        # Handed over once per reactor turn: a job's end and the next one's start make
        # one transaction, and the thread wakes (and takes the GIL) once, not per write.
        if not self._pending:
            self._reactor.callLater(0, self._hand_over)
        self._pending.append((function, args, d))
        return d

    def _hand_over(self):
        if self._pending:
            pending, self._pending = self._pending, []
            self._queue.put(pending)

    def close(self):
        """Finish every queued operation, close the connection and end the thread."""
        d = defer.Deferred()
        self._hand_over()
        self._queue.put([(None, (), d)])
        # The thread has nothing left to do once d fires, so the join is immediate.
        return d.addCallback(lambda _: self._thread.join())

    def _loop(self):
        try:
            conn = connect(self.path)
            opened = None
        except Exception:
            conn, opened = None, Failure()
        while True:
            batch = list(self._queue.get())
            while True:
                try:
                    batch.extend(self._queue.get_nowait())
                except queue.Empty:
                    break
            closing = [entry for entry in batch if entry[0] is None]
            work = [entry for entry in batch if entry[0] is not None]
            if work:
                if conn is None:
                    results = [(False, opened)] * len(work)
                else:
                    results = run_batch(conn, [(f, a) for f, a, _ in work])
                self._reactor.callFromThread(fire, [d for _, _, d in work], results)
            if closing:
                if conn is not None:
                    conn.close()
                self._reactor.callFromThread(fire, [d for _, _, d in closing], [(True, None)] * len(closing))
                return


class SyncWorker:
    """The same interface, run at once in the caller's thread (for tests and tools)."""

    def __init__(self, path):
        self.path = path
        self._conn = connect(path)

    def run(self, function, *args):
        """Run ``function(conn, *args)`` in its own transaction now."""
        ((ok, value),) = run_batch(self._conn, [(function, args)])
        return defer.succeed(value) if ok else defer.fail(value)

    def close(self):
        """Close the connection."""
        self._conn.close()
        return defer.succeed(None)


# -- operations (run on the worker, given the connection) ---------------------------------


def insert_jobs(conn, rows):
    """Insert new job rows."""
    conn.executemany(
        f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
    )


def mark_running(conn, seq, time_started):
    """Record that a job started."""
    conn.execute(
        "UPDATE jobs SET state = ?, time_started = ? WHERE seq = ?", (RUNNING, time_started, seq)
    )


def save_outputs(conn, rows):
    """Record commands' logs and return codes: ``(seq, index, log, dropped, rc)`` rows."""
    conn.executemany(
        "INSERT OR REPLACE INTO outputs (seq, idx, log, dropped, return_code) VALUES (?, ?, ?, ?, ?)",
        rows,
    )


def mark_finished(conn, seq, time_finished, finished_at, flags):
    """Record that a job finished, with its flags (killed, timed_out...)."""
    conn.execute(
        "UPDATE jobs SET state = ?, time_finished = ?, finished_at = ?, flags = ? WHERE seq = ?",
        (FINISHED, time_finished, finished_at, json.dumps(flags), seq),
    )


def finish_job(conn, output_rows, seq, time_finished, finished_at, flags):
    """Record the last outputs of a job and that it finished."""
    if output_rows:
        save_outputs(conn, output_rows)
    mark_finished(conn, seq, time_finished, finished_at, flags)


def prune(conn, cutoff):
    """Delete finished jobs older than ``cutoff`` and their outputs; returns their
    sequence numbers (their output files go once this is committed)."""
    old = "SELECT seq FROM jobs WHERE state = ? AND finished_at < ?"
    seqs = [row[0] for row in conn.execute(old, (FINISHED, cutoff))]
    conn.execute(f"DELETE FROM outputs WHERE seq IN ({old})", (FINISHED, cutoff))
    conn.execute("DELETE FROM jobs WHERE state = ? AND finished_at < ?", (FINISHED, cutoff))
    return seqs


def startup(conn, now, now_iso, cutoff):
    """At start: mark jobs left running as interrupted, prune, and return the pending
    jobs, the last sequence number, the interrupted ids and the pruned jobs' seqs."""
    interrupted = []
    running = "SELECT seq, job_id, flags FROM jobs WHERE state = ? ORDER BY seq"
    for seq, job_id, flags in conn.execute(running, (RUNNING,)).fetchall():
        mark_finished(conn, seq, now_iso, now, dict(json.loads(flags), interrupted="true"))
        interrupted.append(job_id)
    pruned = prune(conn, cutoff) if cutoff is not None else []
    pending = conn.execute(
        f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state = ? ORDER BY seq", (PENDING,)
    ).fetchall()
    last = conn.execute("SELECT MAX(seq) FROM jobs").fetchone()[0] or 0
    return [_job(row) for row in pending], last, interrupted, pruned


def _attach_outputs(conn, jobs, log_cap):
    by_seq = {job.seq: job for job in jobs}
    if not by_seq:
        return
    marks = ", ".join("?" * len(by_seq))
    columns = "seq, idx, return_code" + (", log, dropped" if log_cap is not None else "")
    for row in conn.execute(f"SELECT {columns} FROM outputs WHERE seq IN ({marks})", list(by_seq)):
        job = by_seq[row[0]]
        if row[2] is not None:
            job.return_codes[row[1]] = row[2]
        if log_cap is not None and (row[3] or row[4]):
            job.logs[row[1]] = CommandLog(max(log_cap, len(row[3].encode("utf-8"))), row[3], row[4])


def find(conn, job_id, log_cap=None):
    """The newest job named ``job_id`` with its return codes (and its logs from the
    database, each capped at ``log_cap``, unless that is None), or None."""
    row = conn.execute(
        f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_id = ? ORDER BY seq DESC LIMIT 1", (job_id,)
    ).fetchone()
    if row is None:
        return None
    job = _job(row)
    _attach_outputs(conn, [job], log_cap)
    return job


def details(conn, job_id, log_cap, file_logs=None):
    """One job with its logs (each capped at ``log_cap``), or None. ``file_logs(seq,
    commands, cap)`` reads them from the job's output file, when it has one (the database
    then holds only their tails, as events show them)."""
    job = find(conn, job_id, log_cap)
    if job is None:
        return None
    logs = logs_from(file_logs, job, log_cap)
    if logs is not None:
        job.logs = logs
    return job


def logs_from(file_logs, job, cap):
    """``job``'s logs as :class:`CommandLog` objects read by ``file_logs`` (see
    :func:`details`), or None when it has no output file."""
    if file_logs is None:
        return None
    found = file_logs(job.seq, len(job.commands), cap)
    if found is None:
        return None
    return {index: CommandLog(max(cap, len(text.encode("utf-8"))), text, left_out)
            for index, (text, left_out) in found.items()}


def history(conn, limit):
    """Recent finished jobs, newest first, without logs."""
    rows = conn.execute(
        f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state = ? "
        "ORDER BY finished_at DESC, seq DESC LIMIT ?",
        (FINISHED, limit),
    ).fetchall()
    jobs = [_job(row) for row in rows]
    _attach_outputs(conn, jobs, None)
    return jobs


def _job(row):
    (seq, job_id, queue_name, commands, timeout, event_system, extra, state,
     time_started, time_finished, finished_at, flags) = row
    job = Job(seq, job_id, json.loads(commands), queue_name, timeout, event_system, json.loads(extra))
    job.state = state
    job.time_started = time_started
    job.time_finished = time_finished
    job.finished_at = finished_at
    for name, value in json.loads(flags).items():
        setattr(job, name, value == "true")
    return job


# -- ordered writes that survive a full disk ------------------------------------------
