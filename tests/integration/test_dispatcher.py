"""The dispatcher through the real daemon, with real child processes."""

import datetime
import os
import signal
import threading
import time

from tests.integration.harness import BASE_CONFIG, Client
from tests.integration.procscan import (
    children_of,
    group_members,
    kill_all,
    open_descriptors,
    unique_sleep,
    wait_for_count,
)


def error_code(frame):
    """The code of an error reply."""
    assert frame["namespace"] == "error", frame
    return frame["args"]["code"]


def run(client, **args):
    """rpc/dispatcher run; returns the reply frame."""
    return client.call("rpc", "dispatcher", dict(args, action="run"))


def dispatcher(client, action, **args):
    """An rpc/dispatcher call; returns the reply's args (asserting success)."""
    reply = client.call("rpc", "dispatcher", dict(args, action=action))
    assert reply["name"] == "response", reply
    return reply["args"]


def subscribe(client):
    """Subscribe ``client`` to dispatcher events."""
    assert client.call("events", "subscribe", ["dispatcher"])["name"] == "response"


def finished(client, ids, timeout=30, seen=None):
    """Wait for the finished events of ``ids``; returns id -> event args. Every dispatcher
    event read meanwhile is appended to ``seen``."""
    wanted = set(ids)
    got = {}
    deadline = time.monotonic() + timeout
    while not wanted <= set(got):
        frame = client.next_event("dispatcher", timeout=max(0.1, deadline - time.monotonic()))
        args = frame["args"]
        if seen is not None:
            seen.append(args)
        if args["state"] == "finished" and args["process_id"] in wanted:
            got[args["process_id"]] = args
    return got


def when(text):
    """Parse an ISO 8601 time, insisting on a timezone."""
    moment = datetime.datetime.fromisoformat(text)
    assert moment.tzinfo is not None, text
    return moment


def wait_log(client, job_id, state="finished", timeout=20):
    """Poll the log action until ``job_id`` reaches ``state``."""
    deadline = time.monotonic() + timeout
    while True:
        reply = client.call("rpc", "dispatcher", {"action": "log", "job_id": job_id})
        if reply["name"] == "response" and reply["args"]["state"] == state:
            return reply["args"]
        if time.monotonic() > deadline:
            raise AssertionError(f"{job_id} never reached {state}: {reply}")
        time.sleep(0.1)


def login(daemon, user="admin", password="admin-secret-pw"):
    """A client of ``daemon`` signed in as ``user``."""
    client = Client(daemon.url)
    assert client.login(user, password)["name"] == "response"
    return client


def test_two_command_job_reports_both_logs_and_return_codes(admin):
    """Both commands' output (stdout and stderr) and return codes are in the finished
    event and in log."""
    subscribe(admin)
    command2 = "sh -c 'echo second >&2'"
    assert run(admin, two=["echo first", command2])["args"] == {"started": ["two"]}
    seen = []
    event = finished(admin, ["two"], seen=seen)["two"]
    assert [e["state"] for e in seen][0] == "pending"
    assert seen[0] == {"state": "pending", "process_id": "two"}
    assert set(e["state"] for e in seen[1:-1]) == {"running"}
    details = event["process_details"]
    assert event["state"] == "finished" and event["process_id"] == "two"
    assert details["cmd_list"] == ["echo first", command2]
    assert details["echo first"] == "first\n"
    assert details[command2] == "second\n"
    assert details["return_codes/echo first"] == "0"
    assert details["return_codes/" + command2] == "0"
    assert "current_cmd" not in details
    assert when(details["time_started"]) <= when(details["time_finished"])
    assert dispatcher(admin, "log", job_id="two") == details


def test_commands_read_an_empty_stdin(admin):
    """stdin is /dev/null: a command that reads it sees end of file at once (and is
    not a terminal), so it cannot hang waiting for input."""
    subscribe(admin)
    run(admin, reader=["cat", "sh -c 'test -t 0 || wc -c'"])
    details = finished(admin, ["reader"])["reader"]["process_details"]
    assert details["return_codes/cat"] == "0"
    assert "cat" not in details
    assert details["sh -c 'test -t 0 || wc -c'"].strip() == "0"


def test_failing_middle_command_stops_the_chain(admin):
    """A non-zero exit ends the job: the last command never runs."""
    subscribe(admin)
    middle = "sh -c 'echo bad; exit 4'"
    run(admin, chain=["true", middle, "echo never"])
    details = finished(admin, ["chain"])["chain"]["process_details"]
    assert details["return_codes/true"] == "0"
    assert details["return_codes/" + middle] == "4"
    assert details[middle] == "bad\n"
    assert "echo never" not in details and "return_codes/echo never" not in details


def test_missing_executable_gives_minus_one(admin):
    """A program that does not exist gets return code -1 and the reason in its log."""
    subscribe(admin)
    run(admin, missing="no-such-program-xyz --help", absent="/nonexistent/bin/tool")
    events = finished(admin, ["missing", "absent"])
    details = events["missing"]["process_details"]
    assert details["return_codes/no-such-program-xyz --help"] == "-1"
    assert "command not found" in details["no-such-program-xyz --help"]
    assert events["absent"]["process_details"]["return_codes//nonexistent/bin/tool"] == "-1"


def test_kill_running_and_pending_jobs(admin):
    """kill stops a running sleep (SIGTERM) and drops a pending job; both finish."""
    subscribe(admin)
    run(admin, sleeper="sleep 60", waiting="echo waiting", queue="pkg_queue")
    jobs = dispatcher(admin, "list")["jobs"]["pkg_queue"]
    assert jobs["sleeper"]["state"] == "running" and jobs["sleeper"]["queue_position"] == "0"
    assert jobs["waiting"] == {"commands": ["echo waiting"], "state": "pending", "queue_position": "1"}
    started = time.monotonic()
    killed = dispatcher(admin, "kill", job_id=["waiting", "sleeper", "ghost"])
    assert sorted(killed["killed"]["jobs"]) == ["sleeper", "waiting"]
    events = finished(admin, ["sleeper", "waiting"], timeout=10)
    assert time.monotonic() - started < 5, "SIGTERM was enough for sleep"
    assert events["sleeper"]["process_details"]["return_codes/sleep 60"] == "-15"
    assert events["sleeper"]["process_details"]["killed"] == "true"
    assert "return_codes/echo waiting" not in events["waiting"]["process_details"]
    assert dispatcher(admin, "list")["jobs"]["pkg_queue"] == {}


def _job_pgid(job_id, marker):
    """The process group of the two sleeps a job ``sh -c 'sleep & sleep'`` started (after
    checking both are there, in one group that is not the test's or the daemon's)."""
    sleeps = wait_for_count(marker, 2)
    assert len(sleeps) == 2, f"{job_id}: its two sleeps never ran"
    (pgid,) = set(sleeps.values())
    assert pgid != os.getpgid(0)
    # The group is the job's shell's: its leader runs sh, not sleep.
    assert pgid not in sleeps
    with open(f"/proc/{pgid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[0] == b"sh"
    return pgid


def test_kill_and_timeout_stop_the_whole_process_group(admin):
    """A job's command leads its own process group: a kill, or the job's timeout, sends
    SIGTERM to the group, so the background sleep of sh -c 'sleep & sleep' dies with the
    shell and nothing of the job is left running."""
    subscribe(admin)
    killed, timed = unique_sleep(), unique_sleep()
    command = "sh -c 'sleep {0} & sleep {0}'"
    try:
        run(admin, grp_killed=command.format(killed))
        run(admin, grp_timed=command.format(timed), timeout=1.5)
        killed_pgid = _job_pgid("grp_killed", killed)
        timed_pgid = _job_pgid("grp_timed", timed)
        assert killed_pgid != timed_pgid, "each command has its own group"
        assert dispatcher(admin, "kill", job_id="grp_killed")["killed"]["jobs"] == ["grp_killed"]
        events = finished(admin, ["grp_killed", "grp_timed"], timeout=10)
        assert events["grp_killed"]["process_details"]["killed"] == "true"
        assert events["grp_timed"]["process_details"]["timed_out"] == "true"
        for job_id, marker, pgid in (("grp_killed", killed, killed_pgid), ("grp_timed", timed, timed_pgid)):
            assert events[job_id]["process_details"]["return_codes/" + command.format(marker)] == "-15"
            assert wait_for_count(marker, 0, timeout=5) == {}, f"{job_id} left sleeps behind"
            assert group_members(pgid) == [], f"something of {job_id}'s group survived"
    finally:
        kill_all(killed)
        kill_all(timed)


def test_pkg_queue_runs_one_job_at_a_time(admin):
    """pkg_queue jobs never overlap: each starts after the previous finished."""
    subscribe(admin)
    ids = ["p1", "p2", "p3"]
    for job_id in ids:
        run(admin, **{job_id: "sleep 0.3"}, queue="pkg_queue")
    events = finished(admin, ids)
    details = [events[i]["process_details"] for i in ids]
    spans = [(when(d["time_started"]), when(d["time_finished"])) for d in details]
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, spans
    for start, end in spans:
        assert (end - start).total_seconds() >= 0.3


def test_two_hundred_jobs_all_finish(admin):
    """200 jobs in no_queue all run, with exactly 200 finished events."""
    subscribe(admin)
    ids = [f"bulk-{i}" for i in range(200)]
    reply = run(admin, **{job_id: "true" for job_id in ids})
    assert sorted(reply["args"]["started"]) == sorted(ids)
    seen = []
    events = finished(admin, ids, timeout=60, seen=seen)
    assert len(events) == 200
    assert sum(1 for e in seen if e["state"] == "finished") == 200
    assert all(e["process_details"]["return_codes/true"] == "0" for e in events.values())
    assert len(dispatcher(admin, "history", limit=500)["history"]) == 200


class Sampler(threading.Thread):
    """Samples the daemon's children and open descriptors every few milliseconds, and
    keeps the highest counts."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.most_children = self.most_fds = 0
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.wait(0.005):
            try:
                self.most_children = max(self.most_children, len(children_of(self.pid)))
                self.most_fds = max(self.most_fds, open_descriptors(self.pid))
            except OSError:
                pass

    def stop(self):
        self.stopping.set()
        if self.ident is not None:
            self.join()


def test_max_processes_bounds_children_and_descriptors_of_a_big_request(make_daemon):
    """400 jobs in the unlimited no_queue with max_processes = 8: never more than 8
    children (and their pipes) at once, whatever the request's size, and every job
    runs, in the order asked for, to a clean finish."""
    daemon = make_daemon(config=BASE_CONFIG + "\n[dispatcher]\nmax_processes = 8\n", start=False)
    daemon.add_user("admin", "admin-secret-pw", "full")
    daemon.start()
    client = login(daemon)
    sampler = Sampler(daemon.process.pid)
    try:
        subscribe(client)
        idle_fds = open_descriptors(daemon.process.pid)
        ids = [f"many-{i:03d}" for i in range(400)]
        sampler.start()
        assert sorted(run(client, **{job_id: "sleep 0.05" for job_id in ids})["args"]["started"]) == ids
        seen = []
        events = finished(client, ids, timeout=20, seen=seen)
        sampler.stop()
        assert all(e["process_details"]["return_codes/sleep 0.05"] == "0" for e in events.values())
        assert 1 <= sampler.most_children <= 8
        # Two pipes and the output file per running child, and some slack for the client
        # and the database.
        assert sampler.most_fds <= idle_fds + 3 * 8 + 8, (idle_fds, sampler.most_fds)
        first_running = []
        for args in seen:
            if args["state"] == "running" and args["process_id"] not in first_running:
                first_running.append(args["process_id"])
        assert first_running == ids
    finally:
        sampler.stop()
        client.close()


def test_reused_live_id_gets_409_and_nothing_starts(admin):
    """Reusing the id of a running job is 409, and the other job of the request does not start."""
    run(admin, busy="sleep 60")
    reply = run(admin, fresh="true", busy="true")
    assert error_code(reply) == 409
    assert "busy" in reply["args"]["details"]
    assert "fresh" not in dispatcher(admin, "list")["jobs"]["no_queue"]
    assert error_code(admin.call("rpc", "dispatcher", {"action": "log", "job_id": "fresh"})) == 404
    dispatcher(admin, "kill", job_id="busy")


def test_bad_requests(admin):
    """Unknown queue or empty/bad commands are 400, an unknown action 404."""
    assert error_code(run(admin, job="true", queue="nope")) == 400
    assert error_code(run(admin, job="")) == 400
    assert error_code(run(admin, job=["true", 3])) == 400
    assert error_code(admin.call("rpc", "dispatcher", {"action": "fly"})) == 404
    assert dispatcher(admin, "list")["jobs"]["no_queue"] == {}


def test_limited_user_may_read_but_not_run_or_kill(daemon, admin):
    """A limited user gets 403 for run and kill but may list, log and read history."""
    run(admin, seen="echo hi")
    wait_log(admin, "seen")
    viewer = login(daemon, "viewer", "viewer-secret-pw")
    try:
        assert error_code(run(viewer, nope="true")) == 403
        assert error_code(viewer.call("rpc", "dispatcher", {"action": "kill", "job_id": "seen"})) == 403
        assert "no_queue" in dispatcher(viewer, "list")["jobs"]
        assert dispatcher(viewer, "log", job_id="seen")["echo hi"] == "hi\n"
        assert dispatcher(viewer, "history")["history"][0]["process_id"] == "seen"
        assert viewer.call("rpc", "query", {})["args"]["rpc/dispatcher"] == "read"
    finally:
        viewer.close()
    assert "nope" not in str(dispatcher(admin, "list"))


def test_jobs_queued_behind_a_long_job_run_after_restart(daemon, admin, make_daemon):
    """SIGTERM with jobs queued behind a long one: the long one is recorded interrupted,
    the queued ones run after the restart, in order."""
    run(admin, long="sleep 60", queue="pkg_queue")
    run(admin, after1="echo one", after2="echo two", queue="pkg_queue")
    assert dispatcher(admin, "list")["jobs"]["pkg_queue"]["after2"]["queue_position"] == "2"
    admin.close()
    assert daemon.stop(signal.SIGTERM) == 0
    assert "Traceback" not in daemon.log_text()
    restarted = make_daemon()  # same state directory
    client = login(restarted)
    try:
        one = wait_log(client, "after1")
        two = wait_log(client, "after2")
        assert one["echo one"] == "one\n" and two["return_codes/echo two"] == "0"
        assert when(two["time_started"]) >= when(one["time_finished"])
        long = wait_log(client, "long")
        assert long["interrupted"] == "true"
        assert long["return_codes/sleep 60"] == "-15"
        assert when(one["time_started"]) >= when(long["time_finished"])
    finally:
        client.close()


def test_job_running_when_the_daemon_is_killed_is_interrupted_on_restart(
    daemon, admin, make_daemon, tmp_path
):
    """After SIGKILL of the daemon, the job it was running is finished and interrupted
    on the next start."""
    pidfile = tmp_path / "victim.pid"
    run(admin, victim=f"sh -c 'echo $$ > {pidfile}; exec sleep 60'")
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    admin.close()
    daemon.stop(signal.SIGKILL)
    try:
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
    except ProcessLookupError:
        pass
    restarted = make_daemon()  # same state directory
    client = login(restarted)
    try:
        details = dispatcher(client, "log", job_id="victim")
        assert details["state"] == "finished"
        assert details["interrupted"] == "true"
        assert when(details["time_finished"]) >= when(details["time_started"])
        assert dispatcher(client, "history")["history"][0]["process_id"] == "victim"
    finally:
        client.close()
    restarted.wait_for_log(r"job victim was running when the daemon last stopped")


def test_plugin_class_job_events_carry_event_system(make_daemon, tmp_path):
    """A plugin's job submitted through the internal API carries event_system and its own fields."""
    flag = tmp_path / "go"
    config = BASE_CONFIG + f"\n[source:jobber]\nflag = {flag}\n"
    daemon = make_daemon(config=config, start=False, plugins=("jobber",))
    daemon.add_user("admin", "admin-secret-pw", "full")
    daemon.start()
    client = login(daemon)
    try:
        subscribe(client)
        job = wait_log(client, "jobber-1", state="running")
        assert job["current_cmd"].startswith("sh -c")
        flag.write_text("")
        event = finished(client, ["jobber-1"])["jobber-1"]
        assert event["event_system"] == "sysadm/jobber"
        assert event["action"] == "install" and event["pkg"] == "nginx"
        assert event["state"] == "finished" and event["process_id"] == "jobber-1"
        assert event["process_details"]["echo installed"] == "installed\n"
        assert event["process_details"]["state"] == "finished"
    finally:
        client.close()
