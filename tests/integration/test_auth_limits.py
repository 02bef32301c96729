"""Abuse limits around authentication, against the real daemon: bans, the failure delay,
the unauthenticated connection's timeout and frame size, and browser origins."""

import json
import statistics
import time
from urllib.parse import urlsplit

import pytest
from websockets.exceptions import InvalidStatus

from tests.integration.harness import Client
from tests.integration.test_auth import FAILED, config, expect_error, granted


def started(make_daemon, **sections):
    """A daemon with ``config(**sections)`` and the users admin (full) and viewer."""
    d = make_daemon(config(**sections), start=False)
    d.add_user("admin", "admin-secret-pw")
    d.add_user("viewer", "viewer-secret-pw", "limited")
    return d.start()


def refused_status(url, **kwargs):
    """The HTTP status of a refused WebSocket handshake."""
    with pytest.raises(InvalidStatus) as refused:
        Client(url, **kwargs)
    return refused.value.response.status_code


def padded_identify(size):
    """An rpc/identify request of exactly ``size`` bytes."""
    frame = {"namespace": "rpc", "name": "identify", "id": "big", "args": {"pad": ""}}
    frame["args"]["pad"] = "x" * (size - len(json.dumps(frame)))
    text = json.dumps(frame)
    assert len(text) == size
    return text


# Bans


def test_five_failures_ban_the_address(make_daemon):
    d = started(make_daemon, auth={"ban_loopback": "yes", "max_failures": 5,
                                   "failure_delay": 0.1})
    c = Client(d.url)
    try:
        for _ in range(4):
            assert expect_error(c.login("admin", "wrong"), 401) == FAILED
        Client(d.url).close()  # four failures: not banned yet
        expect_error(c.login("nobody-here", "wrong"), 401)  # the fifth
        before = time.monotonic()
        expect_error(c.login("admin", "admin-secret-pw"), 429)
        assert time.monotonic() - before < 0.1  # no password check, no delay
        expect_error(c.call("rpc", "auth_token", {"token": "0" * 64}), 429)
        expect_error(c.call("rpc", "auth_ssl", {}), 429)
        expect_error(c.call("rpc", "query"), 401)
        assert refused_status(d.url) == 429
        assert refused_status(d.url) == 429
    finally:
        c.close()
    d.wait_for_log(r"banned 127\.0\.0\.1 after repeated failed logins")
    d.wait_for_log(r"refused connection from banned 127\.0\.0\.1")


def test_a_success_clears_the_failure_count(make_daemon):
    d = started(make_daemon, auth={"ban_loopback": "yes", "max_failures": 3,
                                   "failure_delay": 0.1})
    c = Client(d.url)
    try:
        for _ in range(2):
            expect_error(c.login("admin", "wrong"), 401)
        granted(c.login("admin", "admin-secret-pw"))
        for _ in range(2):
            expect_error(c.login("admin", "wrong"), 401)
        granted(c.login("admin", "admin-secret-pw"))
        Client(d.url).close()
    finally:
        c.close()


def test_loopback_is_not_banned_by_default(make_daemon):
    d = started(make_daemon, auth={"max_failures": 2, "failure_delay": 0.05})
    c = Client(d.url)
    try:
        for _ in range(4):
            expect_error(c.login("admin", "wrong"), 401)
        granted(c.login("admin", "admin-secret-pw"))
        Client(d.url).close()
    finally:
        c.close()


# Timing


def test_wrong_password_and_unknown_user_take_the_same_time(make_daemon):
    d = started(make_daemon, auth={"failure_delay": 0.5})
    c = Client(d.url)
    wrong, unknown = [], []
    try:
        for _ in range(3):
            for times, user in ((unknown, "nobody-here"), (wrong, "admin")):
                before = time.monotonic()
                expect_error(c.login(user, "not-the-password"), 401)
                times.append(time.monotonic() - before)
    finally:
        c.close()
    assert min(wrong) >= 0.5 and min(unknown) >= 0.5, (wrong, unknown)
    assert abs(statistics.median(wrong) - statistics.median(unknown)) < 0.3, (wrong, unknown)


def test_first_unknown_user_login_is_not_slower_than_a_wrong_password(make_daemon):
    d = started(make_daemon, auth={"failure_delay": 0})
    c = Client(d.url)
    try:
        wrong = []
        for _ in range(3):
            before = time.monotonic()
            expect_error(c.login("admin", "not-the-password"), 401)
            wrong.append(time.monotonic() - before)
        before = time.monotonic()
        expect_error(c.login("nobody-here", "not-the-password"), 401)
        unknown = time.monotonic() - before
    finally:
        c.close()
    assert unknown < 1.5 * statistics.median(wrong), (unknown, wrong)


# Unauthenticated connections


def test_idle_unauthenticated_connection_is_closed_with_1008(make_daemon):
    d = started(make_daemon, auth={"auth_timeout": 1})
    c = Client(d.url)
    before = time.monotonic()
    assert c.wait_closed(timeout=5) == 1008
    assert 0.8 < time.monotonic() - before < 3
    d.wait_for_log(r"closing 127\.0\.0\.1: not authenticated in time")


def test_public_calls_do_not_extend_the_auth_timeout(make_daemon):
    d = started(make_daemon, auth={"auth_timeout": 1.5, "failure_delay": 0.05})
    c = Client(d.url)
    before = time.monotonic()
    while time.monotonic() - before < 0.9:
        assert c.call("rpc", "identify")["name"] == "response"
        expect_error(c.call("rpc", "auth_token", {"token": "0" * 64}), 401)
        assert c.call("rpc", "auth_ssl", {})["name"] == "response"
        time.sleep(0.1)
    assert c.wait_closed(timeout=5) == 1008
    assert time.monotonic() - before < 3


def test_authenticated_connection_outlives_the_auth_timeout(make_daemon):
    d = started(make_daemon, auth={"auth_timeout": 1})
    c = Client(d.url)
    try:
        granted(c.login("admin", "admin-secret-pw"))
        time.sleep(2.5)
        assert c.call("rpc", "query")["name"] == "response"
        # signing out starts the clock again
        assert c.call("rpc", "auth_clear")["args"] == {}
        assert c.wait_closed(timeout=5) == 1008
    finally:
        c.close()


def test_oversized_pre_auth_frame_closes_with_1009(daemon, client):
    assert client.call("rpc", "identify", {"pad": "x" * 7900})["name"] == "response"
    client.send(padded_identify(8192))
    assert client.recv()["name"] == "response"  # the limit itself is allowed
    client.send(padded_identify(8193))
    assert client.wait_closed() == 1009


def test_large_frame_is_accepted_after_authentication(daemon, admin):
    for size in (8193, 12000, 60000):
        admin.send(padded_identify(size))
        reply = admin.recv()
        assert reply["name"] == "response" and reply["id"] == "big", reply
    # signing out brings the pre-authentication limit back
    assert admin.call("rpc", "auth_clear")["args"] == {}
    admin.send(padded_identify(12000))
    assert admin.wait_closed() == 1009


# Origins


def test_foreign_origin_is_refused_with_403(daemon):
    assert refused_status(daemon.url, origin="http://evil.example") == 403
    port = urlsplit(daemon.url).port
    assert refused_status(daemon.url, origin=f"http://127.0.0.1:{port + 1}") == 403
    assert refused_status(daemon.url, origin="http://localhost.evil.example") == 403
    daemon.wait_for_log(r"refused connection from 127\.0\.0\.1: Origin not allowed "
                        r"\(Host 127\.0\.0\.1:\d+, Origin http://evil\.example\)")


def test_no_origin_and_same_host_origin_are_accepted(daemon):
    port = urlsplit(daemon.url).port
    for origin in (None, f"http://127.0.0.1:{port}"):
        c = Client(daemon.url, origin=origin)
        try:
            assert c.call("rpc", "identify")["name"] == "response"
        finally:
            c.close()


def test_allowed_origins_lists_the_accepted_origins(make_daemon):
    d = started(make_daemon, server={"allowed_origins": "https://dash.example.org"})
    port = urlsplit(d.url).port
    c = Client(d.url, origin="https://dash.example.org")
    try:
        assert c.call("rpc", "identify")["name"] == "response"
    finally:
        c.close()
    assert refused_status(d.url, origin="http://evil.example") == 403
    assert refused_status(d.url, origin=f"http://127.0.0.1:{port}") == 403
    Client(d.url).close()
