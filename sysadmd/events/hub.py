"""Fan events out to subscribers: each event is serialized and framed once.

A subscriber is a *sink* providing ``send_event(event)``; the WebSocket connection's
:class:`sysadmd.channel.outbound.Outbound` is one. The hub never blocks on a sink: a sink
that cannot keep up queues, drops or disconnects on its own (see ``outbound``).
"""

from sysadmd.protocol import envelope
from sysadmd.protocol.envelope import RequestError
from sysadmd.util.log import Logger


class SourceChannel:
    """Per-source fan-out state: subscribers, the cached last event, counters."""

    def __init__(self, name, frame_name, replay_last):
        self.name = name
        self.frame_name = frame_name
        self.replay_last = replay_last
        self.subscribers = set()
        self.last = None
        self.published = 0
        self.dropped = 0


class Event:
    """One published event: its JSON payload, and its WebSocket frame made on first use
    and then shared by every subscriber."""

    __slots__ = ("channel", "payload", "_prepare", "_prepared")

    def __init__(self, channel, payload, prepare):
        self.channel = channel
        self.payload = payload
        self._prepare = prepare
        self._prepared = None

    def prepared(self):
        """The framed message (``autobahn`` ``PreparedMessage``), built once."""
        if self._prepared is None:
            self._prepared = self._prepare(self.payload)
        return self._prepared


class EventHub:
    """Subscriptions and publishing for every event source.

    ``prepare(payload_bytes)`` frames a payload once for all subscribers (the server
    factory's ``prepareMessage``).
    """

    log = Logger()

    def __init__(self, prepare):
        self._prepare = prepare
        self._channels = {}

    def add_source(self, name, frame_name, replay_last):
        """Make ``name`` subscribable."""
        if name in self._channels:
            raise ValueError(f"event source {name!r} is already registered")
        self._channels[name] = SourceChannel(name, frame_name, replay_last)

    def names(self):
        """The subscribable source names."""
        return sorted(self._channels)

    def channel(self, name):
        """The :class:`SourceChannel` of ``name`` (for metrics and tests)."""
        return self._channels[name]

    def publish(self, name, args):
        """Send an event from source ``name`` to its subscribers (and cache it)."""
        channel = self._channels[name]
        payload = envelope.encode(envelope.event(channel.frame_name, args))
        event = Event(channel, payload, self._prepare)
        channel.published += 1
        if channel.replay_last:
            channel.last = event
        for sink in list(channel.subscribers):
            try:
                sink.send_event(event)
            except Exception:
                self.log.failure("delivering a {source} event failed", source=name)

    def _checked(self, names):
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise RequestError(400, "args must be an event source name or a non-empty list of names.")
        unknown = [n for n in names if n not in self._channels]
        if unknown:
            raise RequestError(
                400,
                "Unknown event source(s): "
                + ", ".join(unknown)
                + ". Known: "
                + ", ".join(self.names())
                + ".",
            )
        return names

    def subscribe(self, sink, names):
        """Subscribe ``sink``; returns (the request's names, a function that replays the
        cached events of the newly subscribed sources). Raises RequestError(400) for bad
        or unknown names, changing nothing."""
        names = self._checked(names)
        new = []
        for name in names:
            channel = self._channels[name]
            if sink not in channel.subscribers:
                channel.subscribers.add(sink)
                new.append(channel)

        def replay():
            for channel in new:
                if channel.last is not None and sink in channel.subscribers:
                    sink.send_event(channel.last)

        return names, replay

    def unsubscribe(self, sink, names):
        """Unsubscribe ``sink``; returns the request's names. Raises RequestError(400) for
        bad or unknown names, changing nothing."""
        names = self._checked(names)
        for name in names:
            self._channels[name].subscribers.discard(sink)
        return names

    def drop(self, sink):
        """Remove ``sink`` from every source."""
        for channel in self._channels.values():
            channel.subscribers.discard(sink)

    def subscriptions(self, sink):
        """The names ``sink`` is subscribed to."""
        return sorted(c.name for c in self._channels.values() if sink in c.subscribers)
