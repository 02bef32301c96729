"""Numbered events and resuming, against the real daemon under twistd: across a kill -9
and a restart, across a reconnect through a real bridge, and the gap when the events are
gone."""

import json
import os
import signal

from tests.integration.harness import BASE_CONFIG, Client
from tests.integration.test_bridge import clients_of, running_network

TICKER = BASE_CONFIG + """
[events]
sources = ticker dispatcher
retain_events = {retain}

[source:ticker]
interval = 0.05
replay = no
"""


def signed_in(daemon):
    """A client signed in as admin."""
    client = Client(daemon.url)
    assert client.login("admin", "admin-secret-pw")["name"] == "response"
    return client


def numbered(client, name, count, timeout=10):
    """The next ``count`` events ``name`` (frames with seq and epoch)."""
    frames = [client.next_event(name, timeout) for _ in range(count)]
    for frame in frames:
        assert isinstance(frame["seq"], int) and isinstance(frame["epoch"], str), frame
    return frames


def test_a_client_resumes_after_kill_9_and_a_restart_with_no_loss(make_daemon):
    """The daemon is killed with SIGKILL right after an event; restarted on the same state,
    it keeps the epoch and goes on numbering; a client that resumes from the last event it
    saw gets every event published since, once each, in order, then live ones."""
    daemon = make_daemon(config=TICKER.replace("{retain}", "10000"), start=False)
    daemon.add_user("admin", "admin-secret-pw")
    daemon.start()
    client = signed_in(daemon)
    assert client.call("events", "subscribe", ["ticker"])["name"] == "response"
    seen = numbered(client, "ticker", 5)
    assert [f["seq"] for f in seen] == list(range(seen[0]["seq"], seen[0]["seq"] + 5))
    last, epoch = seen[-1]["seq"], seen[-1]["epoch"]
    daemon.stop(signal.SIGKILL)
    client.close()
    daemon.start()
    # Events published after the restart, before the client is back.
    daemon.wait_for_log(r"event source ticker started")
    again = signed_in(daemon)
    reply = again.call("events", "subscribe", [{"name": "ticker", "since": last, "epoch": epoch}])
    assert reply["args"] == {"subscribe": ["ticker"]}, reply
    resumed = numbered(again, "ticker", 30)
    seqs = [f["seq"] for f in resumed]
    # Everything after the last seen: kept through the kill (each written before it was
    # sent), then the restarted daemon's own, numbered on.
    assert seqs == list(range(last + 1, last + 31)), seqs
    assert {f["epoch"] for f in resumed} == {epoch}
    assert not [f for f in again.events if f.get("name") == "gap"]
    again.close()


def test_an_expired_position_gets_a_gap_then_live_events(make_daemon):
    """With only 5 events kept, resuming from an old position gets one gap (expired) that
    says what is left, then live events; a wrong epoch gets epoch_changed."""
    daemon = make_daemon(config=TICKER.replace("{retain}", "5"), start=False)
    daemon.add_user("admin", "admin-secret-pw")
    daemon.start()
    client = signed_in(daemon)
    client.call("events", "subscribe", ["ticker"])
    first = numbered(client, "ticker", 20)
    client.close()
    again = signed_in(daemon)
    old = first[0]
    again.call("events", "subscribe", [{"name": "ticker", "since": old["seq"], "epoch": old["epoch"]}])
    gap = again.next_event("gap")
    args = gap["args"]
    assert args["source"] == "ticker" and args["reason"] == "expired" and args["epoch"] == old["epoch"]
    assert args["missed_from"] == old["seq"] + 1
    assert args["head"] - args["first_available"] == 4  # 5 kept
    assert args["first_available"] > old["seq"] + 1
    live = numbered(again, "ticker", 3)
    assert all(f["seq"] > args["head"] for f in live)
    again.call("events", "unsubscribe", ["ticker"])
    again.call("events", "subscribe", [{"name": "ticker", "since": 3, "epoch": "0123456789abcdef"}])
    changed = again.next_event("gap")["args"]
    assert changed["reason"] == "epoch_changed" and changed["epoch"] == old["epoch"]
    again.close()


def test_the_log_file_is_private_and_holds_what_was_sent(make_daemon):
    """events/<source>.log in the state directory is mode 0600 (directory 0700) and its
    lines are the frames clients got."""
    daemon = make_daemon(config=TICKER.replace("{retain}", "100"), start=False)
    daemon.add_user("admin", "admin-secret-pw")
    daemon.start()
    client = signed_in(daemon)
    client.call("events", "subscribe", ["ticker"])
    [frame] = numbered(client, "ticker", 1)
    client.close()
    path = os.path.join(daemon.state_dir, "events", "ticker.log")
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    stored = {int(line.split(b" ", 2)[0]): json.loads(line.split(b" ", 2)[2]) for line in lines[1:] if line}
    assert stored[frame["seq"]] == frame


def test_resuming_through_the_bridge_after_a_reconnect(tmp_path):
    """A client relayed by a real bridge sees seq and epoch unchanged, leaves the bridge,
    comes back on a new connection and resumes from its last event: every event after it,
    in order, none twice."""
    with running_network(tmp_path) as net, clients_of(net):
        c1 = net.client(net.key1, expect=2)
        c2 = net.client(net.key2, expect=1)
        [a_id] = c2.available
        login = {"username": "alice", "password": "alice-secret-pw"}
        assert c1.call(a_id, "rpc", "auth", login)["name"] == "response"
        assert c1.call(a_id, "events", "subscribe", ["ticker"])["name"] == "response"
        seen = [c1.next_event(a_id, "ticker") for _ in range(3)]
        last = seen[-1]
        assert isinstance(last["seq"], int) and isinstance(last["epoch"], str), last
        c1.close()
        back = net.client(net.key1, expect=2)
        assert back.call(a_id, "rpc", "auth", login)["name"] == "response"
        reply = back.call(a_id, "events", "subscribe",
                          [{"name": "ticker", "since": last["seq"], "epoch": last["epoch"]}])
        assert reply["name"] == "response", reply
        resumed = [back.next_event(a_id, "ticker") for _ in range(10)]
        assert [f["seq"] for f in resumed] == list(range(last["seq"] + 1, last["seq"] + 11))
        assert {f["epoch"] for f in resumed} == {last["epoch"]}
