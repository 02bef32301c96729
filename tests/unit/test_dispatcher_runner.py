"""Formatting times for the dispatcher's jobs (finding executables: test_process.py)."""

import os
import time

import pytest

from sysadmd.dispatcher.events import iso_time


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
