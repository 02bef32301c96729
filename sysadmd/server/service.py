"""Service plumbing: ordered start and stop, and closing connections at shutdown."""

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.logger import Logger


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


class ConnectionsService(Service):
    """At shutdown, closes every client connection with code 1001 and waits for them
    (abandoning any that take longer than ``timeout`` seconds)."""

    def __init__(self, reactor, factory, timeout=10.0):
        self._reactor = reactor
        self._factory = factory
        self._timeout = timeout

    def stopService(self):
        """Close connections; fires when they are gone."""
        super().stopService()
        d = self._factory.close_all()
        d.addTimeout(self._timeout, self._reactor)
        return d.addErrback(lambda _: None)
