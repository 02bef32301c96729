"""The dispatcher's write journal: its states and their transitions (the full-disk
scenarios through the dispatcher are in test_dispatcher_retry.py)."""

import pytest
from twisted.internet import task

from sysadmd.dispatcher import database as db
from sysadmd.dispatcher.journal import HEALTHY, RETRYING, STOPPED, Journal, Unwritable
from tests.unit.dispatcher_fakes import result_of
from tests.unit.test_dispatcher_retry import FULL, FullDiskWorker, StepWorker, rows


def journal_on(tmp_path, worker_class=FullDiskWorker, **kwargs):
    clock = task.Clock()
    worker = worker_class(str(tmp_path / "dispatcher.sqlite"))
    return clock, worker, Journal(clock, worker, **kwargs)


def insert(journal, *job_ids, first=1):
    """Record new pending jobs (seq ``first``, ``first + 1``...), refusable."""
    rows_ = [(seq, job_id, "no_queue", '["true"]', None, None, "{}", "pending", None, None, None, "{}")
             for seq, job_id in enumerate(job_ids, first)]
    return journal.write("insert", db.insert_jobs, (rows_,), refusable=True)


def start(journal, seq):
    return journal.write(f"start {seq}", db.mark_running, (seq, "t"))


def test_healthy_then_retrying_with_backoff_then_healthy_then_stopped(tmp_path):
    """A write refused by a full disk: RETRYING, with the reason, kept and retried after
    backoffPolicy's delays (1, 2, 4 s); committed once there is room: HEALTHY. After
    close: STOPPED, and writes fail with Unwritable."""
    clock, worker, journal = journal_on(tmp_path)
    result_of(insert(journal, "a"))
    assert journal.state == HEALTHY and journal.failing is None
    worker.disk.full = True
    fired = []
    start(journal, 1).addBoth(fired.append)
    assert journal.state == RETRYING and journal.failing == FULL and journal.unsaved == 1
    tries = []
    for _ in range(16):
        before = worker.disk.refused
        clock.advance(0.5)
        if worker.disk.refused != before:
            tries.append(clock.seconds())
    assert tries == [1, 3, 7]
    worker.disk.full = False
    clock.advance(8)
    assert journal.state == HEALTHY and journal.failing is None
    assert fired == [None] and rows(tmp_path) == {"a": "running"}
    result_of(journal.close())
    assert journal.state == STOPPED
    with pytest.raises(Unwritable):
        result_of(start(journal, 1))


def test_a_new_job_while_retrying_is_tried_at_once_and_refused_if_it_fails(tmp_path):
    """A refusable write does not wait for the timer: it retries the kept writes at
    once, before itself, and fails with Unwritable if that round fails."""
    clock, worker, journal = journal_on(tmp_path)
    result_of(insert(journal, "a"))
    worker.disk.full = True
    start(journal, 1)
    refused = worker.disk.refused
    with pytest.raises(Unwritable, match="cannot be written"):
        result_of(insert(journal, "b", first=2))
    assert worker.disk.refused == refused + 1, "the kept write was tried again"
    assert journal.unsaved == 1 and journal.state == RETRYING
    worker.disk.full = False
    result_of(insert(journal, "b", first=2))
    assert journal.state == HEALTHY and rows(tmp_path) == {"a": "running", "b": "pending"}


def test_a_write_asked_for_while_a_round_is_out_joins_it(tmp_path):
    """Once the retry round is sent, a new write goes to the worker behind it at once,
    and the round's success makes the journal HEALTHY."""
    clock, worker, journal = journal_on(tmp_path, StepWorker)
    insert(journal, "a", "b")
    worker.step()
    worker.disk.full = True
    start(journal, 1)
    worker.step()
    assert journal.state == RETRYING
    worker.disk.full = False
    clock.advance(1)
    assert len(worker.waiting) == 1
    start(journal, 2)
    assert len(worker.waiting) == 2, "sent with the round, not kept"
    worker.step()
    assert journal.state == HEALTHY and rows(tmp_path) == {"a": "running", "b": "running"}


def test_the_retry_delays_come_from_the_policy(tmp_path):
    """The journal asks its retry policy (attempt 0, 1, ...) for each delay."""
    asked = []

    def policy(attempt):
        asked.append(attempt)
        return 10.0

    clock, worker, journal = journal_on(tmp_path, retry_policy=policy)
    result_of(insert(journal, "a"))
    worker.disk.full = True
    start(journal, 1)
    for _ in range(5):
        clock.advance(5)
    assert asked == [0, 1, 2]
