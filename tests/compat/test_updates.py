"""The ``updates`` field the original client reads in system-state events
(``original-client.md``, "Events it reads"), from the real daemon under twistd: once with
this Debian machine's real ``apt-get`` (a simulation from the local package lists: no
refresh, no network, nothing changed), once with an ``updates_command`` script that says
a reboot is required (priority 9), in both wire dialects."""

import os
import subprocess
import time
from datetime import UTC, datetime

import pytest

from tests.compat.conftest import make_daemon  # noqa: F401
from tests.integration.harness import BASE_CONFIG, Client

STATUSES = ("noupdates", "updatesavailable", "rebootrequired", "updaterunning")


def state_config(tmp_path, updates, dialect="spec"):
    """A daemon with only the system-state source (no ZFS needed: its zpool is missing)."""
    return BASE_CONFIG.replace("[server]\n", f"[server]\ndialect = {dialect}\n") + f"""
[events]
sources = system-state

[source:system-state]
zpool_command = {tmp_path}/no-zpool
{updates}
"""


def started(make_daemon, config):  # noqa: F811
    daemon = make_daemon(config, ticker=False, start=False)
    daemon.add_user("admin", "admin-secret-pw", "full")
    return daemon.start()


def checked_event(client, frame_name, timeout=90):
    """The first system-state event whose check has ended (the events before it say
    checkingforupdates); returns (the events seen, that frame)."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = client.next_event(frame_name, timeout=max(0.1, deadline - time.monotonic()))
        seen.append(frame)
        if frame["args"]["updates"]["status"] != "checkingforupdates":
            return seen, frame
    raise AssertionError(f"no finished update check in {timeout} s: {seen[-3:]}")


def iso_seconds(text):
    """An ISO 8601 time with its offset, as seconds since the epoch."""
    moment = datetime.fromisoformat(text)
    assert moment.tzinfo is not None, f"{text!r} has no UTC offset"
    return moment.timestamp()


def own_simulation():
    """How many packages this machine's apt-get would install, upgrade or remove."""
    result = subprocess.run(
        ["apt-get", "-s", "-q", "-o", "Debug::NoLocking=true", "dist-upgrade"],
        capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}, check=True,
    )
    return sum(1 for line in result.stdout.splitlines() if line.startswith(("Inst ", "Remv ")))


@pytest.mark.skipif(not os.path.exists("/etc/debian_version"), reason="needs Debian's apt-get")
def test_real_apt_get_reports_a_status_and_an_iso_last_check(make_daemon, tmp_path):  # noqa: F811
    lists = "/var/lib/apt/lists"
    before = sorted(os.listdir(lists)) if os.path.isdir(lists) else None
    daemon = started(make_daemon, state_config(tmp_path, "updates = apt\ncommand_timeout = 120"))
    client = Client(daemon.url)
    try:
        assert client.login("admin", "admin-secret-pw")["name"] == "response"
        assert client.call("events", "subscribe", ["system-state"])["name"] == "response"
        started_at = time.time()
        seen, frame = checked_event(client, "system_state")
    finally:
        client.close()
    updates = frame["args"]["updates"]
    assert set(updates) == {"status", "details", "last_check"}
    assert updates["status"] in STATUSES, updates
    assert isinstance(updates["details"], str) and updates["details"]
    assert started_at - 120 < iso_seconds(updates["last_check"]) <= time.time() + 1
    if seen[0] is not frame:
        assert seen[0]["args"]["updates"]["status"] == "checkingforupdates"
    level = int(frame["args"]["priority"].split(" - ")[0])
    assert level >= {"noupdates": 0, "updatesavailable": 2, "updaterunning": 2,
                     "rebootrequired": 9}[updates["status"]]
    if updates["status"] in ("noupdates", "updatesavailable"):
        # The daemon's answer is apt's own, from the same lists.
        changes = own_simulation()
        assert (updates["status"] == "updatesavailable") == (changes > 0), (updates, changes)
    daemon.wait_for_log(r"system-state: checking for updates with apt every 3600 s \(updates = apt\)")
    # A simulation only: the package lists were not refreshed.
    after = sorted(os.listdir(lists)) if os.path.isdir(lists) else None
    assert after == before
    print(f"real apt-get: {updates['status']}: {updates['details'].splitlines()[0]}")


@pytest.mark.parametrize("dialect", ["spec", "original"])
def test_updates_command_reboot_required_is_priority_9(make_daemon, tmp_path, dialect):  # noqa: F811
    script = tmp_path / "check-updates"
    script.write_text("#!/bin/sh\necho rebootrequired\necho \"kernel 6.1.0-30 is installed\"\n")
    script.chmod(0o755)
    daemon = started(make_daemon, state_config(tmp_path, f"updates_command = {script}", dialect))
    client = Client(daemon.url)
    try:
        if dialect == "original":
            # The Qt client's own messages (original-client.md, "Messages it sends").
            client.send({"args": {"password": "admin-secret-pw", "username": "admin"},
                         "id": "sysadm-client-auth-auto", "name": "auth", "namespace": "rpc"})
            assert client.reply("sysadm-client-auth-auto")["name"] == "response"
            client.send({"args": "system-state", "id": "sysadm-client-event-auto",
                         "name": "subscribe", "namespace": "events"})
            assert client.reply("sysadm-client-event-auto")["name"] == "response"
            frame_name = "system-state"
        else:
            assert client.login("admin", "admin-secret-pw")["name"] == "response"
            assert client.call("events", "subscribe", ["system-state"])["name"] == "response"
            frame_name = "system_state"
        _, frame = checked_event(client, frame_name, timeout=30)
    finally:
        client.close()
    assert frame["namespace"] == "events"
    assert frame["id"] == ("" if dialect == "original" else "none")
    updates = frame["args"]["updates"]
    assert updates["status"] == "rebootrequired"
    assert updates["details"] == "kernel 6.1.0-30 is installed"
    assert abs(iso_seconds(updates["last_check"]) - time.time()) < 60
    assert frame["args"]["priority"] == "9 - Urgent"
    # What the Qt client does with it: the number before " - ".
    assert frame["args"]["priority"].split("-")[0].strip() == "9"
    assert datetime.fromisoformat(updates["last_check"]).astimezone(UTC).year >= 2024
