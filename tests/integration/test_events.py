"""The events namespace against the real daemon, with an out-of-tree plugin."""

import json
import socket
import time

from tests.integration.harness import BASE_CONFIG, Client


def test_subscribe_reply_names_every_requested_source(admin):
    reply = admin.call("events", "subscribe", ["ticker"], request_id="s1")
    assert reply == {"namespace": "events", "name": "response", "id": "s1",
                     "args": {"subscribe": ["ticker"]}}
    reply = admin.call("events", "subscribe", "ticker", request_id="s2")
    assert reply["args"] == {"subscribe": ["ticker"]}
    reply = admin.call("events", "unsubscribe", ["ticker"], request_id="u1")
    assert reply == {"namespace": "events", "name": "response", "id": "u1",
                     "args": {"unsubscribe": ["ticker"]}}


def test_out_of_tree_plugin_events_arrive(admin):
    admin.call("events", "subscribe", ["ticker"])
    first = admin.next_event("ticker")
    second = admin.next_event("ticker")
    assert first["namespace"] == "events"
    assert first["id"] == "none"
    assert second["args"]["n"] > first["args"]["n"]


def test_unknown_source_is_400_and_changes_nothing(admin):
    reply = admin.call("events", "subscribe", ["ticker", "no-such-source"])
    assert reply["namespace"] == "error"
    assert reply["args"]["code"] == 400
    assert "no-such-source" in reply["args"]["details"]
    # Nothing changed: no ticker events arrive.
    time.sleep(0.6)
    assert admin.call("rpc", "identify", {})["name"] == "response"
    assert [e for e in admin.events if e.get("name") == "ticker"] == []


def test_bad_subscribe_args_are_400(admin):
    for args in ({}, [], [1, 2], None, 5):
        reply = admin.call("events", "subscribe", args)
        assert reply["args"]["code"] == 400, args


def test_unsubscribe_stops_events(admin):
    admin.call("events", "subscribe", ["ticker"])
    admin.next_event("ticker")
    admin.call("events", "unsubscribe", ["ticker"])
    admin.events.clear()
    time.sleep(0.8)
    admin.call("rpc", "identify", {})
    assert [e for e in admin.events if e.get("name") == "ticker"] == []


def test_new_subscriber_gets_the_cached_event_right_after_the_reply(daemon, admin):
    admin.call("events", "subscribe", ["ticker"])
    admin.next_event("ticker")  # the source has published at least once
    late = Client(daemon.url)
    late.login("viewer", "viewer-secret-pw")
    late.send({"namespace": "events", "name": "subscribe", "id": "late", "args": ["ticker"]})
    reply = late.recv()
    assert reply["id"] == "late" and reply["name"] == "response"
    replayed = late.recv()
    assert replayed["name"] == "ticker"
    assert replayed["args"]["n"] >= 1
    late.close()


def test_no_replay_when_the_source_does_not_cache(make_daemon):
    config = BASE_CONFIG + "\n[source:ticker]\nreplay = no\ninterval = 0.2\n"
    d = make_daemon(config, start=False)
    d.add_user("admin", "admin-secret-pw")
    d.start()
    watcher = Client(d.url)
    watcher.login("admin", "admin-secret-pw")
    watcher.call("events", "subscribe", ["ticker"])
    watcher.next_event("ticker")
    late = Client(d.url)
    late.login("admin", "admin-secret-pw")
    sent = time.monotonic()
    late.call("events", "subscribe", ["ticker"])
    event = late.next_event("ticker")
    # The first event comes from the timer (every 0.2 s), not from a replay.
    assert time.monotonic() - sent > 0.05 or event["args"]["n"] > 1
    watcher.close()
    late.close()


def _stalled_subscriber(url, user, password):
    """A raw-socket WebSocket client that authenticates, subscribes, then never reads."""
    host, port = url.split("//")[1].split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        (f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n").encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert b" 101 " in response

    def frame(text):
        data = text.encode()
        mask = b"\x01\x02\x03\x04"
        header = bytes([0x81])
        if len(data) < 126:
            header += bytes([0x80 | len(data)])
        else:
            header += bytes([0x80 | 126]) + len(data).to_bytes(2, "big")
        return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))

    sock.sendall(frame('{"namespace":"rpc","name":"auth","id":1,"args":{"username":"%s","password":"%s"}}'
                       % (user, password)))
    time.sleep(1.0)  # Argon2 check
    sock.sendall(frame('{"namespace":"events","name":"subscribe","id":2,"args":["ticker"]}'))
    return sock


def _rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0])


FAST_TICKER = "\n[source:ticker]\ninterval = 0.01\nburst = 20\nsize = 4000\n[events]\nsubscriber_buffer_bytes = 262144\n"


def test_stalled_subscriber_is_bounded_and_others_keep_receiving(make_daemon):
    d = make_daemon(BASE_CONFIG + FAST_TICKER, start=False)
    d.add_user("admin", "admin-secret-pw")
    d.start()
    stalled = _stalled_subscriber(d.url, "admin", "admin-secret-pw")
    healthy = Client(d.url)
    healthy.login("admin", "admin-secret-pw")
    healthy.call("events", "subscribe", ["ticker"])
    rss_before = _rss_kib(d.process.pid)
    # Up to ~8 MB/s of events for 6 s: beyond the kernel's socket buffers and far beyond
    # the stalled client's 256 KiB buffer.
    last = healthy.next_event("ticker")["args"]["n"]
    first = last
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        n = healthy.next_event("ticker")["args"]["n"]
        assert n == last + 1, "the healthy subscriber missed events"
        last = n
    produced_kib = (last - first) * 4
    growth_kib = _rss_kib(d.process.pid) - rss_before
    assert produced_kib > 8 * 1024, "the ticker produced too little to test anything"
    assert growth_kib < 16 * 1024, f"daemon grew {growth_kib} KiB while {produced_kib} KiB were published"
    # The stalled client was not allowed to grow the daemon: its events were dropped,
    # and once it reads again a gap names the seqs it lost.
    stalled.settimeout(10)
    window = b""
    deadline = time.monotonic() + 20
    while b'"name":"gap"' not in window and time.monotonic() < deadline:
        chunk = stalled.recv(1 << 20)
        assert chunk, "connection closed"
        window = window[-400:] + chunk  # keep only enough to span a split frame
    assert b'"name":"gap"' in window
    index = window.index(b'"name":"gap"')
    while b"}}" not in window[index:]:
        window += stalled.recv(4096)
    args = json.loads(window[index:].split(b'"args":', 1)[1].split(b"}}", 1)[0] + b"}")
    assert args["reason"] == "overflow" and args["source"] == "ticker"
    assert args["missed_to"] - args["missed_from"] + 1 > 100
    stalled.close()
    healthy.close()


def test_stalled_subscriber_is_disconnected_with_1008_when_configured(make_daemon):
    config = BASE_CONFIG + FAST_TICKER.replace(
        "subscriber_buffer_bytes", "slow_subscriber = disconnect\nsubscriber_buffer_bytes"
    )
    d = make_daemon(config, start=False)
    d.add_user("admin", "admin-secret-pw")
    d.start()
    stalled = _stalled_subscriber(d.url, "admin", "admin-secret-pw")
    d.wait_for_log(r"closing slow subscriber 127\.0\.0\.1", timeout=15)
    stalled.settimeout(10)
    received = b""
    while True:
        try:
            chunk = stalled.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        received += chunk
    # The close frame (opcode 8) carries 1008 if it got through before the abort.
    if b"\x88" in received:
        assert b"\x03\xf0" in received[received.rindex(b"\x88"):]
    stalled.close()
