"""A real fleet on loopback: nats-server with JetStream, daemons each with its agent.

Every part is the real program a sysadmin runs: ``twistd -n sysadmd`` per machine,
``sysadmd-admin fleet init`` for its key and NATS user (its printed entry goes into
etc/nats-server-fleet.conf, as the README says), ``nats-server -c``, ``sysadm fleet
setup`` for the streams, ``twistd -n sysadm-fleet`` beside each daemon, and the ``sysadm
fleet`` commands as subprocesses. The checks read the stream with nats-py.
"""

import asyncio
import os
import re
import subprocess

import nats

from tests.integration.harness import ADMIN, BASE_CONFIG, BIN, Daemon
from tests.natsserver import TEMPLATE, NatsServer, fleet_config

SYSADM = os.path.join(BIN, "sysadm")
PEOPLE = {"fleet-admin": "fleet-admin-pw", "ops": "ops-pw", "only-m1": "only-m1-pw"}


def only_m1_entry():
    """A person like the template's ``ops`` (reads every machine) whose requests may go
    to m1 only: the same entry with ``sysadm.m1.rpc`` for ``sysadm.*.rpc``."""
    with open(TEMPLATE, encoding="utf-8") as f:
        ops = OPS_ENTRY.search(f.read()).group(0)
    entry = ops.replace("user: ops, password: $FLEET_OPS_PASSWORD", f"user: only-m1, password: {PEOPLE['only-m1']}")
    assert '"sysadm.*.rpc"' in entry and "only-m1" in entry, entry
    return entry.replace('"sysadm.*.rpc"', '"sysadm.m1.rpc"')


# [fleet] users of every agent: ops is alice with full access, only-m1 is bob (limited).
USERS = "ops=alice:full only-m1=bob:limited"
ENTRY = re.compile(r"^\{user: .*?^\}\}$", re.M | re.S)
OPS_ENTRY = re.compile(r"\{user: ops,.*?\n\s*\}\}", re.S)

AGENT_CONFIG = """\
[fleet]
host = {host}
daemon = {daemon}
key = {key}
servers = {servers}
credentials = {credentials}
users = {users}
presence_interval = 1
"""


class FleetAgent(Daemon):
    """``twistd -n sysadm-fleet`` (its ``urls`` hold the fleet name it logs at start)."""

    plugin = "sysadm-fleet"
    listening = re.compile(r"sysadm-fleet (\S+) starting")
    ready = re.compile(r"publishing \S+ events from")


class Machine:
    """One machine: its daemon (users alice, full, and bob, limited), the fleet key and
    NATS user made by ``sysadmd-admin fleet init``, and its agent once started."""

    def __init__(self, root, name):
        self.name = name
        self.root = root / name
        self.root.mkdir()
        self.daemon = Daemon(self.root, BASE_CONFIG)
        self.daemon.add_user("alice", "alice-secret-pw", "full")
        self.daemon.add_user("bob", "bob-secret-pw", "limited")
        self.fleet_dir = self.root / "fleet"
        init = subprocess.run(
            [ADMIN, "fleet", "init", "--host", name, "--dir", str(self.fleet_dir),
             "--fleet-keys-file", os.path.join(self.daemon.state_dir, "fleet_keys")],
            capture_output=True, text=True, check=True,
        )
        self.init_output = init.stdout
        self.nats_entry = ENTRY.search(init.stdout).group(0)
        self.agent = None

    def start_daemon(self):
        """Start the machine's daemon; later starts keep the port its agent knows."""
        self.daemon.start()
        port = self.daemon.url.rsplit(":", 1)[1]
        config = self.daemon.config_path.read_text()
        self.daemon.config_path.write_text(config.replace("tcp:0:", f"tcp:{port}:"))

    def start_agent(self, nats_url, twistd_args=()):
        """Start the agent (``twistd_args`` e.g. ``--reactor asyncio``); returns once it
        publishes."""
        agent_root = self.root / "agent"
        agent_root.mkdir(exist_ok=True)
        config = AGENT_CONFIG.format(
            host=self.name,
            daemon=self.daemon.url,
            key=self.fleet_dir / "key",
            servers=nats_url,
            credentials=self.fleet_dir / "nats-credentials",
            users=USERS,
        )
        self.agent = FleetAgent(agent_root, config.replace("{", "{{").replace("}", "}}"))
        self.agent.twistd_args = tuple(twistd_args)
        return self.agent.start()

    def stop(self):
        """Stop the agent, then the daemon."""
        for part in (self.agent, self.daemon):
            if part is not None:
                part.stop()


class Fleet:
    """Machines ``names``, one nats-server, the streams; :meth:`start` brings it up."""

    def __init__(self, root, names=("m1", "m2")):
        self.root = root
        self.machines = {name: Machine(root, name) for name in names}
        config = fleet_config([m.nats_entry for m in self.machines.values()], only_m1_entry())
        self.nats = NatsServer(config, root / "nats", env=_people_env())
        self.url = None

    def start(self):
        """Daemons, nats-server, ``sysadm fleet setup``, agents."""
        for machine in self.machines.values():
            machine.start_daemon()
        self.url = self.nats.start()
        setup = self.sysadm("setup", user="fleet-admin")
        assert setup.returncode == 0, setup.stderr
        for number, machine in enumerate(self.machines.values()):
            # The first as the README says; the others without --reactor (the agent
            # installs the asyncio reactor itself).
            machine.start_agent(self.url, ("--reactor", "asyncio") if number == 0 else ())
        return self

    def stop(self):
        """Everything down, agents first."""
        for machine in self.machines.values():
            machine.stop()
        self.nats.stop()

    def sysadm(self, *args, user="ops", timeout=60):
        """``sysadm fleet ARGS`` as ``user``; the finished process."""
        return subprocess.run(
            [SYSADM, "fleet", "--nats", self.url, "--nats-user", user, *args],
            capture_output=True, text=True, timeout=timeout,
            env=dict(os.environ, SYSADM_NATS_PASSWORD=PEOPLE[user]),
        )

    def start_watch(self, *args, user="ops"):
        """``sysadm fleet watch --json ARGS`` running in the background."""
        return subprocess.Popen(
            [SYSADM, "fleet", "--nats", self.url, "--nats-user", user,
             "watch", "--json", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, SYSADM_NATS_PASSWORD=PEOPLE[user]),
        )

    def stored_events(self, subject="sysadm.*.events.>"):
        """Every message stored in SYSADM_EVENTS on ``subject``: (subject, headers, bytes)."""
        return asyncio.run(_read_stream(self.url, subject))

    def request(self, host, payload, user="ops", timeout=10):
        """One NATS request to ``sysadm.<host>.rpc``; the reply's bytes, or the error."""
        return asyncio.run(_request(self.url, user, f"sysadm.{host}.rpc", payload, timeout))


def _people_env():
    return {"FLEET_ADMIN_PASSWORD": PEOPLE["fleet-admin"], "FLEET_OPS_PASSWORD": PEOPLE["ops"]}


async def _read_stream(url, subject):
    nc = await nats.connect(url, user="fleet-admin", password=PEOPLE["fleet-admin"])
    try:
        js = nc.jetstream()
        info = await js.stream_info("SYSADM_EVENTS")
        messages = []
        if info.state.messages:
            sub = await js.subscribe(subject, ordered_consumer=True, stream="SYSADM_EVENTS",
                                     deliver_policy=nats.js.api.DeliverPolicy.ALL)
            last = info.state.last_seq
            while True:
                try:
                    msg = await sub.next_msg(timeout=2)
                except nats.errors.TimeoutError:
                    break
                messages.append((msg.subject, dict(msg.headers or {}), msg.data))
                if msg.metadata.sequence.stream >= last:
                    break
            await sub.unsubscribe()
        return messages
    finally:
        await nc.close()


async def _request(url, user, subject, payload, timeout):
    errors = []

    async def error_cb(error):
        errors.append(str(error))

    nc = await nats.connect(url, user=user, password=PEOPLE[user], error_cb=error_cb)
    try:
        try:
            reply = await nc.request(subject, payload, timeout=timeout)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
            await asyncio.sleep(0.2)
            return {"error": type(e).__name__, "nats_errors": errors}
        return {"data": reply.data, "nats_errors": errors}
    finally:
        await nc.close()
