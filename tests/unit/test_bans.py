"""Failed-login bans per address, on an injected clock."""


import pytest
from twisted.internet import task

from sysadmd.auth.bans import BanList, is_loopback
from sysadmd.util.net import ban_key

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


# Reserved slots: a guess in flight counts as a failure until it succeeds.


def test_a_guess_in_flight_holds_a_slot_until_it_is_settled():
    """max_failures guesses at once take every slot; the next is refused before any check."""
    _clock, bans = _bans(max_failures=3)
    attempts = [bans.reserve(HOST) for _ in range(3)]
    assert all(a is not None for a in attempts)
    assert bans.attempts_in_flight == 3
    assert bans.reserve(HOST) is None
    assert not bans.is_banned(HOST)  # refused, not (yet) banned
    assert bans.reserve("192.0.2.11") is not None  # other addresses are not affected


def test_failed_attempts_ban_and_the_last_one_says_so():
    """Each failed attempt stays counted; the max_failures-th starts the ban."""
    _clock, bans = _bans(max_failures=3)
    attempts = [bans.reserve(HOST) for _ in range(3)]
    assert [a.failed() for a in attempts] == [False, False, True]
    assert bans.is_banned(HOST)
    assert bans.attempts_in_flight == 0
    assert bans.reserve(HOST) is None


def test_recorded_failures_and_guesses_in_flight_add_up():
    """Two failures in the window leave one slot of three."""
    _clock, bans = _bans(max_failures=3)
    bans.record_failure(HOST)
    bans.record_failure(HOST)
    attempt = bans.reserve(HOST)
    assert attempt is not None
    assert bans.reserve(HOST) is None
    attempt.release()
    assert bans.reserve(HOST) is not None


def test_failures_leaving_the_window_free_their_slots():
    """A failure older than the window no longer takes a slot."""
    clock, bans = _bans(max_failures=2, window=60)
    bans.reserve(HOST).failed()
    assert bans.reserve(HOST) is not None
    assert bans.reserve(HOST) is None
    clock.advance(60)
    assert bans.reserve(HOST) is not None


def test_a_success_frees_its_slot_and_forgets_the_failures():
    """A successful attempt clears the address's count; others in flight still count."""
    _clock, bans = _bans(max_failures=3)
    bans.reserve(HOST).failed()
    bans.reserve(HOST).failed()
    other = bans.reserve(HOST)
    assert bans.reserve(HOST) is None
    other.succeeded()
    held = [bans.reserve(HOST) for _ in range(3)]
    assert None not in held
    assert bans.reserve(HOST) is None


def test_a_released_attempt_is_not_counted():
    """A request that was no guess (malformed, or refused before its check) gives its slot back."""
    _clock, bans = _bans(max_failures=1)
    for _ in range(5):
        attempt = bans.reserve(HOST)
        assert attempt is not None
        attempt.release()
    assert bans.attempts_in_flight == 0
    assert not bans.is_banned(HOST)


def test_an_attempt_is_settled_once():
    """Settling an attempt again changes nothing (no double count, no negative count)."""
    _clock, bans = _bans(max_failures=2)
    attempt = bans.reserve(HOST)
    assert attempt.failed() is False
    assert attempt.failed() is False
    attempt.release()
    attempt.succeeded()
    assert bans.attempts_in_flight == 0
    second = bans.reserve(HOST)
    assert second.failed() is True  # the first failure is still the only earlier one


def test_a_banned_address_gets_no_slot():
    """During a ban nothing is reserved, even after its failures have left the window."""
    clock, bans = _bans(max_failures=1, window=10, ban_seconds=300)
    assert bans.reserve(HOST).failed() is True
    clock.advance(100)
    assert bans.reserve(HOST) is None
    clock.advance(200)
    assert bans.reserve(HOST) is not None


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_loopback_reserves_without_limit_unless_ban_loopback(host):
    """Exempt addresses always get a slot, and their failures are never counted."""
    _clock, bans = _bans(max_failures=1)
    attempts = [bans.reserve(host) for _ in range(10)]
    assert None not in attempts
    assert [a.failed() for a in attempts] == [False] * 10
    assert bans.attempts_in_flight == 0
    assert not bans.is_banned(host)


# Ban keys: IPv6 by network, IPv4-mapped as IPv4, anything else as it is.


@pytest.mark.parametrize(
    "host, prefix, key",
    [
        ("192.0.2.1", 64, "192.0.2.1"),
        ("::ffff:192.0.2.1", 64, "192.0.2.1"),
        ("2001:db8:1:2:aaaa::5", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:aaaa::5", 48, "2001:db8:1::/48"),
        ("2001:db8:1:2:aaaa::5", 128, "2001:db8:1:2:aaaa::5/128"),
        ("fe80::1%eth0", 64, "fe80::/64"),
        ("::1", 64, "::/64"),
        ("unix", 64, "unix"),
        ("bridge:office:SHA256:abcd", 64, "bridge:office:SHA256:abcd"),
        ("", 64, ""),
    ],
)
def test_ban_key(host, prefix, key):
    """What an address is counted and banned under."""
    assert ban_key(host, prefix) == key


def test_ipv6_addresses_of_one_network_share_a_ban():
    """Failures from different addresses of one /64 add up, and the ban covers the /64."""
    _clock, bans = _bans(max_failures=3)
    for suffix in ("1", "2", "3"):
        bans.reserve(f"2001:db8:0:7::{suffix}").failed()
    assert bans.is_banned("2001:db8:0:7:ffff:ffff:ffff:ffff")
    assert bans.reserve("2001:db8:0:7::99") is None
    assert not bans.is_banned("2001:db8:0:8::1")
    assert bans.banned_count == 1


def test_ipv6_slots_are_shared_by_the_network():
    """Guesses in flight from one /64 share its max_failures slots."""
    _clock, bans = _bans(max_failures=2)
    assert bans.reserve("2001:db8::1") is not None
    assert bans.reserve("2001:db8::2") is not None
    assert bans.reserve("2001:db8::3") is None
    assert bans.reserve("2001:db8:0:1::1") is not None


def test_ipv6_prefix_is_configurable():
    """With ipv6_prefix=128 each IPv6 address is on its own."""
    clock = task.Clock()
    bans = BanList(clock, 1, 60, 300, ipv6_prefix=128)
    bans.reserve("2001:db8::1").failed()
    assert bans.is_banned("2001:db8::1")
    assert not bans.is_banned("2001:db8::2")


def test_ipv4_mapped_address_shares_the_ipv4_addresss_ban():
    """A client seen through a dual-stack socket is banned as its IPv4 address."""
    _clock, bans = _bans(max_failures=1)
    bans.reserve("::ffff:192.0.2.7").failed()
    assert bans.is_banned("192.0.2.7")
    assert bans.reserve("192.0.2.7") is None


def test_relayed_client_keys_are_kept_as_they_are():
    """A non-IP key (a relayed client's bridge link and fingerprint) is banned as itself."""
    _clock, bans = _bans(max_failures=1)
    bans.reserve("bridge:office:SHA256:abcd").failed()
    assert bans.is_banned("bridge:office:SHA256:abcd")
    assert not bans.is_banned("bridge:office:SHA256:ef01")
    assert not bans.is_banned("bridge:home:SHA256:abcd")
