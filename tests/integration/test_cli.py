"""The real ``sysadm`` console script against the real daemon."""

import base64
import json
import os
import re
import selectors
import socket
import stat
import subprocess
import sys
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.integration.harness import ADMIN, BASE_CONFIG, Client, Daemon
from tests.integration.test_auth import config

SYSADM = os.path.join(os.path.dirname(sys.executable), "sysadm")
FINGERPRINT = r"TLS certificate \S+ has fingerprint (SHA256:[0-9A-F:]+)"

FAKE_ZPOOL = """\
#!/bin/sh
cat <<'EOF'
NAME     SIZE  ALLOC   FREE  CKPOINT  EXPANDSZ   FRAG    CAP  DEDUP    HEALTH  ALTROOT
tank     107G  13.1G  93.9G        -         -     6%    12%  1.00x    ONLINE  -
backup     1T   950G    74G        -         -    30%    92%  1.00x  DEGRADED  -
EOF
"""


def environment(tmp_path, password=None, **extra):
    """The CLI's environment: no user config file, no colours, maybe a password."""
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "xdg"), **extra)
    env.pop("SYSADM_PASSWORD", None)
    if password is not None:
        env["SYSADM_PASSWORD"] = password
    return env


def sysadm(daemon, *args, user="admin", password="admin-secret-pw", url=None, timeout=60, env=None):
    """Run ``sysadm --url URL --user USER ARGS``; returns the CompletedProcess."""
    argv = [SYSADM, "--url", url or daemon.url, "--user", user, *args]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        env=env or environment(daemon.tmp_path, password),
    )


def one_error_line(result, pattern):
    """Assert a failure with exactly one stderr line matching ``pattern``."""
    assert result.returncode != 0, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


class Streaming:
    """A ``sysadm`` process whose stdout and stderr lines are read as they come."""

    def __init__(self, argv, env):
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        stdin=subprocess.DEVNULL, env=env, text=True, bufsize=1)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.process.stdout, selectors.EVENT_READ, "out")
        self.selector.register(self.process.stderr, selectors.EVENT_READ, "err")
        self.out, self.err = [], []

    def _read(self, timeout):
        for key, _ in self.selector.select(timeout):
            line = key.fileobj.readline()
            if not line:
                self.selector.unregister(key.fileobj)
                continue
            (self.out if key.data == "out" else self.err).append(line)

    def wait_for(self, stream, predicate, timeout=20):
        """Read until a line of ``stream`` ("out"/"err") satisfies ``predicate``."""
        lines = self.out if stream == "out" else self.err
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for line in lines[seen:]:
                if predicate(line):
                    return line
            seen = len(lines)
            if not self.selector.get_map():
                break
            self._read(0.1)
        raise AssertionError(f"no matching line on std{stream}; out={self.out!r} err={self.err!r}")

    def finish(self, timeout=30):
        """Wait for the exit; read the rest."""
        deadline = time.monotonic() + timeout
        while self.selector.get_map() and time.monotonic() < deadline:
            self._read(0.1)
        return self.process.wait(max(0.1, deadline - time.monotonic()))

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.selector.close()
        self.process.stdout.close()
        self.process.stderr.close()


@pytest.fixture
def streams():
    started = []

    def start(daemon, *args, user="admin", password="admin-secret-pw", url=None):
        argv = [SYSADM, "--url", url or daemon.url, "--user", user, *args]
        stream = Streaming(argv, environment(daemon.tmp_path, password))
        started.append(stream)
        return stream

    yield start
    for stream in started:
        stream.stop()


def dispatcher_available(daemon):
    client = Client(daemon.url)
    try:
        client.login("admin", "admin-secret-pw")
        reply = client.call("rpc", "dispatcher", {"action": "list"})
    finally:
        client.close()
    return reply["name"] == "response"


@pytest.fixture
def dispatching(daemon):
    assert dispatcher_available(daemon), "rpc/dispatcher must answer in the daemon"
    return daemon


# Connecting and signing in


def test_identify_needs_no_password(daemon):
    result = sysadm(daemon, "identify", password=None)
    assert result.returncode == 0, result
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert lines["type"] == "server" and lines["version"] == "0.1.0" and lines["hostname"]
    result = sysadm(daemon, "identify", "--json")
    assert json.loads(result.stdout)["type"] == "server"


def test_wrong_password_is_one_line_and_non_zero(daemon):
    result = sysadm(daemon, "jobs", password="not-the-password")
    one_error_line(result, r"^sysadm: authentication failed for user 'admin' \(401 Unauthorized\)$")
    assert result.stdout == ""


def test_no_password_without_a_terminal_is_one_line(daemon):
    one_error_line(sysadm(daemon, "jobs", password=None), r"no password for admin: set SYSADM_PASSWORD")


def test_connection_refused_is_one_line(daemon, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = sysadm(daemon, "identify", url=f"ws://127.0.0.1:{port}")
    one_error_line(result, rf"^sysadm: cannot connect to ws://127.0.0.1:{port}: connection refused")


def test_a_limited_user_is_refused_running_with_403(dispatching):
    result = sysadm(dispatching, "run", "x", "true", user="viewer", password="viewer-secret-pw")
    one_error_line(result, r"^sysadm: rpc/dispatcher: 403 Forbidden: User 'viewer' may not do this\.$")
    assert sysadm(dispatching, "jobs", user="viewer", password="viewer-secret-pw").returncode == 0


def test_token_file_is_written_private_and_reused_until_the_daemon_forgets_it(daemon):
    path = str(daemon.tmp_path / "cache" / "token")
    assert sysadm(daemon, "--token-file", path, "jobs").returncode == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path) as handle:
        cached = json.load(handle)
    assert cached["user"] == "admin" and cached["url"] == daemon.url and len(cached["token"]) == 64
    # The password is wrong now: only the cached token can sign in.
    result = sysadm(daemon, "--token-file", path, "jobs", password="wrong")
    assert result.returncode == 0, result
    # A restarted daemon has forgotten the token: the password is used, the file refreshed.
    daemon.stop()
    daemon.start()
    result = sysadm(daemon, "--token-file", path, "jobs", password="wrong")
    one_error_line(result, "authentication failed")
    assert sysadm(daemon, "--token-file", path, "jobs").returncode == 0
    with open(path) as handle:
        assert json.load(handle)["token"] != cached["token"]


def test_key_sign_in_with_an_openssh_private_key(daemon):
    key = ed25519.Ed25519PrivateKey.generate()
    private = daemon.tmp_path / "id_ed25519"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))
    public = daemon.tmp_path / "id_ed25519.pub"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                     serialization.PublicFormat.OpenSSH) + b" admin@test\n")
    subprocess.run([ADMIN, "key", "add", "--user", "admin", "--keys-file",
                    os.path.join(daemon.state_dir, "keys"), str(public)], check=True, capture_output=True)
    result = sysadm(daemon, "--key", str(private), "jobs", password=None)
    assert result.returncode == 0, result
    daemon.wait_for_log(r"admin authenticated from \S+ by key SHA256:")
    other = daemon.tmp_path / "other"
    other.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    one_error_line(sysadm(daemon, "--key", str(other), "jobs", password=None), r"refused the key \(401")


@pytest.fixture
def wss_daemon(make_daemon):
    d = make_daemon(config(server={"listen": "ssl:0:interface=127.0.0.1", "tls_generate": "yes"}), start=False)
    d.add_user("admin", "admin-secret-pw")
    return d.start()


def test_wss_with_the_pinned_fingerprint_in_both_forms(wss_daemon):
    colon = wss_daemon.wait_for_log(FINGERPRINT).group(1)
    digest = bytes.fromhex(colon[len("SHA256:"):].replace(":", ""))
    b64 = "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
    for fingerprint in (colon, b64):
        result = sysadm(wss_daemon, "--fingerprint", fingerprint, "jobs")
        assert result.returncode == 0, result


def test_wss_certificate_mismatch_is_one_line(wss_daemon):
    colon = wss_daemon.wait_for_log(FINGERPRINT).group(1)
    wrong = "SHA256:" + ":".join(["AB"] * 32)
    line = one_error_line(sysadm(wss_daemon, "--fingerprint", wrong, "identify"), r"^sysadm: cannot connect to wss://")
    assert f"fingerprint is {colon}, not the pinned {wrong}" in line


def test_wss_self_signed_without_pin_is_one_line(wss_daemon):
    one_error_line(sysadm(wss_daemon, "identify"), r"certificate verify failed.*--fingerprint")


def test_config_file_supplies_the_defaults(daemon):
    xdg = daemon.tmp_path / "xdg" / "sysadm"
    xdg.mkdir(parents=True)
    (xdg / "client.ini").write_text(f"[client]\nurl = {daemon.url}\nuser = viewer\n")
    result = subprocess.run([SYSADM, "jobs"], capture_output=True, text=True, timeout=60,
                            env=environment(daemon.tmp_path, "viewer-secret-pw"))
    assert result.returncode == 0, result
    (xdg / "client.ini").write_text("[client]\nusr = viewer\n")
    result = subprocess.run([SYSADM, "jobs"], capture_output=True, text=True, timeout=60,
                            env=environment(daemon.tmp_path, "viewer-secret-pw"))
    one_error_line(result, r"client\.ini: \[client\] usr: unknown key")


# Events


def test_watch_json_receives_ticker_events(daemon, streams):
    watch = streams(daemon, "watch", "--json", "ticker")
    watch.wait_for("out", lambda line: len(watch.out) >= 3)
    frames = [json.loads(line) for line in watch.out[:3]]
    assert all(f["namespace"] == "events" and f["name"] == "ticker" for f in frames)
    numbers = [f["args"]["n"] for f in frames]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3
    assert watch.process.poll() is None


def test_watch_lines_and_an_unknown_source(daemon, streams):
    watch = streams(daemon, "watch", "ticker")
    line = watch.wait_for("out", lambda line: " ticker " in line)
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  ticker\s+-\s+\{\"n\":\d+", line), line
    one_error_line(sysadm(daemon, "watch", "nope"), r"events/subscribe: 400 .*nope")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_watch_reconnects_and_resubscribes_after_the_daemon_restarts(make_daemon, streams):
    port = free_port()
    d = make_daemon(config(server={"listen": f"tcp:{port}:interface=127.0.0.1"}), start=False)
    d.add_user("admin", "admin-secret-pw")
    d.start()
    watch = streams(d, "watch", "--json", "ticker")
    watch.wait_for("out", lambda line: '"ticker"' in line)
    d.stop()
    watch.wait_for("err", lambda line: "lost" in line and "reconnecting in" in line)
    time.sleep(1.5)
    d.start()
    watch.wait_for("err", lambda line: "reconnected to" in line and "subscribed to ticker" in line, timeout=40)
    count = len(watch.out)
    watch.wait_for("out", lambda line: watch.out.index(line) >= count and '"ticker"' in line)
    assert watch.process.poll() is None


def test_state_shows_the_fake_pools(make_daemon, tmp_path):
    zpool = tmp_path / "fake-zpool"
    zpool.write_text(FAKE_ZPOOL)
    zpool.chmod(0o755)
    hostname = tmp_path / "fake-hostname"
    hostname.write_text("#!/bin/sh\necho nas-test\n")
    hostname.chmod(0o755)
    d = make_daemon(config(BASE_CONFIG + "[source:system-state]\n", **{
        "source:system-state": {"zpool_command": str(zpool), "hostname_command": str(hostname)}}), start=False)
    d.add_user("viewer", "viewer-secret-pw", "limited")
    d.start()
    result = sysadm(d, "state", user="viewer", password="viewer-secret-pw")
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    assert lines[0] == "hostname: nas-test"
    assert lines[1] == "priority: 9 - Urgent"
    assert lines[3].split() == ["POOL", "HEALTH", "CAPACITY", "SIZE", "ALLOC", "FREE", "PRIORITY"]
    assert lines[4].split() == ["backup", "DEGRADED", "92%", "1T", "950G", "74G", "9", "-", "Urgent"]
    assert lines[5].split() == ["tank", "ONLINE", "12%", "107G", "13.1G", "93.9G", "0", "-", "Information"]
    as_json = json.loads(sysadm(d, "state", "--json", user="viewer", password="viewer-secret-pw").stdout)
    assert as_json["zpools"]["tank"]["health"] == "ONLINE"


def test_state_times_out_when_the_source_is_off(make_daemon):
    d = make_daemon(config(events={"sources": "ticker"}), start=False)
    d.add_user("admin", "admin-secret-pw")
    d.start()
    one_error_line(sysadm(d, "state", "--timeout", "2"), r"events/subscribe: 400 ")


# The dispatcher


def test_run_wait_streams_output_and_exits_with_the_job_code(dispatching, streams, tmp_path):
    gate = tmp_path / "gate"
    job = streams(
        dispatching, "run", "stream1",
        f"sh -c 'echo first; while [ ! -e {gate} ]; do sleep 0.1; done; echo second; exit 7'",
        "--wait",
    )
    job.wait_for("out", lambda line: line == "first\n")
    # The first line arrived while the job still runs (it waits for the gate file), not
    # at the end.
    assert job.process.poll() is None
    gate.write_text("")
    assert job.finish() == 7
    assert "".join(job.out) == "first\nsecond\n"
    assert [line for line in job.err if "return code 7" in line]


def test_run_wait_success_and_a_chain(dispatching):
    result = sysadm(dispatching, "run", "chain1", "echo one", "sh -c 'echo two >&2'", "--wait")
    assert result.returncode == 0, result
    assert result.stdout == "one\ntwo\n"
    assert result.stderr.splitlines() == ["$ echo one", "$ sh -c 'echo two >&2'"]
    result = sysadm(dispatching, "run", "chain2", "true", "false", "echo never", "--wait")
    assert result.returncode == 1 and "never" not in result.stdout
    log = sysadm(dispatching, "log", "chain2")
    assert log.returncode == 0
    assert log.stdout.splitlines()[-6:] == ["$ true", "[exit 0]", "$ false", "[exit 1]", "$ echo never", "[not run]"]


def test_kill_a_running_job_ends_its_waiting_client(dispatching, streams):
    waiting = streams(dispatching, "run", "sleeper", "sleep 60", "--wait")
    deadline = time.monotonic() + 20
    while True:
        jobs = sysadm(dispatching, "jobs", "--json")
        running = json.loads(jobs.stdout)["jobs"].get("no_queue", {}).get("sleeper", {})
        if running.get("state") == "running":
            break
        assert time.monotonic() < deadline, jobs
        time.sleep(0.2)
    result = sysadm(dispatching, "kill", "sleeper", "ghost")
    assert result.stdout == "killed: sleeper\n"
    one_error_line(result, r"^sysadm: no pending or running job: ghost$")
    assert waiting.finish() == 128 + 15
    assert [line for line in waiting.err if "killed" in line]
    history = sysadm(dispatching, "history", "--limit", "1")
    assert history.returncode == 0
    row = history.stdout.splitlines()[1].split()
    assert row[0] == "sleeper" and row[4] == "-15" and row[5] == "killed"


def test_run_without_wait_and_duplicate_ids(dispatching):
    result = sysadm(dispatching, "run", "dup", "sleep 30")
    assert result.returncode == 0 and result.stdout == "started: dup\n"
    one_error_line(sysadm(dispatching, "run", "dup", "true"), r"^sysadm: rpc/dispatcher: 409 ")
    assert sysadm(dispatching, "kill", "dup").returncode == 0
    one_error_line(sysadm(dispatching, "log", "never-ran"), r"^sysadm: rpc/dispatcher: 404 ")


# Through a bridge


@pytest.fixture
def bridged(tmp_path):
    """A real bridge and a daemon connected to it; a client key both accept (for alice)."""
    from tests.integration.bridge_harness import BridgeDaemon, add_key, export_key, new_key, public_line

    bridge = BridgeDaemon(tmp_path / "bridge").start()
    directory = tmp_path / "daemon"
    directory.mkdir()
    daemon = Daemon(directory, BASE_CONFIG + f"\n[bridge]\nconnections = test={bridge.url}\n")
    daemon.add_user("alice", "alice-secret-pw")
    key = new_key()
    add_key(os.path.join(daemon.state_dir, "keys"), "alice", public_line(key))
    bridge.register("client", public_line(key))
    bridge.register_server("server", export_key(daemon))
    key_path = tmp_path / "client-key"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                           serialization.NoEncryption()))
    try:
        daemon.start()
        daemon.wait_for_log(r"signed in to bridge test with key")
        yield bridge, daemon, str(key_path)
    finally:
        daemon.stop()
        bridge.stop()


def test_through_a_bridge_by_key_fingerprint(bridged):
    """The server behind the bridge is named by its bridge key's fingerprint (as
    export-key printed it); key sign-in through the relay works; a host name is refused,
    and an unknown fingerprint lists the offered servers by fingerprint and label."""
    bridge, daemon, key = bridged
    via = ["--bridge", bridge.url, "--server", daemon.bridge_fingerprint, "--key", key, "--user", "alice"]
    env = environment(daemon.tmp_path, "alice-secret-pw")
    result = subprocess.run([SYSADM, *via, "identify", "--json"], capture_output=True, text=True,
                            timeout=60, env=env)
    assert result.returncode == 0, result
    assert json.loads(result.stdout)["type"] == "server"
    result = subprocess.run([SYSADM, *via, "run", "via-bridge", "echo through the bridge", "--wait"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert (result.returncode, result.stdout) == (0, "through the bridge\n"), result
    result = subprocess.run([SYSADM, *via[:3], socket.gethostname(), *via[4:], "jobs"],
                            capture_output=True, text=True, timeout=60, env=env)
    one_error_line(result, r"is not a key fingerprint: .*sysadmd-admin bridge export-key")
    unknown = "SHA256:" + "A" * 43
    result = subprocess.run([SYSADM, *via[:3], unknown, *via[4:], "jobs"],
                            capture_output=True, text=True, timeout=60, env=env)
    one_error_line(result, re.escape(f"offers no server {unknown} (offered servers: "
                                     f"{daemon.bridge_fingerprint} ({socket.gethostname()}))"))
