"""system-state and life-preserver on real ZFS (Debian's zfs-fuse), through the daemon.

Each test builds its own file-backed two-file mirror pool under tmp with a unique name
and always destroys it. `tests/zfs/setup.sh` installs and starts zfs-fuse. These tests skip
only where FUSE is unavailable (or, outside CI, where zfs-fuse is not set up), and say
so; under CI a machine with FUSE must run them.
"""

import os
import subprocess
import time
import uuid

import pytest

from tests.integration.harness import BASE_CONFIG, Client

SBIN = "/sbin:/usr/sbin:/bin:/usr/bin:/usr/local/sbin:/usr/local/bin"
ENV = {"PATH": SBIN, "LC_ALL": "C"}


SETUP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "zfs", "setup.sh")
_setup_output = []


def _zfs_problem():
    """Why zpool/zfs cannot be used here, or None."""
    if subprocess.run(["sh", "-c", "command -v zpool && command -v zfs"], env=ENV,
                      capture_output=True).returncode != 0:
        return ("zfs-fuse is not installed (no zpool/zfs): apt-get install zfs-fuse, or run "
                "tests/zfs/setup.sh (make test does), which installs and starts it")
    ran = subprocess.run(["zpool", "list"], env=ENV, capture_output=True, text=True,
                         timeout=30)
    if ran.returncode != 0:
        return ("the zfs-fuse daemon does not answer (run tests/zfs/setup.sh, as make test "
                "does): " + (ran.stderr.strip().splitlines() or ["?"])[-1])
    return None


def _zfs_unavailable():
    """Why real ZFS cannot be used here, or None when it can."""
    try:
        with open("/dev/fuse", "rb"):
            pass
    except OSError as e:
        return f"FUSE is unavailable here (/dev/fuse: {e.strerror}); real-ZFS tests need it"
    problem = _zfs_problem()
    if problem and not _setup_output:
        # As the browser tests do for Chromium: set up what is missing, once per session.
        setup = subprocess.run(["bash", SETUP], capture_output=True, text=True, timeout=900)
        _setup_output.append((setup.stdout + setup.stderr).strip().replace("\n", " | "))
        problem = _zfs_problem()
    if problem and _setup_output:
        problem += f". tests/zfs/setup.sh said: {_setup_output[0]}"
    if problem and os.environ.get("CI"):
        pytest.fail(f"FUSE is available on this CI machine, so these tests must run: {problem}")
    return problem


def run(*argv):
    """Run a zpool/zfs command, failing the test with its output when it fails."""
    ran = subprocess.run(list(argv), env=ENV, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, f"{' '.join(argv)}: {ran.stdout}{ran.stderr}"
    return ran.stdout


@pytest.fixture
def pool(tmp_path):
    """A fresh two-file mirror pool (name, [file1, file2]); destroyed afterwards."""
    reason = _zfs_unavailable()
    if reason:
        pytest.skip(reason)
    name = f"sadtest{uuid.uuid4().hex[:10]}"
    files = []
    for n in (1, 2):
        path = tmp_path / f"{name}-disk{n}"
        with open(path, "wb") as f:
            f.truncate(100 * 1024 * 1024)
        files.append(str(path))
    run("zpool", "create", "-f", "-m", "none", name, "mirror", *files)
    try:
        yield name, files
    finally:
        subprocess.run(["zpool", "destroy", "-f", name], env=ENV, capture_output=True,
                       timeout=120)
        left = subprocess.run(["zpool", "list", "-H", "-o", "name"], env=ENV,
                              capture_output=True, text=True, timeout=60).stdout.split()
        assert name not in left, f"pool {name} could not be destroyed"


CONFIG = BASE_CONFIG + """
[events]
sources = system-state life-preserver

[source:system-state]
interval = 1
heartbeat = 600

[source:life-preserver]
backend = zfs
interval = 1
"""


def wait_event(client, frame_name, predicate, timeout=30):
    """The first ``frame_name`` event whose args satisfy ``predicate``."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            frame = client.next_event(frame_name, timeout=max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            break
        seen.append(frame["args"])
        if predicate(frame["args"]):
            return frame
    raise AssertionError(f"no matching {frame_name} event in {timeout} s; saw {seen[-5:]}")


def subscribe(daemon, names):
    client = Client(daemon.url)
    assert client.login("admin", "admin-secret-pw")["name"] == "response"
    reply = client.call("events", "subscribe", names)
    assert reply["name"] == "response", reply
    return client


def test_pool_health_and_snapshots_on_real_zfs(make_daemon, pool):
    name, files = pool
    daemon = make_daemon(CONFIG, ticker=False, start=False)
    daemon.add_user("admin", "admin-secret-pw", "full")
    daemon.start()
    # The snapshot baseline must be taken before our snapshot, or it is part of it.
    daemon.wait_for_log(r"life-preserver: \d+ snapshots now", timeout=30)
    client = subscribe(daemon, ["system-state", "life-preserver"])
    try:
        frame = wait_event(client, "system_state", lambda a: name in a["zpools"])
        assert frame["namespace"] == "events"
        state = frame["args"]
        ours = state["zpools"][name]
        assert ours["health"] == "ONLINE"
        assert ours["priority"] == "0 - Information"
        assert set(ours) == {"size", "alloc", "free", "frag", "expandsz", "dedup", "altroot",
                             "capacity", "health", "priority"}
        assert ours["frag"] == "-"  # zfs-fuse's zpool has the older column set
        assert state["hostname"]
        if list(state["zpools"]) == [name]:
            assert state["priority"] == "0 - Information"

        run("zfs", "snapshot", f"{name}@sadtest-snap")
        frame = wait_event(client, "life_preserver", lambda a: name in a["message"])
        assert frame["args"] == {
            "message": f"New snapshot of {name}: sadtest-snap",
            "priority": "1 - Information",
            "class": "snapshot",
        }

        run("zpool", "offline", name, files[1])
        frame = wait_event(
            client, "system_state", lambda a: a["zpools"].get(name, {}).get("health") != "ONLINE"
        )
        ours = frame["args"]["zpools"][name]
        assert ours["health"] == "DEGRADED"
        assert ours["priority"] == "9 - Urgent"
        assert frame["args"]["priority"] == "9 - Urgent"

        run("zfs", "destroy", f"{name}@sadtest-snap")
        frame = wait_event(client, "life_preserver", lambda a: name in a["message"])
        assert frame["args"]["message"] == f"Destroyed snapshot of {name}: sadtest-snap"
    finally:
        client.close()
    # A new subscriber gets the current (cached) state at once.
    late = subscribe(daemon, ["system-state"])
    try:
        frame = late.next_event("system_state", timeout=5)
        assert frame["args"]["zpools"][name]["health"] == "DEGRADED"
    finally:
        late.close()
    assert "Traceback" not in daemon.log_text()


def test_snapshots_taken_while_the_daemon_was_down_are_reported(make_daemon, pool):
    name, _ = pool
    daemon = make_daemon(CONFIG, ticker=False, start=False)
    daemon.add_user("admin", "admin-secret-pw", "full")
    daemon.start()
    daemon.wait_for_log(r"life-preserver: \d+ snapshots now", timeout=30)
    daemon.stop()
    run("zfs", "snapshot", f"{name}@while-down")
    daemon.start()
    client = subscribe(daemon, ["life-preserver"])
    try:
        frame = wait_event(client, "life_preserver", lambda a: name in a["message"])
        assert frame["args"]["message"] == f"New snapshot of {name}: while-down"
    finally:
        client.close()


def test_without_zfs_the_state_has_no_pools_and_the_log_says_why(make_daemon, tmp_path):
    config = BASE_CONFIG + f"""
[events]
sources = system-state

[source:system-state]
zpool_command = {tmp_path}/no-such-zpool
"""
    daemon = make_daemon(config, ticker=False, start=False)
    daemon.add_user("admin", "admin-secret-pw", "full")
    daemon.start()
    client = subscribe(daemon, ["system-state"])
    try:
        frame = client.next_event("system_state", timeout=15)
        assert frame["args"]["zpools"] == {}
        assert frame["args"]["priority"] == "0 - Information"
        assert frame["args"]["hostname"]
    finally:
        client.close()
    daemon.wait_for_log(r"system-state: no ZFS on this machine, reporting no pools: .*no-such-zpool")
