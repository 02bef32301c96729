"""Closing client connections at shutdown."""

from twisted.application.service import Service


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
