"""Issue 19's proof: two machines, each a real daemon with its real ``sysadm-fleet``
agent, a real ``nats-server -js`` on loopback, and the ``sysadm fleet`` commands.

- a fleet watcher sees both machines' events with their host names;
- ``sysadm fleet run`` runs on both and reports both return codes;
- a machine's events written while nats-server is stopped arrive after it restarts, each
  once, and so do those written while its agent or its daemon was down;
- a fleet client without NATS permission for a machine's rpc subject is refused by NATS,
  a NATS user the agent does not map is refused by the agent, and a mapped limited user
  gets the daemon's own refusal to run commands.
"""

import json
import subprocess
import time

import pytest

from tests.integration.fleet_harness import Fleet
from tests.integration.harness import Client


@pytest.fixture
def fleet(tmp_path):
    """Two machines m1 and m2 on one nats-server, all running; everything stopped after."""
    f = Fleet(tmp_path)
    try:
        yield f.start()
    finally:
        f.stop()


def run_job(machine, job_id, command):
    """Run a job on ``machine``'s daemon directly (as alice), as a local sysadmin would."""
    client = Client(machine.daemon.url)
    try:
        assert client.login("alice", "alice-secret-pw")["name"] == "response"
        reply = client.call("rpc", "dispatcher", {"action": "run", job_id: [command]})
        assert reply["args"] == {"started": [job_id]}, reply
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            history = client.call("rpc", "dispatcher", {"action": "history", "limit": 50})["args"]
            if job_id in json.dumps(history):
                return
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish on {machine.name}")
    finally:
        client.close()


def dispatcher_events(fleet, host):
    """``(seq, state, job)`` of every dispatcher event of ``host`` in the stream, in order."""
    found = []
    for subject, headers, data in fleet.stored_events(f"sysadm.{host}.events.dispatcher"):
        frame = json.loads(data)
        assert headers["Sysadm-Host"] == host and headers["Sysadm-Seq"] == str(frame["seq"])
        found.append((frame["seq"], frame["args"]["state"], frame["args"]["process_id"]))
    return found


def wait_for(check, timeout=20, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def finished_jobs(events):
    return {job for _, state, job in events if state == "finished"}


def test_a_fleet_watcher_sees_both_machines_events_with_their_host_names(fleet):
    watch = fleet.start_watch("dispatcher")
    try:
        time.sleep(1.5)  # the watcher's consumer exists: it starts with new events
        run_job(fleet.machines["m1"], "hello-m1", "echo one")
        run_job(fleet.machines["m2"], "hello-m2", "echo two")
        seen = []
        deadline = time.monotonic() + 20
        while {("m1", "hello-m1"), ("m2", "hello-m2")} - {(h, j) for h, j, s in seen if s == "finished"}:
            assert time.monotonic() < deadline, f"watcher saw only {seen}"
            line = watch.stdout.readline()
            assert line, watch.stderr.read()
            record = json.loads(line)
            args = record["event"]["args"]
            seen.append((record["host"], args["process_id"], args["state"]))
    finally:
        watch.terminate()
        watch.wait(10)
    assert [(h, s) for h, j, s in seen if j == "hello-m1"] == [("m1", "pending"), ("m1", "running"), ("m1", "finished")]
    assert [(h, s) for h, j, s in seen if j == "hello-m2"] == [("m2", "pending"), ("m2", "running"), ("m2", "finished")]


def test_fleet_run_runs_on_both_machines_and_reports_both_return_codes(fleet):
    hosts = fleet.sysadm("hosts")
    assert hosts.returncode == 0, hosts.stderr
    assert [line.split()[:2] for line in hosts.stdout.splitlines() if line.split()[0] in ("m1", "m2")] == [
        ["m1", "up"], ["m2", "up"]]
    ok = fleet.sysadm("run", "--hosts", "m*", "check-disks", "true")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    rows = {line.split()[0]: line.split() for line in ok.stdout.splitlines() if line.split()[:1] in (["m1"], ["m2"])}
    assert set(rows) == {"m1", "m2"} and all("finished" in row and "0" in row for row in rows.values()), ok.stdout
    failing = fleet.sysadm("run", "--hosts", "m*", "check-fails", "false")
    assert failing.returncode == 1
    rows = {line.split()[0]: line.split() for line in failing.stdout.splitlines() if line.split()[:1] in (["m1"], ["m2"])}
    assert set(rows) == {"m1", "m2"} and all("1" in row for row in rows.values()), failing.stdout
    # Each daemon ran it as alice, the local user ops maps to, and its agent said for whom.
    for machine in fleet.machines.values():
        machine.daemon.wait_for_log(r"alice from 127\.0\.0\.1 queued 1 job\(s\) in no_queue: check-disks")
        machine.agent.wait_for_log(r"rpc/dispatcher run for NATS user ops as alice \(full\)")


def test_events_written_while_nats_is_down_arrive_after_it_restarts_each_once(fleet):
    m1 = fleet.machines["m1"]
    run_job(m1, "before", "true")
    wait_for(lambda: "before" in finished_jobs(dispatcher_events(fleet, "m1")), what="job before in the stream")
    fleet.nats.stop()
    m1.agent.wait_for_log("disconnected from NATS")
    for n in range(3):
        run_job(m1, f"while-down-{n}", "true")
    fleet.nats.start()
    m1.agent.wait_for_log(r"reconnected to NATS", timeout=30)
    wait_for(lambda: {"while-down-0", "while-down-1", "while-down-2"} <= finished_jobs(dispatcher_events(fleet, "m1")),
             what="the jobs run while NATS was down")

    # The agent stops and the daemon runs a job; the agent comes back: published once.
    m1.agent.stop()
    run_job(m1, "agent-down", "true")
    m1.agent.start()
    # The daemon restarts (its event log keeps its numbering) between two jobs.
    run_job(m1, "before-restart", "true")
    m1.daemon.stop()
    m1.daemon.start()
    run_job(m1, "after-restart", "true")
    wait_for(lambda: "after-restart" in finished_jobs(dispatcher_events(fleet, "m1")), what="job after-restart")
    events = dispatcher_events(fleet, "m1")
    seqs = [seq for seq, _, _ in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"each event once, none missing: {seqs}"
    jobs = [job for _, state, job in events if state == "finished"]
    assert jobs == ["before", "while-down-0", "while-down-1", "while-down-2", "agent-down",
                    "before-restart", "after-restart"]
    for job in jobs:
        assert [state for _, state, j in events if j == job] == ["pending", "running", "finished"]


def test_clients_without_permission_or_mapping_are_refused(fleet):
    request = json.dumps({"namespace": "rpc", "name": "dispatcher", "id": "q",
                          "args": {"action": "run", "sneaky": ["true"]}}).encode()
    # only-m1 may not publish to m2's rpc subject: NATS itself refuses it.
    refused = fleet.request("m2", request, user="only-m1", timeout=3)
    assert "error" in refused and any('permissions violation for publish to "sysadm.m2.rpc"' in e
                                       for e in refused["nats_errors"]), refused
    # The same through sysadm fleet run on both: m2 refused by NATS; m1 answered by its
    # daemon, which will not let bob (limited, whom only-m1 maps to) run anything.
    table = fleet.sysadm("run", "--hosts", "m*", "sneaky", "true", user="only-m1")
    assert table.returncode == 1, table.stdout + table.stderr
    rows = {line.split()[0]: line for line in table.stdout.splitlines() if line.split()[:1] in (["m1"], ["m2"])}
    assert "refused by NATS" in rows["m2"], table.stdout
    assert "403" in rows["m1"] or "401" in rows["m1"], table.stdout
    # fleet-admin may publish anywhere but is not in [fleet] users: the agent refuses it.
    unmapped = json.loads(fleet.request("m1", request, user="fleet-admin")["data"])
    assert unmapped["namespace"] == "error" and unmapped["args"]["code"] == 403
    assert unmapped["args"]["details"] == "NATS user 'fleet-admin' may not use m1."
    fleet.machines["m1"].agent.wait_for_log(r"refused rpc/dispatcher from NATS user fleet-admin")
    # only-m1 is mapped to bob, a limited user: the daemon itself refuses a run.
    limited = json.loads(fleet.request("m1", request, user="only-m1")["data"])
    assert limited["namespace"] == "error" and limited["args"]["code"] in (401, 403), limited
    listed = json.loads(fleet.request("m1", json.dumps(
        {"namespace": "rpc", "name": "dispatcher", "id": "l", "args": {"action": "list"}}).encode(),
        user="only-m1")["data"])
    assert listed["name"] == "response" and "jobs" in listed["args"]
    assert "sneaky" not in json.dumps(fleet.request("m1", json.dumps(
        {"namespace": "rpc", "name": "dispatcher", "id": "h", "args": {"action": "list"}}).encode())["data"].decode())


def test_the_agent_refuses_another_reactor_and_names_a_bad_credentials_file(tmp_path):
    from tests.integration.harness import TWISTD

    config = tmp_path / "sysadm-fleet.ini"
    config.write_text(f"[fleet]\nhost = m9\ncredentials = {tmp_path}/missing\nkey = {tmp_path}/nokey\n")
    wrong = subprocess.run([TWISTD, "-n", "--pidfile=", "--reactor", "poll", "sysadm-fleet", "--config", str(config)],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert wrong.returncode == 1
    assert "sysadm-fleet needs Twisted's asyncio reactor" in wrong.stderr, wrong.stderr
    bad = subprocess.run([TWISTD, "-n", "--pidfile=", "sysadm-fleet", "--config", str(config)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert bad.returncode == 1
    lines = bad.stderr.splitlines()
    assert f"sysadm-fleet: {config}: [fleet] credentials: cannot read {tmp_path}/missing: No such file or directory" in lines
    assert any(line.startswith(f"sysadm-fleet: {config}: [fleet] key: ") for line in lines), bad.stderr
    assert "Traceback" not in bad.stderr + bad.stdout


def test_nats_server_killed_while_events_flow_loses_and_repeats_nothing(fleet):
    """kill -9 of nats-server while a machine's events are being published (some sent,
    some acknowledged, some not): after it restarts, the stream holds each event once,
    in the daemon's order."""
    import signal
    import threading

    m1 = fleet.machines["m1"]
    done = threading.Event()
    jobs = [f"flow-{n:02d}" for n in range(24)]

    def run_jobs():
        try:
            for job in jobs:
                run_job(m1, job, "true")
        finally:
            done.set()

    runner = threading.Thread(target=run_jobs, daemon=True)
    runner.start()
    wait_for(lambda: len(finished_jobs(dispatcher_events(fleet, "m1"))) >= 4, what="the first jobs in the stream")
    fleet.nats.process.send_signal(signal.SIGKILL)
    fleet.nats.stop()
    time.sleep(1.5)
    fleet.nats.start()
    assert done.wait(120), "the jobs did not all run"
    wait_for(lambda: set(jobs) <= finished_jobs(dispatcher_events(fleet, "m1")), timeout=60,
             what="every job's events in the stream")
    events = dispatcher_events(fleet, "m1")
    seqs = [seq for seq, _, _ in events]
    assert seqs == list(range(1, len(seqs) + 1)), f"each event once, in order: {seqs}"
    assert [job for _, state, job in events if state == "finished"] == jobs
