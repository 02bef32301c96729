"""Issue 13, attack 2: concurrent password guesses against the real daemon.

The attack: many guesses in flight at once (20 pipelined rpc/auth per WebSocket connection
over several connections, 60 parallel REST Basic requests) were all checked, because the
ban was checked before hashing and failures counted after; the right password was then
accepted from a banned address, and the Argon2id checks (64 MiB each) took the daemon from
70 MB to 726 MB. Each test repeats it against ``twistd sysadmd`` with users made by
``sysadmd-admin`` (real Argon2id hashes) and fails if it gets through again.
"""

import base64
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from websockets.exceptions import InvalidStatus

from tests.integration.harness import Client
from tests.integration.test_auth import FAILED, config, granted

PASSWORD = "admin-secret-pw"
BANNED = "Too many failed logins from this address; try again later."
BUSY = "Too many logins in progress; try again later."
MIB = 1024 * 1024


def started(make_daemon, **auth):
    """A daemon with ``[auth]`` keys ``auth`` and the user admin (full)."""
    d = make_daemon(config(auth=auth), ticker=False, start=False)
    d.add_user("admin", PASSWORD)
    return d.start()


def pipelined_guesses(clients, per_connection, password="wrong"):
    """Send ``per_connection`` rpc/auth requests on each client before reading any reply;
    returns every reply."""
    for n, client in enumerate(clients):
        for i in range(per_connection):
            client.send({"namespace": "rpc", "name": "auth", "id": f"g{n}-{i}",
                         "args": {"username": "admin", "password": password}})
    replies = []
    for client in clients:
        # Refusals come back at once, failures after the delay: read them as they come.
        for _ in range(per_connection):
            frame = client.recv(timeout=60)
            assert frame["id"].startswith("g") and frame["name"] in ("response", "error"), frame
            replies.append(frame)
    return replies


def outcome(frame):
    """(code, details) of a reply: 200 for a granted login."""
    if frame["name"] == "response":
        return 200, None
    return frame["args"]["code"], frame["args"]["details"]


def tally(outcomes):
    """{code: how many} of outcomes, tuples whose first item is the status code."""
    counts = {}
    for code, *_ in outcomes:
        counts[code] = counts.get(code, 0) + 1
    return counts


def http_url(daemon, path, url=None):
    return (url or daemon.url).replace("ws://", "http://", 1) + path


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def rest(daemon, path, headers, timeout=60):
    """POST ``{}`` to ``path``; returns (status, details or None, seconds taken)."""
    request = urllib.request.Request(
        http_url(daemon, path), data=b"{}", method="POST",
        headers={"Content-Type": "application/json", **headers},
    )
    before = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    args = json.loads(body)["args"] if body else None
    details = args.get("details") if isinstance(args, dict) else None
    return status, details, time.monotonic() - before


def in_parallel(count, function):
    """Run ``function(i)`` for i < count in as many threads released at the same moment."""
    barrier = threading.Barrier(count)

    def run(i):
        barrier.wait()
        return function(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def refused_status(url):
    with pytest.raises(InvalidStatus) as refused:
        Client(url)
    return refused.value.response.status_code


def checks_logged(daemon, method="password", peer=r"127\.0\.0\.1"):
    """How many failed checks the daemon logged (one per guess actually checked)."""
    pattern = re.compile(rf"failed {method} authentication from {peer}")
    return sum(1 for line in daemon.lines if pattern.search(line))


def test_pipelined_websocket_guesses_over_many_connections_stop_at_max_failures(make_daemon):
    """20 pipelined guesses on each of 5 connections at once: exactly max_failures (5)
    are checked and get 401, the 95 others 429; then the right password gets 429."""
    d = started(make_daemon, ban_loopback="yes", max_failures=5)
    clients = [Client(d.url) for _ in range(5)]
    try:
        outcomes = [outcome(f) for f in pipelined_guesses(clients, 20)]
        assert tally(outcomes) == {401: 5, 429: 95}
        assert {details for code, details in outcomes if code == 401} == {FAILED}
        assert {details for code, details in outcomes if code == 429} == {BANNED}
        assert outcome(clients[0].login("admin", PASSWORD)) == (429, BANNED)
        assert outcome(clients[1].call("rpc", "auth_token", {"token": "0" * 64}))[0] == 429
    finally:
        for client in clients:
            client.close()
    assert refused_status(d.url) == 429
    assert checks_logged(d) == 5
    d.wait_for_log(r"banned 127\.0\.0\.1 after repeated failed logins")


def test_parallel_rest_basic_guesses_stop_at_max_failures(make_daemon):
    """60 parallel REST Basic guesses: 5 get 401 no sooner than the failure delay, 55 get
    429; then the right password gets 429, over REST and over the WebSocket."""
    d = started(make_daemon, ban_loopback="yes", max_failures=5, failure_delay=0.5)
    results = in_parallel(60, lambda i: rest(d, "/rpc/query", basic("admin", f"wrong-{i}")))
    assert tally(results) == {401: 5, 429: 55}
    assert all(seconds >= 0.5 for code, _, seconds in results if code == 401)
    assert {details for code, details, _ in results if code == 429} == {BANNED}
    assert rest(d, "/rpc/query", basic("admin", PASSWORD))[0] == 429
    assert refused_status(d.url) == 429
    assert checks_logged(d) == 5


def test_rest_bearer_failures_count_toward_the_ban_and_wait_the_failure_delay(make_daemon):
    """A wrong Bearer token is a failed login: the same 401, no sooner than
    failure_delay, counted with password failures; once banned, a live token and the
    right password both get 429."""
    d = started(make_daemon, ban_loopback="yes", max_failures=3, failure_delay=0.5)
    ws = Client(d.url)
    try:
        token = granted(ws.login("admin", PASSWORD))
    finally:
        ws.close()
    for _ in range(2):
        code, details, seconds = rest(d, "/rpc/query", {"Authorization": "Bearer " + "0" * 64})
        assert (code, details) == (401, FAILED)
        assert seconds >= 0.5
    ws = Client(d.url)
    try:
        assert outcome(ws.login("admin", "wrong")) == (401, FAILED)  # the third failure
        assert outcome(ws.login("admin", PASSWORD)) == (429, BANNED)
    finally:
        ws.close()
    assert rest(d, "/rpc/query", {"Authorization": f"Bearer {token}"})[:2] == (429, BANNED)
    assert checks_logged(d, "token") == 2
    d.wait_for_log(r"banned 127\.0\.0\.1 after repeated failed logins")


def test_parallel_rest_bearer_guesses_stop_at_max_failures(make_daemon):
    """40 parallel wrong Bearer tokens: exactly 5 get 401, the rest 429."""
    d = started(make_daemon, ban_loopback="yes", max_failures=5)
    results = in_parallel(
        40, lambda i: rest(d, "/rpc/query", {"Authorization": "Bearer " + f"{i:064x}"})
    )
    assert tally(results) == {401: 5, 429: 35}
    assert rest(d, "/rpc/query", basic("admin", PASSWORD))[0] == 429


def _rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


class PeakRss:
    """The highest VmRSS of ``pid`` while in the ``with`` block: sampled every few
    milliseconds, and VmHWM after resetting it (where the kernel lets us)."""

    def __init__(self, pid):
        self.pid = pid
        self.peak_kib = 0
        self._stop = threading.Event()
        self._hwm_reset = False

    def __enter__(self):
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")  # resets the peak RSS (VmHWM) to the current RSS
            self._hwm_reset = True
        except OSError:
            pass
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, _rss_kib(self.pid))
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if self._hwm_reset:
            self.peak_kib = max(self.peak_kib, _rss_kib(self.pid, "VmHWM"))


def test_a_hundred_parallel_guesses_do_not_blow_up_memory(make_daemon):
    """ban_loopback = no (nothing is banned): 50 pipelined WebSocket guesses and 50
    parallel REST guesses at once. The checks run two at a time, so the daemon's RSS
    grows by less than 200 MiB (it grew by 650 MB before); the guesses beyond the queue
    get 429 at once; and the daemon still serves the right password afterwards."""
    d = started(make_daemon, ban_loopback="no")
    warm = Client(d.url)
    try:
        granted(warm.login("admin", PASSWORD))  # the checks' threads exist already
    finally:
        warm.close()
    time.sleep(0.5)
    pid = d.process.pid
    before = _rss_kib(pid)
    clients = [Client(d.url) for _ in range(10)]
    try:
        barrier = threading.Barrier(51)

        def guess(i):
            barrier.wait()
            return rest(d, "/rpc/query", basic("admin", f"wrong-{i}"))

        with PeakRss(pid) as peak, ThreadPoolExecutor(50) as pool:
            rest_futures = [pool.submit(guess, i) for i in range(50)]
            barrier.wait()  # the REST guesses leave as the WebSocket ones are sent
            ws_outcomes = [outcome(f) for f in pipelined_guesses(clients, 5)]
            rest_outcomes = [f.result()[:2] for f in rest_futures]
        outcomes = ws_outcomes + rest_outcomes
        counts = tally(outcomes)
        growth = (peak.peak_kib - before) * 1024
        print(f"RSS before {before} KiB, peak {peak.peak_kib} KiB, growth "
              f"{growth / MIB:.1f} MiB; outcomes {counts}")
        assert set(counts) <= {401, 429}, counts
        assert sum(counts.values()) == 100
        assert counts.get(429, 0) > 0, counts
        assert {details for code, details in outcomes if code == 429} == {BUSY}
        assert {details for code, details in outcomes if code == 401} == {FAILED}
        assert growth < 200 * MIB, f"RSS grew by {growth / MIB:.0f} MiB"
        granted(clients[0].login("admin", PASSWORD))
    finally:
        for client in clients:
            client.close()
    assert rest(d, "/rpc/query", basic("admin", PASSWORD))[0] == 200
    d.wait_for_log(r"password checks busy")


def _ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here (see test_bans)")
def test_ipv6_guesses_are_banned_by_their_network(make_daemon):
    """From ::1, guesses are counted under ::/64 (the default ban_ipv6_prefix): 3 of 20
    pipelined guesses are checked and the /64 is banned, while 127.0.0.1 is not."""
    d = make_daemon(
        config(auth={"ban_loopback": "yes", "max_failures": 3},
               server={"listen": r"tcp:0:interface=127.0.0.1 tcp6:0:interface=\:\:1"}),
        ticker=False, start=False,
    )
    d.add_user("admin", PASSWORD)
    d.start()
    v6 = next(url for url in d.urls if "[::1]" in url)
    v4 = next(url for url in d.urls if "127.0.0.1" in url)
    client = Client(v6)
    try:
        outcomes = [outcome(f) for f in pipelined_guesses([client], 20)]
        assert tally(outcomes) == {401: 3, 429: 17}
        assert outcome(client.login("admin", PASSWORD)) == (429, BANNED)
    finally:
        client.close()
    assert refused_status(v6) == 429
    d.wait_for_log(r"banned ::/64 after repeated failed logins")
    other = Client(v4)
    try:
        granted(other.login("admin", PASSWORD))
    finally:
        other.close()
