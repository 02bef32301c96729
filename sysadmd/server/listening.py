"""Listen on the configured endpoints, failing the start when one cannot bind."""

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from sysadmd.config import ConfigError
from sysadmd.util.log import Logger


class _RefusingTLSFactory(TLSMemoryBIOFactory):
    """Twisted's TLS wrapper, except that a connection the wrapped factory refuses
    (``buildProtocol`` returns None) is closed at once, as on a plain TCP port, instead
    of being wrapped around nothing."""

    def buildProtocol(self, addr):
        """None when the wrapped factory refuses ``addr``."""
        wrapped = self.wrappedFactory.buildProtocol(addr)
        return None if wrapped is None else self.protocol(self, wrapped)


class _TLSListener:
    """The reactor as ``ssl:`` endpoints see it: ``listenSSL`` wraps the factory with
    :class:`_RefusingTLSFactory` (as Twisted's own ``listenSSL`` does with its
    factory); everything else is the reactor's."""

    def __init__(self, reactor):
        self._reactor = reactor

    def __getattr__(self, name):
        return getattr(self._reactor, name)

    def listenSSL(self, port, factory, contextFactory, backlog=50, interface=""):
        """Listen on TCP with TLS on top."""
        tls_factory = _RefusingTLSFactory(contextFactory, False, factory)
        return self._reactor.listenTCP(port, tls_factory, backlog, interface)


def endpoint_url(port, secure):
    """``ws://host:port`` (or wss) for a listening port, as operators and tests read it."""
    address = port.getHost()
    host = getattr(address, "host", None)
    if host is None:
        return f"{'wss' if secure else 'ws'}+unix://{getattr(address, 'name', address)}"
    if ":" in host:
        host = f"[{host}]"
    return f"{'wss' if secure else 'ws'}://{host}:{address.port}"


class ListenService(Service):
    """Binds ``descriptions`` (endpoint strings) to ``factory``.

    Binding happens in ``privilegedStartService`` (so low ports work before twistd drops
    privileges) and synchronously: a failure raises :class:`ConfigError` naming
    ``[server] listen`` of ``source``, which the daemon turns into one line and exit 1.
    ``program`` names the daemon in the log line ("sysadmd listening on ws://...").
    """

    log = Logger()

    def __init__(self, reactor, descriptions, factory, source, program="sysadmd"):
        self._reactor = reactor
        self._program = program
        self._descriptions = descriptions
        self._factory = factory
        self._source = source
        self.ports = []

    def privilegedStartService(self):
        """Bind every endpoint now."""
        super().privilegedStartService()
        if not self.ports:
            self._bind()

    def startService(self):
        """Bind if not already bound (when started without privilegedStartService)."""
        super().startService()
        if not self.ports:
            self._bind()

    def _bind(self):
        for description in self._descriptions:
            outcome = []
            try:
                secure = description.split(":", 1)[0] == "ssl"
                reactor = _TLSListener(self._reactor) if secure else self._reactor
                endpoint = serverFromString(reactor, description)
                endpoint.listen(self._factory).addBoth(outcome.append)
            except Exception as e:
                outcome.append(Failure(e))
            if not outcome:
                raise ConfigError(self._source, "server", "listen", f"{description} did not bind at start")
            if isinstance(outcome[0], Failure):
                for port in self.ports:
                    port.stopListening()
                self.ports = []
                reason = outcome[0].getErrorMessage()
                raise ConfigError(
                    self._source, "server", "listen", f"cannot listen on {description}: {reason}"
                )
            port = outcome[0]
            self.ports.append(port)
            secure = description.split(":", 1)[0] in ("ssl", "tls")
            self.log.info(
                "{program} listening on {url}",
                program=self._program,
                url=endpoint_url(port, secure),
                endpoint=description,
            )

    def stopService(self):
        """Stop accepting connections; fires when every port is closed."""
        super().stopService()
        ports, self.ports = self.ports, []
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports]).addCallback(
            lambda _: None
        )
