"""The user entries ``sysadmd-admin fleet init`` prints, pasted into
etc/nats-server-fleet.conf, in a real nats-server: each machine publishes and reads back
only its own events and receives only its own requests."""

import asyncio
import re
import subprocess

import nats
import pytest
from nats.js.api import StreamConfig

from sysadmd.protocol.fleet import EVENTS_STREAM, EVENTS_SUBJECTS, parse_credentials
from tests.integration.harness import ADMIN
from tests.natsserver import NatsServer, available, fleet_config

pytestmark = pytest.mark.skipif(not available(), reason="nats-server missing (tests/setup.sh installs it)")

PEOPLE = {"FLEET_ADMIN_PASSWORD": "fleet-admin-pw", "FLEET_OPS_PASSWORD": "ops-pw"}
ENTRY = re.compile(r"^\{user: .*?^\}\}$", re.M | re.S)
# How long a permissions violation takes to come back from the server, at most.
VIOLATION_WAIT = 2.0


def fleet_init(tmp_path, host):
    """Run ``sysadmd-admin fleet init`` for ``host``; its ``(entry, password)``."""
    directory = tmp_path / host
    result = subprocess.run(
        [ADMIN, "fleet", "init", "--host", host, "--dir", str(directory),
         "--fleet-keys-file", str(tmp_path / f"{host}-fleet_keys")],
        capture_output=True, text=True, check=True,
    )
    _, password = parse_credentials((directory / "nats-credentials").read_text())
    assert password not in result.stderr
    return ENTRY.search(result.stdout).group(0), password


@pytest.fixture
def fleet(tmp_path):
    """A nats-server with the template and machines m1 and m2; ``(url, passwords)``."""
    entries, passwords = [], {}
    for host in ("m1", "m2"):
        entry, passwords[host] = fleet_init(tmp_path, host)
        entries.append(entry)
    server = NatsServer(fleet_config(entries), tmp_path / "nats", env=PEOPLE)
    try:
        yield server.start(), passwords
    finally:
        server.stop()
        assert server.process is None


class Machine:
    """A machine's NATS connection, as its agent makes it, with the errors it was told."""

    def __init__(self, url, host, password):
        self.url, self.host, self.password = url, host, password
        self.errors = []
        self.nc = None

    async def __aenter__(self):
        async def error_cb(error):
            self.errors.append(str(error))

        self.nc = await nats.connect(
            self.url, user=self.host, password=self.password, error_cb=error_cb,
            inbox_prefix=f"_INBOX_{self.host}".encode("ascii"), allow_reconnect=False,
        )
        return self

    async def __aexit__(self, *exc):
        await self.nc.close()

    async def violation(self, subject):
        """Wait for the server's permissions violation naming ``subject``."""
        deadline = asyncio.get_running_loop().time() + VIOLATION_WAIT
        while asyncio.get_running_loop().time() < deadline:
            # nats-py reports the server's message in lower case.
            if any("permissions violation" in e.lower() and subject.lower() in e.lower()
                   for e in self.errors):
                return True
            await asyncio.sleep(0.05)
        return False

    async def direct_get(self, subject):
        """The last message on ``subject`` read back with a direct get, or the error."""
        try:
            return await self.nc.request(
                f"$JS.API.DIRECT.GET.{EVENTS_STREAM}.{subject}", b"", timeout=VIOLATION_WAIT
            )
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
            return e


async def create_stream(url):
    nc = await nats.connect(url, user="fleet-admin", password=PEOPLE["FLEET_ADMIN_PASSWORD"])
    try:
        await nc.jetstream().add_stream(
            StreamConfig(name=EVENTS_STREAM, subjects=[EVENTS_SUBJECTS], allow_direct=True)
        )
    finally:
        await nc.close()


async def scenario(url, passwords):
    """Every check; returns what was seen, for the test to assert."""
    seen = {}
    await create_stream(url)
    async with Machine(url, "m1", passwords["m1"]) as m1, Machine(url, "m2", passwords["m2"]) as m2:
        ack = await m1.nc.jetstream().publish("sysadm.m1.events.x", b"one of m1")
        seen["ack"] = (ack.stream, ack.seq)
        ack = await m2.nc.jetstream().publish("sysadm.m2.events.x", b"one of m2")
        seen["m2 ack"] = (ack.stream, ack.seq)

        reply = await m1.direct_get("sysadm.m1.events.x")
        seen["own direct get"] = getattr(reply, "data", reply)
        reply = await m1.direct_get("sysadm.m2.events.x")
        seen["other direct get"] = getattr(reply, "data", reply)
        seen["other direct get violation"] = await m1.violation(
            f"$JS.API.DIRECT.GET.{EVENTS_STREAM}.sysadm.m2.events.x"
        )

        await m1.nc.publish("sysadm.m2.events.x", b"forged")
        await m1.nc.flush()
        seen["publish violation"] = await m1.violation("sysadm.m2.events.x")
        await m1.nc.publish("sysadm.m1.rpc", b"{}")
        await m1.nc.flush()
        seen["rpc publish violation"] = await m1.violation("sysadm.m1.rpc")

        await m1.nc.subscribe("sysadm.m2.rpc")
        await m1.nc.flush()
        seen["subscribe violation"] = await m1.violation("sysadm.m2.rpc")
        await m1.nc.subscribe("sysadm.m1.rpc")
        await m1.nc.flush()
        seen["m1 errors"] = list(m1.errors)
        seen["m2 errors"] = list(m2.errors)
    nc = await nats.connect(url, user="fleet-admin", password=PEOPLE["FLEET_ADMIN_PASSWORD"])
    try:
        info = await nc.jetstream().stream_info(EVENTS_STREAM)
        seen["stored"] = info.state.messages
    finally:
        await nc.close()
    return seen


def test_each_machine_publishes_reads_and_receives_only_its_own(fleet):
    url, passwords = fleet
    seen = asyncio.run(scenario(url, passwords))
    assert seen["ack"] == (EVENTS_STREAM, 1)
    assert seen["m2 ack"] == (EVENTS_STREAM, 2)
    assert seen["own direct get"] == b"one of m1"
    assert isinstance(seen["other direct get"], Exception), seen["other direct get"]
    assert seen["other direct get violation"], seen["m1 errors"]
    assert seen["publish violation"], seen["m1 errors"]
    assert seen["rpc publish violation"], seen["m1 errors"]
    assert seen["subscribe violation"], seen["m1 errors"]
    # Every violation named one of the refused subjects; m2 was told of none.
    refused = ("sysadm.m2.", "sysadm.m1.rpc")
    assert all(any(s in e for s in refused) for e in seen["m1 errors"]), seen["m1 errors"]
    assert not any('subscription to "sysadm.m1.rpc"' in e.lower() for e in seen["m1 errors"])
    assert seen["m2 errors"] == []
    assert seen["stored"] == 2  # the forged event is not stored


def test_a_restarted_server_keeps_its_port_and_stop_ends_it(tmp_path):
    """Clients reconnect to the same URL after a restart; stop() returns once the process
    has ended."""
    entry, _ = fleet_init(tmp_path, "m1")
    server = NatsServer(fleet_config([entry]), tmp_path / "nats", env=PEOPLE)
    try:
        url = server.start()
        first = server.process
        server.stop()
        assert first.poll() is not None
        assert server.start() == url
        second = server.process
    finally:
        server.stop()
    assert second.poll() is not None and server.process is None
