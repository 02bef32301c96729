"""The web dashboard in headless Chromium, against the real daemon.

The browser side is ``dashboard.mjs`` (Node, playwright-core driving Debian's
``/usr/bin/chromium``); each test starts a daemon, prepares what the page should show,
runs one scenario, and checks the daemon's side with an independent WebSocket client.
``setup.sh`` installs Chromium and playwright-core when they are missing. The tests skip
only when Chromium cannot be installed or launched here, and say why.
"""

import json
import os
import shutil
import subprocess
import time

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


def _daemon(make_daemon, tmp_path, server_extra="", listen="tcp:0:interface=127.0.0.1"):  # noqa: F811
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
    )
    d = make_daemon(config, start=False)
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
