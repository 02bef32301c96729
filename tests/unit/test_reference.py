"""The committed configuration reference matches the schema and installed sources."""

import os

from sysadmd.config import load_config
from sysadmd.taps.reference import readme_region, render_bridge_ini, render_ini, render_rst
from sysadmd.taps.sections import load_daemon_config

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def test_sample_ini_is_current():
    """etc/sysadmd.ini is what `make docs` generates (run it after changing a key)."""
    assert read("etc/sysadmd.ini") == render_ini()


def test_readme_reference_is_current():
    """README.rst's configuration reference is what `make docs` generates."""
    assert readme_region(read("README.rst")).strip() == render_rst().strip()


def test_sample_ini_loads_as_the_defaults():
    """The sample file is valid and, all commented out, gives the defaults."""
    from sysadmd.taps.discovery import discover_sources

    factories = discover_sources()
    options = {name: f.options for name, f in factories.items()}
    sample = load_daemon_config(os.path.join(ROOT, "etc/sysadmd.ini"), source_options=options)
    defaults = load_daemon_config(text="", source_options=options)
    for section in ("server", "auth", "events", "dispatcher"):
        assert sample[section] == defaults[section]


def test_bridge_sample_ini_is_current():
    """etc/sysadm-bridge.ini is what `make docs` generates (run it after changing a key of
    the bridge or of the daemon's [server] and [auth])."""
    assert read("etc/sysadm-bridge.ini") == render_bridge_ini()


def test_bridge_sample_ini_loads_as_the_defaults():
    """The bridge's sample is valid for the bridge and, all commented out, gives its
    defaults."""
    from sysadmd.bridge import schema as bridge_schema

    sample = load_config(bridge_schema.SECTIONS, os.path.join(ROOT, "etc/sysadm-bridge.ini"))
    defaults = load_config(bridge_schema.SECTIONS, text="")
    for section in bridge_schema.SECTIONS:
        assert sample[section] == defaults[section]
    assert defaults["server"]["listen"] == ["tcp:12149:interface=127.0.0.1"]


def test_fleet_sample_ini_is_current():
    """etc/sysadm-fleet.ini is what `make docs` generates (run it after changing a key of
    [fleet])."""
    from sysadmd.fleet.reference import render_ini as render_fleet_ini

    assert read("etc/sysadm-fleet.ini") == render_fleet_ini()


def test_fleet_sample_ini_loads_as_the_defaults():
    """The agent's sample is valid and, all commented out, gives its defaults."""
    from sysadmd.fleet import options

    sample = options.load(os.path.join(ROOT, "etc/sysadm-fleet.ini"))
    defaults = options.load(text="")
    assert sample["fleet"] == defaults["fleet"]
    assert defaults["fleet"]["servers"] == ["nats://127.0.0.1:4222"]
