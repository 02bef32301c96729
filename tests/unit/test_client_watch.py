"""``watch``: subscribing, reconnecting with backoff, re-subscribing, keeping alive."""

from twisted.internet import defer, task

from sysadmd.client.auth import Credentials
from sysadmd.client.errors import ClientError
from sysadmd.client.watch import BUILT_IN_SOURCES, Watcher
from tests.unit.test_client_fakes import FakeLink, FakePeer, Lines, Refuse


class Passwords:
    def get(self):
        return defer.succeed("right")


class Daemon:
    """Makes links to fake daemons; ``up`` says whether connecting works."""

    def __init__(self, clock, known=("dispatcher", "life-preserver", "system-state", "ticker"), password="right"):
        self.clock = clock
        self.known = known
        self.password = password
        self.up = True
        self.links = []
        self.attempts = 0

    def open_link(self):
        self.attempts += 1
        if not self.up:
            return defer.fail(ClientError("cannot connect to ws://fake:12150: connection refused"))
        peer = FakePeer(self.clock)

        def auth(args):
            if args["password"] != self.password:
                raise Refuse(401)
            return ["tok", 900]

        def subscribe(args):
            unknown = [name for name in args if name not in self.known]
            if unknown:
                raise Refuse(400, f"Unknown event source {unknown[0]!r}.")
            return {"subscribe": args}

        peer.handlers.update({
            ("rpc", "auth"): auth,
            ("rpc", "auth_token"): lambda args: (_ for _ in ()).throw(Refuse(401)),
            ("events", "subscribe"): subscribe,
            ("rpc", "query"): lambda args: {},
        })
        link = FakeLink(peer)
        self.links.append(link)
        return defer.succeed(link)


def start(sources=("ticker",), explicit=True, **kwargs):
    clock = task.Clock()
    daemon = Daemon(clock, **kwargs)
    out = Lines()
    shown = []
    watcher = Watcher(clock, daemon.open_link, Credentials("admin", Passwords()), sources, explicit,
                      shown.append, out, keepalive=60, backoff_cap=8)
    result = []
    watcher.run().addBoth(result.append)
    return clock, daemon, out, shown, watcher, result


def test_events_are_shown_after_subscribing_to_the_named_sources():
    _, daemon, _, shown, _, result = start(("ticker", "dispatcher"))
    peer = daemon.links[0].peer
    assert [f["name"] for f in peer.sent] == ["auth", "subscribe"]
    assert peer.requests("events", "subscribe")[0]["args"] == ["ticker", "dispatcher"]
    peer.push("ticker", {"n": 1})
    assert [f["args"] for f in shown] == [{"n": 1}] and result == []


def test_an_unknown_named_source_is_an_error():
    _, _, _, _, _, result = start(("nope",))
    assert "Unknown event source 'nope'" in str(result[0].value)


def test_by_default_sources_the_daemon_lacks_are_skipped_with_a_warning():
    _, daemon, out, _, watcher, result = start(BUILT_IN_SOURCES, explicit=False, known=("dispatcher", "system-state"))
    assert result == [] and watcher.subscribed == ["dispatcher", "system-state"]
    assert out.err == ["sysadm: not watching life-preserver: Unknown event source 'life-preserver'."]


def test_the_first_connection_failing_ends_the_command():
    clock = task.Clock()
    daemon = Daemon(clock)
    daemon.up = False
    result = []
    Watcher(clock, daemon.open_link, Credentials("a", Passwords()), ["ticker"], True, list, Lines()).run().addBoth(result.append)
    assert "connection refused" in str(result[0].value)


def test_a_dropped_connection_is_retried_with_backoff_and_resubscribed():
    clock, daemon, out, shown, _, result = start()
    daemon.up = False
    daemon.links[0].drop("the connection was dropped")
    assert out.err[-1] == "sysadm: connection to ws://fake:12150 lost (the connection was dropped); reconnecting in 1 s"
    delays = []
    for _ in range(5):
        before = daemon.attempts
        waited = 0
        while daemon.attempts == before:
            clock.advance(0.5)
            waited += 0.5
        delays.append(waited)
    assert delays == [1, 2, 4, 8, 8]
    assert "reconnecting failed: cannot connect to ws://fake:12150: connection refused; retrying in 2 s" in out.err[1]
    daemon.up = True
    clock.advance(8)
    assert out.err[-1] == "sysadm: reconnected to ws://fake:12150; subscribed to ticker"
    peer = daemon.links[-1].peer
    # the token was refused by the new daemon: it signed in with the password again
    assert [f["name"] for f in peer.sent] == ["auth_token", "auth", "subscribe"]
    peer.push("ticker", {"n": 2})
    assert shown[-1]["args"] == {"n": 2} and result == []
    # the backoff starts again from 1 s after a success
    daemon.links[-1].drop()
    assert out.err[-1].endswith("reconnecting in 1 s")


def test_a_refused_sign_in_on_reconnect_ends_the_command():
    clock, daemon, _, _, _, result = start()
    daemon.password = "changed"
    daemon.links[0].drop()
    clock.advance(1)
    assert "authentication failed for user 'admin'" in str(result[0].value)
    assert daemon.links[-1].close_calls == 1


def test_keepalive_queries_and_a_silent_peer_is_dropped():
    clock, daemon, _, _, _, _ = start()
    link = daemon.links[0]
    clock.advance(60)
    assert len(link.peer.requests("rpc", "query")) == 1
    del link.peer.handlers[("rpc", "query")]
    clock.advance(60)
    assert not link.closed.called
    clock.advance(60)  # the second query had no reply within 60 s
    assert link.close_calls == 1


def test_an_ended_session_is_signed_in_and_subscribed_again():
    _, daemon, out, _, _, result = start()
    peer = daemon.links[0].peer
    peer.session.text_received('{"namespace":"error","name":"error","id":null,'
                               '"args":{"code":401,"message":"Unauthorized","details":"Your session expired."}}')
    assert out.err == ["sysadm: the daemon ended the session (Your session expired.); signing in again"]
    assert [f["name"] for f in peer.sent] == ["auth", "subscribe", "auth_token", "auth", "subscribe"]
    assert result == []


def test_stop_closes_without_reconnecting():
    clock, daemon, out, _, watcher, result = start()
    watcher.stop()
    assert result == [0] and out.err == []
    clock.advance(100)
    assert daemon.attempts == 1 and not clock.getDelayedCalls()
