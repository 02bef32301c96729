"""A reactor for tests that run real child processes on a fake clock."""

from twisted.internet import reactor as global_reactor
from twisted.internet import task

from sysadmd.util.process import SessionProcess


class ClockedReactor:
    """Timers from a task.Clock (the test moves time); processes from the real reactor,
    each leading its own session as the daemon starts them (:class:`SessionProcess`)."""

    def __init__(self):
        self.clock = task.Clock()

    def callLater(self, *args, **kwargs):
        return self.clock.callLater(*args, **kwargs)

    def seconds(self):
        return self.clock.seconds()

    def spawnProcess(self, protocol, executable, args=(), env=None, path=None, uid=None, gid=None,
                     usePTY=False, childFDs=None):
        return SessionProcess(global_reactor, executable, args, env, path, protocol, uid, gid, childFDs)
