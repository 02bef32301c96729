"""Fixtures for tests that run the real daemon."""

import os
import shutil

import pytest

from tests.integration.harness import BASE_CONFIG, Client, Daemon

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")


def install_plugins(tmp_path, *names):
    """Install plugins of tests/fixtures (by module name) out of tree, as a third party
    would; returns the daemon's PYTHONPATH: that root, then the tests' own PYTHONPATH (a
    checkout being tested from there, e.g. a git worktree, stays the sysadmd imported)."""
    root = tmp_path / "plugin-root"
    (root / "sysadmd" / "plugins").mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(os.path.join(FIXTURES, f"{name}.py"), root / "sysadmd" / "plugins" / f"{name}.py")
    return os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))


def install_ticker(tmp_path):
    """Install the ticker plugin out of tree; returns the PYTHONPATH entry."""
    return install_plugins(tmp_path, "ticker")


@pytest.fixture
def make_daemon(tmp_path):
    """Start daemons with a given config (and the ticker plugin); stops them after."""
    daemons = []

    def make(config=BASE_CONFIG, ticker=True, start=True, plugins=(), **kwargs):
        env = kwargs.pop("env", {})
        if ticker or plugins:
            env["PYTHONPATH"] = install_plugins(tmp_path, *(("ticker",) if ticker else ()), *plugins)
        daemon = Daemon(tmp_path, config, env=env, **kwargs)
        daemons.append(daemon)
        return daemon.start() if start else daemon

    yield make
    for daemon in daemons:
        daemon.stop()


@pytest.fixture
def daemon(make_daemon):
    """A daemon with users admin (full) and viewer (limited)."""
    d = make_daemon(start=False)
    d.add_user("admin", "admin-secret-pw", "full")
    d.add_user("viewer", "viewer-secret-pw", "limited")
    return d.start()


@pytest.fixture
def client(daemon):
    """An unauthenticated client of ``daemon``."""
    c = Client(daemon.url)
    yield c
    c.close()


@pytest.fixture
def admin(daemon):
    """A client signed in with full access."""
    c = Client(daemon.url)
    reply = c.login("admin", "admin-secret-pw")
    assert reply["name"] == "response", reply
    yield c
    c.close()
