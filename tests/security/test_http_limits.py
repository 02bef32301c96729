"""Issue 13, item 3: plain HTTP connections escaped the per-address limit and exhausted
the daemon's descriptors. 1,200 connections from one address that sent complete headers
then trickled a body one byte at a time stayed open (each byte reset Twisted's timeout),
took every descriptor; new WebSocket clients were refused and an admin's job failed with
"Too many open files"."""

import os
import shutil
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

from tests.integration import harness
from tests.integration.harness import BASE_CONFIG, Client
from tests.security.flood import close_all, flood, http_from, watch, websocket_from

TRICKLER = (
    b"POST /rpc/identify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000\r\n\r\n{"
)
HEALTH = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def server_config(**keys):
    """BASE_CONFIG with more [server] keys, and a listen backlog long enough that the
    kernel does not hold the flood's connects back for a SYN retry (the test measures
    the daemon, not Twisted's default backlog of 50)."""
    lines = "".join(f"{key} = {value}\n" for key, value in keys.items())
    config = BASE_CONFIG.replace("ping_interval = 0\n", "ping_interval = 0\n" + lines)
    return config.replace("interface=127.0.0.1", "interface=127.0.0.1:backlog=2048")


def test_trickling_http_connections_are_limited_per_address_and_timed_out(make_daemon):
    """1,200 trickling HTTP connections from 127.0.0.2: at most max_connections_per_ip
    (256) are held, the rest are refused at once (503, or closed); each held one is
    dropped http_request_timeout (2 s) after it connected however steadily it trickles;
    meanwhile a WebSocket client from 127.0.0.3 connects and is answered."""
    daemon = make_daemon(server_config(http_request_timeout=2), ticker=False)
    started = time.monotonic()
    outcomes = flood("127.0.0.2", daemon, 1200, TRICKLER)
    flood_seconds = time.monotonic() - started
    assert len(outcomes) == 1200 and flood_seconds < 1.5, flood_seconds

    # While they trickle: another address is served; the flooding one is not.
    other = websocket_from("127.0.0.3", daemon)
    assert other.call("rpc", "identify")["name"] == "response"
    # Refused with a 503, or (its 8 answered refusals in use) closed without an answer.
    with pytest.raises((InvalidStatus, InvalidMessage, ConnectionClosed, OSError)) as refused:
        websocket_from("127.0.0.2", daemon)
    if isinstance(refused.value, InvalidStatus):  # else closed unanswered: refusals full
        assert refused.value.response.status_code == 503

    watch(outcomes, seconds=8, trickle_every=0.2)
    held = [o for o in outcomes if not o.answer and o.closed_after is not None and o.closed_after >= 1.5]
    refused = [o for o in outcomes if o not in held]
    close_all(outcomes)
    print(f"\nflood: 1200 connections in {flood_seconds:.2f} s; held {len(held)}, "
          f"refused {len(refused)} ({sum(o.refused_503 for o in refused)} with a 503); held "
          f"ones dropped after {min(o.closed_after for o in held):.2f}-"
          f"{max(o.closed_after for o in held):.2f} s")
    assert len(held) == 256
    assert all(o.closed_after < 4 for o in held)  # 2 s, not reset by the trickle
    assert all(o.closed_after is not None and o.closed_after < 3.5 for o in refused)
    assert all(o.refused_503 or not o.answer for o in refused)
    assert sum(o.refused_503 for o in refused) >= 8

    # The address's places are free again; the other client never noticed.
    assert other.call("rpc", "identify")["name"] == "response"
    late = websocket_from("127.0.0.2", daemon)
    assert late.call("rpc", "identify")["name"] == "response"
    for client in (other, late):
        client.close()
    daemon.wait_for_log("HTTP request not complete within 2")
    daemon.wait_for_log("too many connections from this address")
    assert "Too many open files" not in daemon.log_text()


def limited_twistd(tmp_path, descriptors):
    """A wrapper running twistd under ``prlimit --nofile=N:N`` (soft and hard)."""
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        pytest.skip("prlimit (util-linux) is not installed")
    wrapper = tmp_path / "limited-twistd"
    wrapper.write_text(
        f'#!/bin/sh\nexec {prlimit} --nofile={descriptors}:{descriptors} {harness.TWISTD} "$@"\n'
    )
    os.chmod(wrapper, 0o755)
    return str(wrapper)


def test_at_the_connection_cap_jobs_still_start_and_health_still_answers(tmp_path, monkeypatch, make_daemon):
    """The daemon under a 464-descriptor limit (so a cap of 464 - 320 reserved = 144
    connections) flooded from four addresses with connections that hold on: no more than
    the cap are held, the rest are closed at once (accept never meets EMFILE); an admin
    connected before still starts a job that succeeds, and a new GET /health from
    another address is answered."""
    monkeypatch.setattr(harness, "TWISTD", limited_twistd(tmp_path, 464))
    config = server_config(http_request_timeout=60, handshake_timeout=60, max_connections_per_ip=60)
    daemon = make_daemon(config, ticker=False, start=False)
    daemon.add_user("admin", "admin-secret-pw", "full")
    daemon.start()
    daemon.wait_for_log(r"client connections capped at 144 \(464 file descriptors, 320 reserved\)")
    admin = Client(daemon.url)
    assert admin.login("admin", "admin-secret-pw")["name"] == "response"

    outcomes = []
    for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"):
        outcomes += flood(source, daemon, 60, TRICKLER)
    watch(outcomes, seconds=2)
    held = [o for o in outcomes if o.closed_after is None]
    print(f"\nat the cap: {len(outcomes)} flood connections, {len(held)} held, "
          f"{len(outcomes) - len(held)} closed")
    # The admin holds one place; the flood's connections that got a place kept back for
    # /health were answered 503 on their request line.
    assert 144 - 1 - 8 <= len(held) <= 144 - 1
    assert not any(o.answer for o in held)

    try:
        # A job needs descriptors (pipes) the flood could not take.
        reply = admin.call("rpc", "dispatcher", {"action": "run", "reserve": "echo reserve-ok"})
        assert reply["name"] == "response", reply
        deadline = time.monotonic() + 20
        while True:
            log = admin.call("rpc", "dispatcher", {"action": "log", "job_id": "reserve"})
            if log["name"] == "response" and log["args"]["state"] == "finished":
                break
            assert time.monotonic() < deadline, log
            time.sleep(0.1)
        assert log["args"]["echo reserve-ok"] == "reserve-ok\n"
        assert log["args"]["return_codes/echo reserve-ok"] == "0"

        # Monitoring still gets /health through a place kept back for it...
        status, answer = http_from("127.0.0.9", daemon, HEALTH)
        assert status == 200 and b'"status": "ok"' in answer
        # ...which serves nothing else.
        status, _ = http_from("127.0.0.9", daemon, HEALTH.replace(b"/health", b"/metrics"))
        assert status == 503
        # A new WebSocket client is turned away, not left hanging.
        with pytest.raises((InvalidStatus, InvalidMessage, ConnectionClosed, OSError)):
            websocket_from("127.0.0.10", daemon, open_timeout=5)
    finally:
        close_all(outcomes)
        admin.close()
    text = daemon.log_text()
    assert "Too many open files" not in text and "EMFILE" not in text
    assert "the daemon is at its connection limit" in text
