"""Finding executables and formatting times for the dispatcher's jobs."""

import os
import time

import pytest
from twisted.internet.task import Clock

from sysadmd.dispatcher.events import iso_time
from sysadmd.dispatcher.runner import ExecutableLookup


@pytest.fixture
def timezone():
    """Set TZ for the test (and restore it)."""
    before = os.environ.get("TZ")

    def set_tz(name):
        os.environ["TZ"] = name
        time.tzset()

    yield set_tz
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


def test_iso_time_is_local_time_with_its_offset_to_the_millisecond(timezone):
    """Local time, milliseconds (truncated, as isoformat does), and the UTC offset of
    that moment (summer and winter differ)."""
    timezone("UTC")
    assert iso_time(0) == "1970-01-01T00:00:00.000+00:00"
    assert iso_time(1.9996) == "1970-01-01T00:00:01.999+00:00"
    timezone("America/New_York")
    assert iso_time(1_700_000_000.25) == "2023-11-14T17:13:20.250-05:00"
    assert iso_time(1_690_000_000) == "2023-07-22T00:26:40.000-04:00"
    timezone("Asia/Kolkata")
    assert iso_time(0.5) == "1970-01-01T05:30:00.500+05:30"


def make_tool(directory, name):
    path = directory / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


def test_lookup_remembers_a_found_program_for_its_ttl(tmp_path):
    """A found program is remembered for ttl seconds (a program put earlier on PATH
    meanwhile is found once it expires); what was not found is looked up every time."""
    clock = Clock()
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    env = {"PATH": f"{first}:{second}"}
    lookup = ExecutableLookup(clock, ttl=1.0)
    assert lookup("tool", env, "/") == (None, f"tool: command not found (PATH={env['PATH']})")
    late = make_tool(second, "tool")
    assert lookup("tool", env, "/") == (late, None)
    early = make_tool(first, "tool")
    assert lookup("tool", env, "/") == (late, None)
    clock.advance(1.0)
    assert lookup("tool", env, "/") == (early, None)


def test_lookup_keys_on_path_and_does_not_remember_paths_with_a_slash(tmp_path):
    """Another PATH is another lookup; a command given with a slash is checked each time."""
    clock = Clock()
    (tmp_path / "x").mkdir()
    tool = make_tool(tmp_path / "x", "tool")
    lookup = ExecutableLookup(clock)
    assert lookup("tool", {"PATH": str(tmp_path / "x")}, "/") == (tool, None)
    assert lookup("tool", {"PATH": "/nonexistent"}, "/")[0] is None
    assert lookup("x/tool", {}, str(tmp_path)) == (str(tmp_path / "x" / "tool"), None)
    os.remove(tool)
    assert lookup("x/tool", {}, str(tmp_path)) == (None, "x/tool: no such file")


def test_lookup_stays_bounded(tmp_path):
    """Expired entries are dropped once MAX_ENTRIES names are remembered."""
    clock = Clock()
    for i in range(ExecutableLookup.MAX_ENTRIES + 10):
        make_tool(tmp_path, f"t{i}")
    lookup = ExecutableLookup(clock, ttl=1.0)
    env = {"PATH": str(tmp_path)}
    for i in range(ExecutableLookup.MAX_ENTRIES):
        lookup(f"t{i}", env, "/")
    clock.advance(1.0)
    lookup(f"t{ExecutableLookup.MAX_ENTRIES}", env, "/")
    assert len(lookup._found) == 1
