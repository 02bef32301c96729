"""The dispatcher's scheduler (queue limits, ``[dispatcher] max_processes`` over all
queues, held jobs) and its job table, on the fake process reactor."""

from collections import OrderedDict

import pytest
from twisted.internet.task import Clock

from sysadmd.dispatcher.job import PENDING, RUNNING, DuplicateJob, Job
from sysadmd.dispatcher.scheduler import Scheduler
from sysadmd.dispatcher.table import JobTable
from tests.unit.dispatcher_fakes import make_dispatcher, result_of, states


def running_ids(dispatcher):
    return sorted(job_id for jobs in dispatcher.list_jobs().values()
                  for job_id, job in jobs.items() if job["state"] == RUNNING)


def test_max_processes_caps_running_jobs_over_all_queues(tmp_path):
    """At most max_processes jobs run at once, the unlimited no_queue included; the
    others stay pending, in order, and report their queue position."""
    reactor, dispatcher, events = make_dispatcher(tmp_path, queues="no_queue:0 pkg_queue:1", max_processes=3)
    result_of(dispatcher.submit_many([(f"n{i}", "sleep 1") for i in range(5)]))
    assert len(reactor.processes) == 3
    assert running_ids(dispatcher) == ["n0", "n1", "n2"]
    listing = dispatcher.list_jobs()["no_queue"]
    assert [(listing[f"n{i}"]["state"], listing[f"n{i}"]["queue_position"]) for i in (3, 4)] == [
        (PENDING, "1"), (PENDING, "2")
    ]
    assert states(events, "n3") == ["pending"]


def test_a_freed_place_goes_to_the_job_waiting_longest_whatever_its_queue(tmp_path):
    """When a job ends at the cap, the oldest pending job that its own queue lets start
    takes the place, in whichever queue it is."""
    reactor, dispatcher, events = make_dispatcher(tmp_path, queues="no_queue:0 pkg_queue:1", max_processes=2)
    dispatcher.submit("a", "sleep 1")
    dispatcher.submit("b", "sleep 1")
    dispatcher.submit("p1", "sleep 1", queue="pkg_queue")
    dispatcher.submit("c", "sleep 1")
    dispatcher.submit("p2", "sleep 1", queue="pkg_queue")
    assert running_ids(dispatcher) == ["a", "b"]
    reactor.processes[0].exit(0)
    assert running_ids(dispatcher) == ["b", "p1"]
    reactor.processes[2].exit(0)
    assert running_ids(dispatcher) == ["b", "c"], "p2 is older than nothing but c; c was first"
    reactor.processes[1].exit(0)
    assert running_ids(dispatcher) == ["c", "p2"]
    for process in reactor.processes[3:]:
        process.exit(0)
    assert states(events).count("finished") == 5
    assert len(reactor.processes) == 5


def test_a_queue_limit_still_applies_under_the_cap(tmp_path):
    """pkg_queue:1 runs one job even when max_processes leaves room."""
    reactor, dispatcher, events = make_dispatcher(tmp_path, queues="pkg_queue:1", max_processes=10)
    for name in ("a", "b"):
        dispatcher.submit(name, "true", queue="pkg_queue")
    assert running_ids(dispatcher) == ["a"]


def test_jobs_that_cannot_start_give_their_place_back_at_once(tmp_path):
    """At max_processes 1, a long chain of jobs whose command is missing all finish, one
    after another, without recursion; the one real job behind them then runs."""
    reactor, dispatcher, events = make_dispatcher(tmp_path, max_processes=1)
    dispatcher.submit("blocker", "sleep 1")
    result_of(dispatcher.submit_many([(f"m{i}", "no-such-command-xyz") for i in range(2000)]))
    reactor.advance(0)  # announced over several turns
    dispatcher.submit("last", "true")
    assert len(reactor.processes) == 1
    reactor.processes[0].exit(0)
    assert states(events).count("finished") == 2001
    assert [p.args for p in reactor.processes] == [["sleep", "1"], ["true"]]


def test_killing_a_running_job_at_the_cap_lets_the_next_start(tmp_path):
    """A kill frees the place once the process has ended."""
    reactor, dispatcher, events = make_dispatcher(tmp_path, max_processes=1)
    dispatcher.submit("a", "sleep 60")
    dispatcher.submit("b", "true")
    dispatcher.kill(["a"])
    assert len(reactor.processes) == 1, "a still runs until its process ends"
    reactor.processes[0].exit(signal=15)
    assert running_ids(dispatcher) == ["b"]


def test_a_held_job_blocks_its_queue_until_announced():
    """The scheduler starts nothing of a queue whose oldest pending job is held (not
    yet recorded and announced); announcing it lets it, and those behind, start."""
    reactor = Clock()
    started = []
    scheduler = Scheduler(reactor, OrderedDict(q=0), 10, started.append, lambda: len(started))
    scheduler.accepting = True
    first, second = Job(1, "a", ["true"], "q"), Job(2, "b", ["true"], "q")
    scheduler.add(first)
    scheduler.add(second, announced=True)
    scheduler.schedule()
    assert started == []
    published = []
    scheduler.announce([first], published.append)
    assert published == [first] and started == [first, second]


def test_the_job_table_reserves_ids_all_or_none_and_finds_jobs_until_saved():
    """reserve refuses a batch with a live id (naming it) and keeps none of it; a
    finished job is found until its finish is saved."""
    table = JobTable()
    a, b, a_again = Job(1, "a", ["true"], "q"), Job(2, "b", ["true"], "q"), Job(3, "a", ["true"], "q")
    table.reserve([a])
    with pytest.raises(DuplicateJob, match="Already pending or running: a"):
        table.reserve([b, a_again])
    assert table.find("b") is None and table.find("a") is a
    table.finished(a)
    assert table.find("a") is a and table.kill("a") is None
    table.saved(a)
    assert table.find("a") is None
