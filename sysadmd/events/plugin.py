"""The parts an event source plugin module is made of.

:class:`SourcePlugin` is the plugin object of a source class that configures itself from
its :class:`sysadmd.events.context.SourceContext`; :func:`program` and
:func:`command_timeout` are the ini options of sources that run external programs (with
``sysadmd.util.commands``), so they are parsed and documented alike.
"""

from twisted.plugin import IPlugin
from zope.interface import implementer

from sysadmd.config.options import Option, number, string
from sysadmd.interfaces import IEventSourceFactory
from sysadmd.util.commands import DEFAULT_PATH

_SEARCHED = DEFAULT_PATH.split(":")
# Said in the documentation of every program option, so it cannot drift from the search.
SEARCHED_DIRECTORIES = ", ".join(_SEARCHED[:-1]) + " and " + _SEARCHED[-1]


@implementer(IPlugin, IEventSourceFactory)
class SourcePlugin:
    """A plugin that builds ``source_class.from_context(context)``; ``options`` are the
    keys of its ``[source:NAME]`` section."""

    def __init__(self, name, source_class, options):
        self.name = name
        self.options = options
        self._source_class = source_class

    def build(self, context):
        """A new source configured from ``context``."""
        return self._source_class.from_context(context)

    def __repr__(self):
        return f"<SourcePlugin {self.name}: {self._source_class.__name__}>"


def required(text):
    """Free text that may not be empty (a program, a directory)."""
    value = string(text)
    if not value:
        raise ValueError("a value is needed")
    return value


def program(default, doc=None):
    """The option naming an external program (default ``default``); without ``doc`` it
    is documented as "The <default> program: a path, or a name searched in ..."."""
    if doc is None:
        doc = f"The {default} program: a path, or a name searched in {SEARCHED_DIRECTORIES}."
    return Option(default, required, doc)


def command_timeout(runs):
    """The ``command_timeout`` option: how long ``runs`` (e.g. "a zfs listing") may take."""
    return Option("30", number(0.1), f"Seconds {runs} may take before it is killed.")
