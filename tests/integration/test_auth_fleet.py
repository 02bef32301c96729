"""``rpc/auth_fleet`` against the real daemon, with the key ``sysadmd-admin fleet init``
made (in the default ``[auth] fleet_keys_file``, ``<state_dir>/fleet_keys``)."""

import os
import re
import subprocess

import pytest

from sysadmd.client.auth import load_private_key
from sysadmd.protocol import fleetauth
from tests.integration.harness import ADMIN, Client
from tests.integration.test_auth import FAILED, expect_error, granted
from tests.integration.test_dispatcher import wait_log


@pytest.fixture
def machine(make_daemon, tmp_path):
    """A daemon with alice (full) and bob (limited), and m1's fleet key; ``(daemon,
    private key, fingerprint)``."""
    daemon = make_daemon(start=False)
    daemon.add_user("alice", "alice-secret-pw", "full")
    daemon.add_user("bob", "bob-secret-pw", "limited")
    fleet_dir = tmp_path / "fleet"
    init = subprocess.run(
        [ADMIN, "fleet", "init", "--host", "m1", "--dir", str(fleet_dir),
         "--fleet-keys-file", os.path.join(daemon.state_dir, "fleet_keys")],
        capture_output=True, text=True, check=True,
    )
    fingerprint = re.search(r"\((SHA256:\S+)\)", init.stderr).group(1)
    return daemon.start(), load_private_key(str(fleet_dir / "key")), fingerprint


@pytest.fixture
def connect(machine):
    """``connect()``: new clients of the daemon, closed after the test."""
    clients = []

    def make():
        clients.append(Client(machine[0].url))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def fleet_login(client, key, user=None, access=None):
    """Both stages; returns ``(test_string, signature, reply)``."""
    reply = client.call("rpc", "auth_fleet", {})
    assert reply["name"] == "response", reply
    test_string = reply["args"]["test_string"]
    signature = fleetauth.sign(key, test_string, user, access or "limited")
    args = {"signature": signature}
    if user is not None:
        args["user"] = user
    if access is not None:
        args["access"] = access
    return test_string, signature, client.call("rpc", "auth_fleet", args)


def test_as_a_full_user_with_full_access_it_runs_commands(machine, connect):
    daemon, key, fingerprint = machine
    client = connect()
    test_string, signature, reply = fleet_login(client, key, "alice", "full")
    granted(reply)
    calls = client.call("rpc", "query")["args"]
    assert calls["rpc/dispatcher"] == "read/write"
    started = client.call("rpc", "dispatcher", {"action": "run", "fleetjob": ["echo through the fleet"]})
    assert started["args"] == {"started": ["fleetjob"]}, started
    assert wait_log(client, "fleetjob")["echo through the fleet"] == "through the fleet\n"
    line = daemon.wait_for_log(
        rf"alice authenticated from 127\.0\.0\.1 by fleet key {re.escape(fingerprint)} with full access"
    )
    assert line
    log = daemon.log_text()
    assert test_string not in log and signature not in log
    assert reply["args"][0] not in log


def test_a_limited_user_asking_for_full_access_gets_limited(machine, connect):
    _, key, _ = machine
    client = connect()
    granted(fleet_login(client, key, "bob", "full")[2])
    assert client.call("rpc", "query")["args"]["rpc/dispatcher"] == "read"
    expect_error(client.call("rpc", "dispatcher", {"action": "run", "nope": ["true"]}), 403)


def test_without_a_user_the_agent_follows_events_as_its_key(machine, connect):
    daemon, key, fingerprint = machine
    client = connect()
    granted(fleet_login(client, key)[2])
    assert client.call("rpc", "query")["args"]["rpc/dispatcher"] == "read"
    assert client.call("events", "subscribe", ["dispatcher"])["name"] == "response"
    daemon.wait_for_log(
        rf"fleet:fleet-m1 authenticated from 127\.0\.0\.1 by fleet key {re.escape(fingerprint)} "
        "with limited access"
    )


def test_an_unknown_user_or_a_changed_user_is_refused(machine, connect):
    _, key, _ = machine
    client = connect()
    assert expect_error(fleet_login(client, key, "mallory", "full")[2], 401) == FAILED
    reply = client.call("rpc", "auth_fleet", {})
    signature = fleetauth.sign(key, reply["args"]["test_string"], "bob", "limited")
    refused = client.call("rpc", "auth_fleet", {"signature": signature, "user": "alice"})
    assert expect_error(refused, 401) == FAILED
    expect_error(client.call("rpc", "query"), 401)
