"""The web dashboard in headless Chromium, against the real daemon.

The browser side is ``dashboard.mjs`` (Node, playwright-core driving Debian's
``/usr/bin/chromium``); each test starts a daemon, prepares what the page should show,
runs one scenario, and checks the daemon's side with an independent WebSocket client.
A scenario in which the test acts midway (cutting the page's connection, restarting the
daemon) runs as a :class:`Conversation`.
``setup.sh`` installs Chromium and playwright-core when they are missing. The tests skip
only when Chromium cannot be installed or launched here, and say why.
"""

import json
import os
import queue
import shutil
import socket
import subprocess
import threading
import time
from urllib.parse import urlsplit

import pytest

from tests.integration.conftest import make_daemon  # noqa: F401 (a fixture)
from tests.integration.harness import BASE_CONFIG, Client

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "dashboard.mjs")
CHROMIUM = "/usr/bin/chromium"
HOSTNAME = "dashboard-test-host"

ZPOOL_LIST = """\
NAME     SIZE  ALLOC   FREE  CKPOINT  EXPANDSZ   FRAG    CAP  DEDUP    HEALTH  ALTROOT
backup   928G   789G   139G        -         -    12%    85%  1.00x  DEGRADED  -
tank     107G  13.1G  93.9G        -         -     6%    12%  1.00x    ONLINE  -
"""

SNAPSHOT_LINE = "Fri Nov 27 10:00:00 UTC 2026: Creating snapshot on tank/data\n"
PASSWORD = "admin-secret-pw"


def _missing():
    """What stops the scenarios from running, or None."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is not installed (apt-get install chromium; make test installs it)"
    if shutil.which("node") is None:
        return "node is not installed (Node.js 20 or newer, with npm)"
    if not os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core")):
        return ("playwright-core is not installed in tests/browser (npm ci there failed; "
                "make test runs it)")
    return None


@pytest.fixture(scope="session")
def browser():
    """Install what is missing, then check that Chromium starts; skip (saying why) when
    it cannot be installed or launched."""
    if _missing():
        setup = subprocess.run(
            ["sh", os.path.join(HERE, "setup.sh")], capture_output=True, text=True, timeout=900
        )
        problem = _missing()
        if problem:
            pytest.skip(f"browser tests need Chromium: {problem}. setup.sh said: "
                        + (setup.stdout + setup.stderr).strip().replace("\n", " | "))
    probe = _node({"scenario": "probe"}, timeout=120)
    if probe.returncode == 3:
        pytest.skip("Chromium cannot be launched here: " + probe.stderr.strip()[-500:])
    assert probe.returncode == 0, probe.stdout + probe.stderr


def _node(params, timeout=120):
    return subprocess.run(
        ["node", SCRIPT, json.dumps(params)], capture_output=True, text=True, timeout=timeout,
        cwd=HERE,
    )


def scenario(daemon, name, tmp_path, **params):
    """Run one browser scenario against ``daemon``; fails with its output."""
    params.update(
        scenario=name,
        url=daemon.url.replace("ws", "http", 1) + "/",
        artifacts=str(tmp_path),
    )
    result = _node(params)
    assert result.returncode == 0, (
        f"scenario {name} failed:\n{result.stdout}\n{result.stderr}\n--- daemon log ---\n"
        + daemon.log_text()[-4000:]
    )


def _script(path, body):
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def daemon(make_daemon, tmp_path):  # noqa: F811
    """A daemon with users admin (full) and viewer (limited), two fake pools (one
    DEGRADED, 85% full) and a Life Preserver log the test can append to."""
    return _daemon(make_daemon, tmp_path)


def _daemon(make_daemon, tmp_path, server_extra="", listen="tcp:0:interface=127.0.0.1", sections=""):  # noqa: F811
    zpool = _script(tmp_path / "zpool", f"cat <<'EOF'\n{ZPOOL_LIST}EOF\n")
    hostname = _script(tmp_path / "hostname", f"echo {HOSTNAME}\n")
    lp_dir = tmp_path / "lpreserver"
    lp_dir.mkdir()
    (lp_dir / "lpreserver.log").write_text("")
    config = BASE_CONFIG.replace("ping_interval = 0\n", "ping_interval = 0\n" + server_extra)
    config = config.replace("listen = tcp:0:interface=127.0.0.1", "listen = " + listen) + (
        "\n[source:system-state]\n"
        f"zpool_command = {zpool}\n"
        f"hostname_command = {hostname}\n"
        "\n[source:life-preserver]\n"
        "backend = lpreserver\n"
        f"log_dir = {lp_dir}\n"
        "poll_interval = 0.2\n"
    ) + sections
    # No ticker plugin: installing one sets the daemon's PYTHONPATH to the plugin alone,
    # and a daemon started from a worktree would then run the installed sysadmd instead.
    d = make_daemon(config, ticker=False, start=False)
    d.add_user("admin", "admin-secret-pw", "full")
    d.add_user("viewer", "viewer-secret-pw", "limited")
    d.lp_log = lp_dir / "lpreserver.log"
    return d.start()


@pytest.fixture
def admin(daemon):
    c = Client(daemon.url)
    assert c.login("admin", "admin-secret-pw")["name"] == "response"
    yield c
    c.close()


def start_job(client, job_id, commands):
    reply = client.call("rpc", "dispatcher", {"action": "run", job_id: commands})
    assert reply["args"] == {"started": [job_id]}, reply
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        listing = client.call("rpc", "dispatcher", {"action": "list"})["args"]["jobs"]
        if any(q.get(job_id, {}).get("state") == "running" for q in listing.values()):
            return
        time.sleep(0.05)
    raise AssertionError(f"{job_id} did not start")


def finished(client, job_id):
    """The job's process_details from the daemon, once it has finished."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        details = client.call("rpc", "dispatcher", {"action": "log", "job_id": job_id})["args"]
        if details.get("state") == "finished":
            return details
        time.sleep(0.1)
    raise AssertionError(f"{job_id} did not finish")


def test_login_shows_pools_jobs_and_life_preserver(browser, daemon, admin, tmp_path):
    """A wrong password is explained; signed in, the page shows the fake pools with
    health colours and capacity bars, the job already running (from ``list``) and the
    Life Preserver event."""
    start_job(admin, "preexisting", ["sleep 30"])
    with open(daemon.lp_log, "a") as f:
        f.write(SNAPSHOT_LINE)
    scenario(daemon, "login_and_state", tmp_path, password="admin-secret-pw",
             hostname=HOSTNAME, preexisting="preexisting")


def test_run_a_job_and_watch_it_finish(browser, daemon, admin, tmp_path):
    """The run form starts ["echo hello", "sleep 2"]; the row goes pending, running,
    finished and shows the output; a duplicate id shows the 409."""
    scenario(daemon, "run_job", tmp_path, password="admin-secret-pw")
    details = finished(admin, "hello")
    assert details["cmd_list"] == ["echo hello", "sleep 2"]
    assert details["echo hello"] == "hello\n"
    assert details["return_codes/echo hello"] == "0" and details["return_codes/sleep 2"] == "0"


def test_kill_a_running_job(browser, daemon, admin, tmp_path):
    """The kill button ends a running `sleep 60` at once."""
    scenario(daemon, "kill_job", tmp_path, password="admin-secret-pw")
    details = finished(admin, "sleeper")
    assert details.get("killed") == "true"
    assert details["return_codes/sleep 60"] == "-15"


def test_limited_user_sees_no_run_form(browser, daemon, admin, tmp_path):
    """viewer (limited) sees the running job but neither the run form nor kill buttons."""
    start_job(admin, "preexisting", ["sleep 30"])
    scenario(daemon, "limited_user", tmp_path, password="viewer-secret-pw",
             preexisting="preexisting")


def test_reconnects_and_reauthenticates_with_its_token(browser, make_daemon, tmp_path):  # noqa: F811
    """With the daemon closing idle connections after 3 s, the page reconnects, signs in
    again with its token (no password prompt) and still receives job events."""
    daemon = _daemon(make_daemon, tmp_path, server_extra="idle_timeout = 3\n")
    scenario(daemon, "reconnect", tmp_path, password="admin-secret-pw")
    # One password login for the whole scenario: every reconnection used the token.
    daemon.wait_for_log("admin authenticated")  # the log is read by another thread
    logins = [line for line in daemon.lines if "admin authenticated" in line]
    assert len(logins) == 1 and "by password" in logins[0], logins


def test_served_over_tls_the_page_uses_wss(browser, make_daemon, tmp_path):  # noqa: F811
    """On an ssl: endpoint the page comes over https and its socket is wss (a ws:// one
    would be blocked as mixed content)."""
    daemon = _daemon(make_daemon, tmp_path, server_extra="tls_generate = yes\n",
                     listen="ssl:0:interface=127.0.0.1")
    assert daemon.url.startswith("wss://")
    scenario(daemon, "tls", tmp_path, password="admin-secret-pw")


# --- resuming after the connection drops ------------------------------------------------


class Conversation:
    """A scenario run in the background that stops at each of its steps (``STEP name`` on
    its stdout) until the test answers (:meth:`go`), so the test can act in between."""

    def __init__(self, daemon, name, tmp_path, **params):
        params.update(scenario=name, artifacts=str(tmp_path))
        self.daemon = daemon
        self.output = []
        self.errors = []
        self._lines = queue.Queue()
        self.process = subprocess.Popen(
            ["node", SCRIPT, json.dumps(params)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, cwd=HERE,
        )
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.errors.extend(self.process.stderr), daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def at(self, step, timeout=90):
        """Wait until the page has reached ``step``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                self.fail(f"the page did not reach step {step} within {timeout} s")
            if line is None:
                self.process.wait(10)
                self.fail(f"the scenario ended (exit {self.process.returncode}) before step {step}")
            if line == f"STEP {step}":
                return
            self.output.append(line)

    def go(self, **answer):
        """Let the page go on past its step (``answer`` is what ``step`` returns there)."""
        self.process.stdin.write(json.dumps(answer) + "\n")
        self.process.stdin.flush()

    def finish(self, timeout=90):
        """Wait for the scenario's end; fails unless it passed."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.fail(f"the scenario did not end within {timeout} s")
        if self.process.returncode != 0:
            self.fail(f"the scenario failed (exit {self.process.returncode})")

    def fail(self, why):
        self.close()
        time.sleep(0.2)  # the rest of its stderr
        raise AssertionError(f"{why}:\n" + "\n".join(self.output) + "\n" + "".join(self.errors)
                             + "\n--- daemon log ---\n" + self.daemon.log_text()[-4000:])

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class Cutter:
    """A TCP proxy between the page and the daemon that drops every connection at once
    (:meth:`cut`: the page sees its socket die without a close, code 1006, as when the
    network goes) and holds new ones until :meth:`restore`; then it connects them to
    ``target()``, the daemon's address at that time (a restarted one has a new port)."""

    def __init__(self, target):
        self._target = target
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._closed = False
        self._lock = threading.Lock()
        self._sockets = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        self._open.wait()
        try:
            if self._closed:
                raise OSError("closed")
            upstream = socket.create_connection(self._target(), timeout=10)
            upstream.settimeout(None)
        except OSError:
            conn.close()
            return
        with self._lock:
            cut = not self._open.is_set()  # cut meanwhile
            if not cut:
                self._sockets.update((conn, upstream))
        if cut:
            conn.close()
            upstream.close()
            return
        back = threading.Thread(target=self._pump, args=(upstream, conn), daemon=True)
        back.start()
        self._pump(conn, upstream)
        back.join()
        with self._lock:
            self._sockets.difference_update((conn, upstream))
        conn.close()
        upstream.close()

    @staticmethod
    def _pump(source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        """Drop every connection, and hold new ones."""
        with self._lock:
            self._open.clear()
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def restore(self):
        """Let connections through again (the held ones first)."""
        self._open.set()

    def close(self):
        self._closed = True
        self._server.close()
        self.cut()
        self._open.set()


def _address(daemon):
    url = urlsplit(daemon.url)
    return url.hostname, url.port


def _watcher(daemon):
    """A client following the daemon's dispatcher and Life Preserver events."""
    client = Client(daemon.url)
    assert client.login("admin", PASSWORD)["name"] == "response"
    reply = client.call("events", "subscribe", ["dispatcher", "life-preserver"])
    assert reply["name"] == "response", reply
    return client


def _event(client, name, match, timeout=20):
    """The next ``name`` event of ``client`` whose args satisfy ``match``."""
    deadline = time.monotonic() + timeout
    while True:
        frame = client.next_event(name, timeout=max(0.01, deadline - time.monotonic()))
        if match(frame["args"]):
            return frame


def _run(client, job_id):
    """Run ``echo <job_id>``; returns its finished event, once published."""
    reply = client.call("rpc", "dispatcher", {"action": "run", job_id: [f"echo {job_id}"]})
    assert reply["args"] == {"started": [job_id]}, reply
    return _event(client, "dispatcher",
                  lambda a: a.get("process_id") == job_id and a.get("state") == "finished")


def _write_snapshot(daemon, dataset):
    with open(daemon.lp_log, "a") as f:
        f.write(f"Fri Nov 27 10:00:00 UTC 2026: Creating snapshot on {dataset}\n")


def _snapshot_published(client, dataset):
    _event(client, "life_preserver", lambda a: a.get("message") == f"New snapshot of {dataset}")


def _snapshot(daemon, client, dataset):
    """Make Life Preserver log a snapshot of ``dataset``; returns once it is published."""
    _write_snapshot(daemon, dataset)
    _snapshot_published(client, dataset)


def test_resumes_after_its_connection_drops(browser, make_daemon, tmp_path):  # noqa: F811
    """Jobs and snapshots made while the page is cut off (network drop, daemon restart) show exactly once after it reconnects; missed events that are gone show as a gap."""
    daemon = _daemon(make_daemon, tmp_path)
    watcher = _watcher(daemon)
    cutter = Cutter(lambda: _address(daemon))
    page = Conversation(daemon, "resume", tmp_path, url=f"http://127.0.0.1:{cutter.port}/",
                        password=PASSWORD)
    try:
        page.at("signed-in")
        _run(watcher, "before")
        _snapshot(daemon, watcher, "tank/before")
        page.go()

        # 1. The network drops; the daemon stays up.
        page.at("seen")
        cutter.cut()
        for n in (1, 2):
            _run(watcher, f"drop-{n}")
            _snapshot(daemon, watcher, f"tank/drop-{n}")
        cutter.restore()
        page.go()
        page.at("resumed-1")
        _run(watcher, "live-1")
        page.go()

        # 2. Dropped, and the daemon restarted meanwhile: "old" runs before the restart,
        # a snapshot is made while it is stopped (published when it starts), "new" after.
        page.at("checked-1")
        cutter.cut()
        _run(watcher, "old")
        watcher.close()
        daemon.stop()
        _write_snapshot(daemon, "tank/stopped")
        daemon.start()
        watcher = _watcher(daemon)
        _snapshot_published(watcher, "tank/stopped")
        _run(watcher, "new")
        cutter.restore()
        page.go()
        page.at("resumed-2")
        _run(watcher, "live-2")
        page.go()

        # 3. Restarted keeping 2 events per source, and 3 jobs and snapshots made: what
        # the page missed has expired, but for the last 2 of each.
        page.at("checked-2")
        cutter.cut()
        watcher.close()
        daemon.stop()
        daemon.config_path.write_text(daemon.config_path.read_text() + "\n[events]\nretain_events = 2\n")
        daemon.start()
        watcher = _watcher(daemon)
        for n in (1, 2, 3):
            _run(watcher, f"expired-{n}")
            _snapshot(daemon, watcher, f"tank/expired-{n}")
        cutter.restore()
        page.go()

        # 4. Restarted without its event logs: new epochs.
        page.at("gap-expired")
        cutter.cut()
        watcher.close()
        daemon.stop()
        shutil.rmtree(os.path.join(daemon.state_dir, "events"))
        daemon.start()
        watcher = _watcher(daemon)
        _run(watcher, "new-epoch")
        cutter.restore()
        page.go()
        page.finish()
    finally:
        page.close()
        watcher.close()
        cutter.close()


def test_fetches_an_overflowed_range_again(browser, daemon, tmp_path):
    """After an overflow gap (two jobs' events lost, a later job's received) the page fetches the range again and shows every job's events exactly once."""
    watcher = _watcher(daemon)
    page = Conversation(daemon, "overflow", tmp_path, url=daemon.url.replace("ws", "http", 1) + "/",
                        password=PASSWORD)
    try:
        page.at("signed-in")
        _run(watcher, "before")
        page.go()
        page.at("dropping")
        _run(watcher, "lost-1")
        head = _run(watcher, "lost-2")["seq"]
        page.go(head=head)
        page.at("passing")
        _run(watcher, "through")
        page.go()
        page.at("fetched")
        _run(watcher, "after")
        page.go()
        page.finish()
    finally:
        page.close()
        watcher.close()


# --- following a job's output -----------------------------------------------------------


def _output(client, job_id):
    """The whole output of a finished job, from rpc/dispatcher "output": a list of pieces,
    each {"text", "stderr"}, split where bytes were dropped, and the dropped ranges."""
    pieces = [{"text": "", "stderr": ""}]
    dropped = []
    offset = 0
    while True:
        reply = client.call("rpc", "dispatcher", {"action": "output", "job_id": job_id, "offset": offset})
        assert reply["name"] == "response", reply
        args = reply["args"]
        if args["offset"] > offset:
            dropped.append((offset, args["offset"]))
            pieces.append({"text": "", "stderr": ""})
        for chunk in args["chunks"]:
            pieces[-1]["text"] += chunk["data"]
            if chunk["stream"] == "stderr":
                pieces[-1]["stderr"] += chunk["data"]
        offset = args["next_offset"]
        if args["eof"]:
            return pieces, dropped


def test_output_panel_follows_a_job_across_a_dropped_connection(browser, make_daemon, tmp_path):  # noqa: F811
    """The Output panel shows a running job's first lines (stderr apart); the page's
    connection drops, the job prints the rest and ends; after the reconnect the panel
    subscribes again from where it was and shows the job's whole output, each line once,
    and its return codes."""
    daemon = _daemon(make_daemon, tmp_path)
    gate = tmp_path / "gate"
    # The rest of the output waits for a file the test makes: no timing involved.
    script = _script(tmp_path / "gated", (
        "echo 'line 1'\n"
        "echo 'warning 1' >&2\n"
        "echo 'line 2'\n"
        f"while [ ! -e '{gate}' ]; do sleep 0.05; done\n"
        "echo 'line 3'\n"
        "echo 'warning 2' >&2\n"
        "echo 'line 4'\n"
    ))
    last = "sh -c 'echo last; exit 3'"
    watcher = _watcher(daemon)
    cutter = Cutter(lambda: _address(daemon))
    page = Conversation(
        daemon, "output_resume", tmp_path, url=f"http://127.0.0.1:{cutter.port}/",
        password=PASSWORD, job="gated", first=["line 1", "warning 1", "line 2"],
        heads=[f"$ {script} exit 0", f"$ {last} exit 3"],
    )
    try:
        page.at("signed-in")
        start_job(watcher, "gated", [script, last])
        page.go()
        page.at("following")
        cutter.cut()
        gate.touch()
        details = finished(watcher, "gated")
        assert details[f"return_codes/{last}"] == "3", details
        [piece], dropped = _output(watcher, "gated")
        assert dropped == []
        output, stderr = piece["text"], piece["stderr"]
        assert sorted(output.splitlines()) == sorted(
            ["line 1", "line 2", "line 3", "line 4", "warning 1", "warning 2", "last"]), output
        cutter.restore()
        page.go(output=output, stderr=stderr)
        page.finish()
    finally:
        page.close()
        watcher.close()
        cutter.close()


def test_output_panel_switches_jobs_and_marks_dropped_output(browser, make_daemon, tmp_path):  # noqa: F811
    """Opening another job's output closes the first one's and unsubscribes from it
    (nothing more of it comes); the second job wrote more than max_output_bytes, and its
    panel shows the head, a marker line naming the bytes dropped, and the tail. The first
    job's output, opened again after it ended, shows whole."""
    daemon = _daemon(make_daemon, tmp_path, sections="\n[dispatcher]\nmax_output_bytes = 2097152\n")
    gate = tmp_path / "gate"
    waiting = _script(tmp_path / "waiting", (
        "echo first\n"
        f"while [ ! -e '{gate}' ]; do sleep 0.05; done\n"
        "echo second\n"
    ))
    big = _script(tmp_path / "big", "yes abcdefghijklmnopqrstuvwxyz | head -c 4194304\necho END\n")
    watcher = _watcher(daemon)
    page = None
    try:
        start_job(watcher, "waiting", [waiting])
        watcher.call("rpc", "dispatcher", {"action": "run", "big": [big]})
        finished(watcher, "big")
        (head, tail), dropped = _output(watcher, "big")
        [(start, end)] = dropped
        assert head["text"].startswith("abcdefghijklmnopqrstuvwxyz\n") and tail["text"].endswith("END\n")
        page = Conversation(daemon, "output_switch", tmp_path, url=daemon.url.replace("ws", "http", 1) + "/",
                            password=PASSWORD)
        page.at("signed-in")
        # (Through stdin: a command line holds no MiB.)
        page.go(head=head["text"], tail=tail["text"], **{"from": start, "to": end})
        page.at("switched")
        gate.touch()
        finished(watcher, "waiting")
        page.go()
        page.finish()
    finally:
        if page is not None:
            page.close()
        watcher.close()
