"""Run the enabled event sources, isolating each one's failures from the rest.

A source that fails to build is disabled; one whose ``start`` fails is restarted with
exponential backoff; one that never finishes starting delays nobody; one that publishes
something that cannot be encoded has that event dropped and logged. Every failure is
logged with the source's name.
"""

from twisted.application.internet import backoffPolicy
from twisted.application.service import Service
from twisted.internet import defer
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from sysadmd.events.context import SourceContext
from sysadmd.interfaces import IEventSnapshot, IEventSource
from sysadmd.util.log import Logger
from sysadmd.util.timers import cancel_call

RETRY_CAP = 60.0
STOP_TIMEOUT = 10.0
# Seconds before the next start after the n-th failure in a row (n from 0): 1, 2, 4 ...
# RETRY_CAP. No jitter: the sources are local, there is no crowd of peers to spread out.
RETRY_DELAY = backoffPolicy(initialDelay=1.0, maxDelay=RETRY_CAP, factor=2.0, jitter=lambda: 0.0)


class _Running:
    """Bookkeeping for one built source."""

    def __init__(self, name, source):
        self.name = name
        self.source = source
        self.started = False
        self.attempts = 0
        self.retry_call = None
        self.starting = None
        self.publish_failures = 0


class SourcesService(Service):
    """Builds, starts and stops event sources, registering each with the hub.

    ``factories`` maps names to :class:`sysadmd.interfaces.IEventSourceFactory`;
    ``config`` is the daemon's :class:`sysadmd.config.Config`.
    """

    log = Logger()

    def __init__(self, reactor, hub, factories, config, services=None):
        self._reactor = reactor
        self._hub = hub
        self._factories = factories
        self._config = config
        self._services = services if services is not None else {}
        self._running = {}

    def enabled_names(self):
        """The names to run: ``[events] sources``, or every installed one for 'all'."""
        wanted = self._config["events"]["sources"]
        return sorted(self._factories) if wanted == ["all"] else wanted

    def startService(self):
        """Build every enabled source, make it subscribable, and start it."""
        super().startService()
        for name in self.enabled_names():
            if name not in self._factories:
                # tap.py reports this as a configuration error; be safe when embedded.
                self.log.error("event source {source} is not installed", source=name)
                continue
            running = self._build(name)
            if running is not None:
                self._running[name] = running
                self._start(running)

    def _build(self, name):
        factory = self._factories[name]
        context = SourceContext(
            reactor=self._reactor,
            config=self._config.source_section(name),
            state_dir=self._config.state_dir,
            services=self._services,
        )
        try:
            source = factory.build(context)
            verifyObject(IEventSource, source)
            snapshot = source.snapshot if IEventSnapshot.providedBy(source) else None
            self._hub.add_source(source.name, source.frame_name, bool(source.replay_last), snapshot)
        except Invalid as e:
            self.log.error(
                "event source {source} disabled: {problem}", source=name, problem=str(e).strip()
            )
            return None
        except Exception:
            self.log.failure("event source {source} disabled: it failed to build", source=name)
            return None
        return _Running(source.name, source)

    def _publisher(self, running):
        def publish(args):
            try:
                self._hub.publish(running.name, args)
            except Exception as e:
                running.publish_failures += 1
                # Log the first failure and then every hundredth, so a broken source
                # cannot flood the log.
                if running.publish_failures % 100 == 1:
                    self.log.error(
                        "event source {source} published an event that was dropped "
                        "({failures} so far): {problem}",
                        source=running.name,
                        failures=running.publish_failures,
                        problem=f"{type(e).__name__}: {e}",
                    )

        return publish

    def _start(self, running):
        running.retry_call = None
        running.attempts += 1
        d = running.starting = defer.maybeDeferred(running.source.start, self._publisher(running))

        def started(_):
            running.starting = None
            running.started = True
            running.attempts = 0
            self.log.info("event source {source} started", source=running.name)

        def failed(failure):
            running.starting = None
            if not self.running:
                return
            delay = RETRY_DELAY(running.attempts - 1)
            self.log.failure(
                "event source {source} failed to start; retrying in {delay:.0f} s",
                failure,
                source=running.name,
                delay=delay,
            )
            running.retry_call = self._reactor.callLater(delay, self._start, running)

        d.addCallbacks(started, failed)

    def stopService(self):
        """Stop every source (each bounded by a timeout); fires when all are done."""
        super().stopService()
        stops = []
        for running in self._running.values():
            running.retry_call = cancel_call(running.retry_call)
            if running.starting is not None:
                # A start still pending (a source that hangs) is abandoned.
                running.starting.cancel()
            stops.append(self._stop(running))
        return defer.DeferredList(stops, consumeErrors=True).addCallback(lambda _: None)

    def _stop(self, running):
        d = defer.maybeDeferred(running.source.stop)
        d.addTimeout(STOP_TIMEOUT, self._reactor)

        def failed(failure):
            self.log.failure("event source {source} failed to stop", failure, source=running.name)

        return d.addErrback(failed)
