"""A connection's outgoing queue: pass-through, pausing, bounded events, drop notices."""

import json

import pytest
from twisted.internet.interfaces import IPushProducer
from zope.interface.verify import verifyObject

from sysadmd.channel.outbound import DISCONNECT, DROP, Outbound, queued_size
from sysadmd.events.hub import Event, SourceChannel
from sysadmd.events.retention import Retention, SystemClock
from sysadmd.protocol import envelope
from sysadmd.protocol.framing import prepare_text


class Harness:
    """An Outbound writing into a list, with a channel to make events from."""

    def __init__(self, limit=10_000, mode=DROP):
        self.written = []
        self.overflows = 0
        self.channel = SourceChannel("ticker", "ticker", False, Retention(SystemClock()).open("ticker"))
        self.outbound = Outbound(self.written.append, prepare_text, limit, mode, self._overflow)

    def _overflow(self):
        self.overflows += 1

    def event(self, n, pad=""):
        payload = envelope.encode(envelope.event("ticker", {"n": n, "pad": pad}))
        return Event(self.channel, payload, prepare_text)

    def frames(self):
        return [json.loads(prepared.payload) for prepared in self.written]

    def event_numbers(self):
        return [f["args"]["n"] for f in self.frames() if f["name"] == "ticker"]


def _size(prepared):
    return queued_size(prepared)


def _reply(i):
    return envelope.error(i, 404, "x")


def test_outbound_provides_push_producer():
    """Outbound is registered with the transport as a push producer."""
    assert verifyObject(IPushProducer, Harness().outbound)


def test_not_paused_writes_straight_through_in_order():
    """Unpaused, every frame is written immediately and nothing is queued."""
    h = Harness()
    h.outbound.send_frame(_reply(1))
    h.outbound.send_event(h.event(1))
    h.outbound.send_frame(_reply(2))
    assert h.frames() == [
        _reply(1),
        envelope.event("ticker", {"n": 1, "pad": ""}),
        _reply(2),
    ]
    assert h.outbound.queued_bytes == 0


def test_send_event_writes_the_shared_prepared_message():
    """An event is written as its own PreparedMessage, not re-framed per connection."""
    h = Harness()
    event = h.event(1)
    h.outbound.send_event(event)
    assert h.written == [event.prepared()]


def test_paused_frames_queue_in_order_and_flush_on_resume():
    """While paused nothing is written; resumeProducing writes the queue in order."""
    h = Harness()
    h.outbound.pauseProducing()
    h.outbound.send_event(h.event(1))
    h.outbound.send_frame(_reply("r"))
    h.outbound.send_event(h.event(2))
    assert h.written == []
    assert h.outbound.queued_bytes > 0
    h.outbound.resumeProducing()
    frames = h.frames()
    assert [f["name"] for f in frames] == ["ticker", "error", "ticker"]
    assert h.event_numbers() == [1, 2]
    assert h.outbound.queued_bytes == 0


def test_pause_during_flush_keeps_the_rest_queued():
    """A transport that pauses again while being written to stops the flush there."""
    h = Harness()
    outbound = h.outbound

    def write(prepared):
        h.written.append(prepared)
        outbound.pauseProducing()

    outbound._write = write
    outbound.pauseProducing()
    for n in range(3):
        outbound.send_event(h.event(n))
    outbound.resumeProducing()
    assert h.event_numbers() == [0]
    outbound.resumeProducing()
    assert h.event_numbers() == [0, 1]
    outbound.resumeProducing()
    assert h.event_numbers() == [0, 1, 2]
    assert outbound.queued_bytes == 0


def test_frames_after_resume_still_wait_behind_queued_ones():
    """Order holds even when new frames arrive while older ones are still queued."""
    h = Harness()
    h.outbound.pauseProducing()
    h.outbound.send_event(h.event(1))
    h.outbound.resumeProducing()
    h.outbound.send_event(h.event(2))
    assert h.event_numbers() == [1, 2]


def _fill(h, count, pad=""):
    """Pause and queue ``count`` events; returns the size of one."""
    h.outbound.pauseProducing()
    for n in range(count):
        h.outbound.send_event(h.event(n, pad))
    return _size(h.event(0, pad).prepared())


def test_events_beyond_limit_are_dropped_counted_and_reported_once_after_drain():
    """Events that would exceed ``limit`` are dropped and counted on the outbound and
    the channel; after the queue drains exactly one ``dropped`` frame follows it."""
    size = _size(Harness().event(0).prepared())
    h = Harness(limit=3 * size)
    _fill(h, 5)
    assert h.outbound.queued_bytes == 3 * size
    assert h.outbound.dropped == 2
    assert h.channel.dropped == 2
    h.outbound.resumeProducing()
    frames = h.frames()
    assert h.event_numbers() == [0, 1, 2]
    assert frames[-1] == {"namespace": "events", "name": "dropped", "id": "none", "args": {"count": 2}}
    assert [f["name"] for f in frames].count("dropped") == 1
    assert h.outbound.dropped == 0
    # Caught up: later events pass straight through with no further notice.
    h.outbound.send_event(h.event(99))
    assert h.frames()[-1]["args"] == {"n": 99, "pad": ""}
    assert [f["name"] for f in h.frames()].count("dropped") == 1


def test_event_exactly_at_limit_is_queued():
    """The limit is inclusive: queued bytes may reach it but not pass it."""
    size = _size(Harness().event(0).prepared())
    h = Harness(limit=2 * size)
    _fill(h, 2)
    assert h.outbound.dropped == 0
    assert h.outbound.queued_bytes == 2 * size


def test_once_dropping_started_smaller_events_are_dropped_until_drained():
    """After the first drop, even events that would fit are dropped, so the client sees
    one gap and one count rather than scattered holes."""
    big = Harness().event(0, pad="x" * 200)
    small_size = _size(Harness().event(0).prepared())
    h = Harness(limit=_size(big.prepared()) + small_size)
    h.outbound.pauseProducing()
    h.outbound.send_event(h.event(1, pad="x" * 200))
    h.outbound.send_event(h.event(2, pad="x" * 200))  # does not fit: dropping starts
    h.outbound.send_event(h.event(3))  # would fit, but dropping goes on
    assert h.outbound.dropped == 2
    h.outbound.resumeProducing()
    assert h.event_numbers() == [1]
    assert h.frames()[-1]["args"] == {"count": 2}


def test_drop_notice_waits_until_queue_is_fully_drained():
    """If the transport pauses again before the queue empties, the notice waits too."""
    size = _size(Harness().event(0).prepared())
    h = Harness(limit=2 * size)
    outbound = h.outbound

    def write(prepared):
        h.written.append(prepared)
        outbound.pauseProducing()

    outbound._write = write
    _fill(h, 3)
    outbound.resumeProducing()
    assert [f["name"] for f in h.frames()] == ["ticker"]
    outbound.resumeProducing()
    assert [f["name"] for f in h.frames()] == ["ticker", "ticker"]
    outbound.resumeProducing()
    assert h.frames()[-1]["name"] == "dropped"
    assert h.frames()[-1]["args"] == {"count": 1}


def test_replies_are_never_dropped_even_past_the_limit():
    """send_frame always queues: a client only gets replies it asked for."""
    size = _size(Harness().event(0).prepared())
    h = Harness(limit=size)
    _fill(h, 3)  # one queued, two dropped
    for i in range(10):
        h.outbound.send_frame(_reply(i))
    assert h.outbound.queued_bytes > h.outbound.limit
    h.outbound.resumeProducing()
    frames = h.frames()
    assert [f["id"] for f in frames if f["name"] == "error"] == list(range(10))
    assert frames[-1]["name"] == "dropped"
    assert frames[-1]["args"] == {"count": 2}


def test_replies_alone_past_the_limit_make_following_events_drop():
    """Queued replies count toward the limit for the events that follow them."""
    h = Harness(limit=100)
    h.outbound.pauseProducing()
    h.outbound.send_frame({"namespace": "rpc", "name": "response", "id": 1, "args": "x" * 200})
    h.outbound.send_event(h.event(1))
    assert h.outbound.dropped == 1
    assert h.channel.dropped == 1


def test_disconnect_mode_overflows_once_clears_queue_and_ignores_later_frames():
    """In disconnect mode the first overflowing event calls overflow() once, forgets the
    queue and nothing more is ever written."""
    size = _size(Harness().event(0).prepared())
    h = Harness(limit=2 * size, mode=DISCONNECT)
    _fill(h, 2)
    assert h.overflows == 0
    h.outbound.send_event(h.event(2))
    assert h.overflows == 1
    assert h.outbound.closed
    assert h.outbound.queued_bytes == 0
    h.outbound.send_event(h.event(3))
    h.outbound.send_frame(_reply(1))
    h.outbound.resumeProducing()
    assert h.overflows == 1
    assert h.written == []


def test_disconnect_mode_does_not_disconnect_while_within_limit():
    """A paused subscriber within its buffer is kept."""
    size = _size(Harness().event(0).prepared())
    h = Harness(limit=2 * size, mode=DISCONNECT)
    _fill(h, 2)
    h.outbound.resumeProducing()
    assert h.overflows == 0
    assert h.event_numbers() == [0, 1]


def test_stop_producing_closes_and_discards_queue():
    """stopProducing (the connection is going away) forgets queued frames for good."""
    h = Harness()
    _fill(h, 3)
    h.outbound.stopProducing()
    assert h.outbound.closed
    assert h.outbound.queued_bytes == 0
    h.outbound.resumeProducing()
    h.outbound.send_frame(_reply(1))
    h.outbound.send_event(h.event(9))
    assert h.written == []


@pytest.mark.parametrize("mode", [DROP, DISCONNECT])
def test_unpaused_events_are_never_dropped_whatever_their_size(mode):
    """The limit bounds only what waits; an unpaused connection writes big events."""
    h = Harness(limit=10, mode=mode)
    h.outbound.send_event(h.event(1, pad="x" * 1000))
    assert h.event_numbers() == [1]
    assert h.outbound.dropped == 0
    assert h.overflows == 0


def test_when_drained_is_called_once_after_what_waited_was_sent():
    """A reader at the client's pace (job-output) is called back once the transport takes
    more and nothing waits; not while frames still wait, never after close."""
    h = Harness()
    calls = []
    h.outbound.pauseProducing()
    h.outbound.send_frame(_reply(1))
    h.outbound.when_drained(lambda: calls.append(len(h.written)))
    h.outbound.resumeProducing()
    assert calls == [1]
    h.outbound.resumeProducing()
    assert calls == [1]
    h.outbound.pauseProducing()
    h.outbound.when_drained(lambda: calls.append("closed"))
    h.outbound.close()
    h.outbound.resumeProducing()
    assert calls == [1]
