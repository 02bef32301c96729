"""Find event source plugins with ``twisted.plugin.getPlugins``."""

from twisted.plugin import getPlugins
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from sysadmd.interfaces import IEventSourceFactory
from sysadmd.util.log import Logger

log = Logger()


def discover_sources(package=None):
    """Installed event source factories by name, each checked with ``verifyObject``.

    Modules that fail to import are logged by Twisted's plugin loader (with the module's
    file) and skipped; factories that do not provide the interface, or reuse a name, are
    logged here and skipped.
    """
    if package is None:
        import sysadmd.plugins as package
    found = {}
    for factory in getPlugins(IEventSourceFactory, package):
        label = getattr(factory, "name", None) or repr(factory)
        try:
            verifyObject(IEventSourceFactory, factory)
        except Invalid as e:
            log.error(
                "event source plugin {plugin} ignored: {problem}",
                plugin=label,
                problem=str(e).strip(),
            )
            continue
        if factory.name in found:
            log.error("event source plugin {plugin} ignored: the name is taken", plugin=label)
            continue
        found[factory.name] = factory
    return found
