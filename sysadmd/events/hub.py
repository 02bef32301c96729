"""Fan events out to subscribers: each event is serialized and framed once.

A subscriber is a *sink* providing ``send_event(event)``; the WebSocket connection's
:class:`sysadmd.channel.outbound.Outbound` is one. The hub never blocks on a sink: a sink
that cannot keep up queues, drops or disconnects on its own (see ``outbound``).

An event is encoded in the ``spec`` dialect when published. Its ``original`` form (see
:mod:`sysadmd.protocol.dialect`) is made on first use, once, and only when a subscriber
speaking that dialect asks for it, so spec-only daemons pay nothing for it.
"""

from sysadmd.events.resume import missed
from sysadmd.events.retention import Retention, SystemClock
from sysadmd.protocol import envelope
from sysadmd.protocol.dialect import EVENT_IDS, ORIGINAL, SPEC, WithOriginal
from sysadmd.protocol.envelope import RequestError
from sysadmd.util.log import Logger

log = Logger()


def _frame_prefix(name, frame_id):
    """The bytes an encoded event frame starts with, up to its args."""
    whole = envelope.encode(envelope.event(name, None, frame_id))
    return whole[: -len(b"null}")]


class SourceChannel:
    """Per-source fan-out state: subscribers, the cached last event, counters, and the
    numbered log of recent events (:mod:`sysadmd.events.retention`)."""

    def __init__(self, name, frame_name, replay_last, source_log):
        self.name = name
        self.log = source_log
        self.snapshot = None
        self.frame_name = frame_name
        self.replay_last = replay_last
        self.subscribers = set()
        self.last = None
        self.published = 0
        self.dropped = 0
        # The original server named frames after the subscription, with "id": "".
        self._spec_prefix = _frame_prefix(frame_name, EVENT_IDS[SPEC])
        self._original_prefix = _frame_prefix(name, EVENT_IDS[ORIGINAL])

    def spec_payload(self, args_bytes, seq, epoch):
        """The spec dialect's frame payload: the envelope, then ``seq`` and ``epoch``."""
        return b'%s%s,"seq":%d,"epoch":"%s"}' % (self._spec_prefix, args_bytes, seq, epoch.encode())

    def original_payload(self, payload, original_args=None):
        """The original dialect's payload of an event whose spec payload is
        ``payload``: the same args bytes behind another head (no second encoding, no seq
        or epoch), or ``original_args`` encoded when the source gave different ones."""
        if original_args is not None:
            try:
                return envelope.encode(envelope.event(self.name, original_args, EVENT_IDS[ORIGINAL]))
            except ValueError as e:
                log.error("{source}: the original-dialect form of an event cannot be "
                          "encoded ({problem}); sending its spec args", source=self.name,
                          problem=str(e))
        args_end = payload.rindex(b',"seq":')
        return self._original_prefix + payload[len(self._spec_prefix):args_end] + b"}"


class Event:
    """One published event: its JSON payload, and its WebSocket frame made on first use
    and then shared by every subscriber. :attr:`original` is the same event in the
    original dialect."""

    __slots__ = ("channel", "payload", "seq", "_prepare", "_prepared", "_original_args", "_original")

    def __init__(self, channel, payload, prepare, original_args=None, seq=None):
        self.channel = channel
        self.seq = seq
        self.payload = payload
        self._prepare = prepare
        self._prepared = None
        self._original_args = original_args
        self._original = None

    def prepared(self):
        """The framed message (``autobahn`` ``PreparedMessage``), built once."""
        if self._prepared is None:
            self._prepared = self._prepare(self.payload)
        return self._prepared

    @property
    def original(self):
        """This event as the original SysAdm server sent it (an :class:`Event` too, its
        own ``original``), made on first use and shared by every subscriber asking."""
        if self._original is None:
            payload = self.channel.original_payload(self.payload, self._original_args)
            original = Event(self.channel, payload, self._prepare)
            original._original = original
            self._original = original
        return self._original


class EventHub:
    """Subscriptions and publishing for every event source.

    ``prepare(payload_bytes)`` frames a payload once for all subscribers (the server
    factory's ``prepareMessage``).
    """

    log = Logger()

    def __init__(self, prepare, retention=None):
        self._prepare = prepare
        self._channels = {}
        self._streams = {}
        self.retention = retention if retention is not None else Retention(SystemClock())

    def add_stream(self, stream):
        """Make ``stream`` (an :class:`sysadmd.interfaces.IEventStream`) subscribable under
        its name."""
        if stream.name in self._channels or stream.name in self._streams:
            raise ValueError(f"event source {stream.name!r} is already registered")
        self._streams[stream.name] = stream

    def stream(self, name):
        """The :class:`~sysadmd.interfaces.IEventStream` named ``name``, or None."""
        return self._streams.get(name)

    def split_streams(self, args):
        """``(rest, [(stream, item)])``: subscribe or unsubscribe args without the items
        that name a stream (an object ``{"name": <stream>, ...}``, or the bare name),
        and those items with their stream. ``args`` that are not a list stay as they are."""
        if isinstance(args, str) and args in self._streams:
            return [], [(self._streams[args], {"name": args})]
        if not isinstance(args, list):
            return args, []
        rest, taken = [], []
        for item in args:
            name = item.get("name") if isinstance(item, dict) else item
            stream = self._streams.get(name) if isinstance(name, str) else None
            if stream is None:
                rest.append(item)
            else:
                taken.append((stream, item if isinstance(item, dict) else {"name": name}))
        return rest, taken

    def add_source(self, name, frame_name, replay_last, snapshot=None):
        """Make ``name`` subscribable; ``snapshot()``, when given, lists the args of
        events that describe its current state (sent after a gap)."""
        if name in self._channels:
            raise ValueError(f"event source {name!r} is already registered")
        channel = SourceChannel(name, frame_name, replay_last, self.retention.open(name))
        channel.snapshot = snapshot
        self._channels[name] = channel

    def names(self):
        """The event sources' names (streams not included)."""
        return sorted(self._channels)

    def channel(self, name):
        """The :class:`SourceChannel` of ``name`` (for metrics and tests)."""
        return self._channels[name]

    def publish(self, name, args, original=None):
        """Send an event from source ``name`` to its subscribers (and cache it).

        ``original``, when given, are the args the original dialect carries instead of
        ``args`` (encoded only if an original-dialect subscriber asks); ``args`` given as
        a :class:`sysadmd.protocol.dialect.WithOriginal` carries them itself."""
        if original is None and isinstance(args, WithOriginal):
            original = args.original
        channel = self._channels[name]
        args_bytes = envelope.encode(args)
        # Kept (on disk) before anyone is sent it: a number is never given twice.
        seq, payload = channel.log.record(lambda seq, epoch: channel.spec_payload(args_bytes, seq, epoch))
        event = Event(channel, payload, self._prepare, original, seq)
        channel.published += 1
        if channel.replay_last:
            channel.last = event
        for sink in list(channel.subscribers):
            try:
                sink.send_event(event)
            except Exception:
                self.log.failure("delivering a {source} event failed", source=name)

    @staticmethod
    def _listed(names):
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise RequestError(400, "args must be an event source name or a non-empty list of names.")
        return names

    def known(self, names):
        """The subscribable names among ``names`` (a name or a list), in order; unknown
        ones are left out (the original dialect skips them). RequestError(400) for
        args that are not names."""
        return [n for n in self._listed(names) if n in self._channels]

    def _checked(self, names):
        names = self._listed(names)
        unknown = [n for n in names if n not in self._channels]
        if unknown:
            raise RequestError(
                400,
                "Unknown event source(s): "
                + ", ".join(unknown)
                + ". Known: "
                + ", ".join(sorted([*self._channels, *self._streams]))
                + ".",
            )
        return names

    def subscribe(self, sink, names, resend=False, resumes=None):
        """Subscribe ``sink``; returns (the request's names, a function to call right
        after the reply: it replays the cached events of the newly subscribed sources,
        or with ``resend`` of every named source, as the original server did).

        ``resumes`` maps names to :class:`sysadmd.events.resume.Resume`: those sources
        are subscribed by the returned function itself, which first sends what the
        client missed (or a gap and the current state), so nothing comes between.
        Raises RequestError(400) for bad or unknown names, changing nothing."""
        names = self._checked(names)
        resumes = resumes or {}
        # A source this sink already follows is resumed too: its stream starts again after
        # since (how a client fetches the range an overflow gap announced).
        plans = {name: missed(self._channels[name].log, resumes[name]) for name in names if name in resumes}
        new, resumed = [], []
        for name in names:
            channel = self._channels[name]
            if name in plans:
                if channel not in resumed:
                    resumed.append(channel)
            elif sink not in channel.subscribers:
                channel.subscribers.add(sink)
                new.append(channel)
            elif resend and channel not in new:
                new.append(channel)

        def replay():
            for channel in new:
                if channel.last is not None and sink in channel.subscribers:
                    sink.send_event(channel.last)
            for channel in resumed:
                channel.subscribers.add(sink)
                entries, gap = plans[channel.name]
                if gap is None:
                    for seq, _, payload in entries:
                        sink.send_event(Event(channel, payload, self._prepare, seq=seq))
                    continue
                sink.send_frame(gap)
                self._send_state(channel, sink)

        return names, replay

    def _send_state(self, channel, sink):
        """A source's current state, after a gap: its cached last event, or the frames
        its ``snapshot`` gives (the dispatcher's pending and running jobs)."""
        if channel.last is not None:
            sink.send_event(channel.last)
        elif channel.snapshot is not None:
            try:
                states = list(channel.snapshot())
            except Exception:
                self.log.failure("{source}: its snapshot failed", source=channel.name)
                return
            for args in states:
                sink.send_frame(envelope.event(channel.frame_name, args))

    def unsubscribe(self, sink, names):
        """Unsubscribe ``sink``; returns the request's names. Raises RequestError(400) for
        bad or unknown names, changing nothing."""
        names = self._checked(names)
        for name in names:
            self._channels[name].subscribers.discard(sink)
        return names

    def drop(self, sink):
        """Remove ``sink`` from every source and stream."""
        for channel in self._channels.values():
            channel.subscribers.discard(sink)
        for stream in self._streams.values():
            stream.drop(sink)

    def subscriptions(self, sink):
        """The names ``sink`` is subscribed to."""
        return sorted(c.name for c in self._channels.values() if sink in c.subscribers)
