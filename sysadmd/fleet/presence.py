"""``sysadm.<host>.presence``: the machine says it is up, every ``interval`` seconds and
whenever its system state changes, and that it is going down on a clean stop."""

import time

from twisted.internet import defer, task

from sysadmd.protocol import fleet as wire
from sysadmd.util.log import Logger

SYSTEM_STATE = "system_state"


class Presence:
    """Heartbeats of machine ``host`` (``hostname`` and ``version`` are shown to the
    fleet) on ``nats``; :meth:`event` is given every event published, and keeps the last
    system state. ``now`` is the wall clock (injected for tests)."""

    log = Logger()

    def __init__(self, reactor, host, hostname, version, nats, interval, now=time.time):
        self._host = host
        self._hostname = hostname
        self._version = version
        self._nats = nats
        self._interval = interval
        self._now = now
        self._since = now()
        self._state = None
        self._loop = task.LoopingCall(self._beat)
        self._loop.clock = reactor

    def start(self):
        """Beat every ``interval`` seconds while NATS is up."""
        self._nats.add_listener(self)

    def nats_up(self):
        """Say so now, and every ``interval``."""
        if not self._loop.running:
            self._loop.start(self._interval, now=True)

    def nats_down(self):
        """Stop beating until NATS is back."""
        if self._loop.running:
            self._loop.stop()

    def event(self, frame):
        """An event was published: a new system state is told at once."""
        if frame.get("name") == SYSTEM_STATE and isinstance(frame.get("args"), dict):
            self._state = frame["args"]
            self._beat()

    def _message(self, up):
        return wire.presence(
            self._host, self._hostname, self._version, up, self._since, self._now(), self._interval, self._state
        )

    def _beat(self):
        if not self._nats.up:
            return
        self._nats.publish(wire.presence_subject(self._host), self._message(True)).addErrback(
            lambda failure: self.log.warn("cannot publish presence: {reason}", reason=failure.getErrorMessage())
        )

    @defer.inlineCallbacks
    def stop(self):
        """Stop beating and say goodbye (up: false) when NATS is up."""
        if self._loop.running:
            self._loop.stop()
        if self._nats.up:
            try:
                yield self._nats.publish(wire.presence_subject(self._host), self._message(False))
                yield self._nats.flush()
            except Exception as e:
                self.log.warn("cannot say goodbye on NATS: {reason}", reason=str(e) or type(e).__name__)
