"""The event hub: one encoding per event, subscriptions, replay, isolation of sinks."""

import json

import pytest

from sysadmd.channel.outbound import DROP, Outbound
from sysadmd.events.hub import EventHub
from sysadmd.protocol.envelope import RequestError
from sysadmd.protocol.framing import prepare_text


class SpyPrepare:
    """A prepare function that records every payload it frames."""

    def __init__(self):
        self.calls = []

    def __call__(self, payload):
        self.calls.append(payload)
        return prepare_text(payload)


class Sink:
    """A subscriber that, like Outbound, asks the event for its prepared frame."""

    def __init__(self):
        self.events = []

    def send_event(self, event):
        event.prepared()
        self.events.append(event)

    def frames(self):
        return [json.loads(e.payload) for e in self.events]


class BrokenSink:
    def __init__(self):
        self.calls = 0

    def send_event(self, event):
        self.calls += 1
        raise RuntimeError("sink exploded")


@pytest.fixture
def prepare():
    return SpyPrepare()


@pytest.fixture
def hub(prepare):
    hub = EventHub(prepare)
    hub.add_source("system-state", "system_state", replay_last=True)
    hub.add_source("ticker", "ticker_frame", replay_last=False)
    return hub



def test_publish_encodes_and_prepares_once_for_many_subscribers(hub, prepare):
    """However many subscribers, each event is framed exactly once and shared."""
    sinks = [Sink() for _ in range(50)]
    for sink in sinks:
        hub.subscribe(sink, "ticker")
    hub.publish("ticker", {"n": 1})
    assert len(prepare.calls) == 1
    shared = sinks[0].events[0].prepared()
    assert all(sink.events[0].prepared() is shared for sink in sinks)


def test_publish_encodes_once_for_real_outbound_subscribers(hub, prepare):
    """Real Outbound subscribers also share one prepared message."""
    written = []
    outbounds = [Outbound(written.append, prepare_text, 10_000, DROP, lambda: None) for _ in range(5)]
    for outbound in outbounds:
        hub.subscribe(outbound, ["ticker"])
    hub.publish("ticker", {"n": 1})
    assert len(prepare.calls) == 1
    assert len(written) == 5
    assert all(w is written[0] for w in written)


def test_publish_without_subscribers_frames_nothing(hub, prepare):
    """Nobody listening: no framing work (but the event is still counted)."""
    hub.publish("ticker", {"n": 1})
    assert prepare.calls == []
    assert hub.channel("ticker").published == 1


def test_event_frame_has_events_namespace_frame_name_and_none_id(hub, prepare):
    """The wire frame is ``{"namespace":"events","name":<frame_name>,"id":"none","args":...,
    "seq":..., "epoch":...}``, numbered from 1 in the source's epoch."""
    sink = Sink()
    hub.subscribe(sink, "ticker")
    hub.publish("ticker", {"n": 1, "s": "é"})
    hub.publish("ticker", {"n": 2, "s": "x"})
    epoch = hub.channel("ticker").log.epoch
    expected = [{"namespace": "events", "name": "ticker_frame", "id": "none", "args": {"n": n, "s": t},
                 "seq": n, "epoch": epoch} for n, t in ((1, "é"), (2, "x"))]
    assert sink.frames() == expected
    assert [json.loads(call) for call in prepare.calls] == expected


def test_publish_only_reaches_subscribers_of_that_source(hub):
    """A sink subscribed to one source gets nothing from another."""
    state, ticker = Sink(), Sink()
    hub.subscribe(state, "system-state")
    hub.subscribe(ticker, "ticker")
    hub.publish("ticker", {"n": 1})
    assert state.events == []
    assert [f["args"] for f in ticker.frames()] == [{"n": 1}]


@pytest.mark.parametrize(
    "names, expected",
    [("ticker", ["ticker"]), (["ticker"], ["ticker"]), (["ticker", "system-state"], ["ticker", "system-state"])],
)
def test_subscribe_returns_all_requested_names(hub, names, expected):
    """A string or a list of names; the reply names every requested source."""
    sink = Sink()
    returned, _replay = hub.subscribe(sink, names)
    assert returned == expected
    assert hub.subscriptions(sink) == sorted(expected)


def test_subscribe_unknown_name_is_400_naming_it_and_changes_nothing(hub):
    """One unknown name fails the whole request: the valid names are not subscribed."""
    sink = Sink()
    with pytest.raises(RequestError) as info:
        hub.subscribe(sink, ["ticker", "no-such-source", "system-state"])
    assert info.value.code == 400
    assert "no-such-source" in info.value.details
    assert "ticker" in info.value.details  # the known names are listed as a hint
    assert hub.subscriptions(sink) == []
    hub.publish("ticker", {"n": 1})
    assert sink.events == []


@pytest.mark.parametrize("names", [[], 3, None, {"ticker": 1}, ["ticker", 3], [["ticker"]]])
def test_subscribe_malformed_names_is_400(hub, names):
    """Names must be a string or a non-empty list of strings."""
    sink = Sink()
    with pytest.raises(RequestError) as info:
        hub.subscribe(sink, names)
    assert info.value.code == 400
    assert hub.subscriptions(sink) == []


def test_subscribing_twice_delivers_each_event_once(hub):
    """A repeated subscription is harmless: still one delivery per event."""
    sink = Sink()
    hub.subscribe(sink, "ticker")
    hub.subscribe(sink, ["ticker", "ticker"])
    hub.publish("ticker", {"n": 1})
    assert len(sink.events) == 1


def test_replay_sends_cached_event_for_replay_last_source(hub):
    """A new subscriber of a replay_last source gets the last event when replay runs."""
    hub.publish("system-state", {"v": 1})
    hub.publish("system-state", {"v": 2})
    sink = Sink()
    _names, replay = hub.subscribe(sink, ["system-state", "ticker"])
    assert sink.events == []  # nothing before the reply has gone out
    replay()
    assert [f["args"] for f in sink.frames()] == [{"v": 2}]


def test_replay_skips_sources_without_replay_last(hub):
    """Sources without replay_last cache nothing to replay."""
    hub.publish("ticker", {"n": 1})
    sink = Sink()
    _names, replay = hub.subscribe(sink, "ticker")
    replay()
    assert sink.events == []
    assert hub.channel("ticker").last is None


def test_replay_skips_sources_already_subscribed(hub):
    """Re-subscribing does not replay: the sink already has the last event."""
    hub.publish("system-state", {"v": 1})
    sink = Sink()
    hub.subscribe(sink, "system-state")[1]()
    assert len(sink.events) == 1
    _names, replay = hub.subscribe(sink, "system-state")
    replay()
    assert len(sink.events) == 1


def test_replay_with_nothing_published_sends_nothing(hub):
    """No event yet, no replay."""
    sink = Sink()
    hub.subscribe(sink, "system-state")[1]()
    assert sink.events == []


def test_replay_after_unsubscribe_sends_nothing(hub):
    """A sink that unsubscribed before replay ran is not sent the cached event."""
    hub.publish("system-state", {"v": 1})
    sink = Sink()
    _names, replay = hub.subscribe(sink, "system-state")
    hub.unsubscribe(sink, "system-state")
    replay()
    assert sink.events == []


def test_replay_reuses_the_prepared_frame(hub, prepare):
    """Replaying the cached event does not frame it again."""
    first = Sink()
    hub.subscribe(first, "system-state")
    hub.publish("system-state", {"v": 1})
    late = Sink()
    hub.subscribe(late, "system-state")[1]()
    assert len(prepare.calls) == 1
    assert late.events[0] is first.events[0]


def test_unsubscribe_stops_delivery_and_returns_names(hub):
    """After unsubscribing from a source, its events no longer arrive."""
    sink = Sink()
    hub.subscribe(sink, ["ticker", "system-state"])
    assert hub.unsubscribe(sink, "ticker") == ["ticker"]
    hub.publish("ticker", {"n": 1})
    hub.publish("system-state", {"v": 1})
    assert [f["name"] for f in sink.frames()] == ["system_state"]
    assert hub.subscriptions(sink) == ["system-state"]


def test_unsubscribe_unknown_name_is_400_and_changes_nothing(hub):
    """An unknown name in unsubscribe leaves every subscription in place."""
    sink = Sink()
    hub.subscribe(sink, ["ticker", "system-state"])
    with pytest.raises(RequestError) as info:
        hub.unsubscribe(sink, ["ticker", "bogus"])
    assert info.value.code == 400
    assert "bogus" in info.value.details
    assert hub.subscriptions(sink) == ["system-state", "ticker"]


def test_unsubscribe_when_not_subscribed_is_harmless(hub):
    """Unsubscribing from a known source one is not subscribed to is fine."""
    sink = Sink()
    assert hub.unsubscribe(sink, ["ticker"]) == ["ticker"]
    assert hub.subscriptions(sink) == []


def test_drop_removes_sink_from_every_source(hub):
    """drop(sink) (connection closed) ends all its subscriptions, and only its own."""
    gone, stays = Sink(), Sink()
    hub.subscribe(gone, ["ticker", "system-state"])
    hub.subscribe(stays, ["ticker"])
    hub.drop(gone)
    hub.publish("ticker", {"n": 1})
    hub.publish("system-state", {"v": 1})
    assert hub.subscriptions(gone) == []
    assert gone.events == []
    assert len(stays.events) == 1


def test_failing_sink_does_not_stop_delivery_to_others(hub, log_events):
    """A sink that raises is logged (with the source's name); the rest still get the event."""
    before, broken, after = Sink(), BrokenSink(), Sink()
    # Subscribers are a set, so order is unspecified: several healthy sinks on both
    # "sides" make the test fail if delivery stopped at the broken one.
    healthy = [Sink() for _ in range(10)] + [before, after]
    for sink in healthy + [broken]:
        hub.subscribe(sink, "ticker")
    hub.publish("ticker", {"n": 1})
    hub.publish("ticker", {"n": 2})
    assert broken.calls == 2
    assert all(len(sink.events) == 2 for sink in healthy)
    failures = [e for e in log_events if "log_failure" in e and e.get("source") == "ticker"]
    assert len(failures) == 2
    assert failures[0]["log_failure"].check(RuntimeError)


def test_add_source_twice_is_an_error(hub):
    """Two sources cannot share a subscription name."""
    with pytest.raises(ValueError):
        hub.add_source("ticker", "other", replay_last=False)


def test_names_lists_sources_sorted(hub):
    """names() is what clients may subscribe to."""
    assert hub.names() == ["system-state", "ticker"]


def test_publish_counts_and_caches_last_event(hub):
    """Each publish is counted; replay_last sources keep the newest event."""
    hub.publish("system-state", {"v": 1})
    hub.publish("system-state", {"v": 2})
    channel = hub.channel("system-state")
    assert channel.published == 2
    assert json.loads(channel.last.payload)["args"] == {"v": 2}


def test_publish_of_unencodable_args_raises_and_delivers_nothing(hub):
    """The hub leaves unencodable args to its caller (SourcesService logs them)."""
    sink = Sink()
    hub.subscribe(sink, "system-state")
    with pytest.raises(TypeError):
        hub.publish("system-state", {"x": object()})
    assert sink.events == []
    assert hub.channel("system-state").last is None
    assert hub.channel("system-state").published == 0
