"""The access table: levels per call and action, and rpc/query's answer."""

import pytest

from sysadmd.auth import policy
from sysadmd.auth.policy import FULL, LIMITED, PUBLIC, allows, query, required_level

PUBLIC_CALLS = [("rpc", "identify"), ("rpc", "auth"), ("rpc", "auth_token"), ("rpc", "auth_ssl"), ("rpc", "auth_clear")]
LIMITED_CALLS = [("rpc", "query"), ("events", "subscribe"), ("events", "unsubscribe")]


@pytest.mark.parametrize("call", PUBLIC_CALLS)
def test_authentication_calls_are_public(call):
    """identify and the auth calls work before authentication."""
    assert required_level(*call, {}) == PUBLIC


@pytest.mark.parametrize("call", LIMITED_CALLS)
def test_query_and_subscriptions_need_any_user(call):
    """query, subscribe and unsubscribe need an authenticated user."""
    assert required_level(*call, {}) == LIMITED


@pytest.mark.parametrize("call", [("rpc", "nosuch"), ("nosuch", "identify"), ("", "")])
def test_unknown_calls_need_limited(call):
    """An unknown call is not public: unauthenticated clients get 401, not a 404 hint."""
    assert required_level(*call, {}) == LIMITED


@pytest.mark.parametrize(
    "action, level",
    [("list", LIMITED), ("log", LIMITED), ("history", LIMITED), ("run", FULL), ("kill", FULL)],
)
def test_dispatcher_actions_have_their_own_level(action, level):
    """Reading the dispatcher needs any user; running or killing needs full access."""
    assert required_level("rpc", "dispatcher", {"action": action, "x": 1}) == level


@pytest.mark.parametrize(
    "args",
    [{}, {"action": "nosuch"}, {"action": None}, {"action": 3}, {"action": ["run"]}, {"action": {"run": 1}}, [], "run", None, ["action", "run"]],
)
def test_dispatcher_unknown_or_missing_action_needs_lowest_level(args):
    """Without a known action the lowest level applies (the handler then answers 400/404);
    odd args never raise."""
    assert required_level("rpc", "dispatcher", args) == LIMITED


def test_every_policy_level_is_a_known_level():
    """The table uses only the three levels."""
    for entry in policy.POLICY.values():
        levels = entry.values() if isinstance(entry, dict) else [entry]
        assert set(levels) <= {PUBLIC, LIMITED, FULL}


@pytest.mark.parametrize(
    "access, level, expected",
    [
        (None, PUBLIC, True),
        (None, LIMITED, False),
        (None, FULL, False),
        ("limited", PUBLIC, True),
        ("limited", LIMITED, True),
        ("limited", FULL, False),
        ("full", PUBLIC, True),
        ("full", LIMITED, True),
        ("full", FULL, True),
        ("bogus", LIMITED, False),
    ],
)
def test_allows_orders_access_levels(access, level, expected):
    """None < limited < full; an unknown access string counts as unauthenticated."""
    assert allows(access, level) is expected


AVAILABLE = {
    ("rpc", "identify"),
    ("rpc", "auth"),
    ("rpc", "query"),
    ("events", "subscribe"),
    ("rpc", "dispatcher"),
}


def test_query_unauthenticated_lists_only_public_calls_as_read():
    """Before authentication only the public calls are usable."""
    assert query(None, AVAILABLE) == {"rpc/identify": "read", "rpc/auth": "read"}


def test_query_limited_lists_everything_reachable_as_read():
    """A limited user may read the dispatcher but not run, so everything is 'read'."""
    assert query("limited", AVAILABLE) == {
        "rpc/identify": "read",
        "rpc/auth": "read",
        "rpc/query": "read",
        "events/subscribe": "read",
        "rpc/dispatcher": "read",
    }


def test_query_full_marks_calls_with_full_parts_read_write():
    """A full user gets 'read/write' exactly on calls that have a full-access part."""
    assert query("full", AVAILABLE) == {
        "rpc/identify": "read",
        "rpc/auth": "read",
        "rpc/query": "read",
        "events/subscribe": "read",
        "rpc/dispatcher": "read/write",
    }


def test_query_omits_calls_that_are_not_available():
    """Calls in the table but not registered are not advertised."""
    result = query("full", {("rpc", "identify")})
    assert result == {"rpc/identify": "read"}
    assert "rpc/dispatcher" not in query("full", {("rpc", "query")})


def test_query_lists_available_calls_missing_from_the_table_as_limited():
    """A registered call the table does not name defaults to limited."""
    available = {("rpc", "extra")}
    assert query(None, available) == {}
    assert query("limited", available) == {"rpc/extra": "read"}


def test_query_of_nothing_available_is_empty():
    """No registered calls, nothing to list."""
    assert query("full", set()) == {}
