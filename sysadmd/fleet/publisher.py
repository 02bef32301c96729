"""Every event of the local daemon into JetStream, once each, in order, across restarts.

A *cycle* is one subscription of the agent's own daemon session to the configured
sources, resumed after the last event the stream holds for each (``since`` and
``epoch``, the daemon's own resume: see README "Resuming after a reconnect"). Where that
is comes from the headers of the last message stored on each source's subject (a direct
get), read again at the start of every cycle: what JetStream stored is the truth, also
when acknowledgements were lost or the server lost its newest messages.

Events are published in the order they came, on one connection, at most ``window``
awaiting their acknowledgement, so what the stream holds of them is always a prefix
(:class:`~sysadmd.fleet.natslink.NatsLink` drops what nats-py would send after a
reconnection, behind what the old connection lost). Anything that breaks the order ends
the cycle: a publish that fails or is not acknowledged in time, NATS going down, the
daemon connection closing, the daemon dropping events this agent read too slowly (an
``overflow`` gap). The next cycle starts over from what the stream holds, so an event is
neither skipped nor stored twice; one published again anyway (a copy already on its way)
has the same ``Nats-Msg-Id``, which JetStream drops within its duplicate window.

What cannot be had any more (the daemon's log no longer holds it, or was reset) arrives
as the daemon's ``gap`` frame, which is published like an event, followed by the state
it sends after one.
"""

import collections
import json

from twisted.application.internet import backoffPolicy
from twisted.internet import defer

from sysadmd.client.render import source_name
from sysadmd.protocol import fleet as wire
from sysadmd.util.log import Logger
from sysadmd.util.timers import cancel_call

GAP = "gap"
HEADS = "heads"
OVERFLOW = "overflow"


class EventPublisher:
    """Publishes the daemon's events of ``sources`` for machine ``host``.

    ``nats`` is a :class:`~sysadmd.fleet.natslink.NatsLink` (or anything with its
    ``add_listener``, ``last_headers`` and ``publish_event``), ``daemon`` opens the agent's
    signed-in session (:meth:`sysadmd.fleet.daemonlink.DaemonLink.open`). ``on_event``
    is called with every frame published (presence keeps the last system state).
    """

    log = Logger()

    def __init__(self, reactor, host, sources, nats, daemon, window=256, max_queued=8192, on_event=None):
        self._reactor = reactor
        self._host = host
        self._sources = list(sources)
        self._nats = nats
        self._daemon = daemon
        self._window = window
        self._max_queued = max_queued
        self._on_event = on_event
        # 1, 2, 4 ... 30 s after the first, second, third... failure in a row.
        self._retry = backoffPolicy(initialDelay=1.0, maxDelay=30.0, factor=2.0, jitter=lambda: 0.0)
        self._failures = 0
        self._generation = 0
        self._wanted = False
        self._retry_call = None
        self._link = None
        self._reset_cycle_state()
        #: source -> (epoch, seq) up to which JetStream acknowledged everything (what this
        #: process knows; resuming reads the stream itself).
        self.positions = {}
        self.published = 0

    def _reset_cycle_state(self):
        self._queue = collections.deque()
        self._inflight = collections.deque()
        self._queued_at = {}

    # Lifecycle

    def start(self):
        """Publish whenever both NATS and the daemon can be reached."""
        self._wanted = True
        self._nats.add_listener(self)

    def stop(self):
        """Stop publishing; fires once the daemon connection is closed."""
        self._wanted = False
        return self._end_cycle()

    def nats_up(self):
        """NATS is (again) reachable: start a cycle."""
        self._failures = 0
        self._start_soon(0)

    def nats_down(self):
        """NATS is gone: end the cycle; the daemon keeps the events meanwhile."""
        self._end_cycle()

    def _start_soon(self, delay):
        cancel_call(self._retry_call)
        self._retry_call = None
        if not self._wanted or not self._nats.up:
            return
        self._retry_call = self._reactor.callLater(delay, self._start_cycle)

    def _start_cycle(self):
        self._retry_call = None
        self._end_cycle()
        self._generation += 1
        self._cycle(self._generation)

    def _end_cycle(self):
        self._generation += 1
        self._reset_cycle_state()
        link, self._link = self._link, None
        if link is None:
            return defer.succeed(None)
        return link.close()

    def _restart(self, reason):
        """Something broke the order: start again from the acknowledged positions."""
        delay = self._retry(self._failures)
        self._failures += 1
        self.log.warn(
            "publishing {host}'s events: {reason}; resuming in {delay:.0f} s",
            host=self._host,
            reason=reason,
            delay=delay,
        )
        self._end_cycle()
        self._start_soon(delay)

    @defer.inlineCallbacks
    def _cycle(self, generation):
        try:
            positions = yield self._resume_positions()
            if generation != self._generation:
                return
            link = yield self._daemon.open()
            if generation != self._generation:
                yield link.close()
                return
            self._link = link
            session = link.session
            session.on_event = lambda frame: self._event(generation, frame)
            # The daemon ended the session (token expired): sign in again.
            session.on_unsolicited_error = lambda args: link.close()
            yield session.call("events", "subscribe", [self._subscription(s, positions) for s in self._sources])
            self.log.info(
                "publishing {host}'s events from {daemon}: {where}",
                host=self._host,
                daemon=self._daemon.url,
                where=", ".join(_describe(s, positions.get(s)) for s in self._sources),
            )
            description = yield link.closed
        except Exception as e:
            if generation == self._generation:
                self._restart(str(e) or type(e).__name__)
            return
        if generation == self._generation:
            self._restart(f"the daemon connection ended ({description})")

    @defer.inlineCallbacks
    def _resume_positions(self):
        positions = {}
        for source in self._sources:
            subject = wire.events_subject(self._host, source)
            try:
                headers = yield self._nats.last_headers(subject)
            except Exception as e:
                raise RuntimeError(
                    f"cannot read the last event stored on {subject} in {wire.EVENTS_STREAM} "
                    f"(does the stream exist? sysadm fleet setup creates it): {str(e) or type(e).__name__}"
                ) from None
            found = wire.event_position(headers)
            if found is not None:
                positions[source] = found
        return positions

    @staticmethod
    def _subscription(source, positions):
        found = positions.get(source)
        if found is None:
            # Nothing stored yet: everything the daemon still keeps.
            return {"name": source, "since": 0}
        epoch, seq = found
        return {"name": source, "since": seq, "epoch": epoch}

    # Events

    def _event(self, generation, frame):
        if generation != self._generation:
            return
        name = frame.get("name")
        if name == HEADS:
            return
        args = frame.get("args") if isinstance(frame.get("args"), dict) else {}
        numbered = False
        if name == GAP:
            source = args.get("source")
            if args.get("reason") == OVERFLOW:
                self._restart("the daemon dropped events this agent read too slowly")
                return
            position = _position(args.get("epoch"), args.get("head"))
        else:
            source = source_name(name)
            position = _position(frame.get("epoch"), frame.get("seq"))
            numbered = position is not None
            if numbered and _not_after(position, self._queued_at.get(source)):
                return  # sent again by the daemon after a re-subscription
            if position is None:
                position = self._queued_at.get(source)
        if source not in self._sources:
            return
        if position is not None:
            self._queued_at[source] = position
            headers = wire.event_headers(self._host, source, position[0], position[1], numbered)
        else:
            headers = {wire.HOST: self._host, wire.SOURCE: source}
        payload = json.dumps(frame, separators=(",", ":")).encode("utf-8")
        self._queue.append((wire.events_subject(self._host, source), payload, headers, source, position, frame))
        if len(self._queue) > self._max_queued:
            self._restart(f"more than {self._max_queued} events wait for JetStream")
            return
        self._pump(generation)

    def _pump(self, generation):
        while self._queue and len(self._inflight) < self._window:
            subject, payload, headers, source, position, frame = self._queue.popleft()
            entry = [False, source, position, frame]
            self._inflight.append(entry)
            d = self._nats.publish_event(subject, payload, headers)
            d.addCallbacks(
                self._acked, self._not_acked, callbackArgs=(generation, entry), errbackArgs=(generation,)
            )

    def _acked(self, ack, generation, entry):
        if generation != self._generation:
            return
        entry[0] = True
        while self._inflight and self._inflight[0][0]:
            _, source, position, frame = self._inflight.popleft()
            if position is not None:
                self.positions[source] = position
            self.published += 1
            self._failures = 0
            if self._on_event is not None:
                self._on_event(frame)
        self._pump(generation)

    def _not_acked(self, failure, generation):
        if generation == self._generation:
            self._restart(f"JetStream did not acknowledge an event ({failure.getErrorMessage() or failure.type.__name__})")


def _position(epoch, seq):
    if isinstance(epoch, str) and epoch and isinstance(seq, int) and not isinstance(seq, bool):
        return epoch, seq
    return None


def _not_after(position, last):
    return last is not None and last[0] == position[0] and position[1] <= last[1]


def _describe(source, position):
    return f"{source} after {position[1]}@{position[0]}" if position else f"{source} from its first event kept"
