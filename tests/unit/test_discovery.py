"""Finding event source plugins, in the package and in out-of-tree ``sysadmd/plugins/`` dirs."""

import importlib
import os
import shutil
import sys

import pytest
from twisted.logger import globalLogPublisher
from twisted.plugin import pluginPackagePaths
from twisted.python.filepath import FilePath
from zope.interface.verify import verifyObject

import sysadmd
import sysadmd.plugins
from sysadmd.interfaces import IEventSourceFactory
from sysadmd.taps.discovery import discover_sources

REPO = os.path.dirname(os.path.dirname(os.path.abspath(sysadmd.__file__)))
TICKER = os.path.join(REPO, "tests", "fixtures", "ticker.py")

FACTORY_HEADER = """
from twisted.plugin import IPlugin
from zope.interface import implementer
from sysadmd.interfaces import IEventSourceFactory
"""

NO_BUILD = FACTORY_HEADER + """
@implementer(IPlugin, IEventSourceFactory)
class NoBuild:
    name = "no-build"
    options = {}

no_build = NoBuild()
"""

NO_OPTIONS = FACTORY_HEADER + """
@implementer(IPlugin, IEventSourceFactory)
class NoOptions:
    name = "no-options"

    def build(self, context):
        return None

no_options = NoOptions()
"""

SECOND_TICKER = FACTORY_HEADER + """
@implementer(IPlugin, IEventSourceFactory)
class AnotherTicker:
    name = "ticker"
    options = {}

    def build(self, context):
        return None

another = AnotherTicker()
"""

EXPLODES = """
raise RuntimeError("plugin import exploded")
"""


@pytest.fixture(autouse=True)
def no_cache_writes_in_repo(monkeypatch):
    """getPlugins refreshes dropin.cache next to the modules it scans; keep the repo clean
    (tmp dirs may get theirs)."""
    original = FilePath.setContent

    def set_content(self, content, ext=b".new"):
        if os.path.abspath(self.path).startswith(REPO + os.sep):
            return None
        return original(self, content, ext)

    monkeypatch.setattr(FilePath, "setContent", set_content)


@pytest.fixture
def log_events():
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


@pytest.fixture
def plugin_dir(tmp_path):
    """An out-of-tree ``<tmp>/sysadmd/plugins/`` (no __init__.py) on sys.path, searched
    by ``sysadmd.plugins`` as if it had been on sys.path at import; all undone after."""
    root = tmp_path / "site"
    plugins = root / "sysadmd" / "plugins"
    plugins.mkdir(parents=True)
    saved_sys_path = list(sys.path)
    saved_package_path = list(sysadmd.plugins.__path__)
    saved_modules = set(sys.modules)
    sys.path.insert(0, str(root))
    extra = [p for p in pluginPackagePaths("sysadmd.plugins") if p not in sysadmd.plugins.__path__]
    sysadmd.plugins.__path__.extend(extra)
    assert str(plugins) in sysadmd.plugins.__path__
    importlib.invalidate_caches()
    try:
        yield plugins
    finally:
        sys.path[:] = saved_sys_path
        sysadmd.plugins.__path__[:] = saved_package_path
        for name in set(sys.modules) - saved_modules:
            if name.startswith("sysadmd.plugins."):
                del sys.modules[name]
        importlib.invalidate_caches()


def _install_ticker(plugin_dir):
    shutil.copy(TICKER, plugin_dir / "ticker.py")


def test_builtin_package_gives_verified_factories_by_name():
    """Whatever the package holds, each result provides the interface under its own name."""
    found = discover_sources()
    assert isinstance(found, dict)
    for name, factory in found.items():
        assert verifyObject(IEventSourceFactory, factory)
        assert factory.name == name
        assert isinstance(factory.options, dict)
    assert "ticker" not in found  # the fixture is not installed in the package


def test_out_of_tree_plugin_is_found(plugin_dir):
    """A module dropped into a ``sysadmd/plugins/`` dir on sys.path is discovered."""
    _install_ticker(plugin_dir)
    builtin = discover_sources()
    found = discover_sources()
    assert "ticker" in found
    assert verifyObject(IEventSourceFactory, found["ticker"])
    assert type(found["ticker"]).__module__ == "sysadmd.plugins.ticker"
    assert set(builtin) == set(found)  # the built-in ones are still there


def test_out_of_tree_plugin_disappears_when_its_dir_is_gone(plugin_dir):
    """Sanity check for the fixture: without the extra path entry the ticker is unknown."""
    _install_ticker(plugin_dir)
    assert "ticker" in discover_sources()
    sysadmd.plugins.__path__.remove(str(plugin_dir))
    assert "ticker" not in discover_sources()


@pytest.mark.parametrize(
    "module, name, missing",
    [("no_build", "no-build", "build"), ("no_options", "no-options", "options")],
)
def test_factory_lacking_a_required_attribute_is_skipped_and_logged(
    plugin_dir, log_events, module, name, missing
):
    """A factory that claims the interface but lacks part of it is skipped, named in the log,
    and the valid plugin next to it is still found."""
    _install_ticker(plugin_dir)
    (plugin_dir / f"{module}.py").write_text({"no_build": NO_BUILD, "no_options": NO_OPTIONS}[module])
    found = discover_sources()
    assert name not in found
    assert "ticker" in found
    errors = [e for e in log_events if e.get("plugin") == name]
    assert len(errors) == 1
    assert missing in errors[0]["problem"]
    assert errors[0]["log_level"].name == "error"


def test_module_raising_at_import_is_skipped_and_others_found(plugin_dir, log_events):
    """A plugin module that raises on import is logged (with its file) and skipped; the
    valid plugin in the same directory is still found."""
    _install_ticker(plugin_dir)
    (plugin_dir / "explodes.py").write_text(EXPLODES)
    found = discover_sources()
    assert "ticker" in found
    # Twisted's plugin loader logs through the legacy log.err(): the failure is under
    # "failure" rather than "log_failure".
    failures = [
        f
        for f in (e.get("log_failure") or e.get("failure") for e in log_events)
        if f is not None and f.check(RuntimeError) and "plugin import exploded" in str(f.value)
    ]
    assert len(failures) == 1
    assert "explodes.py" in failures[0].getTraceback()


def test_duplicate_factory_name_keeps_one_and_logs_the_other(plugin_dir, log_events):
    """Two plugins claiming one name: one is used, the other is logged as ignored."""
    _install_ticker(plugin_dir)
    (plugin_dir / "another_ticker.py").write_text(SECOND_TICKER)
    found = discover_sources()
    assert "ticker" in found
    errors = [e for e in log_events if e.get("plugin") == "ticker"]
    assert len(errors) == 1
    assert "taken" in errors[0]["log_format"]


def test_discovery_writes_no_cache_into_the_repo_but_may_in_tmp(plugin_dir):
    """Out-of-tree dirs get a dropin.cache; the guard keeps the repo's untouched."""
    _install_ticker(plugin_dir)
    repo_cache = os.path.join(REPO, "sysadmd", "plugins", "dropin.cache")
    before = os.stat(repo_cache).st_mtime_ns if os.path.exists(repo_cache) else None
    discover_sources()
    after = os.stat(repo_cache).st_mtime_ns if os.path.exists(repo_cache) else None
    assert before == after
    assert (plugin_dir / "dropin.cache").exists()
