"""The agent's service: NATS, the daemon, and the three jobs between them."""

import socket

from twisted.application import service
from twisted.internet import defer

import sysadmd
from sysadmd.fleet.daemonlink import DaemonLink, UserSessions
from sysadmd.fleet.natslink import NatsLink
from sysadmd.fleet.presence import Presence
from sysadmd.fleet.publisher import EventPublisher
from sysadmd.fleet.requests import RequestServer
from sysadmd.util.log import Logger


class FleetService(service.Service):
    """Runs one machine's agent: :class:`~sysadmd.fleet.publisher.EventPublisher`,
    :class:`~sysadmd.fleet.requests.RequestServer` and
    :class:`~sysadmd.fleet.presence.Presence` over one :class:`NatsLink`.

    ``stopService`` says goodbye on NATS, closes the daemon sessions and drains the NATS
    connection, and fires when all of that is done.
    """

    log = Logger()

    def __init__(self, reactor, section, nats_user, nats_password, tls=None):
        self._reactor = reactor
        host = section["host"]
        self.host = host
        self.nats = NatsLink(reactor, section["servers"], nats_user, nats_password, host, tls)
        self.daemon = DaemonLink(reactor, section["daemon"], section["key"], section["request_timeout"])
        self.sessions = UserSessions(self.daemon)
        self.presence = Presence(
            reactor, host, socket.gethostname(), sysadmd.__version__, self.nats, section["presence_interval"]
        )
        self.publisher = EventPublisher(
            reactor,
            host,
            section["sources"],
            self.nats,
            self.daemon,
            window=section["publish_window"],
            on_event=self.presence.event,
        )
        self.requests = RequestServer(
            host, self.nats, self.sessions, section["users"], section["max_inflight_requests"]
        )

    def startService(self):
        """Connect to NATS (retrying) and start the three jobs."""
        super().startService()
        self.log.info(
            "sysadm-fleet {host} starting: daemon {daemon}, NATS {servers}",
            host=self.host,
            daemon=self.daemon.url,
            servers=" ".join(self.nats._servers),
        )
        self.publisher.start()
        self.requests.start()
        self.presence.start()
        self.nats.start()

    @defer.inlineCallbacks
    def stopService(self):
        """Stop publishing, say goodbye, close the daemon sessions, drain NATS."""
        super().stopService()
        yield self.publisher.stop()
        yield self.presence.stop()
        yield self.sessions.close()
        yield self.nats.stop()
        self.log.info("sysadm-fleet {host} stopped", host=self.host)
