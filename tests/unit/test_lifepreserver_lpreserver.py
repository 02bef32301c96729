"""The lpreserver backend on real log files being appended, with a task.Clock."""

import json
import shutil

import pytest
from twisted.internet import task

from sysadmd.lifepreserver.lpreserver import LpreserverBackend

D = "Fri Nov 27 10:00:00 UTC 2026"


def info(message, kind):
    return {"message": message, "priority": "1 - Information", "class": kind}


def progress(message):
    return {"message": message, "priority": "0 - Information", "class": "replication"}


class Setup:
    """A log directory, a state file, a clock, and backends made on demand."""

    def __init__(self, tmp_path):
        self.dir = tmp_path / "lpreserver"
        self.dir.mkdir()
        self.log = self.dir / "lpreserver.log"
        self.errors = self.dir / "error.log"
        self.send_log = self.dir / "lastrep-send-log"
        self.state = tmp_path / "state.json"
        self.clock = task.Clock()
        self.events = []
        self.backend = None

    def start(self, **kwargs):
        self.backend = LpreserverBackend(
            self.clock, self.events.append, str(self.dir), str(self.state), **kwargs
        )
        self.backend.start()
        return self.backend

    def append(self, path, text):
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)

    def write(self, *messages, path=None):
        self.append(path or self.log, "".join(f"{D}: {m}\n" for m in messages))

    def tick(self, seconds=1):
        self.clock.advance(seconds)

    def messages(self):
        return [e["message"] for e in self.events]


@pytest.fixture
def lp(tmp_path):
    setup = Setup(tmp_path)
    yield setup
    if setup.backend is not None:
        setup.backend.stop()


def test_every_mapping_from_an_appended_log(lp):
    lp.write("Creating snapshot on tank/old")  # before the first start: history
    lp.start()
    assert lp.events == []
    lp.write(
        "Creating snapshot on tank/data",
        f"Starting replication SYNC task on tank/data: {lp.send_log}",
        "Finished replication task on tank/data -> backup.example.org",
        f"Starting replication SCHEDULED task on tank/data: {lp.send_log}",
        "FAILED replication task on tank/data -> backup.example.org: LOGFILE: /x/failed.log",
        "Rotate Logfile",
    )
    lp.tick()
    assert lp.events == [
        info("New snapshot of tank/data", "snapshot"),
        info("Starting replication for tank/data", "replication"),
        info("Finished replication for tank/data to backup.example.org", "replication"),
        info("Starting replication for tank/data", "replication"),
        {
            "message": "Replication failed for tank/data to backup.example.org; "
                       "log file: /x/failed.log",
            "priority": "7 - Critical",
            "class": "replication",
        },
    ]


def test_error_log_is_followed_too(lp):
    lp.start()
    lp.write("zfs send failed on tank/data", path=lp.errors)
    lp.tick()
    assert lp.events == [
        {"message": "Life Preserver error: zfs send failed on tank/data",
         "priority": "6 - Critical", "class": "replication"}
    ]


def test_partial_lines_wait_until_complete(lp):
    lp.start()
    lp.append(lp.log, f"{D}: Creating snap")
    lp.tick()
    assert lp.events == []
    lp.append(lp.log, "shot on tank/a\n")
    lp.tick()
    assert lp.messages() == ["New snapshot of tank/a"]


def test_rotation_is_followed_without_loss(lp):
    lp.write("Creating snapshot on tank/a")
    lp.start()
    lp.write("Creating snapshot on tank/b")
    # lpreserver's rotation happens between two polls: copy, truncate, "Rotate Logfile".
    shutil.copy(lp.log, str(lp.log) + ".old")
    lp.log.write_text("")
    lp.write("Rotate Logfile", "Creating snapshot on tank/c")
    lp.tick()
    lp.write("Creating snapshot on tank/d")
    lp.tick()
    assert lp.messages() == [
        "New snapshot of tank/b", "New snapshot of tank/c", "New snapshot of tank/d"
    ]


def test_restart_neither_replays_nor_loses(lp):
    lp.start()
    lp.write("Creating snapshot on tank/1")
    lp.tick()
    lp.backend.stop()
    # Written while the daemon was down, in order:
    lp.write("Creating snapshot on tank/2", "Creating snapshot on tank/3")
    lp.start()
    assert lp.messages() == [
        "New snapshot of tank/1", "New snapshot of tank/2", "New snapshot of tank/3"
    ]
    lp.tick(5)
    assert len(lp.events) == 3


def test_restart_after_a_crash_uses_the_last_saved_position(lp):
    lp.start()
    lp.write("Creating snapshot on tank/1")
    lp.tick()
    saved = json.loads(lp.state.read_text())
    lp.backend._loop.stop()  # "crash": no stop(), no final save
    lp.write("Creating snapshot on tank/2")
    lp.state.write_text(json.dumps(saved))
    lp.start()
    assert lp.messages() == ["New snapshot of tank/1", "New snapshot of tank/2"]


def test_rotation_while_down_loses_nothing(lp):
    lp.start()
    lp.write("Creating snapshot on tank/1")
    lp.tick()
    lp.backend.stop()
    lp.write("Creating snapshot on tank/2")
    shutil.copy(lp.log, str(lp.log) + ".old")
    lp.log.write_text("")
    lp.write("Rotate Logfile", "Creating snapshot on tank/3")
    lp.start()
    assert lp.messages() == [
        "New snapshot of tank/1", "New snapshot of tank/2", "New snapshot of tank/3"
    ]


def test_a_different_log_dir_starts_afresh(lp, tmp_path):
    lp.start()
    lp.write("Creating snapshot on tank/1")
    lp.tick()
    lp.backend.stop()
    state = json.loads(lp.state.read_text())
    state["log_dir"] = str(tmp_path / "elsewhere")
    lp.state.write_text(json.dumps(state))
    lp.write("Creating snapshot on tank/2")
    lp.start()
    assert lp.messages() == ["New snapshot of tank/1"], "no state for this dir: skip history"


def test_replication_progress_on_change_at_most_once_per_second(lp):
    lp.send_log.write_text("stale content of the previous replication\n10:00:00 9G tank/x\n")
    lp.start(poll_interval=0.25)
    lp.write(f"Starting replication SYNC task on tank/data: {lp.send_log}")
    lp.tick(0.25)
    assert lp.messages() == ["Starting replication for tank/data"]
    # zfs send rewrites the send log.
    lp.send_log.write_text("full send of tank/data@a estimated size is 1.00G\n"
                           "TIME        SENT   SNAPSHOT\n")
    lp.tick(0.25)
    lp.append(lp.send_log, "10:00:06   100M   tank/data@a\n")
    lp.tick(0.25)
    assert lp.messages()[-1] == "Replicating tank/data: 100M/1.00G (9.7%)"
    # Two changes within the same second: only the latest is published, when it is over.
    lp.append(lp.send_log, "10:00:07   200M   tank/data@a\n")
    lp.tick(0.25)
    lp.append(lp.send_log, "10:00:08   300M   tank/data@a\n")
    lp.tick(0.25)
    assert len(lp.events) == 2
    lp.tick(0.5)
    assert lp.events[-1] == progress("Replicating tank/data: 300M/1.00G (29.2%)")
    assert len(lp.events) == 3
    # No change: nothing.
    lp.append(lp.send_log, "10:00:09   300M   tank/data@a\n")
    lp.tick(2)
    assert len(lp.events) == 3
    lp.write("Finished replication task on tank/data -> b")
    lp.append(lp.send_log, "10:00:10   400M   tank/data@a\n")
    lp.tick(2)
    assert lp.messages()[3:] == ["Finished replication for tank/data to b"]
    assert all("9G" not in m for m in lp.messages()), "stale send log content was read"


def test_a_pending_progress_is_dropped_when_the_replication_ends(lp):
    lp.start(poll_interval=0.25)
    lp.send_log.write_text("")
    lp.write(f"Starting replication SYNC task on tank/data: {lp.send_log}")
    lp.tick(0.25)
    lp.append(lp.send_log, "10:00:06   1M   tank/data@a\n")
    lp.tick(0.25)  # published at 0.5 s
    lp.append(lp.send_log, "10:00:07   2M   tank/data@a\n")
    lp.tick(0.25)  # held until 1.5 s
    lp.write("FAILED replication task on tank/data -> b: LOGFILE: /f")
    lp.tick(0.25)
    lp.tick(3)
    assert lp.messages() == [
        "Starting replication for tank/data",
        "Replicating tank/data: 1M/??",
        "Replication failed for tank/data to b; log file: /f",
    ]
    assert lp.clock.getDelayedCalls() == [lp.backend._loop.call]


def test_a_running_replication_survives_a_restart(lp):
    lp.start()
    lp.send_log.write_text("")
    lp.write(f"Starting replication SYNC task on tank/data: {lp.send_log}")
    lp.tick()
    lp.append(lp.send_log, "total estimated size is 4M\n10:00:06   1M   tank/data@a\n")
    lp.tick()
    lp.backend.stop()
    lp.append(lp.send_log, "10:00:07   2M   tank/data@a\n")
    lp.start()
    assert lp.messages() == [
        "Starting replication for tank/data",
        "Replicating tank/data: 1M/4M (25%)",
        "Replicating tank/data: 2M/4M (50%)",
    ]


def test_an_unwritable_state_file_is_logged_with_backoff_and_events_still_flow(lp, tmp_path):
    from twisted.logger import capturedLogs

    lp.state = tmp_path / "missing-dir" / "state.json"
    with capturedLogs() as logs:
        lp.start()
        for n in range(5):
            lp.write(f"Creating snapshot on tank/{n}")
            lp.tick()
    assert lp.messages() == [f"New snapshot of tank/{n}" for n in range(5)]
    failures = [e["failures"] for e in logs if "saving" in e.get("what", "")]
    assert failures == [1, 2, 4]
