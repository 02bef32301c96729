"""``watch``: subscribing, reconnecting with backoff, re-subscribing, keeping alive,
resuming after the last event shown, gaps and heads."""

import argparse
import json

import pytest
from twisted.internet import defer, task

from sysadmd.client import cli
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
            names = [item["name"] if isinstance(item, dict) else item for item in args]
            unknown = [name for name in names if name not in self.known]
            if unknown:
                raise Refuse(400, f"Unknown event source {unknown[0]!r}.")
            return {"subscribe": names}

        peer.handlers.update({
            ("rpc", "auth"): auth,
            ("rpc", "auth_token"): lambda args: (_ for _ in ()).throw(Refuse(401)),
            ("events", "subscribe"): subscribe,
            ("rpc", "query"): lambda args: {},
        })
        link = FakeLink(peer)
        self.links.append(link)
        return defer.succeed(link)


SESSION_ENDED = ('{"namespace":"error","name":"error","id":null,'
                 '"args":{"code":401,"message":"Unauthorized","details":"Your session expired."}}')


def start(sources=("ticker",), explicit=True, since=None, raw_gaps=False, show=None, **kwargs):
    clock = task.Clock()
    daemon = Daemon(clock, **kwargs)
    out = Lines()
    shown = []
    watcher = Watcher(clock, daemon.open_link, Credentials("admin", Passwords()), sources, explicit,
                      show or shown.append, out, keepalive=60, backoff_cap=8, since=since,
                      raw_gaps=raw_gaps)
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
    peer.session.text_received(SESSION_ENDED)
    assert out.err == ["sysadm: the daemon ended the session (Your session expired.); signing in again"]
    assert [f["name"] for f in peer.sent] == ["auth", "subscribe", "auth_token", "auth", "subscribe"]
    assert result == []


def test_stop_closes_without_reconnecting():
    clock, daemon, out, _, watcher, result = start()
    watcher.stop()
    assert result == [0] and out.err == []
    clock.advance(100)
    assert daemon.attempts == 1 and not clock.getDelayedCalls()


# -- resuming: seq and epoch, gaps, heads, --since, --json -------------------------------


def tick(peer, *seqs, epoch="e1", name="ticker"):
    for seq in seqs:
        peer.push(name, {"n": seq}, seq=seq, epoch=epoch)


def gap(peer, reason, missed_from, first_available, head, epoch="e1", **more):
    peer.push("gap", dict(source="ticker", epoch=epoch, missed_from=missed_from,
                          first_available=first_available, head=head, reason=reason, **more))


def numbers(shown):
    return [frame.get("seq") for frame in shown]


def reconnect(clock, daemon):
    daemon.links[-1].drop()
    clock.advance(1)
    return daemon.links[-1].peer


def subscriptions(peer):
    return [request["args"] for request in peer.requests("events", "subscribe")]


def test_a_reconnect_resumes_after_the_last_event_shown():
    """A new connection subscribes each source after the seq and epoch of its last event
    shown (sources with none shown by name) and says where it resumed."""
    clock, daemon, out, _, _, _ = start(("ticker", "dispatcher"))
    tick(daemon.links[0].peer, 1, 2, 3)
    peer = reconnect(clock, daemon)
    assert subscriptions(peer) == [[{"name": "ticker", "since": 3, "epoch": "e1"}, "dispatcher"]]
    assert out.err[-1] == "sysadm: reconnected to ws://fake:12150; subscribed to ticker (after 3), dispatcher"


def test_by_default_each_source_resumes_in_its_own_subscription():
    """Default sources are subscribed one by one, a resumed one with its position, found
    from the frame name (system_state is the system-state source)."""
    clock, daemon, _, _, _, _ = start(BUILT_IN_SOURCES, explicit=False)
    tick(daemon.links[0].peer, 7, name="system_state")
    peer = reconnect(clock, daemon)
    assert subscriptions(peer) == [["dispatcher"], ["life-preserver"],
                                   [{"name": "system-state", "since": 7, "epoch": "e1"}]]


def test_events_already_shown_are_not_shown_again():
    """Events not newer than the last one shown of the same epoch are skipped; newer ones,
    and those of another epoch, are shown."""
    clock, daemon, _, shown, _, _ = start()
    tick(daemon.links[0].peer, 1, 2, 3)
    peer = reconnect(clock, daemon)
    tick(peer, 2, 3, 4, 3, 5)
    tick(peer, 1, epoch="e2")
    assert [(f["epoch"], f["seq"]) for f in shown] == [("e1", 1), ("e1", 2), ("e1", 3), ("e1", 4), ("e1", 5), ("e2", 1)]


def test_a_new_sign_in_on_the_same_connection_resumes_without_loss_or_disorder():
    """After the daemon ends the session, the re-subscription asks for what followed the
    last event shown, and a live event arriving before its reply waits for the replay."""
    _, daemon, _, shown, _, _ = start()
    peer = daemon.links[0].peer
    tick(peer, 1, 2)
    del peer.handlers[("events", "subscribe")]
    peer.session.text_received(SESSION_ENDED)
    request = peer.requests("events", "subscribe")[-1]
    assert request["args"] == [{"name": "ticker", "since": 2, "epoch": "e1"}]
    tick(peer, 4)  # still subscribed: live, before the reply
    assert numbers(shown) == [1, 2]
    peer.reply(request, {"subscribe": ["ticker"]})
    tick(peer, 3, 4, 5)
    assert numbers(shown) == [1, 2, 3, 4, 5]


def test_an_expired_gap_is_one_line_then_the_current_state_and_live_events():
    """The line names the missed and the kept events; the gap frame is not shown, the state
    event (seq = head) and live ones are, and the next resume starts after them."""
    clock, daemon, out, shown, _, _ = start()
    tick(daemon.links[0].peer, 119)
    peer = reconnect(clock, daemon)
    gap(peer, "expired", 120, 341, 900)
    assert out.err[-1] == "sysadm: ticker: missed events 120-340 (expired: the daemon keeps only 341-900)"
    tick(peer, 900, 901)
    assert numbers(shown) == [119, 900, 901]
    assert subscriptions(reconnect(clock, daemon)) == [[{"name": "ticker", "since": 901, "epoch": "e1"}]]


def test_an_epoch_change_is_one_line_and_resumes_in_the_new_epoch():
    """A reset log is announced with its new epoch; its current state (without seq) is
    shown, and a reconnect before any numbered event resumes after the gap's head."""
    clock, daemon, out, shown, _, _ = start()
    tick(daemon.links[0].peer, 500)
    peer = reconnect(clock, daemon)
    gap(peer, "epoch_changed", 501, 1, 3, epoch="e2")
    assert out.err[-1] == ("sysadm: ticker: the daemon's event log was reset (new epoch e2); "
                           "showing its current state")
    peer.push("ticker", {"state": "now"})
    assert [f["args"] for f in shown] == [{"n": 500}, {"state": "now"}]
    assert subscriptions(reconnect(clock, daemon)) == [[{"name": "ticker", "since": 3, "epoch": "e2"}]]


def test_an_overflow_gap_is_fetched_again_from_the_last_event_shown():
    """The line counts the dropped events; the source is re-subscribed after the last one
    shown, live events before the reply wait, and every event is then shown once, in
    order."""
    _, daemon, out, shown, _, _ = start()
    peer = daemon.links[0].peer
    tick(peer, *range(115, 120))
    del peer.handlers[("events", "subscribe")]
    gap(peer, "overflow", 120, 100, 176, missed_to=174)
    assert out.err == ["sysadm: ticker: 55 events dropped because this client fell behind "
                       "(overflow, 120-174); fetching them again"]
    request = peer.requests("events", "subscribe")[-1]
    assert request["args"] == [{"name": "ticker", "since": 119, "epoch": "e1"}]
    tick(peer, 175, 176)  # live, sent before the reply
    peer.reply(request, {"subscribe": ["ticker"]})
    tick(peer, *range(120, 180))
    assert numbers(shown) == list(range(115, 180))


def test_an_overflow_the_daemon_no_longer_keeps_is_only_reported():
    """Dropped events older than the oldest kept one are reported, not asked for, and
    live events go on after them."""
    _, daemon, out, shown, _, _ = start()
    peer = daemon.links[0].peer
    tick(peer, 119)
    gap(peer, "overflow", 120, 300, 400, missed_to=120)
    tick(peer, 121)
    assert out.err == ["sysadm: ticker: 1 event dropped because this client fell behind (overflow, 120); "
                       "the daemon no longer keeps them"]
    assert len(subscriptions(peer)) == 1 and numbers(shown) == [119, 121]


def test_an_overflow_partly_kept_fetches_what_is_left():
    """When only the newer dropped events are kept, those are asked for and the line says
    which are lost."""
    _, daemon, out, _, _, _ = start()
    peer = daemon.links[0].peer
    tick(peer, 119)
    gap(peer, "overflow", 120, 150, 180, missed_to=174)
    assert out.err == ["sysadm: ticker: 55 events dropped because this client fell behind (overflow, "
                       "120-174); fetching 150-174 again, the daemon no longer keeps the others"]
    assert subscriptions(peer)[-1] == [{"name": "ticker", "since": 149, "epoch": "e1"}]


def test_an_overflow_gap_for_events_already_shown_says_nothing():
    """A gap whose events were all shown since (fetched after a heads frame) is ignored."""
    _, daemon, out, shown, _, _ = start()
    peer = daemon.links[0].peer
    tick(peer, *range(1, 11))
    gap(peer, "overflow", 5, 1, 10, missed_to=8)
    assert out.err == [] and len(subscriptions(peer)) == 1 and len(shown) == 10


def test_heads_are_not_shown_and_events_missing_a_whole_interval_are_fetched():
    """A heads frame is never shown; events due before the previous heads frame that
    neither arrived nor were announced by a gap are reported and asked for again."""
    _, daemon, out, shown, _, _ = start()
    peer = daemon.links[0].peer
    tick(peer, 1, 2)
    peer.push("heads", {"ticker": 2})
    peer.push("heads", {"ticker": 5})  # 3-5 may still be on their way, or a gap
    assert numbers(shown) == [1, 2] and out.err == [] and len(subscriptions(peer)) == 1
    peer.push("heads", {"ticker": 6})
    assert out.err == ["sysadm: ticker: events 3-5 never arrived (the daemon is at 6); fetching them again"]
    assert subscriptions(peer)[-1] == [{"name": "ticker", "since": 2, "epoch": "e1"}]
    tick(peer, 3, 4, 5, 6)
    peer.push("heads", {"ticker": 6})
    peer.push("heads", {"ticker": 6})
    assert numbers(shown) == [1, 2, 3, 4, 5, 6] and len(out.err) == 1


def test_since_positions_are_the_first_subscriptions_arguments():
    """--since positions are sent with the first subscription, with the epoch when given."""
    _, daemon, _, _, _, _ = start(("ticker", "dispatcher", "system-state"),
                                  since={"ticker": (5, None), "dispatcher": (7, "e9")})
    assert subscriptions(daemon.links[0].peer) == [
        [{"name": "ticker", "since": 5}, {"name": "dispatcher", "since": 7, "epoch": "e9"}, "system-state"]]


def test_since_is_parsed_and_a_bad_value_is_a_usage_error(capsys):
    """--since takes SOURCE=SEQ or SOURCE=SEQ@EPOCH, repeatedly; anything else exits 2
    with the expected format."""
    parser = cli.build_parser()
    options = parser.parse_args(["watch", "--since", "dispatcher=5", "--since", "system-state=0@9f1c"])
    assert options.since == [("dispatcher", 5, None), ("system-state", 0, "9f1c")]
    assert parser.parse_args(["watch"]).since == []
    for bad in ("dispatcher", "dispatcher=", "dispatcher=x", "=5", "dispatcher=-1", "dispatcher=5@", "d=5@a@b"):
        with pytest.raises(SystemExit) as info:
            parser.parse_args(["watch", "--since", bad])
        assert info.value.code == 2
        assert f"argument --since: {bad!r} is not SOURCE=SEQ or SOURCE=SEQ@EPOCH" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["watch", "ticker", "--since", "dispatcher=5"], "sysadm: --since: dispatcher is not watched (watching ticker)"),
    (["watch", "--since", "dispatcher=5", "--since", "dispatcher=6"], "sysadm: --since: dispatcher is given twice"),
])
def test_since_for_a_source_not_watched_or_given_twice_is_a_usage_error(argv, message):
    """Such --since values end the command with status 2 before anything connects."""
    out, result = Lines(), []
    cli.run(None, cli.build_parser().parse_args(argv), out).addBoth(result.append)
    assert result == [2] and out.err == [message]


def test_json_output_keeps_seq_and_epoch_and_shows_gaps_but_not_heads():
    """With --json each event frame is printed whole, seq and epoch included, and so are
    gap frames; heads frames are not."""
    printed = Lines()
    _, daemon, _, _, _, _ = start(show=cli._show_events(argparse.Namespace(json=True), printed), raw_gaps=True)
    peer = daemon.links[0].peer
    tick(peer, 1)
    gap(peer, "expired", 2, 5, 9)
    peer.push("heads", {"ticker": 9})
    frames = [json.loads(line) for line in printed.stdout.splitlines()]
    assert frames[0] == {"namespace": "events", "name": "ticker", "id": "none", "args": {"n": 1},
                         "seq": 1, "epoch": "e1"}
    assert [frame["name"] for frame in frames] == ["ticker", "gap"] and frames[1]["args"]["missed_from"] == 2
