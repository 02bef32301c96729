"""A real ``nats-server`` for tests, configured from etc/nats-server-fleet.conf.

    config = fleet_config([entry_m1, entry_m2])      # the template, users filled in
    server = NatsServer(config, tmp_path / "nats", env={"FLEET_ADMIN_PASSWORD": ...})
    url = server.start()                             # nats://127.0.0.1:<port>
    ...
    server.stop()                                    # returns once the process is gone

:class:`NatsServer` rewrites the configuration's ``listen`` line to a random loopback
port (kept for a restart, so clients reconnect to the same URL) and its JetStream
``store_dir`` to a directory of its own, then runs ``nats-server -c`` with the template's
password variables from ``env``. The port is read from the server's log line "Listening
for client connections on ...".
"""

import os
import re
import shutil
import signal
import subprocess
import threading

ROOT = os.path.join(os.path.dirname(__file__), "..")
TEMPLATE = os.path.join(ROOT, "etc", "nats-server-fleet.conf")
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"

_LISTEN = re.compile(r"^[ \t]*listen[ \t]*[:=].*$", re.M)
_STORE_DIR = re.compile(r"^([ \t]*)store_dir[ \t]*[:=].*$", re.M)
_LISTENING = re.compile(r"Listening for client connections on (\S+):(\d+)")
_READY = re.compile(r"Server is ready")


def available():
    """Whether nats-server is installed (tests/setup.sh installs it)."""
    return os.access(NATS_SERVER, os.X_OK)


def _fill(text, marker, entries):
    # Each entry indented as the marker is, in its place (the marker goes).
    pattern = re.compile(r"^([ \t]*)" + re.escape(marker) + r"[ \t]*$", re.M)
    match = pattern.search(text)
    if match is None:
        raise ValueError(f"no {marker} line in the configuration")
    indent = match.group(1)
    lines = [indent + line if line.strip() else line for line in entries.splitlines()]
    return text[: match.start()] + "\n".join(lines) + text[match.end():]


def fleet_config(machines_entries, people_entries="", template=TEMPLATE):
    """The text of ``template`` (etc/nats-server-fleet.conf) with the machines' user
    entries (``sysadmd-admin fleet init``'s output, a list of strings) at ``#@machines``
    and ``people_entries`` (text) at ``#@people``."""
    with open(template, encoding="utf-8") as handle:
        text = handle.read()
    text = _fill(text, "#@machines", "\n".join(entry.strip("\n") for entry in machines_entries))
    return _fill(text, "#@people", people_entries)


class NatsServer:
    """``nats-server -c`` of ``config_text`` (``listen`` and ``store_dir`` replaced),
    with its files in ``tmpdir`` and ``env`` added to the environment."""

    def __init__(self, config_text, tmpdir, env=None):
        self.config_text = config_text
        self.tmpdir = str(tmpdir)
        self.env = dict(os.environ, **(env or {}))
        self.port = None
        self.process = None
        self._reader = None
        self.lines = []
        self.config_path = os.path.join(self.tmpdir, "nats-server.conf")

    @property
    def url(self):
        """``nats://127.0.0.1:<port>`` once started."""
        return f"nats://127.0.0.1:{self.port}"

    def _config(self):
        # -1: a random port the first time; the same one when started again.
        listen = f"listen: 127.0.0.1:{self.port if self.port else -1}"
        text, found = _LISTEN.subn(listen, self.config_text, count=1)
        if not found:
            text = listen + "\n" + text
        store = os.path.join(self.tmpdir, "jetstream")
        return _STORE_DIR.sub(lambda m: f'{m.group(1)}store_dir: "{store}"', text, count=1)

    def start(self, timeout=15):
        """Run the server until it is ready; returns its URL."""
        if not available():
            raise AssertionError(f"{NATS_SERVER} is missing (tests/setup.sh installs nats-server)")
        os.makedirs(self.tmpdir, exist_ok=True)
        with open(self.config_path, "w", encoding="utf-8") as handle:
            handle.write(self._config())
        self.lines = lines = []
        ready = threading.Event()
        found = {}
        self.process = subprocess.Popen(
            [NATS_SERVER, "-c", self.config_path],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd=self.tmpdir, env=self.env, text=True,
        )
        self._reader = threading.Thread(
            target=self._read, args=(self.process, lines, found, ready), daemon=True
        )
        self._reader.start()
        if not ready.wait(timeout) or self.process.poll() is not None or "port" not in found:
            self.stop()
            raise AssertionError("nats-server did not start:\n" + self.log_text())
        self.port = found["port"]
        return self.url

    @staticmethod
    def _read(process, lines, found, ready):
        for line in process.stdout:
            lines.append(line)
            match = _LISTENING.search(line)
            if match:
                found["port"] = int(match.group(2))
            if _READY.search(line):
                ready.set()
        ready.set()  # it ended: start() reports its log

    def log_text(self):
        """What the server logged since its last start."""
        return "".join(self.lines)

    def stop(self, timeout=10):
        """Stop the server (TERM, then KILL after ``timeout`` s) and wait for its end."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # The log's reader sees the end of the pipe once the process is gone.
        self._reader.join(5)
        process.stdout.close()
        return process.returncode
