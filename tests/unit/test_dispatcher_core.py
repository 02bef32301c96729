"""The dispatcher's jobs, processes and events, with a fake process reactor and clock."""

import os

import pytest
from twisted.internet import defer
from twisted.logger import capturedLogs, formatEvent

from sysadmd.dispatcher.database import SyncWorker
from sysadmd.dispatcher.events import iso_time
from sysadmd.dispatcher.job import DuplicateJob, InvalidJob
from sysadmd.dispatcher.scheduler import ANNOUNCE_PER_TURN
from sysadmd.util.process import PIPE_GRACE, stdin_null
from tests.unit.dispatcher_fakes import ENV, make_dispatcher, result_of, states


def test_two_command_job_event_sequence(tmp_path):
    """pending once; running at start, after throttled output and at the command change;
    finished once with both logs, both return codes and no current_cmd."""
    reactor, dispatcher, events = make_dispatcher(tmp_path, update_interval=1.0)
    assert result_of(dispatcher.submit("j", ["echo one", "echo two"])) == "j"
    assert events[0] == {"state": "pending", "process_id": "j"}
    started = iso_time(0)
    assert events[1] == {
        "state": "running",
        "process_id": "j",
        "process_details": {
            "state": "running",
            "process_id": "j",
            "time_started": started,
            "cmd_list": ["echo one", "echo two"],
            "current_cmd": "echo one",
        },
    }
    first = reactor.processes[0]
    first.write(b"one\n")
    assert len(events) == 2, "output right after the start event waits for the interval"
    reactor.advance(1.0)
    assert events[2]["process_details"]["echo one"] == "one\n"
    first.exit(0)
    assert events[3]["process_details"]["current_cmd"] == "echo two"
    assert events[3]["process_details"]["return_codes/echo one"] == "0"
    reactor.advance(0.5)
    second = reactor.processes[1]
    second.write(b"two", stderr=True)
    second.exit(0)
    assert states(events) == ["pending", "running", "running", "running", "finished"]
    assert events[-1] == {
        "state": "finished",
        "process_id": "j",
        "process_details": {
            "state": "finished",
            "process_id": "j",
            "time_started": started,
            "time_finished": iso_time(1.5),
            "cmd_list": ["echo one", "echo two"],
            "echo one": "one\n",
            "return_codes/echo one": "0",
            "echo two": "two",
            "return_codes/echo two": "0",
        },
    }
    reactor.advance(10)
    assert len(events) == 5, "nothing after finished"


def test_commands_are_split_and_run_with_the_minimal_environment(tmp_path):
    """argv comes from shlex (no shell); env is exactly what settings say; cwd is set."""
    reactor, dispatcher, events = make_dispatcher(tmp_path)
    dispatcher.submit("j", "printf '%s\\n' 'a b' \"c d\"")
    process = reactor.processes[0]
    assert process.args == ["printf", "%s\\n", "a b", "c d"]
    assert process.executable.endswith("/printf")
    assert process.env == ENV
    assert process.path == str(tmp_path)
    assert process.child_fds == {0: stdin_null(), 1: "r", 2: "r"}
    assert os.path.samestat(os.fstat(stdin_null()), os.stat(os.devnull))


def test_output_updates_are_throttled_per_job(tmp_path):
    """While output streams, at most one running event per update_interval per job, and
    the delayed event carries all output received until then."""
    reactor, dispatcher, events = make_dispatcher(tmp_path, update_interval=1.0)
    dispatcher.submit("a", "yes")
    dispatcher.submit("b", "yes y")
    pa, pb = reactor.processes
    for _ in range(50):
        reactor.advance(0.1)
        pa.write(b"a")
        pb.write(b"b")
    running_a = [e for e in events if e["process_id"] == "a" and e["state"] == "running"]
    # 5 s of output: the start event plus about one per second, never more.
    assert 5 <= len(running_a) <= 7
    assert len([e for e in events if e["process_id"] == "b" and e["state"] == "running"]) == len(running_a)
    reactor.advance(1.0)
    last = [e for e in events if e["process_id"] == "a"][-1]
    assert last["process_details"]["yes"] == "a" * 50


def test_throttled_output_events_are_spaced_by_the_interval(tmp_path):
    """Each output-driven running event comes no sooner than update_interval after the
    job's previous one."""
    reactor, dispatcher, events = make_dispatcher(tmp_path, update_interval=2.0)
    times = []
    dispatcher.add_listener(lambda args: times.append(reactor.seconds()))
    dispatcher.submit("j", "yes")
    process = reactor.processes[0]
    for _ in range(100):
        reactor.advance(0.05)
        process.write(b"y")
    gaps = [b - a for a, b in zip(times[1:], times[2:])]
    assert gaps and all(gap >= 2.0 - 1e-9 for gap in gaps)


def test_chain_stops_at_first_failure(tmp_path):
    """A non-zero return code ends the job: later commands never start."""
    reactor, dispatcher, events = make_dispatcher(tmp_path)
    dispatcher.submit("j", ["true", "false", "echo never"])
    reactor.processes[0].exit(0)
    reactor.processes[1].write(b"oops\n", stderr=True)
    reactor.processes[1].exit(3)
    assert len(reactor.processes) == 2
    details = events[-1]["process_details"]
    assert events[-1]["state"] == "finished"
    assert details["return_codes/true"] == "0"
    assert details["return_codes/false"] == "3"
    assert details["false"] == "oops\n"
    assert "return_codes/echo never" not in details
    assert "current_cmd" not in details


def test_only_jobs_that_did_not_end_cleanly_are_logged(tmp_path):
    """A job whose commands all returned 0 leaves no log line (its record is in the
    history); a failed, killed or never-started one does, with its return codes."""
    reactor, dispatcher, events = make_dispatcher(tmp_path)
    with capturedLogs() as captured:
        dispatcher.submit("clean", ["true", "echo done"])
        reactor.processes[0].exit(0)
        reactor.processes[1].exit(0)
        dispatcher.submit("failed", ["true", "false"])
        reactor.processes[2].exit(0)
        reactor.processes[3].exit(1)
        dispatcher.submit("killed", "sleep 60")
        dispatcher.kill(["killed"])
        reactor.processes[4].exit(signal=15)
    lines = [formatEvent(e) for e in captured if e.get("log_namespace") == "sysadmd.dispatcher.progress.JobProgress"]
    assert lines == [
        "job failed finished: return codes [0, 1]",
        "job killed finished: return codes [-15], killed",
    ]


def test_command_that_cannot_start_gets_minus_one_and_the_reason(tmp_path):
    """A missing executable: return code -1, the reason in its log, chain stopped."""
    reactor, dispatcher, events = make_dispatcher(tmp_path)
    dispatcher.submit("j", ["no-such-command-xyz --flag", "true"])
    assert reactor.processes == []
    details = events[-1]["process_details"]
    assert events[-1]["state"] == "finished"
    assert details["return_codes/no-such-command-xyz --flag"] == "-1"
    assert "no-such-command-xyz: command not found" in details["no-such-command-xyz --flag"]
    assert "return_codes/true" not in details


def test_spawn_failure_gets_minus_one(tmp_path):
    """An OSError from spawnProcess (e.g. too many open files) is -1 too."""
    reactor, dispatcher, events = make_dispatcher(tmp_path)

    def broken(*args, **kwargs):
        raise OSError(24, "Too many open files")

    reactor.spawnProcess = broken
    dispatcher.submit("j", "true")
    details = events[-1]["process_details"]
    assert details["return_codes/true"] == "-1"
    assert "Too many open files" in details["true"]


def test_signal_gives_minus_n(tmp_path):
    """A command killed by signal 9 has return code -9."""
    reactor, dispatcher, events = make_dispatcher(tmp_path)
    dispatcher.submit("j", "sleep 60")
    reactor.processes[0].exit(signal=9)
    assert events[-1]["process_details"]["return_codes/sleep 60"] == "-9"


def test_timeout_sends_term_then_kill_after_grace(tmp_path):
    """At the timeout: SIGTERM; kill_grace later: SIGKILL; the job finishes timed out."""
    reactor, dispatcher, events = make_dispatcher(tmp_path, kill_grace=5.0)
    dispatcher.submit("j", ["sleep 60", "true"], timeout=10)
    process = reactor.processes[0]
    reactor.advance(9.9)
    assert process.signals == []
    reactor.advance(0.1)
    assert process.signals == ["TERM"]
    reactor.advance(4.9)
    assert process.signals == ["TERM"]
    reactor.advance(0.1)
    assert process.signals == ["TERM", "KILL"]
    process.exit(signal=9)
    assert len(reactor.processes) == 1, "no command starts after a timeout"
    details = events[-1]["process_details"]
    assert events[-1]["state"] == "finished"
    assert details["timed_out"] == "true"
    assert details["return_codes/sleep 60"] == "-9"


def test_default_timeout_applies_and_term_is_enough(tmp_path):
    """[dispatcher] default_timeout covers jobs without their own; a process that exits
    on SIGTERM gets no SIGKILL."""
    reactor, dispatcher, events = make_dispatcher(tmp_path, default_timeout=3.0, kill_grace=5.0)
    dispatcher.submit("j", "sleep 60")
    process = reactor.processes[0]
    reactor.advance(3.0)
    assert process.signals == ["TERM"]
    process.exit(signal=15)
    reactor.advance(10)
    assert process.signals == ["TERM"]
    assert events[-1]["process_details"]["timed_out"] == "true"
    assert events[-1]["process_details"]["return_codes/sleep 60"] == "-15"


def test_own_timeout_zero_means_none_despite_default(tmp_path):
    """A job's timeout of 0 disables the default."""
    reactor, dispatcher, events = make_dispatcher(tmp_path, default_timeout=3.0)
    dispatcher.submit("j", "sleep 60", timeout=0)
    reactor.advance(100)
    assert reactor.processes[0].signals == []


def test_pipes_held_open_are_closed_after_a_grace(tmp_path):
    """A command that exits while something keeps its pipes open does not hang the job."""
    reactor, dispatcher, events = make_dispatcher(tmp_path)
    dispatcher.submit("j", "true")
    process = reactor.processes[0]
    process.exit_only(0)
    reactor.advance(PIPE_GRACE)
    assert process.lost
    process.end(0)
    assert events[-1]["state"] == "finished"


def test_queue_runs_at_most_max_running_in_fifo_order(tmp_path):
    """pkg_queue:1 runs one job at a time, in submission order."""
    reactor, dispatcher, events = make_dispatcher(tmp_path)
    for name in ("a", "b", "c"):
        dispatcher.submit(name, f"echo {name}", queue="pkg_queue")
    assert [p.args for p in reactor.processes] == [["echo", "a"]]
    listing = dispatcher.list_jobs()["pkg_queue"]
    assert listing == {
        "a": {"commands": ["echo a"], "state": "running", "queue_position": "0"},
        "b": {"commands": ["echo b"], "state": "pending", "queue_position": "1"},
        "c": {"commands": ["echo c"], "state": "pending", "queue_position": "2"},
    }
    reactor.processes[0].exit(0)
    assert [p.args[1] for p in reactor.processes] == ["a", "b"]
    reactor.processes[1].exit(0)
    reactor.processes[2].exit(0)
    assert [e["process_id"] for e in events if e["state"] == "finished"] == ["a", "b", "c"]


def test_unlimited_queue_starts_everything(tmp_path):
    """no_queue:0 starts every job at once."""
    reactor, dispatcher, events = make_dispatcher(tmp_path)
    result_of(dispatcher.submit_many([(f"j{i}", "true") for i in range(20)]))
    assert len(reactor.processes) == 20


def test_failing_jobs_in_a_serial_queue_do_not_recurse(tmp_path):
    """Many jobs that cannot start, queued behind one another, all finish (no recursion)."""
    reactor, dispatcher, events = make_dispatcher(tmp_path, queues="q:1")
    dispatcher.submit("blocker", "sleep 1")
    for i in range(2000):
        dispatcher.submit(f"j{i}", "no-such-command-xyz")
    reactor.processes[0].exit(0)
    assert states(events).count("finished") == 2001


def test_live_id_is_refused_and_nothing_starts(tmp_path):
    """A pending or running id cannot be reused: DuplicateJob and none of the batch starts;
    once finished, the id is free again."""
    reactor, dispatcher, events = make_dispatcher(tmp_path)
    dispatcher.submit("j", "sleep 60")
    with pytest.raises(DuplicateJob):
        result_of(dispatcher.submit_many([("other", "true"), ("j", "true")]))
    assert len(reactor.processes) == 1
    assert "other" not in dispatcher.list_jobs()["no_queue"]
    reactor.processes[0].exit(0)
    assert result_of(dispatcher.submit("j", "true")) == "j"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"commands": ""},
        {"commands": "   "},
        {"commands": []},
        {"commands": ["true", 5]},
        {"commands": 7},
        {"commands": "echo 'unbalanced"},
        {"commands": ["true", "true"]},
        {"commands": "state"},
        {"queue": "nope"},
        {"timeout": -1},
        {"timeout": "10"},
        {"timeout": True},
        {"event_system": "noslash"},
        {"extra": {"a": 1}},
        {"event_system": "sysadm/x", "extra": {"state": "x"}},
        {"event_system": "sysadm/x", "extra": {"a": object()}},
        {"job_id": ""},
        {"job_id": 5},
    ],
)
def test_invalid_jobs_are_refused(tmp_path, kwargs):
    """Bad arguments fail with InvalidJob and nothing is queued."""
    reactor, dispatcher, events = make_dispatcher(tmp_path)
    args = {"job_id": "j", "commands": "true"}
    args.update(kwargs)
    with pytest.raises(InvalidJob) as info:
        result_of(dispatcher.submit(args.pop("job_id"), args.pop("commands"), **args))
    assert not isinstance(info.value, DuplicateJob)
    assert events == [] and reactor.processes == []


def test_kill_pending_job_leaves_queue_at_once(tmp_path):
    """A killed pending job finishes at once (killed), never runs, and frees its place."""
    reactor, dispatcher, events = make_dispatcher(tmp_path)
    dispatcher.submit("a", "sleep 60", queue="pkg_queue")
    dispatcher.submit("b", "echo b", queue="pkg_queue")
    dispatcher.submit("c", "echo c", queue="pkg_queue")
    assert dispatcher.kill(["b", "nope"]) == ["b"]
    assert events[-1] == {
        "state": "finished",
        "process_id": "b",
        "process_details": {
            "state": "finished",
            "process_id": "b",
            "time_finished": iso_time(0),
            "cmd_list": ["echo b"],
            "killed": "true",
        },
    }
    assert dispatcher.list_jobs()["pkg_queue"]["c"]["queue_position"] == "1"
    reactor.processes[0].exit(0)
    assert [p.args[-1] for p in reactor.processes] == ["60", "c"]


def test_kill_running_job_terms_then_kills(tmp_path):
    """A killed running job gets SIGTERM, SIGKILL after kill_grace, and finishes killed."""
    reactor, dispatcher, events = make_dispatcher(tmp_path, kill_grace=2.0)
    dispatcher.submit("a", ["sleep 60", "true"])
    process = reactor.processes[0]
    assert dispatcher.kill(["a"]) == ["a"]
    assert process.signals == ["TERM"]
    assert events[-1]["state"] == "running"
    reactor.advance(2.0)
    assert process.signals == ["TERM", "KILL"]
    process.exit(signal=9)
    assert len(reactor.processes) == 1
    details = events[-1]["process_details"]
    assert details["killed"] == "true" and details["return_codes/sleep 60"] == "-9"
    assert dispatcher.kill(["a"]) == []


def test_class_job_events_carry_event_system_and_extra_fields(tmp_path):
    """A job submitted by a class: event_system and its fields beside process_details,
    in every event including pending."""
    reactor, dispatcher, events = make_dispatcher(tmp_path)
    dispatcher.submit(
        "pkg1", "true", queue="pkg_queue", event_system="sysadm/pkg", extra={"action": "install"}
    )
    assert events[0] == {
        "event_system": "sysadm/pkg",
        "action": "install",
        "state": "pending",
        "process_id": "pkg1",
        "process_details": {"state": "pending", "process_id": "pkg1"},
    }
    reactor.processes[0].exit(0)
    assert events[-1]["event_system"] == "sysadm/pkg"
    assert events[-1]["action"] == "install"
    assert events[-1]["state"] == "finished"
    assert events[-1]["process_details"]["return_codes/true"] == "0"


def test_event_logs_keep_the_tail_with_a_marker(tmp_path):
    """Events carry at most event_log_bytes of each log (the tail, after a marker); the
    log action returns everything up to store_log_bytes."""
    reactor, dispatcher, events = make_dispatcher(
        tmp_path, event_log_bytes=10, store_log_bytes=1000, update_interval=0
    )
    dispatcher.submit("j", "seq 100")
    process = reactor.processes[0]
    process.write(b"0123456789abcdefghij")
    assert events[-1]["process_details"]["seq 100"] == "[... 10 bytes left out ...]\nabcdefghij"
    process.exit(0)
    full = result_of(dispatcher.details("j"))
    assert full["seq 100"] == "0123456789abcdefghij"


class LateWorker(SyncWorker):
    """A SyncWorker whose results arrive late while ``late`` is set: the work is done
    at once (as the thread does it, at the request), its answer only at :meth:`deliver`
    (as the thread's answer comes back a reactor turn or more later)."""

    def __init__(self, path):
        super().__init__(path)
        self.late = False
        self.held = []

    def run(self, function, *args):
        done = super().run(function, *args)
        if not self.late:
            return done
        answer = defer.Deferred()
        self.held.append((done, answer))
        return answer

    def deliver(self):
        held, self.held = self.held, []
        for done, answer in held:
            done.chainDeferred(answer)


def test_a_log_read_overtaken_by_the_job_reads_again(tmp_path):
    """The log of a running job is read from its output file off the reactor thread;
    should the job move on before the answer is back (here: its last command writes and
    the job finishes), the reply is not the old read under the new state (finished,
    without the last command's output): the file is read again."""
    workers = []
    reactor, dispatcher, events = make_dispatcher(
        tmp_path, worker=lambda path: workers.append(LateWorker(path)) or workers[-1])
    dispatcher.submit("j", ["echo a", "env"])
    reactor.processes[0].write(b"a\n")
    reactor.processes[0].exit(0)
    [worker] = workers
    worker.late = True
    asked = dispatcher.details("j")
    reactor.processes[1].write(b"PATH=/usr/bin\n")
    reactor.processes[1].exit(0)
    assert states(events, "j")[-1] == "finished"
    worker.late = False
    worker.deliver()
    details = result_of(asked)
    assert details["state"] == "finished"
    assert (details["echo a"], details["env"]) == ("a\n", "PATH=/usr/bin\n")
    assert details["return_codes/env"] == "0"


def test_stored_log_keeps_the_tail_up_to_store_log_bytes(tmp_path):
    """A log longer than store_log_bytes keeps its tail and says how much was dropped."""
    reactor, dispatcher, events = make_dispatcher(tmp_path, event_log_bytes=100, store_log_bytes=50)
    dispatcher.submit("j", "yes")
    process = reactor.processes[0]
    for i in range(10):
        process.write(b"%09d\n" % i)
    process.exit(0)
    full = result_of(dispatcher.details("j"))
    assert full["yes"] == "[... 50 bytes left out ...]\n" + "".join("%09d\n" % i for i in range(5, 10))


def test_output_is_decoded_as_utf8_with_replacement(tmp_path):
    """Multi-byte characters split across reads survive; invalid bytes become U+FFFD."""
    reactor, dispatcher, events = make_dispatcher(tmp_path)
    dispatcher.submit("j", "cat")
    process = reactor.processes[0]
    data = "héllo ✓".encode("utf-8")
    process.write(data[:2])
    process.write(data[2:8])
    process.write(data[8:] + b" \xff\xfe end")
    process.write(b"\xe2\x9c")
    process.exit(0)
    assert result_of(dispatcher.details("j"))["cat"] == "héllo ✓ \ufffd\ufffd end\ufffd"


def test_a_big_request_is_announced_over_several_turns(tmp_path):
    """A request of more than ANNOUNCE_PER_TURN jobs sends that many pending events per
    reactor turn (so connections can send between bursts); a job starts only after its
    pending event, even in an unlimited queue, and every job is announced once."""
    # max_processes (tested in test_dispatcher_scheduler.py) must not be what stops them.
    reactor, dispatcher, events = make_dispatcher(tmp_path, queues="no_queue:0", max_processes=10_000)
    count = ANNOUNCE_PER_TURN * 2 + 10
    ids = [f"j{i}" for i in range(count)]
    assert result_of(dispatcher.submit_many([(i, "true") for i in ids])) == ids
    assert states(events).count("pending") == ANNOUNCE_PER_TURN
    assert len(reactor.processes) == ANNOUNCE_PER_TURN
    # The rest follow in later turns (a Clock runs them all in one advance).
    reactor.advance(0)
    assert states(events).count("pending") == count
    assert len(reactor.processes) == count
    for job_id in ids:
        assert states(events, job_id) == ["pending", "running"]


def test_a_job_killed_before_it_is_announced_finishes_once(tmp_path):
    """Killing a job still waiting for its pending event finishes it at once; it is not
    announced or started afterwards."""
    reactor, dispatcher, events = make_dispatcher(tmp_path, queues="no_queue:0", max_processes=10_000)
    ids = [f"j{i}" for i in range(ANNOUNCE_PER_TURN + 1)]
    dispatcher.submit_many([(i, "true") for i in ids])
    last = ids[-1]
    assert dispatcher.kill([last]) == [last]
    reactor.advance(0)
    assert states(events, last) == ["finished"]
    assert len(reactor.processes) == ANNOUNCE_PER_TURN
