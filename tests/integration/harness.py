"""Start the real daemon under twistd and talk to it with a real WebSocket client.

The daemon runs as a child process (``twistd -n sysadmd``) on 127.0.0.1 port 0; the
bound port is read from its log. The client is the independent ``websockets`` library.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

BIN = os.path.dirname(sys.executable)
TWISTD = os.path.join(BIN, "twistd")
ADMIN = os.path.join(BIN, "sysadmd-admin")
LISTENING = re.compile(r"sysadmd listening on (wss?://[^\s]+)")
READY = re.compile(r"sysadmd \S+ ready")

BASE_CONFIG = """\
[server]
listen = tcp:0:interface=127.0.0.1
state_dir = {state_dir}
ping_interval = 0

[auth]
backends = users
failure_delay = 0.2
"""


class Daemon:
    """A running ``twistd -n sysadmd`` with its captured log (``plugin`` and the two log
    patterns let a subclass run another program of the package, such as the bridge)."""

    plugin = "sysadmd"
    # twistd's own options, before the plugin's name (e.g. --reactor).
    twistd_args = ()
    listening = LISTENING
    ready = READY

    def __init__(self, tmp_path, config=BASE_CONFIG, env=None, extra_args=()):
        self.tmp_path = tmp_path
        self.state_dir = str(tmp_path / "state")
        os.makedirs(self.state_dir, exist_ok=True)
        self.config_path = tmp_path / "sysadmd.ini"
        self.config_path.write_text(config.format(state_dir=self.state_dir))
        self.env = dict(os.environ, **(env or {}))
        self.extra_args = list(extra_args)
        self.lines = []
        self.urls = []
        self.process = None
        self._ready = threading.Event()

    @property
    def url(self):
        """The first listening URL."""
        return self.urls[0]

    def start(self, timeout=30):
        """Start twistd and wait until it logs that it is ready (every endpoint bound)."""
        # Fresh state per process: an earlier process's reader must not touch it.
        self.lines = lines = []
        self.urls = urls = []
        self._ready = ready = threading.Event()
        self.process = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", *self.twistd_args, self.plugin, "--config", str(self.config_path)]
            + self._quiet_updates() + self.extra_args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=str(self.tmp_path),
            env=self.env,
            text=True,
        )
        threading.Thread(
            target=self._read, args=(self.process, lines, urls, ready), daemon=True
        ).start()
        if not self._ready.wait(timeout) or self.process.poll() is not None or not self.urls:
            self.stop()
            raise AssertionError("daemon did not start:\n" + self.log_text())
        return self

    def _quiet_updates(self):
        # The update check simulates a full apt upgrade (~1.7 s of CPU) at every start;
        # only the tests about it (tests/compat/test_updates.py) name it in their config.
        if self.plugin != "sysadmd" or "updates" in self.config_path.read_text():
            return []
        return ["--set", "source:system-state.updates=none"]

    def _read(self, process, lines, urls, ready):
        for line in process.stdout:
            lines.append(line)
            match = self.listening.search(line)
            if match:
                urls.append(match.group(1))
            if self.ready.search(line):
                ready.set()
        ready.set()

    def log_text(self):
        """Everything the daemon printed so far."""
        return "".join(self.lines)

    def wait_for_log(self, pattern, timeout=10):
        """Wait until a log line matches ``pattern``; returns the match."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = regex.search(line)
                if match:
                    return match
            time.sleep(0.05)
        raise AssertionError(f"no log line matching {pattern!r}:\n" + self.log_text())

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Signal the daemon and wait; returns its exit status."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("daemon did not stop in time:\n" + self.log_text())

    def add_user(self, name, password, role="full"):
        """Create a user with the real sysadmd-admin command."""
        subprocess.run(
            [ADMIN, "user", "add", name, "--role", role, "--users-file",
             os.path.join(self.state_dir, "users"), "--password-stdin"],
            input=password + "\n", text=True, check=True, capture_output=True,
        )


class Client:
    """A synchronous WebSocket client speaking the envelope."""

    def __init__(self, url, **kwargs):
        kwargs.setdefault("open_timeout", 10)
        kwargs.setdefault("max_size", None)
        self._connection = connect(url, **kwargs)
        self.ws = self._connection.__enter__()
        self.events = []
        self._ids = 0

    def send(self, message):
        """Send a dict as JSON text, or str/bytes as they are."""
        self.ws.send(json.dumps(message) if isinstance(message, dict) else message)

    def recv(self, timeout=10):
        """The next frame, decoded."""
        return json.loads(self.ws.recv(timeout))

    def call(self, namespace, name, args=None, request_id=None, timeout=10):
        """Send a request and return the reply with the same id (events seen meanwhile
        are kept in ``self.events``)."""
        if request_id is None:
            self._ids += 1
            request_id = f"req-{self._ids}"
        self.send({"namespace": namespace, "name": name, "id": request_id,
                   "args": {} if args is None else args})
        return self.reply(request_id, timeout)

    def reply(self, request_id, timeout=10):
        """Wait for the frame answering ``request_id``."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv(max(0.01, deadline - time.monotonic()))
            if frame.get("id") == request_id and frame.get("name") in ("response", "error"):
                return frame
            self.events.append(frame)

    def next_event(self, name=None, timeout=10):
        """The next event frame (optionally of frame name ``name``)."""
        for i, frame in enumerate(self.events):
            if name is None or frame.get("name") == name:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv(max(0.01, deadline - time.monotonic()))
            if name is None or frame.get("name") == name:
                return frame
            self.events.append(frame)

    def login(self, user, password):
        """rpc/auth; returns the reply."""
        return self.call("rpc", "auth", {"username": user, "password": password})

    def wait_closed(self, timeout=10):
        """Read until the server closes; returns the close code."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.ws.recv(max(0.01, deadline - time.monotonic()))
        except ConnectionClosed as e:
            return e.rcvd.code if e.rcvd else None
        except TimeoutError:
            pass
        raise AssertionError("the server did not close the connection")

    def close(self):
        """Close the connection."""
        self.ws.close()
