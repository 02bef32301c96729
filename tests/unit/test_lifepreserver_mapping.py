"""Life Preserver log lines -> events, and replication progress from a send log."""

import pytest

from sysadmd.lifepreserver.mapping import NOTHING, map_line, message_of
from sysadmd.lifepreserver.progress import ReplicationProgress, percent_text, size_in_bytes

SNAP = "Fri Nov 27 10:00:00 UTC 2026: Creating snapshot on tank/data"
SYNC = ("Fri Nov 27 10:00:05 UTC 2026: Starting replication SYNC task on tank/data: "
        "/var/log/lpreserver/lastrep-send-log")
SCHED = ("Fri Nov 27 10:00:05 UTC 2026: Starting replication SCHEDULED task on tank/data: "
         "/var/log/lpreserver/lastrep-send-log")
DONE = "Fri Nov 27 10:05:00 UTC 2026: Finished replication task on tank/data -> backup.example.org"
FAIL = ("Fri Nov 27 10:05:00 UTC 2026: FAILED replication task on tank/data -> "
        "backup.example.org: LOGFILE: /var/log/lpreserver/lpreserver_failed.log")
ROTATE = "Fri Nov 27 10:00:00 UTC 2026: Rotate Logfile"


def test_message_of_strips_the_date():
    assert message_of(SNAP) == "Creating snapshot on tank/data"
    assert message_of("Fri Nov  6 09:00:00 2026: Creating snapshot on a") == (
        "Creating snapshot on a"
    )
    assert message_of("no date here") == "no date here"


def test_creating_snapshot():
    mapped = map_line(SNAP)
    assert mapped.event == {
        "message": "New snapshot of tank/data", "priority": "1 - Information", "class": "snapshot"
    }
    assert mapped.replication is None


@pytest.mark.parametrize("line", [SYNC, SCHED])
def test_starting_replication_names_the_send_log(line):
    mapped = map_line(line)
    assert mapped.event == {
        "message": "Starting replication for tank/data",
        "priority": "1 - Information",
        "class": "replication",
    }
    assert mapped.replication == ("start", "tank/data", "/var/log/lpreserver/lastrep-send-log")


def test_finished_replication():
    mapped = map_line(DONE)
    assert mapped.event == {
        "message": "Finished replication for tank/data to backup.example.org",
        "priority": "1 - Information",
        "class": "replication",
    }
    assert mapped.replication == ("end",)


def test_failed_replication_is_critical_with_its_log_file():
    mapped = map_line(FAIL)
    assert mapped.event == {
        "message": "Replication failed for tank/data to backup.example.org; "
                   "log file: /var/log/lpreserver/lpreserver_failed.log",
        "priority": "7 - Critical",
        "class": "replication",
    }
    assert mapped.replication == ("end",)


@pytest.mark.parametrize("line", [ROTATE, "", "   ", "Fri Nov 27 10:00:00 UTC 2026: something else"])
def test_other_lines_are_not_events(line):
    assert map_line(line) == NOTHING


def test_error_log_lines_are_errors_unless_they_map():
    mapped = map_line("Fri Nov 27 10:00:00 UTC 2026: Could not create snapshot on tank",
                      error_log=True)
    assert mapped.event == {
        "message": "Life Preserver error: Could not create snapshot on tank",
        "priority": "6 - Critical",
        "class": "snapshot",
    }
    assert map_line("ssh: connect to host b: refused", error_log=True).event["class"] == (
        "replication"
    )
    assert map_line(FAIL, error_log=True).event["priority"] == "7 - Critical"
    assert map_line(ROTATE, error_log=True) == NOTHING


@pytest.mark.parametrize(
    "text,value",
    [("1024", 1024.0), ("1K", 1024.0), ("1.5M", 1.5 * 2**20), ("2G", 2.0 * 2**30),
     ("1.00T", 2.0**40), ("3k", 3072.0), ("1.2GB", 1.2 * 2**30), ("x", None), ("-", None)],
)
def test_sizes(text, value):
    assert size_in_bytes(text) == value


def test_percent_is_cut_to_one_decimal_like_the_original():
    assert percent_text(1, 3) == "33.3%"
    assert percent_text(2, 3) == "66.6%"
    assert percent_text(1, 2) == "50%"
    assert percent_text(0, 5) == "0%"


def test_progress_only_when_the_figure_changes():
    progress = ReplicationProgress("tank/data")
    lines = [
        "full send of tank/data@auto-1 estimated size is 1.00G",
        "TIME        SENT   SNAPSHOT",
        "10:00:06   256M   tank/data@auto-1",
        "10:00:07   256M   tank/data@auto-1",
        "10:00:08   512M   tank/data@auto-1",
    ]
    assert [progress.feed(line) for line in lines] == [
        None,
        None,
        "Replicating tank/data: 256M/1.00G (25%)",
        None,
        "Replicating tank/data: 512M/1.00G (50%)",
    ]


def test_total_estimate_wins_over_per_snapshot_estimates():
    progress = ReplicationProgress("tank")
    progress.feed("send from @a to tank@b estimated size is 100M")
    progress.feed("total estimated size is 400M")
    progress.feed("send from @b to tank@c estimated size is 300M")
    assert progress.feed("10:00:06\t100M\ttank@b") == "Replicating tank: 100M/400M (25%)"


def test_progress_without_estimate():
    progress = ReplicationProgress("tank")
    assert progress.feed("warning: cannot send 'tank@x': something") is None
    assert progress.feed("10:00:06 1.03M tank@x") == "Replicating tank: 1.03M/??"
