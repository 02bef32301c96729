"""EventPublisher in memory: order, acknowledgement, resuming, and what ends a cycle.

The NATS side and the daemon are fakes here (the real ones meet in
tests/integration/test_fleet.py): the fake JetStream acknowledges when the test says so,
the fake daemon records each subscription and lets the test send frames."""

import json

from twisted.internet import defer, task

from sysadmd.fleet.publisher import EventPublisher
from sysadmd.protocol import fleet as wire

HOST = "m1"
SOURCES = ["dispatcher", "system-state"]


class FakeNats:
    """Publishes into a list; each publish's Deferred is fired by the test."""

    def __init__(self, stored=None):
        self.up = False
        self.listeners = []
        self.published = []  # (subject, payload, headers, deferred)
        self.stored = stored or {}  # subject -> headers of its last message

    def add_listener(self, listener):
        self.listeners.append(listener)
        if self.up:
            listener.nats_up()

    def set_up(self, up):
        self.up = up
        for listener in self.listeners:
            (listener.nats_up if up else listener.nats_down)()

    def last_headers(self, subject):
        return defer.succeed(self.stored.get(subject))

    def publish_event(self, subject, payload, headers):
        d = defer.Deferred()
        self.published.append((subject, json.loads(payload), headers, d))
        # What is acknowledged is stored: the stream's last message on the subject.
        d.addCallback(lambda ack: self.stored.__setitem__(subject, headers) or ack)
        return d

    def ack_all(self):
        for entry in self.published:
            if not entry[3].called:
                entry[3].callback("ack")


class FakeSession:
    def __init__(self):
        self.calls = []
        self.on_event = None
        self.on_unsolicited_error = None

    def call(self, namespace, name, args=None):
        self.calls.append((namespace, name, args))
        return defer.succeed({"subscribe": [a["name"] for a in args]})


class FakeLink:
    def __init__(self):
        self.session = FakeSession()
        self.closed = defer.Deferred()

    def close(self):
        if not self.closed.called:
            self.closed.callback("closed by the agent")
        return defer.succeed(None)

    def drop(self):
        self.closed.callback("the connection was dropped")


class FakeDaemon:
    url = "ws://daemon"

    def __init__(self):
        self.links = []

    def open(self):
        link = FakeLink()
        self.links.append(link)
        return defer.succeed(link)


def event(name, seq, epoch="e1", **args):
    return {"namespace": "events", "name": name, "id": "none", "args": args, "seq": seq, "epoch": epoch}


def make(stored=None, window=256, max_queued=8192):
    clock = task.Clock()
    nats = FakeNats(stored)
    daemon = FakeDaemon()
    seen = []
    publisher = EventPublisher(clock, HOST, SOURCES, nats, daemon, window, max_queued, seen.append)
    publisher.start()
    nats.set_up(True)
    clock.advance(0)
    return clock, nats, daemon, publisher, seen


def subscription(link):
    namespace, name, args = link.session.calls[0]
    assert (namespace, name) == ("events", "subscribe")
    return args


def test_a_new_machine_publishes_everything_the_daemon_keeps_in_order():
    clock, nats, daemon, publisher, seen = make()
    assert subscription(daemon.links[0]) == [
        {"name": "dispatcher", "since": 0},
        {"name": "system-state", "since": 0},
    ]
    session = daemon.links[0].session
    for seq in (1, 2, 3):
        session.on_event(event("dispatcher", seq, job=seq))
    session.on_event(event("system_state", 1, priority="0 - Information"))
    subjects = [(s, h[wire.SEQ], h.get(wire.MSG_ID)) for s, _, h, _ in nats.published]
    assert subjects == [
        ("sysadm.m1.events.dispatcher", "1", "m1/dispatcher/e1/1"),
        ("sysadm.m1.events.dispatcher", "2", "m1/dispatcher/e1/2"),
        ("sysadm.m1.events.dispatcher", "3", "m1/dispatcher/e1/3"),
        ("sysadm.m1.events.system-state", "1", "m1/system-state/e1/1"),
    ]
    assert nats.published[0][1]["args"] == {"job": 1}
    assert publisher.positions == {}
    nats.ack_all()
    assert publisher.positions == {"dispatcher": ("e1", 3), "system-state": ("e1", 1)}
    assert [frame["seq"] for frame in seen] == [1, 2, 3, 1]
    publisher.stop()


def test_positions_advance_only_over_a_contiguous_acknowledged_prefix():
    clock, nats, daemon, publisher, seen = make()
    session = daemon.links[0].session
    for seq in (1, 2, 3):
        session.on_event(event("dispatcher", seq))
    nats.published[1][3].callback("ack")  # the second is acknowledged first
    assert publisher.positions == {}
    nats.published[0][3].callback("ack")
    assert publisher.positions == {"dispatcher": ("e1", 2)}
    publisher.stop()


def test_a_restarted_agent_resumes_after_the_last_message_the_stream_holds():
    stored = {"sysadm.m1.events.dispatcher": wire.event_headers(HOST, "dispatcher", "e1", 41)}
    clock, nats, daemon, publisher, seen = make(stored)
    assert subscription(daemon.links[0]) == [
        {"name": "dispatcher", "since": 41, "epoch": "e1"},
        {"name": "system-state", "since": 0},
    ]
    publisher.stop()


def test_a_failed_publish_resumes_from_what_the_stream_holds_without_skipping():
    clock, nats, daemon, publisher, seen = make()
    session = daemon.links[0].session
    for seq in (1, 2, 3):
        session.on_event(event("dispatcher", seq))
    nats.published[0][3].callback("ack")
    nats.published[1][3].errback(TimeoutError("nats: timeout"))
    assert publisher.positions == {"dispatcher": ("e1", 1)}
    assert daemon.links[0].closed.called
    clock.advance(1)
    assert subscription(daemon.links[1])[0] == {"name": "dispatcher", "since": 1, "epoch": "e1"}
    # The daemon sends 2 and 3 again: published again, same message ids (JetStream drops copies).
    daemon.links[1].session.on_event(event("dispatcher", 2))
    daemon.links[1].session.on_event(event("dispatcher", 3))
    assert [h[wire.MSG_ID] for _, _, h, _ in nats.published[3:]] == ["m1/dispatcher/e1/2", "m1/dispatcher/e1/3"]
    publisher.stop()


def test_each_cycle_reads_the_stream_again_so_a_lost_acknowledgement_is_not_published_twice():
    clock, nats, daemon, publisher, seen = make()
    session = daemon.links[0].session
    for seq in (1, 2):
        session.on_event(event("dispatcher", seq))
    nats.published[0][3].callback("ack")
    # The second reached the stream but its acknowledgement never came back.
    nats.stored["sysadm.m1.events.dispatcher"] = nats.published[1][2]
    nats.set_up(False)
    nats.set_up(True)
    clock.advance(0)
    assert publisher.positions == {"dispatcher": ("e1", 1)}
    assert subscription(daemon.links[1])[0] == {"name": "dispatcher", "since": 2, "epoch": "e1"}
    publisher.stop()


def test_nats_down_ends_the_cycle_and_nats_up_resumes_it():
    clock, nats, daemon, publisher, seen = make()
    session = daemon.links[0].session
    session.on_event(event("dispatcher", 1))
    nats.ack_all()
    nats.set_up(False)
    assert daemon.links[0].closed.called
    session.on_event(event("dispatcher", 2))  # a frame in flight from the old cycle
    assert len(nats.published) == 1
    nats.set_up(True)
    clock.advance(0)
    assert subscription(daemon.links[1])[0] == {"name": "dispatcher", "since": 1, "epoch": "e1"}
    publisher.stop()


def test_a_dropped_daemon_connection_is_retried_with_backoff():
    clock, nats, daemon, publisher, seen = make()
    daemon.links[0].drop()
    assert len(daemon.links) == 1
    clock.advance(0.9)
    assert len(daemon.links) == 1
    clock.advance(0.2)
    assert len(daemon.links) == 2
    publisher.stop()


def test_an_event_sent_again_after_a_resubscription_is_not_published_twice():
    clock, nats, daemon, publisher, seen = make()
    session = daemon.links[0].session
    session.on_event(event("dispatcher", 1))
    session.on_event(event("dispatcher", 1))
    session.on_event(event("dispatcher", 2))
    assert [h[wire.SEQ] for _, _, h, _ in nats.published] == ["1", "2"]
    publisher.stop()


def test_gaps_are_published_with_the_position_to_continue_from_and_overflow_restarts():
    clock, nats, daemon, publisher, seen = make()
    session = daemon.links[0].session
    gap = {"namespace": "events", "name": "gap", "id": "none",
           "args": {"source": "dispatcher", "epoch": "e2", "missed_from": 5, "first_available": 90,
                    "head": 120, "reason": "expired"}}
    session.on_event(gap)
    state = {"namespace": "events", "name": "dispatcher", "id": "none", "args": {"state": "running"}}
    session.on_event(state)
    session.on_event({"namespace": "events", "name": "heads", "id": "none", "args": {"dispatcher": 120}})
    published = [(s, h) for s, _, h, _ in nats.published]
    assert published[0] == ("sysadm.m1.events.dispatcher", {
        wire.HOST: "m1", wire.SOURCE: "dispatcher", wire.EPOCH: "e2", wire.SEQ: "120"})
    assert published[1][1][wire.SEQ] == "120" and wire.MSG_ID not in published[1][1]
    assert len(published) == 2  # heads are the daemon's, not the fleet's
    nats.ack_all()
    assert publisher.positions == {"dispatcher": ("e2", 120)}
    overflow = dict(gap, args=dict(gap["args"], reason="overflow", epoch="e2"))
    session.on_event(overflow)
    assert daemon.links[0].closed.called
    clock.advance(1)
    assert subscription(daemon.links[1])[0] == {"name": "dispatcher", "since": 120, "epoch": "e2"}
    publisher.stop()


def test_a_full_window_waits_and_too_many_queued_restarts():
    clock, nats, daemon, publisher, seen = make(window=2, max_queued=3)
    session = daemon.links[0].session
    for seq in range(1, 5):
        session.on_event(event("dispatcher", seq))
    assert len(nats.published) == 2  # two in flight, two queued
    nats.published[0][3].callback("ack")
    assert len(nats.published) == 3
    for seq in range(5, 9):
        session.on_event(event("dispatcher", seq))
    assert daemon.links[0].closed.called  # more than 3 queued
    publisher.stop()


def test_other_sources_and_foreign_frames_are_not_published():
    clock, nats, daemon, publisher, seen = make()
    session = daemon.links[0].session
    session.on_event(event("life_preserver", 1))  # not in SOURCES
    session.on_event({"namespace": "events", "name": "bridge", "id": "", "args": {}})
    assert nats.published == []
    publisher.stop()
