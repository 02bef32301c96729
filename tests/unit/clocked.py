"""A reactor for tests of sources that run real commands on a fake clock."""

from twisted.internet import reactor as global_reactor
from twisted.internet import task


class ClockedReactor:
    """Timers from a task.Clock (the test moves time), processes from the real reactor."""

    def __init__(self):
        self.clock = task.Clock()

    def callLater(self, *args, **kwargs):
        return self.clock.callLater(*args, **kwargs)

    def seconds(self):
        return self.clock.seconds()

    def spawnProcess(self, *args, **kwargs):
        return global_reactor.spawnProcess(*args, **kwargs)
