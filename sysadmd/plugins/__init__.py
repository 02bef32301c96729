"""Event source plugins.

Besides the modules here, every ``sysadmd/plugins/`` directory on ``sys.path`` that has no
``__init__.py`` is searched, so a third party adds a source by dropping one module into
such a directory (see the README, "Writing an event source").
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))
__all__ = []
