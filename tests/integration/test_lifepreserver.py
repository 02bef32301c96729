"""The life-preserver source's lpreserver backend through the real daemon: lines
appended to a log file in tmp arrive as mapped events; a restart neither replays nor
loses lines."""

import time

from tests.integration.harness import BASE_CONFIG, Client

D = "Fri Nov 27 10:00:00 UTC 2026"


def config(log_dir):
    return BASE_CONFIG + f"""
[events]
sources = life-preserver

[source:life-preserver]
backend = lpreserver
log_dir = {log_dir}
poll_interval = 0.1
"""


def append(path, *messages, raw=None):
    with open(path, "a", encoding="utf-8") as f:
        f.write(raw if raw is not None else "".join(f"{D}: {m}\n" for m in messages))


def subscribe(daemon):
    client = Client(daemon.url)
    assert client.login("admin", "admin-secret-pw")["name"] == "response"
    assert client.call("events", "subscribe", ["life-preserver"])["name"] == "response"
    return client


def events(client, count, timeout=15):
    """The next ``count`` life_preserver event args."""
    deadline = time.monotonic() + timeout
    return [
        client.next_event("life_preserver", timeout=max(0.1, deadline - time.monotonic()))["args"]
        for _ in range(count)
    ]


def no_more_events(client, wait=1.0):
    try:
        frame = client.next_event("life_preserver", timeout=wait)
    except TimeoutError:
        return True
    raise AssertionError(f"unexpected event {frame}")


def test_log_lines_become_events_across_a_restart(make_daemon, tmp_path):
    logs = tmp_path / "lpreserver"
    logs.mkdir()
    log = logs / "lpreserver.log"
    send_log = logs / "lastrep-send-log"
    append(log, "Creating snapshot on tank/history")  # before the first start: skipped
    daemon = make_daemon(config(logs), ticker=False, start=False)
    daemon.add_user("admin", "admin-secret-pw", "full")
    daemon.start()
    daemon.wait_for_log(r"life-preserver: using the lpreserver backend")
    client = subscribe(daemon)
    try:
        append(log, "Creating snapshot on tank/data")
        append(log, raw=f"{D}: Starting replication SYNC task on tank/data: ")  # partial
        time.sleep(0.5)
        append(log, raw=f"{send_log}\n")
        got = events(client, 2)
        assert got == [
            {"message": "New snapshot of tank/data", "priority": "1 - Information",
             "class": "snapshot"},
            {"message": "Starting replication for tank/data", "priority": "1 - Information",
             "class": "replication"},
        ]
        send_log.write_text("full send of tank/data@a estimated size is 4.00M\n"
                            "TIME        SENT   SNAPSHOT\n10:00:06   1.00M   tank/data@a\n")
        assert events(client, 1) == [
            {"message": "Replicating tank/data: 1.00M/4.00M (25%)",
             "priority": "0 - Information", "class": "replication"}
        ]
        append(log, "FAILED replication task on tank/data -> backup.example.org: "
                    "LOGFILE: /var/log/lpreserver/lpreserver_failed.log")
        assert events(client, 1) == [
            {"message": "Replication failed for tank/data to backup.example.org; "
                        "log file: /var/log/lpreserver/lpreserver_failed.log",
             "priority": "7 - Critical", "class": "replication"}
        ]
        no_more_events(client)
    finally:
        client.close()

    daemon.stop()
    append(log, "Creating snapshot on tank/while-down-1", "Creating snapshot on tank/while-down-2")
    daemon.start()
    client = subscribe(daemon)
    try:
        # Emitted at start, before anyone could subscribe: the last one is cached and
        # replayed; nothing from before the stop comes again.
        assert events(client, 1) == [
            {"message": "New snapshot of tank/while-down-2", "priority": "1 - Information",
             "class": "snapshot"}
        ]
        append(log, "Finished replication task on tank/data -> backup.example.org")
        assert events(client, 1)[0]["message"] == (
            "Finished replication for tank/data to backup.example.org"
        )
        no_more_events(client)
    finally:
        client.close()
    assert "Traceback" not in daemon.log_text()
