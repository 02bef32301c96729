"""The real ``sysadm fleet`` console script against a real nats-server (etc/nats-server-fleet.conf).

The machines are stand-ins for the ``sysadm-fleet`` agent, not the agent itself: plain
nats-py clients, each connected as its machine's MACHINES user (the entry ``sysadmd-admin
fleet init`` prints), that follow ``sysadmd.protocol.fleet`` to the letter: presence and
event messages with its subjects, payloads and headers, published into the streams, and
``sysadm.<host>.rpc`` requests answered with a canned daemon reply, then the dispatcher's
``finished`` event published. ``sysadm`` is run as a newcomer would run it, as a
subprocess, as the ``ops`` user of the template (its permissions exactly as shipped).
"""

import asyncio
import datetime
import ipaddress
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import nats
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sysadmd.admin.fleet import machine_user_entry
from sysadmd.protocol import fleet as wire
from tests.natsserver import NatsServer, available, fleet_config

pytestmark = pytest.mark.skipif(not available(), reason="nats-server is not installed")

SYSADM = os.path.join(os.path.dirname(sys.executable), "sysadm")
ADMIN_PASSWORD = "admin-secret-pw"
OPS_PASSWORD = "ops-secret-pw"
HOSTS = ("nas1", "nas2")
# A person who may not send requests to nas2 (everything else as ops).
NARROW = """\
{user: narrow, password: narrow-secret-pw, permissions: {
    publish: {allow: ["sysadm.nas1.rpc", "$JS.API.CONSUMER.CREATE.SYSADM_EVENTS",
                      "$JS.API.CONSUMER.CREATE.SYSADM_PRESENCE", "$JS.API.CONSUMER.DELETE.SYSADM_EVENTS.*",
                      "$JS.API.CONSUMER.DELETE.SYSADM_PRESENCE.*", "$JS.FC.SYSADM_EVENTS.>"]}
    subscribe: {allow: ["_INBOX.>"]}
}}
"""


def machine_password(host):
    return f"{host}-machine-pw"


class Machine:
    """One machine's agent stand-in (see the module docstring), on ``loop``."""

    def __init__(self, host, nc):
        self.host, self.nc, self.js = host, nc, nc.jetstream()
        self.epoch = f"epoch-{host}"
        self.seq = {}
        self.codes = ["0"]
        self.requests = []
        self.since = time.time() - 3600

    async def presence(self, up=True, state=None, interval=30):
        payload = wire.presence(self.host, f"{self.host}.example.org", "0.1.0", up, self.since, time.time(),
                                interval, state)
        await self._publish(wire.presence_subject(self.host), payload, None)

    async def event(self, source, name, args):
        """Publish one numbered event; its stream sequence."""
        seq = self.seq[source] = self.seq.get(source, 0) + 1
        frame = {"namespace": "events", "name": name, "id": "none", "args": args, "seq": seq, "epoch": self.epoch}
        ack = await self._publish(wire.events_subject(self.host, source), json.dumps(frame).encode(),
                                  wire.event_headers(self.host, source, self.epoch, seq))
        return ack.seq

    async def _publish(self, subject, payload, headers):
        for _ in range(60):  # JetStream answers a while after a restart
            try:
                return await self.js.publish(subject, payload, headers=headers, timeout=2)
            except Exception:
                await asyncio.sleep(0.5)
        raise AssertionError(f"{self.host}: cannot publish to {subject}")

    async def serve(self):
        """Answer rpc/dispatcher run like a daemon would, then finish the job."""

        async def handle(msg):
            envelope = json.loads(msg.data)
            self.requests.append((envelope, wire.requester(msg.headers)))
            args = envelope["args"]
            job = next(key for key in args if key not in ("action", "queue", "timeout"))
            if job == "taken":
                await msg.respond(json.dumps({"namespace": "error", "name": "error", "id": envelope["id"], "args": {
                    "code": 409, "message": "Conflict", "details": "job taken is already pending or running"}}).encode())
                return
            await msg.respond(json.dumps({"namespace": "rpc", "name": "response", "id": envelope["id"],
                                          "args": {"started": [job]}}).encode())
            commands = args[job] if isinstance(args[job], list) else [args[job]]
            details = {"state": "finished", "process_id": job, "cmd_list": commands}
            for index, command in enumerate(commands):
                code = self.codes[index] if index < len(self.codes) else "0"
                details[command] = ""
                details["return_codes/" + command] = code
                if code != "0":
                    break
            await asyncio.sleep(0.3)
            await self.event("dispatcher", "dispatcher", {"state": "finished", "process_id": job,
                                                          "process_details": details})

        await self.nc.subscribe(wire.rpc_subject(self.host), cb=handle)


class Fleet:
    """A nats-server with the template's accounts, and the machines' stand-ins."""

    def __init__(self, tmp_path, extra=""):
        entries = [machine_user_entry(host, machine_password(host)) for host in HOSTS]
        self.tmp_path = tmp_path
        self.server = NatsServer(fleet_config(entries, NARROW) + extra, tmp_path / "nats",
                                 env={"FLEET_ADMIN_PASSWORD": ADMIN_PASSWORD, "FLEET_OPS_PASSWORD": OPS_PASSWORD})
        self.url = self.server.start()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.machines = {}

    def call(self, coroutine, timeout=60):
        """Run ``coroutine`` on the machines' loop; its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def machine(self, host):
        """Connect machine ``host`` (once)."""
        if host not in self.machines:
            async def connect():
                async def quiet(error):
                    pass  # the restart test's disconnections are expected

                nc = await nats.connect(self.url, user=host, password=machine_password(host),
                                        inbox_prefix=f"_INBOX_{host}", max_reconnect_attempts=-1,
                                        reconnect_time_wait=0.5, error_cb=quiet)
                machine = Machine(host, nc)
                await machine.serve()
                return machine

            self.machines[host] = self.call(connect())
        return self.machines[host]

    def stop(self):
        for machine in self.machines.values():
            try:
                self.call(machine.nc.close(), timeout=10)
            except Exception:
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.server.stop()

    def environment(self, password):
        env = dict(os.environ, XDG_CONFIG_HOME=str(self.tmp_path / "xdg"), NO_COLOR="1")
        env.pop("SYSADM_NATS_PASSWORD", None)
        if password is not None:
            env["SYSADM_NATS_PASSWORD"] = password
        return env

    def argv(self, user, args, url=None):
        return [SYSADM, "fleet", "--nats", url or self.url, *(["--nats-user", user] if user else []), *args]

    def sysadm(self, *args, user="ops", password=OPS_PASSWORD, timeout=90, url=None):
        """Run ``sysadm fleet --nats URL --nats-user USER ARGS``; the CompletedProcess."""
        return subprocess.run(self.argv(user, args, url), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env=self.environment(password))

    def admin_presence(self, host):
        """A presence message for ``host`` published by fleet-admin (a machine without an
        agent: nobody answers its requests)."""

        async def publish():
            nc = await nats.connect(self.url, user="fleet-admin", password=ADMIN_PASSWORD)
            try:
                now = time.time()
                payload = wire.presence(host, host, "0.1.0", True, now, now, 30)
                await nc.jetstream().publish(wire.presence_subject(host), payload)
            finally:
                await nc.close()

        self.call(publish())

    def start_watch(self, *args, user="ops", password=OPS_PASSWORD):
        """``sysadm fleet watch ARGS`` running: a :class:`Running`."""
        # Ctrl-C reaches it as in a terminal: a suite started in the background of a
        # non-interactive shell (tests/stress.sh under nohup ... &) has SIGINT ignored,
        # and children inherit that.
        return Running(subprocess.Popen(self.argv(user, ["watch", *args]), stdin=subprocess.DEVNULL,
                                        preexec_fn=_default_sigint,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=self.environment(password)))


class Running:
    """A running ``watch``: its stdout lines as they come."""

    def __init__(self, process):
        self.process = process
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def read(self, count, timeout=45):
        """The next ``count`` lines (fails after ``timeout`` s)."""
        found, deadline = [], time.monotonic() + timeout
        while len(found) < count:
            try:
                found.append(self.lines.get(timeout=max(deadline - time.monotonic(), 0.01)))
            except queue.Empty:
                raise AssertionError(f"only {found} within {timeout} s; stderr so far: {self.stop()[1]}") from None
        return found

    def quiet(self, seconds):
        """Whatever arrives in ``seconds`` (nothing, one hopes)."""
        time.sleep(seconds)
        found = []
        while not self.lines.empty():
            found.append(self.lines.get())
        return found

    def stop(self):
        """Ctrl-C; ``(exit status, stderr)``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            status = self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        return status, self.process.stderr.read()


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def fleet(tmp_path):
    """A nats-server with streams made by ``sysadm fleet setup`` (as fleet-admin)."""
    fleet = Fleet(tmp_path)
    result = fleet.sysadm("setup", user="fleet-admin", password=ADMIN_PASSWORD)
    assert result.returncode == 0, result.stderr
    yield fleet
    fleet.stop()


def one_error(result, text):
    """A failure with exactly one stderr line containing ``text``."""
    assert result.returncode == 1, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and text in lines[0], result.stderr
    assert lines[0].startswith("sysadm: ")


def test_setup_creates_the_streams_then_updates_them(fleet):
    again = fleet.sysadm("setup", "--max-age", "3600", user="fleet-admin", password=ADMIN_PASSWORD)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0].startswith("updated stream SYSADM_EVENTS: sysadm.*.events.>, file storage, max age 3600 s")
    # ops may not manage streams: the refusal is one line.
    one_error(fleet.sysadm("setup"), "refused by NATS: this user may not publish to $JS.API.STREAM.INFO.SYSADM_EVENTS")


def test_without_the_streams_the_commands_say_to_run_setup(tmp_path):
    fleet = Fleet(tmp_path)
    try:
        one_error(fleet.sysadm("hosts"), "stream SYSADM_PRESENCE does not exist: run sysadm fleet setup")
    finally:
        fleet.stop()


def test_connection_failures_are_one_line(fleet):
    one_error(fleet.sysadm("hosts", password="wrong"), "authorization violation")
    refused = subprocess.run([SYSADM, "fleet", "--nats", "nats://127.0.0.1:1", "hosts"], capture_output=True,
                             text=True, timeout=60, env=fleet.environment(None))
    one_error(refused, "cannot connect to NATS at nats://127.0.0.1:1: connection refused")


def test_hosts_shows_each_machine_up_or_down(fleet):
    nas1, nas2 = fleet.machine("nas1"), fleet.machine("nas2")
    fleet.call(nas1.presence(state={"hostname": "nas1", "priority": "3 - Warning", "zpools": {}}))
    fleet.call(nas2.presence())
    fleet.call(nas2.presence(up=False))  # its goodbye
    result = fleet.sysadm("hosts")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["HOST", "STATUS", "SINCE", "PRIORITY", "HOSTNAME", "VERSION"]
    assert lines[1].split()[:2] == ["nas1", "up"] and "3 - Warning" in lines[1] and "nas1.example.org" in lines[1]
    assert lines[2].split()[:2] == ["nas2", "down"] and lines[2].split()[4:] == ["-", "nas2.example.org", "0.1.0"]
    listed = json.loads(fleet.sysadm("hosts", "--json").stdout)
    assert [(m["host"], m["up"]) for m in listed] == [("nas1", True), ("nas2", False)]


def test_state_from_presence_or_the_last_system_state_event(fleet):
    nas1, nas2 = fleet.machine("nas1"), fleet.machine("nas2")
    fleet.call(nas1.presence(state={"hostname": "nas1", "priority": "9 - Urgent",
                                    "zpools": {"tank": {"health": "DEGRADED", "capacity": "12%", "priority": "9 - Urgent"}}}))
    fleet.call(nas2.event("system-state", "system_state", {"hostname": "nas2", "priority": "0 - Information",
                                                           "zpools": {"pool": {"health": "ONLINE", "capacity": "40%"}}}))
    fleet.call(nas2.presence())  # no state in it yet
    result = fleet.sysadm("state")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["nas1", "9", "-", "Urgent", "nas1", "tank", "DEGRADED", "12%", "up"]
    assert lines[2].split() == ["nas2", "0", "-", "Information", "nas2", "pool", "ONLINE", "40%", "up"]
    only = json.loads(fleet.sysadm("state", "--hosts", "nas2", "--json").stdout)
    assert [entry["host"] for entry in only] == ["nas2"] and only[0]["state"]["hostname"] == "nas2"


def test_watch_shows_the_events_of_two_hosts_from_all_or_a_stream_sequence(fleet):
    nas1, nas2 = fleet.machine("nas1"), fleet.machine("nas2")
    first = fleet.call(nas1.event("life-preserver", "life_preserver", {"priority": "3 - Warning", "message": "one"}))
    fleet.call(nas2.event("life-preserver", "life_preserver", {"priority": "6 - Critical", "message": "two"}))
    third = fleet.call(nas1.event("dispatcher", "dispatcher", {"state": "running", "process_id": "j"}))

    watch = fleet.start_watch("--since", "all", "--json")
    try:
        seen = [json.loads(line) for line in watch.read(3)]
        assert [(e["host"], e["stream_seq"]) for e in seen] == [("nas1", first), ("nas2", first + 1), ("nas1", third)]
        assert seen[1]["event"]["args"]["message"] == "two" and seen[1]["event"]["seq"] == 1
        live = fleet.call(nas2.event("life-preserver", "life_preserver", {"message": "live"}))
        assert json.loads(watch.read(1)[0])["stream_seq"] == live
    finally:
        status, stderr = watch.stop()
    assert status == 130, stderr

    text = fleet.start_watch("--since", f"seq:{first + 1}", "--hosts", "nas2")
    try:
        lines = text.read(2)
        assert all(line.startswith("nas2 ") for line in lines)
        assert "life-preserver" in lines[0] and "6 - Critical" in lines[0] and lines[0].endswith("two")
        assert lines[1].endswith("live") and text.quiet(1) == []
    finally:
        text.stop()

    sources = fleet.start_watch("--since", "all", "--json", "dispatcher")
    try:
        assert [json.loads(line)["stream_seq"] for line in sources.read(1)] == [third]
        assert sources.quiet(1) == []
    finally:
        sources.stop()


def test_watch_goes_on_across_a_nats_server_restart_without_repeating_or_missing(fleet):
    nas1 = fleet.machine("nas1")
    fleet.call(nas1.event("life-preserver", "life_preserver", {"message": "before watch"}))
    watch = fleet.start_watch("--json")  # new events only
    try:
        time.sleep(1.5)  # its consumer exists
        before = fleet.call(nas1.event("life-preserver", "life_preserver", {"message": "before restart"}))
        assert json.loads(watch.read(1)[0])["stream_seq"] == before

        fleet.server.stop()
        fleet.server.start()  # same port, same store
        after = [fleet.call(nas1.event("life-preserver", "life_preserver", {"message": f"after {n}"}))
                 for n in range(3)]
        seen = [json.loads(line) for line in watch.read(3)]
        assert [e["stream_seq"] for e in seen] == after
        assert [e["event"]["args"]["message"] for e in seen] == ["after 0", "after 1", "after 2"]
        assert watch.quiet(12) == []  # a heartbeat check later: nothing twice
        last = fleet.call(nas1.event("life-preserver", "life_preserver", {"message": "last"}))
        assert json.loads(watch.read(1)[0])["stream_seq"] == last
    finally:
        status, stderr = watch.stop()
    assert status == 130
    assert "reconnected to NATS" in stderr and "Traceback" not in stderr


def test_run_on_two_machines_prints_each_result_and_fails_unless_all_return_0(fleet):
    nas1, nas2 = fleet.machine("nas1"), fleet.machine("nas2")
    for machine in (nas1, nas2):
        fleet.call(machine.presence())
    nas2.codes = ["0", "1"]
    result = fleet.sysadm("run", "--hosts", "nas*", "--queue", "pkg_queue", "--timeout", "60", "upgrade",
                          "pkg update", "pkg upgrade -y")
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["HOST", "RESULT", "RETURN", "CODES", "SECONDS"]
    assert lines[1].split()[:4] == ["nas1", "finished", "0", "0"]
    assert lines[2].split()[:4] == ["nas2", "finished", "0", "1"]
    envelope, requester = nas1.requests[0]
    assert envelope == {"namespace": "rpc", "name": "dispatcher", "id": "fleet-run",
                        "args": {"action": "run", "upgrade": ["pkg update", "pkg upgrade -y"],
                                 "queue": "pkg_queue", "timeout": 60}}
    assert requester == ("SYSADM", "ops")  # what the agent maps to a local user

    nas2.codes = ["0"]
    good = fleet.sysadm("run", "--hosts", "nas1,nas2", "again", "true")
    assert good.returncode == 0, good.stdout + good.stderr
    assert [line.split()[:3] for line in good.stdout.splitlines()[1:]] == [["nas1", "finished", "0"],
                                                                          ["nas2", "finished", "0"]]


def test_run_reports_errors_refusals_and_missing_machines_per_host(fleet):
    for host in HOSTS:
        fleet.call(fleet.machine(host).presence())
    conflict = fleet.sysadm("run", "--hosts", "nas1", "taken", "true")
    assert conflict.returncode == 1
    assert conflict.stdout.splitlines()[1].split()[:3] == ["nas1", "error", "409:"]

    narrow = fleet.sysadm("run", "--hosts", "*", "job", "true", user="narrow", password="narrow-secret-pw")
    assert narrow.returncode == 1, narrow.stderr
    lines = narrow.stdout.splitlines()
    assert lines[1].split()[:3] == ["nas1", "finished", "0"]
    assert "refused by NATS: this user may not publish to sysadm.nas2.rpc" in lines[2]

    one_error(fleet.sysadm("run", "--hosts", "web*", "job", "true"), "no machine that is up matches --hosts web*")

    fleet.admin_presence("ghost")
    ghost = fleet.sysadm("run", "--hosts", "ghost,nas1", "job2", "true")
    assert ghost.returncode == 1, ghost.stderr
    assert [line.split()[:3] for line in ghost.stdout.splitlines()[1:]] == [["ghost", "no", "answer"],
                                                                           ["nas1", "finished", "0"]]


def self_signed(tmp_path):
    """A certificate for 127.0.0.1 (its own CA) and its key; their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fleet test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_urls_are_verified_with_the_given_ca(tmp_path):
    cert, key = self_signed(tmp_path)
    fleet = Fleet(tmp_path, f'\ntls {{\n    cert_file: "{cert}"\n    key_file: "{key}"\n}}\n')
    try:
        url = f"tls://127.0.0.1:{fleet.server.port}"
        made = fleet.sysadm("setup", "--nats-ca", str(cert), user="fleet-admin", password=ADMIN_PASSWORD, url=url)
        assert made.returncode == 0, made.stderr
        listed = fleet.sysadm("hosts", "--nats-ca", str(cert), url=url)
        assert listed.returncode == 0 and "no machine has sent presence yet" in listed.stdout, listed.stderr
        one_error(fleet.sysadm("hosts", url=url), "TLS failed")
    finally:
        fleet.stop()
