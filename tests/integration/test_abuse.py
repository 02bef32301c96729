"""Abuse and faults against the real daemon: a request flood, too many connections, a
handshake that never completes, broken event source plugins, and a state directory
that is read-only or full."""

import errno
import json
import os
import socket
import subprocess
import threading
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.integration.harness import BASE_CONFIG, TWISTD, Client


def metrics(daemon):
    """The daemon's /metrics as {(name, labels tuple): value}."""
    url = daemon.url.replace("ws://", "http://", 1) + "/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def refused_status(url):
    with pytest.raises(InvalidStatus) as refused:
        Client(url)
    return refused.value.response.status_code


def server_config(**keys):
    """BASE_CONFIG with more [server] keys."""
    lines = "".join(f"{key} = {value}\n" for key, value in keys.items())
    return BASE_CONFIG.replace("ping_interval = 0\n", "ping_interval = 0\n" + lines)


def host_port(daemon):
    host, port = daemon.url.split("//", 1)[1].rsplit(":", 1)
    return host, int(port)


# A request flood


FLOOD = 10_000
DELAY = 5.0


def test_a_flood_is_handled_twenty_at_a_time_while_others_are_answered(make_daemon):
    """10,000 slow requests (failed logins answered after failure_delay) on one
    connection: the daemon handles at most max_inflight_requests (20) of them at once,
    answers them normally (401, never 429 or 503), and another client's request is
    answered at once meanwhile."""
    daemon = make_daemon(BASE_CONFIG.replace("failure_delay = 0.2", f"failure_delay = {DELAY}"), ticker=False)
    flooder, other = Client(daemon.url), Client(daemon.url)
    stopped = threading.Event()

    def flood():
        try:
            for i in range(FLOOD):
                if stopped.is_set():
                    return
                flooder.send({"namespace": "rpc", "name": "auth", "id": i,
                              "args": {"username": "flood", "password": ""}})
        except ConnectionClosed:
            pass

    sender = threading.Thread(target=flood, daemon=True)
    began = time.monotonic()
    sender.start()
    try:
        # Within the first failure_delay nothing is answered, so every failure counted
        # is a request being handled right now.
        deadline = began + DELAY / 2
        handled = 0
        while time.monotonic() < deadline and handled < 20:
            handled = metrics(daemon).get(("sysadmd_auth_failures_total", ()), 0)
            time.sleep(0.05)
        first_look = metrics(daemon)
        assert time.monotonic() - began < DELAY, "too slow to look inside the first wave"
        assert 1 <= first_look[("sysadmd_auth_failures_total", ())] <= 20

        for n in range(3):
            started = time.monotonic()
            assert other.call("rpc", "identify", request_id=f"other-{n}")["name"] == "response"
            assert time.monotonic() - started < DELAY / 3

        first_wave = [flooder.recv(timeout=DELAY * 3) for _ in range(20)]
        assert sorted(frame["id"] for frame in first_wave) == list(range(20))
        assert {frame["args"]["code"] for frame in first_wave} == {401}
        after_wave = metrics(daemon)
        assert after_wave[("sysadmd_auth_failures_total", ())] <= 40
        assert after_wave[("sysadmd_request_errors_total", (("code", "401"),))] <= 40
        assert not [key for key in after_wave if key[0] == "sysadmd_request_errors_total"
                    and key[1] != (("code", "401"),)]
    finally:
        stopped.set()
        flooder.close()
        sender.join(10)
    assert other.call("rpc", "identify")["name"] == "response"
    other.close()
    assert daemon.stop() == 0


# Connections


def test_connections_per_address_beyond_the_limit_get_503(make_daemon):
    """max_connections_per_ip refuses further handshakes with HTTP 503; once one closes,
    a new one is accepted."""
    daemon = make_daemon(server_config(max_connections_per_ip=3), ticker=False)
    clients = [Client(daemon.url) for _ in range(3)]
    assert refused_status(daemon.url) == 503
    assert all(c.call("rpc", "identify")["name"] == "response" for c in clients)
    clients.pop().close()
    deadline = time.monotonic() + 10
    while True:
        try:
            clients.append(Client(daemon.url))
            break
        except InvalidStatus:
            assert time.monotonic() < deadline, "a closed connection still counts"
            time.sleep(0.1)
    daemon.wait_for_log("too many connections")
    for c in clients:
        c.close()


def closed_after(sock, timeout=15):
    """Seconds until the server closes ``sock`` (reading whatever it sends)."""
    started = time.monotonic()
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def test_a_silent_tcp_client_is_dropped_after_handshake_timeout(make_daemon):
    """A TCP connection that never sends its handshake is closed after
    handshake_timeout; so is one that dribbles header lines without ever finishing."""
    daemon = make_daemon(server_config(handshake_timeout=1), ticker=False)
    silent = socket.create_connection(host_port(daemon))
    assert 0.8 <= closed_after(silent) < 6
    silent.close()

    slow = socket.create_connection(host_port(daemon))
    slow.sendall(b"GET / HTTP/1.1\r\n")
    started = time.monotonic()
    with pytest.raises(OSError):
        for n in range(40):
            slow.sendall(f"X-Slow-{n}: 1\r\n".encode())
            time.sleep(0.2)
    assert time.monotonic() - started < 6
    slow.close()
    daemon.wait_for_log("no complete request in time")
    # A prompt client is unaffected.
    client = Client(daemon.url)
    assert client.call("rpc", "identify")["name"] == "response"
    client.close()


# Broken plugins


def test_broken_sources_stop_neither_the_daemon_nor_other_sources(make_daemon):
    """A source that raises on every publish (and from its own timer) and one whose
    start never fires: the ticker still delivers, the daemon answers and stops cleanly."""
    daemon = make_daemon(start=False, plugins=("faulty", "hanging"))
    daemon.add_user("admin", "admin-secret-pw", "full")
    daemon.start()
    client = Client(daemon.url)
    assert client.login("admin", "admin-secret-pw")["name"] == "response"
    reply = client.call("events", "subscribe", ["ticker", "faulty", "hanging"])
    assert reply["args"] == {"subscribe": ["ticker", "faulty", "hanging"]}
    numbers = [client.next_event("ticker")["args"]["n"] for _ in range(5)]
    assert numbers == sorted(numbers) and len(set(numbers)) == 5
    daemon.wait_for_log(r"event source faulty published an event that was dropped")
    daemon.wait_for_log(r"PluginBug: faulty plugin tick")
    assert client.call("rpc", "identify")["name"] == "response"
    assert [e for e in client.events if e["name"] in ("faulty", "hanging")] == []
    text = daemon.log_text()
    assert "event source ticker started" in text and "event source hanging started" not in text
    client.close()
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 15


# The state directory


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size, read_only=False) a tmpfs at tmp_path/state (unmounted at the end);
    skips when this machine does not allow mounting (not root, no CAP_SYS_ADMIN)."""
    mounted = []

    def mount(size, read_only=False):
        path = tmp_path / "state"
        path.mkdir(exist_ok=True)
        options = f"size={size}" + (",ro" if read_only else "")
        try:
            result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                                    capture_output=True, text=True)
        except FileNotFoundError:
            pytest.skip("mount is not installed (apt-get install mount; make test installs it)")
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {result.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(directory):
    """Fill the file system of ``directory``; returns the filler's path."""
    path = os.path.join(directory, "filler")
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 16, 4096, 512, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    return path


def start_twistd(tmp_path, state_dir):
    config = tmp_path / "sysadmd.ini"
    config.write_text(BASE_CONFIG.format(state_dir=state_dir))
    return config, subprocess.run(
        [TWISTD, "-n", "--pidfile=", "sysadmd", "--config", str(config)],
        capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
    )


def test_a_read_only_state_dir_is_a_config_error(tmp_path, tmpfs):
    """A read-only file system (root can write anywhere else) stops the start with one
    line naming [server] state_dir."""
    state = tmpfs("1m", read_only=True)
    config, result = start_twistd(tmp_path, state)
    assert result.returncode == 1
    assert f"sysadmd: {config}: [server] state_dir: {state} is not writable" in result.stderr.splitlines()
    assert "Traceback" not in result.stderr + result.stdout
    config, result = start_twistd(tmp_path, state / "sub")
    assert result.returncode == 1
    assert (f"sysadmd: {config}: [server] state_dir: cannot create {state}/sub: Read-only file system"
            in result.stderr.splitlines())


def test_a_full_state_dir_is_a_config_error_at_start(tmp_path, tmpfs):
    """No room for the dispatcher's database: a clear error naming state_dir, exit 1."""
    state = tmpfs("256k")
    fill(state)
    config, result = start_twistd(tmp_path, state)
    assert result.returncode == 1, result.stdout
    lines = [line for line in result.stderr.splitlines() if "[server] state_dir" in line]
    assert lines and "disk is full" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def run_job(client, job_id, *commands):
    return client.call("rpc", "dispatcher", {"action": "run", job_id: list(commands)})


def wait_finished(client, job_id, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        frame = client.next_event("dispatcher", timeout=max(0.1, deadline - time.monotonic()))
        if frame["args"]["process_id"] == job_id and frame["args"]["state"] == "finished":
            return frame["args"]


def history_ids(client):
    reply = client.call("rpc", "dispatcher", {"action": "history"})
    assert reply["name"] == "response", reply
    return [job["process_id"] for job in reply["args"]["history"]]


def full_disk_daemon(tmpfs, make_daemon):
    state = tmpfs("4m")
    daemon = make_daemon(ticker=False, start=False)
    assert daemon.state_dir == str(state)
    daemon.add_user("admin", "admin-secret-pw", "full")
    daemon.start()
    client = Client(daemon.url)
    assert client.login("admin", "admin-secret-pw")["name"] == "response"
    assert client.call("events", "subscribe", ["dispatcher"])["name"] == "response"
    return state, daemon, client


# Commands big enough that their row cannot fit in pages SQLite already has.
BIG = [f"true {n:03d} {'x' * 400}" for n in range(100)]


def test_a_full_state_dir_refuses_jobs_without_losing_records(tmpfs, make_daemon):
    """When the state directory fills up, a new job is refused with a clear error and
    the failure is logged; jobs recorded before are kept, and once there is room again
    jobs run and are recorded (the refused id is free again)."""
    state, daemon, client = full_disk_daemon(tmpfs, make_daemon)
    assert run_job(client, "before", "true")["name"] == "response"
    wait_finished(client, "before")
    filler = fill(state)
    try:
        reply = run_job(client, "refused", *BIG)
        assert reply["namespace"] == "error", reply
        assert reply["args"]["code"] in (500, 503)
        assert "could not be recorded" in reply["args"]["details"]
        daemon.wait_for_log("job refused could not be recorded")
        daemon.wait_for_log("database or disk is full")
        listed = client.call("rpc", "dispatcher", {"action": "list"})["args"]["jobs"]
        assert all("refused" not in jobs for jobs in listed.values())
    finally:
        os.unlink(filler)
    assert run_job(client, "refused", "true")["name"] == "response"
    wait_finished(client, "refused")
    assert history_ids(client)[:2] == ["refused", "before"]
    assert client.call("rpc", "identify")["name"] == "response"
    client.close()
    assert daemon.stop() == 0


def test_a_job_finishing_while_the_state_dir_is_full_keeps_its_record(tmpfs, make_daemon):
    """A job accepted before the disk filled and finishing while it is full: its finish
    (return code 0, not interrupted) is in the record once there is room again, also
    after a restart."""
    state, daemon, client = full_disk_daemon(tmpfs, make_daemon)
    assert run_job(client, "during", "sleep 1", *BIG[:60])["name"] == "response"
    filler = fill(state)
    try:
        finished = wait_finished(client, "during")["process_details"]
        assert finished["return_codes/sleep 1"] == "0"
    finally:
        os.unlink(filler)
    time.sleep(1)
    client.close()
    assert daemon.stop() == 0
    daemon.start()
    client = Client(daemon.url)
    assert client.login("admin", "admin-secret-pw")["name"] == "response"
    details = client.call("rpc", "dispatcher", {"action": "log", "job_id": "during"})["args"]
    client.close()
    assert details["state"] == "finished" and "interrupted" not in json.dumps(details)
    assert details["return_codes/sleep 1"] == "0"
