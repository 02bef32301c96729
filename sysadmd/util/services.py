"""Service plumbing shared by every part: ordered start and stop."""

from twisted.application.service import MultiService, Service
from twisted.internet import defer

from sysadmd.util.log import Logger


class OrderedService(MultiService):
    """Starts children in order and stops them in reverse order, each stop finishing
    before the next begins. ``stopService`` fires only when every child has stopped;
    a child's stop failure is logged, and the others still stop."""

    log = Logger()

    @defer.inlineCallbacks
    def stopService(self):
        """Stop children last-first, waiting for each."""
        Service.stopService(self)
        for child in reversed(list(self)):
            try:
                yield defer.maybeDeferred(child.stopService)
            except Exception:
                self.log.failure("stopping {service} failed", service=child.name or repr(child))
