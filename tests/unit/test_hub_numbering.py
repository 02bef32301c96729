"""Numbered events at the hub: seq/epoch, resume, gaps, subscribe args, heads, overflow."""

import json
import os

import pytest
from twisted.internet import task

from sysadmd.channel.outbound import DROP, Outbound, queued_size
from sysadmd.events import resume
from sysadmd.events.heads import HeadsService, heads_frames
from sysadmd.events.hub import EventHub
from sysadmd.events.resume import Resume
from sysadmd.events.retention import Retention
from sysadmd.protocol import envelope
from sysadmd.protocol.dialect import ORIGINAL, WithOriginal
from sysadmd.protocol.envelope import RequestError
from sysadmd.protocol.framing import prepare_text

SNAPSHOT = [{"job": "j1", "state": "running"}, {"job": "j2", "state": "pending"}]
OLD_EPOCH = "0" * 16


class Client:
    """A connection's real Outbound writing into a list, and what it decoded."""

    def __init__(self, dialect=None, limit=10**6):
        self.written = []
        self.outbound = Outbound(self.written.append, prepare_text, limit, DROP, lambda: None)
        if dialect is not None:
            self.outbound.dialect = dialect

    def frames(self):
        frames = [json.loads(prepared.payload) for prepared in self.written]
        self.written.clear()
        return frames


def numbered(frames):
    return [(f["name"], f["args"]["n"], f["seq"]) for f in frames if "seq" in f]


@pytest.fixture
def clock():
    return task.Clock()


@pytest.fixture
def hub(clock):
    hub = EventHub(prepare_text, Retention(clock, None, retain_events=5, retain_seconds=60))
    hub.add_source("system-state", "system_state", replay_last=True)
    hub.add_source("ticker", "ticker_frame", replay_last=False)
    hub.add_source("jobs", "jobs_frame", replay_last=False, snapshot=lambda: list(SNAPSHOT))
    return hub


def publish(hub, name, *numbers):
    for n in numbers:
        hub.publish(name, {"n": n})


def subscribe(hub, client, args):
    """What the events/subscribe handler does for a spec client: parse, subscribe, reply,
    replay; returns the names."""
    names, resumes = resume.parse(args)
    names, replay = hub.subscribe(client.outbound, names, resumes=resumes)
    replay()
    return names


def epoch(hub, name):
    return hub.channel(name).log.epoch


def gap(hub, name, missed_from, reason, missed_to=None):
    args = {"source": name, "epoch": epoch(hub, name), "missed_from": missed_from,
            "first_available": hub.channel(name).log.first_available,
            "head": hub.channel(name).log.head, "reason": reason}
    if missed_to is not None:
        args["missed_to"] = missed_to
    return envelope.event("gap", args)


def test_spec_frames_carry_seq_and_epoch_original_frames_do_not(hub):
    """The same event reaches a spec client with top-level seq and epoch and an original
    client without them, named as the original server named it."""
    spec, original = Client(), Client(ORIGINAL)
    for client in (spec, original):
        hub.subscribe(client.outbound, "ticker")[1]()
    publish(hub, "ticker", 10, 11)
    e = epoch(hub, "ticker")
    assert spec.frames() == [
        {"namespace": "events", "name": "ticker_frame", "id": "none", "args": {"n": n}, "seq": seq, "epoch": e}
        for n, seq in ((10, 1), (11, 2))
    ]
    assert original.frames() == [
        {"namespace": "events", "name": "ticker", "id": "", "args": {"n": n}} for n in (10, 11)
    ]


def test_original_args_of_a_numbered_event_carry_no_seq(hub):
    """A source's own original-dialect args are sent as given, without seq or epoch."""
    spec, original = Client(), Client(ORIGINAL)
    for client in (spec, original):
        hub.subscribe(client.outbound, "ticker")[1]()
    hub.publish("ticker", WithOriginal({"n": 1}, {"old": "form"}))
    assert original.frames() == [{"namespace": "events", "name": "ticker", "id": "", "args": {"old": "form"}}]
    assert [(f["args"], f["seq"]) for f in spec.frames()] == [({"n": 1}, 1)]


def test_resume_with_everything_retained_sends_the_missed_events_then_live_ones(hub):
    """A resume whose since+1 is retained gets exactly the events after since, then live
    events, none twice."""
    publish(hub, "ticker", 1, 2, 3, 4)
    client = Client()
    names, replay = hub.subscribe(client.outbound, ["ticker"],
                                  resumes={"ticker": Resume("ticker", 2, epoch(hub, "ticker"))})
    assert (names, client.frames(), hub.subscriptions(client.outbound)) == (["ticker"], [], [])
    replay()
    publish(hub, "ticker", 5)
    assert numbered(client.frames()) == [("ticker_frame", 3, 3), ("ticker_frame", 4, 4), ("ticker_frame", 5, 5)]


@pytest.mark.parametrize("since, expected", [(4, [5, 6, 7, 8, 9, 10]), (9, [10])])
def test_resume_at_the_edges_of_what_is_retained(hub, since, expected):
    """since = first_available - 1 gets every retained event, since = head only live ones;
    no epoch means the current one."""
    publish(hub, "ticker", *range(1, 10))  # retained 5..9
    client = Client()
    subscribe(hub, client, [{"name": "ticker", "since": since}])
    publish(hub, "ticker", 10)
    assert [f["seq"] for f in client.frames()] == expected


def test_old_epoch_gets_a_gap_then_the_cached_last_event(hub):
    """A resume naming another epoch gets one epoch_changed gap, then the source's last
    event (replay_last), then live events."""
    publish(hub, "system-state", 1, 2, 3)
    client = Client()
    subscribe(hub, client, [{"name": "system-state", "since": 7, "epoch": OLD_EPOCH}])
    publish(hub, "system-state", 4)
    frames = client.frames()
    assert frames[0]["args"] == {"source": "system-state", "epoch": epoch(hub, "system-state"),
                                 "missed_from": 8, "first_available": 1, "head": 3,
                                 "reason": "epoch_changed"}
    assert frames[0]["name"] == "gap" and "seq" not in frames[0]
    assert numbered(frames[1:]) == [("system_state", 3, 3), ("system_state", 4, 4)]


def test_old_epoch_of_a_snapshot_source_gets_a_gap_then_the_snapshot(hub):
    """A source with a snapshot sends, after the gap, one unnumbered frame per state."""
    publish(hub, "jobs", 1, 2)
    client = Client()
    subscribe(hub, client, [{"name": "jobs", "since": 1, "epoch": OLD_EPOCH}])
    assert client.frames() == [gap(hub, "jobs", 2, "epoch_changed")] + [
        envelope.event("jobs_frame", state) for state in SNAPSHOT
    ]


def test_expired_resume_gets_an_expired_gap(hub):
    """A since whose next event was forgotten gets an expired gap (missed_from since+1,
    first_available, head), then the state; a source without state sends nothing more."""
    publish(hub, "ticker", *range(1, 11))  # retained 6..10
    publish(hub, "system-state", *range(1, 11))
    client = Client()
    subscribe(hub, client, [{"name": "ticker", "since": 2}, {"name": "system-state", "since": 4}])
    frames = client.frames()
    assert frames[0] == gap(hub, "ticker", 3, "expired")
    assert frames[0]["args"]["first_available"] == 6 and frames[0]["args"]["head"] == 10
    assert frames[1] == gap(hub, "system-state", 5, "expired")
    assert numbered(frames[2:]) == [("system_state", 10, 10)]


def test_quiet_source_forgets_events_older_than_retain_seconds(hub, clock):
    """retain_seconds bounds how long an event is kept even when the source publishes
    nothing more: a later resume gets an expired gap, not hour-old events."""
    publish(hub, "ticker", 1, 2, 3)
    clock.advance(61)
    client = Client()
    subscribe(hub, client, [{"name": "ticker", "since": 1}])
    assert client.frames() == [gap(hub, "ticker", 2, "expired")]


def test_a_name_listed_twice_with_a_resume_gets_each_missed_event_once(hub):
    """["ticker", {"name": "ticker", "since": 1}] resumes ticker once: no event twice."""
    publish(hub, "ticker", 1, 2, 3)
    client = Client()
    subscribe(hub, client, ["ticker", {"name": "ticker", "since": 1}])
    publish(hub, "ticker", 4)
    assert [f["seq"] for f in client.frames()] == [2, 3, 4]


def test_since_past_the_head_of_the_same_epoch_is_a_400_changing_nothing(hub):
    """A since beyond the head (same or no epoch) is refused, and no name of the request
    is subscribed."""
    publish(hub, "ticker", 1, 2)
    client = Client()
    for resume_epoch in (None, epoch(hub, "ticker")):
        with pytest.raises(RequestError) as caught:
            hub.subscribe(client.outbound, ["system-state", "ticker"],
                          resumes={"ticker": Resume("ticker", 3, resume_epoch)})
        assert caught.value.code == 400 and "past its newest event (2)" in caught.value.details
    publish(hub, "ticker", 3)
    publish(hub, "system-state", 1)
    assert (hub.subscriptions(client.outbound), client.frames()) == ([], [])


def test_since_past_the_head_of_another_epoch_is_a_gap(hub):
    """Another epoch's numbers may be anything: a large since there is an epoch_changed
    gap, not a 400."""
    publish(hub, "ticker", 1)
    client = Client()
    subscribe(hub, client, [{"name": "ticker", "since": 500, "epoch": OLD_EPOCH}])
    assert client.frames() == [gap(hub, "ticker", 501, "epoch_changed")]


def test_parse_accepts_names_and_resume_objects():
    """Names and objects mix; an object without since is a plain name."""
    names, resumes = resume.parse(["a", {"name": "b"}, {"name": "c", "since": 0},
                                   {"name": "d", "since": 9, "epoch": "e1"}])
    assert names == ["a", "b", "c", "d"]
    assert {n: (r.name, r.since, r.epoch) for n, r in resumes.items()} == {
        "c": ("c", 0, None), "d": ("d", 9, "e1")}
    assert resume.parse("a") == (["a"], {})


@pytest.mark.parametrize("args, message", [
    (None, "args must be an event source name or a non-empty list"),
    ([], "args must be an event source name or a non-empty list"),
    ({"name": "a"}, "args must be an event source name or a non-empty list"),
    ([5], "a source name or an object with a \"name\""),
    ([{"since": 1}], "a source name or an object with a \"name\""),
    ([{"name": 3, "since": 1}], "a source name or an object with a \"name\""),
    ([{"name": "a", "since": 1, "from": 2}], "unknown key(s) in a subscription: from"),
    ([{"name": "a", "since": -1}], "\"since\" of a must be an integer >= 0"),
    ([{"name": "a", "since": "4"}], "\"since\" of a must be an integer >= 0"),
    ([{"name": "a", "since": 1.0}], "\"since\" of a must be an integer >= 0"),
    ([{"name": "a", "since": True}], "\"since\" of a must be an integer >= 0"),
    ([{"name": "a", "since": 1, "epoch": 7}], "\"epoch\" of a must be a string"),
])
def test_parse_refuses_bad_args_with_a_clear_400(args, message):
    """Anything but names and well-typed objects is a 400 saying what is wrong."""
    with pytest.raises(RequestError) as caught:
        resume.parse(args)
    assert caught.value.code == 400 and message in caught.value.details


def test_heads_frames_give_each_spec_subscriber_its_sources_heads(hub):
    """Each spec subscriber gets the heads of the sources it follows; original-dialect
    sinks and sinks that unsubscribed get none."""
    spec, both, original, idle = Client(), Client(), Client(ORIGINAL), Client()
    hub.subscribe(spec.outbound, "ticker")
    hub.subscribe(both.outbound, ["ticker", "system-state"])
    hub.subscribe(original.outbound, ["ticker", "system-state"])
    hub.subscribe(idle.outbound, "ticker")
    hub.unsubscribe(idle.outbound, "ticker")
    publish(hub, "ticker", 1, 2, 3)
    publish(hub, "system-state", 1)
    frames = heads_frames(hub)
    assert set(frames) == {spec.outbound, both.outbound}
    assert frames[spec.outbound] == envelope.event("heads", {"ticker": 3})
    assert frames[both.outbound] == envelope.event("heads", {"system-state": 1, "ticker": 3})


def test_heads_service_sends_every_interval_and_closes_the_logs(clock, tmp_path):
    """HeadsService sends heads each interval, not at start, and closes the log files
    when stopped."""
    retention = Retention(clock, str(tmp_path))
    hub = EventHub(prepare_text, retention)
    hub.add_source("ticker", "ticker_frame", replay_last=False)
    client = Client()
    hub.subscribe(client.outbound, "ticker")
    path = os.path.realpath(tmp_path / "events" / "ticker.log")
    assert [fd for fd in os.listdir("/proc/self/fd") if os.path.realpath(f"/proc/self/fd/{fd}") == path]
    service = HeadsService(clock, hub, 30)
    service.startService()
    publish(hub, "ticker", 1, 2)
    client.frames()
    clock.advance(29)
    assert client.frames() == []
    clock.advance(1)
    assert client.frames() == [envelope.event("heads", {"ticker": 2})]
    service.stopService()
    clock.advance(30)
    assert client.frames() == []
    assert not [fd for fd in os.listdir("/proc/self/fd") if os.path.realpath(f"/proc/self/fd/{fd}") == path]


def test_overflow_gap_replaces_the_dropped_notice_for_spec(hub):
    """A spec client that overflowed gets, once caught up, one overflow gap per source with
    the exact range dropped, and no dropped count."""
    client = Client()
    subscribe(hub, client, ["ticker", "system-state"])
    frame = b'{"namespace":"events","name":"ticker_frame","id":"none","args":{"n":1},"seq":1,"epoch":"%s"}'
    client.outbound.limit = 2 * queued_size(prepare_text(frame % epoch(hub, "ticker").encode()))
    client.outbound.pauseProducing()
    publish(hub, "ticker", 1, 2, 3)  # 1 and 2 wait, 3 is dropped
    publish(hub, "system-state", 1, 2)
    publish(hub, "ticker", 4)
    client.outbound.resumeProducing()
    frames = client.frames()
    assert numbered(frames[:2]) == [("ticker_frame", 1, 1), ("ticker_frame", 2, 2)]
    assert frames[2:] == [gap(hub, "ticker", 3, "overflow", 4), gap(hub, "system-state", 1, "overflow", 2)]
    publish(hub, "ticker", 5)
    assert numbered(client.frames()) == [("ticker_frame", 5, 5)]


def test_overflow_keeps_the_dropped_count_for_original_clients(hub):
    """An original-dialect client that overflowed gets the dropped count, never a gap."""
    client = Client(ORIGINAL, limit=1)
    hub.subscribe(client.outbound, ["ticker", "system-state"])
    client.outbound.pauseProducing()
    publish(hub, "ticker", 1, 2, 3)
    publish(hub, "system-state", 1)
    client.outbound.resumeProducing()
    assert client.frames() == [{"namespace": "events", "name": "dropped", "id": "", "args": {"count": 4}}]
