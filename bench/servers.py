"""The servers ``make bench`` measures, as processes: sysadmd under twistd and the
baselines (B: plain Autobahn, C: bare Twisted, D: Node ``ws``), each on 127.0.0.1 port 0
in a scratch directory, with what /proc says about them (CPU, RSS, open-file limits).
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from loadclient import PASSWORD, USER

BENCH = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)
PLUGINS = os.path.join(BENCH, "plugins")
CLK_TCK = os.sysconf("SC_CLK_TCK")
KIB = 1024

SYSADMD_CONFIG = """\
[server]
listen = tcp:0:interface=127.0.0.1
state_dir = {state_dir}
max_connections_per_ip = 100000
ping_interval = {ping_interval}

[auth]
backends = users

[events]
sources = {sources}
subscriber_buffer_bytes = {buffer}

[source:bench]
control = {control}

[dispatcher]
queues = bench:8
"""


# -- processes -----------------------------------------------------------------------


def proc_cpu_seconds(pid):
    """User + system CPU seconds of ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status(pid, key):
    """A ``kB`` value of /proc/PID/status in bytes (VmRSS, VmHWM...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * KIB
    raise KeyError(key)


def reset_peak_rss(pid):
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def nofile_limit(pid):
    """(soft, hard) 'Max open files' of ``pid``."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    return None, None


class Server:
    """A server process (sysadmd under twistd, or a baseline) on 127.0.0.1 port 0."""

    def __init__(self, kind, argv, env, cwd, log_path, url_pattern, ready_pattern, preexec_fn=None):
        self.kind = kind
        self.log_path = log_path
        self._log_file = open(log_path, "w")
        self.process = subprocess.Popen(
            argv, stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=cwd, env=env, preexec_fn=preexec_fn,
        )
        self.pid = self.process.pid
        self.url = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = open(log_path).read()
            match = re.search(url_pattern, text)
            if match and re.search(ready_pattern, text):
                self.url = match.group(1)
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{kind} did not start:\n{open(log_path).read()[-3000:]}")

    def cpu(self):
        return proc_cpu_seconds(self.pid)

    def rss(self):
        return proc_status(self.pid, "VmRSS")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()


class Workspace:
    """Temporary directories, one per server start."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="sysadmd-bench-")
        self.count = 0

    def new(self, name):
        self.count += 1
        path = os.path.join(self.root, f"{self.count:02d}-{name}")
        os.makedirs(path)
        return path

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


def start_sysadmd(ws, sources="bench", buffer=1048576, preexec_fn=None, profile=None, ping_interval=30, cwd="/",
                  extra_config="", before_start=None):
    """sysadmd under twistd, started in ``cwd``: "/" as under the deploy units (systemd's
    default WorkingDirectory), which matters to the dispatcher: Twisted spawns with
    posix_spawn only when a child's directory is the daemon's own, and forks otherwise.
    ``extra_config`` is appended to the config file; ``before_start(config, state_dir, env)``
    runs once the file and the bench user exist (to register keys, say; ``env`` puts the
    bench plugin on the path, which reading the config needs)."""
    d = ws.new("sysadmd")
    state_dir = os.path.join(d, "state")
    os.makedirs(state_dir)
    control = os.path.join(d, "control.json")
    config = os.path.join(d, "sysadmd.ini")
    with open(config, "w") as f:
        f.write(SYSADMD_CONFIG.format(
            state_dir=state_dir, sources=sources, buffer=buffer, control=control, ping_interval=ping_interval
        ) + extra_config)
    subprocess.run(
        [os.path.join(BIN, "sysadmd-admin"), "user", "add", USER, "--role", "full",
         "--users-file", os.path.join(state_dir, "users"), "--password-stdin"],
        input=PASSWORD + "\n", text=True, check=True, capture_output=True,
    )
    # The plugin goes in front of any PYTHONPATH given (which may hold another sysadmd
    # tree to compare, e.g. a patched copy).
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [PLUGINS, os.environ.get("PYTHONPATH")])))
    if before_start is not None:
        before_start(config, state_dir, env)
    profiling = ["--profile", profile, "--profiler", "cprofile", "--savestats"] if profile else []
    server = Server(
        "sysadmd", [os.path.join(BIN, "twistd"), "-n", "--pidfile="] + profiling + ["sysadmd", "--config", config],
        env, cwd or d, os.path.join(d, "daemon.log"),
        r"sysadmd listening on (ws://\S+)", r"sysadmd \S+ ready", preexec_fn=preexec_fn,
    )
    server.control = control
    return server


BRIDGE_CONFIG = """\
[server]
listen = tcp:0:interface=127.0.0.1
state_dir = {state_dir}
max_connections_per_ip = 100000
"""


def start_bridge(ws, profile=None):
    """``twistd -n sysadm-bridge``, defaults but the listen address, the state directory
    and the connections per address (under cProfile with ``profile``, a stats file).
    ``keys_file`` and ``server_keys_file`` are its clients' and servers' keys files
    (``sysadmd-admin key add`` writes them; the bridge rereads them when they change)."""
    d = ws.new("bridge")
    state_dir = os.path.join(d, "state")
    os.makedirs(state_dir)
    config = os.path.join(d, "sysadm-bridge.ini")
    with open(config, "w") as f:
        f.write(BRIDGE_CONFIG.format(state_dir=state_dir))
    profiling = ["--profile", profile, "--profiler", "cprofile", "--savestats"] if profile else []
    server = Server(
        "bridge", [os.path.join(BIN, "twistd"), "-n", "--pidfile="] + profiling + ["sysadm-bridge", "--config", config],
        dict(os.environ), d, os.path.join(d, "bridge.log"),
        r"sysadm-bridge listening on (ws://\S+)", r"sysadm-bridge \S+ ready",
    )
    server.keys_file = os.path.join(state_dir, "keys")
    server.server_keys_file = os.path.join(state_dir, "server_keys")
    return server


def add_key(keys_file, user, public_line):
    """``sysadmd-admin key add`` a public key line to ``keys_file``; its fingerprint."""
    result = subprocess.run(
        [os.path.join(BIN, "sysadmd-admin"), "key", "add", "--user", user, "--keys-file", keys_file, "-"],
        input=public_line + "\n", capture_output=True, text=True, check=True,
    )
    return result.stdout.strip()


def start_baseline(ws, kind):
    """Baseline ``kind`` (B, C or D) following a control file in a new directory."""
    d = ws.new(kind)
    control = os.path.join(d, "control.json")
    if kind == "D":
        argv = ["node", os.path.join(BENCH, "baselines", "ws_broadcast.js"), "--control", control]
    else:
        script = {"B": "autobahn_broadcast.py", "C": "raw_broadcast.py"}[kind]
        argv = [sys.executable, os.path.join(BENCH, "baselines", script), "--control", control]
    server = Server(
        kind, argv, dict(os.environ), os.path.join(BENCH, "baselines"), os.path.join(d, "server.log"),
        r"listening on (ws://\S+)", r"listening on",
    )
    server.control = control
    return server


def start_server(ws, kind, **kwargs):
    """sysadmd (with ``kwargs``) or a baseline."""
    return start_sysadmd(ws, **kwargs) if kind == "sysadmd" else start_baseline(ws, kind)


def wait_for_log(server, text, timeout):
    """Wait until the server's log says ``text``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(server.log_path) as f:
            if text in f.read():
                return
        time.sleep(0.05)
    raise RuntimeError(f"{server.kind} did not log {text!r} within {timeout} s")
