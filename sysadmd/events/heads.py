"""Every ``[events] heads_interval`` seconds, each subscriber is told the newest seq of
each source it follows, so a client that has heard nothing for a while can tell a quiet
source from events it lost::

    {"namespace": "events", "name": "heads", "id": "none", "args": {"dispatcher": 812}}

Spec-dialect subscribers only (the original clients know no numbers). The service also
closes the sources' log files when the daemon stops.
"""

from twisted.application.service import Service
from twisted.internet import task

from sysadmd.protocol import envelope
from sysadmd.protocol.dialect import SPEC


def heads_frames(hub):
    """``{sink: heads frame}`` for every spec-dialect subscriber of ``hub``."""
    heads = {}
    for name in hub.names():
        channel = hub.channel(name)
        for sink in channel.subscribers:
            if getattr(sink, "dialect", SPEC) == SPEC:
                heads.setdefault(sink, {})[name] = channel.log.head
    return {sink: envelope.event("heads", dict(sorted(h.items()))) for sink, h in heads.items()}


class HeadsService(Service):
    """Sends the heads every ``interval`` seconds (0: never)."""

    def __init__(self, reactor, hub, interval):
        self._hub = hub
        self._interval = interval
        self._loop = task.LoopingCall(self.send)
        self._loop.clock = reactor

    def send(self):
        """Tell every subscriber its sources' heads now (and expire old events of quiet
        sources)."""
        for name in self._hub.names():
            self._hub.channel(name).log.expire()
        for sink, frame in heads_frames(self._hub).items():
            sink.send_frame(frame)

    def startService(self):
        """Start the timer."""
        super().startService()
        if self._interval > 0:
            self._loop.start(self._interval, now=False)

    def stopService(self):
        """Stop the timer and close the logs' files (the sources have stopped)."""
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        self._hub.retention.close()
