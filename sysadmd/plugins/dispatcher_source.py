"""The built-in ``dispatcher`` event source: the dispatcher's pending, running and
finished events (``events.rst``, "Dispatcher"), never cached for new subscribers.

It publishes what the dispatcher (``context.services["dispatcher"]``) produces; it has no
options of its own (the dispatcher is configured in ``[dispatcher]``).
"""

from twisted.internet import defer
from twisted.plugin import IPlugin
from zope.interface import implementer

from sysadmd.interfaces import IEventSnapshot, IEventSource, IEventSourceFactory


@implementer(IEventSource, IEventSnapshot)
class DispatcherSource:
    """Forwards the dispatcher's events to the hub while started."""

    name = "dispatcher"
    frame_name = "dispatcher"
    replay_last = False
    config_section = "source:dispatcher"

    def __init__(self, dispatcher):
        self._dispatcher = dispatcher
        self._publish = None

    def start(self, publish):
        """Listen to the dispatcher."""
        self.stop()
        self._publish = publish
        self._dispatcher.add_listener(publish)
        return defer.succeed(None)

    def snapshot(self):
        """The pending and running jobs as events (sent after a gap)."""
        return self._dispatcher.snapshot()

    def stop(self):
        """Stop listening."""
        if self._publish is not None:
            self._dispatcher.remove_listener(self._publish)
            self._publish = None
        return defer.succeed(None)


@implementer(IPlugin, IEventSourceFactory)
class DispatcherSourceFactory:
    """The plugin object ``getPlugins`` finds."""

    name = "dispatcher"
    options = {}

    def build(self, context):
        """A :class:`DispatcherSource` on the daemon's dispatcher."""
        dispatcher = context.services.get("dispatcher")
        if dispatcher is None:
            raise LookupError("no dispatcher service is running")
        return DispatcherSource(dispatcher)


dispatcher_source = DispatcherSourceFactory()
