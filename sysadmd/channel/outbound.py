"""One connection's outgoing frames, bounded for subscribers that stop reading.

The queue is a push producer registered with the transport: when the kernel and the
transport's own buffer are full, Twisted pauses it, and frames wait here instead. Events
wait only while their bytes stay within ``limit``; beyond it they are dropped and counted
(the client is told how many once it has caught up) or the connection is closed with
1008, as configured. Replies are never dropped: a client gets them only by asking.

The queue speaks its client's dialect (:mod:`sysadmd.protocol.dialect`, set through
:attr:`sysadmd.channel.channel.Channel.dialect`): in ``original``, every error frame sent
carries its code as a string and events go out in their shared original form.
"""

from collections import deque

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from sysadmd.events.resume import OVERFLOW, gap_frame
from sysadmd.interfaces import IOutgoingQueue
from sysadmd.protocol import envelope
from sysadmd.protocol.dialect import EVENT_IDS, ORIGINAL, SPEC, original_frame

QUEUED_OVERHEAD = 256
DROP = "drop"


def queued_size(prepared):
    """The bytes a queued frame really holds: the frame, the unframed payload a
    PreparedMessage keeps for compressed connections, and the object, its ``__dict__``,
    the tuple and the deque slot (measured with tracemalloc: 2.4x the frame alone)."""
    return len(prepared.payloadHybi) + len(getattr(prepared, "payload", b"")) + QUEUED_OVERHEAD


DISCONNECT = "disconnect"


def shared_frame(event):
    """An event's frame as the hub made it once for every subscriber."""
    return event.prepared()


@implementer(IPushProducer, IOutgoingQueue)
class Outbound:
    """Ordered, bounded outgoing frames for one connection.

    ``write(prepared)`` sends a prepared message now; ``prepare(payload)`` frames bytes;
    ``overflow()`` is called once when a subscriber overflows in ``disconnect`` mode;
    ``paused_changed()``, when given, is called after every pause and resume (the
    connection stops reading from a peer that does not read); ``frame_event(event)``
    frames a published event (by default the hub's shared frame). ``dialect`` is what the
    client speaks (``SPEC`` until its channel says otherwise).
    """

    def __init__(self, write, prepare, limit, mode, overflow, paused_changed=None,
                 frame_event=shared_frame):
        self._write = write
        self._paused_changed = paused_changed
        self._prepare = prepare
        self._frame_event = frame_event
        self.limit = limit
        self.mode = mode
        self._overflow = overflow
        self._queue = deque()
        self.queued_bytes = 0
        self.dropped = 0
        self._lost = {}
        self.paused = False
        self.closed = False
        self._dialect = SPEC
        self._drain_waiters = []

    @property
    def dialect(self):
        """What the client speaks: ``SPEC`` or ``ORIGINAL`` (set by its channel)."""
        return self._dialect

    @dialect.setter
    def dialect(self, value):
        self._dialect = value
        # A spec queue keeps the plain send_event: no per-event test on the hub's
        # hottest path, which runs once per subscriber for every event.
        if value == ORIGINAL:
            self.send_event = self._send_original_event
        else:
            self.__dict__.pop("send_event", None)

    def _send_original_event(self, event):
        Outbound.send_event(self, event.original)

    def send_frame(self, frame):
        """Send a reply or notice (never dropped)."""
        if self._dialect == ORIGINAL:
            frame = original_frame(frame)
        self._push(self._prepare(envelope.encode(frame)))

    def send_payload(self, payload):
        """Send an encoded frame of the spec dialect (UTF-8 JSON bytes), e.g. one encoded
        once for several clients; never dropped."""
        self._push(self._prepare(payload))

    def send_prepared(self, prepared):
        """Send an already framed message (never dropped), e.g. an echo of any type."""
        self._push(prepared)

    # The transport's write, set by the connection while event frames may go straight to
    # it (no compression, open); None otherwise.
    direct = None

    def send_event(self, event):
        """Send a published :class:`sysadmd.events.hub.Event` (may be dropped); an
        original-dialect queue sends its original form (see :attr:`dialect`)."""
        direct = self.direct
        if direct is not None and not self.paused and not self._queue:
            direct(event.prepared().payloadHybi)
            return
        self._push(self._frame_event(event), True, event)

    def send_bounded(self, prepared):
        """Send a framed message that waits within the limit like an event (a relayed
        message at the bridge): past it, dropped or disconnected per the mode."""
        self._push(prepared, True)

    def _push(self, prepared, droppable=False, event=None):
        if self.closed:
            return
        if not self.paused and not self._queue:
            self._write(prepared)
            return
        size = queued_size(prepared)
        # Once dropping has started it goes on until the queue drains, so the client
        # sees one gap (and its count), not a trickle of holes.
        if droppable and (self.dropped or self.queued_bytes + size > self.limit):
            if event is not None:
                event.channel.dropped += 1
            if self.mode == DISCONNECT:
                self.close()
                self._overflow()
                return
            self.dropped += 1
            if event is not None and event.seq is not None:
                # The range lost per source, for its gap event (a replay may come after
                # newer events, so the ends are the lowest and highest seen), and how many.
                lost = self._lost.get(event.channel)
                if lost is None:
                    self._lost[event.channel] = [event.seq, event.seq, 1]
                else:
                    lost[0], lost[1], lost[2] = min(lost[0], event.seq), max(lost[1], event.seq), lost[2] + 1
            return
        self._queue.append((prepared, size))
        self.queued_bytes += size

    def _flush(self):
        while self._queue and not self.paused and not self.closed:
            prepared, size = self._queue.popleft()
            self.queued_bytes -= size
            self._write(prepared)
        if self.dropped and not self._queue and not self.paused and not self.closed:
            self._tell_losses()

    def _tell_losses(self):
        """The client caught up: a gap per source for the spec dialect (it can resume
        from it), the count of dropped frames otherwise (and for frames of no source)."""
        count, self.dropped = self.dropped, 0
        lost, self._lost = self._lost, {}
        if self._dialect == SPEC:
            for channel, (first, last, dropped) in lost.items():
                count -= dropped
                frame = gap_frame(channel.log, first, OVERFLOW, last)
                self._write(self._prepare(envelope.encode(frame)))
        if count > 0:
            notice = envelope.event("dropped", {"count": count}, EVENT_IDS[self._dialect])
            self._write(self._prepare(envelope.encode(notice)))

    def pauseProducing(self):
        """The transport's buffer is full: queue from now on."""
        self.paused = True
        if self._paused_changed is not None:
            self._paused_changed()

    def resumeProducing(self):
        """The transport drained: send what waited."""
        self.paused = False
        self._flush()
        if self._paused_changed is not None:
            self._paused_changed()
        if self._drain_waiters and not self.paused and not self._queue and not self.closed:
            waiters, self._drain_waiters = self._drain_waiters, []
            for callback in waiters:
                callback()

    def when_drained(self, callback):
        """Call ``callback()`` once, the next time the transport takes more and nothing
        waits here (never, if the queue closes first)."""
        self._drain_waiters.append(callback)

    def stopProducing(self):
        """The connection is going away."""
        self.close()

    def close(self):
        """Forget queued frames and accept no more."""
        self.closed = True
        self.direct = None
        self._drain_waiters = []
        self._queue.clear()
        self.queued_bytes = 0
