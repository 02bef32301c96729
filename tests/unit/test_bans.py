"""Failed-login bans per address, on an injected clock."""


import pytest
from twisted.internet import task

from sysadmd.auth.bans import BanList, is_loopback

HOST = "192.0.2.10"


def _bans(max_failures=3, window=60, ban_seconds=300, ban_loopback=False):
    clock = task.Clock()
    return clock, BanList(clock, max_failures, window, ban_seconds, ban_loopback)


def test_ban_after_max_failures_within_window():
    """The max_failures-th failure inside the window starts a ban (and says so)."""
    clock, bans = _bans()
    assert bans.record_failure(HOST) is False
    clock.advance(10)
    assert bans.record_failure(HOST) is False
    assert not bans.is_banned(HOST)
    clock.advance(10)
    assert bans.record_failure(HOST) is True
    assert bans.is_banned(HOST)
    assert bans.banned_count == 1


def test_bans_are_per_address():
    """Failures from one address do not ban another."""
    _clock, bans = _bans()
    for _ in range(3):
        bans.record_failure(HOST)
    assert bans.is_banned(HOST)
    assert not bans.is_banned("192.0.2.11")


def test_failures_outside_the_window_do_not_count():
    """Failures spread wider than the window never add up to a ban."""
    clock, bans = _bans(window=60)
    for _ in range(10):
        assert bans.record_failure(HOST) is False
        clock.advance(30)
    assert not bans.is_banned(HOST)


def test_failure_exactly_window_old_has_expired():
    """A failure exactly ``window`` seconds old no longer counts."""
    clock, bans = _bans(max_failures=2, window=60)
    bans.record_failure(HOST)
    clock.advance(60)
    assert bans.record_failure(HOST) is False
    clock.advance(59.9)
    assert bans.record_failure(HOST) is True


def test_ban_ends_after_ban_seconds():
    """A ban lasts ban_seconds, then the address may try again from zero."""
    clock, bans = _bans(ban_seconds=300)
    for _ in range(3):
        bans.record_failure(HOST)
    clock.advance(299)
    assert bans.is_banned(HOST)
    clock.advance(1)
    assert not bans.is_banned(HOST)
    assert bans.banned_count == 0
    assert bans.record_failure(HOST) is False  # the count started over


def test_banned_count_ignores_expired_bans():
    """banned_count counts only bans in force, even before anyone asks is_banned."""
    clock, bans = _bans(ban_seconds=100)
    for _ in range(3):
        bans.record_failure("192.0.2.1")
    clock.advance(50)
    for _ in range(3):
        bans.record_failure("192.0.2.2")
    assert bans.banned_count == 2
    clock.advance(50)
    assert bans.banned_count == 1


def test_record_success_resets_the_count():
    """A successful login forgets the address's earlier failures."""
    _clock, bans = _bans(max_failures=3)
    bans.record_failure(HOST)
    bans.record_failure(HOST)
    bans.record_success(HOST)
    assert bans.record_failure(HOST) is False
    assert bans.record_failure(HOST) is False
    assert not bans.is_banned(HOST)
    assert bans.record_failure(HOST) is True


def test_record_success_for_unknown_address_is_harmless():
    """Clearing an address with no failures does nothing."""
    _clock, bans = _bans()
    bans.record_success(HOST)
    assert not bans.is_banned(HOST)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "::1%lo"])
def test_loopback_is_exempt_by_default(host):
    """Local clients are never banned unless ban_loopback is set."""
    _clock, bans = _bans(max_failures=1)
    for _ in range(10):
        assert bans.record_failure(host) is False
    assert not bans.is_banned(host)
    assert bans.banned_count == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_loopback_is_banned_with_ban_loopback(host):
    """ban_loopback (used by the tests) removes the exemption."""
    _clock, bans = _bans(max_failures=2, ban_loopback=True)
    bans.record_failure(host)
    assert bans.record_failure(host) is True
    assert bans.is_banned(host)


def test_ipv4_mapped_loopback_is_loopback():
    """A local client seen through a dual-stack socket is loopback too."""
    assert is_loopback("::ffff:127.0.0.1")


@pytest.mark.parametrize("host", ["192.0.2.1", "10.0.0.1", "::ffff:192.0.2.1", "fe80::1%eth0", "2001:db8::1", "not-an-address", ""])
def test_non_loopback_and_unparsable_hosts_are_not_exempt(host):
    """Anything that is not a loopback address is subject to bans."""
    assert not is_loopback(host)
    _clock, bans = _bans(max_failures=1)
    assert bans.record_failure(host) is True
    assert bans.is_banned(host)
