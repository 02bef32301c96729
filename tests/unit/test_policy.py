"""Access levels: the level a request needs, as registered with its call, and
rpc/query's answer."""

from types import SimpleNamespace

import pytest
from twisted.internet import task

from sysadmd.auth.handlers import Authenticator
from sysadmd.auth.policy import (
    FULL,
    LIMITED,
    PUBLIC,
    UNKNOWN_CALL,
    allows,
    check_access,
    query,
)
from sysadmd.auth.policy import required_level as level_of
from sysadmd.channel.router import Router
from sysadmd.events.hub import EventHub
from sysadmd.protocol.framing import prepare_text
from sysadmd.taps.daemon import register_calls


def _daemon_table():
    router = Router()
    authenticator = Authenticator(task.Clock(), None, None, [], None, None, 0)
    register_calls(router, authenticator, EventHub(prepare_text), SimpleNamespace(), None)
    return router.access_table()


TABLE = _daemon_table()


def required_level(namespace, name, args):
    """The level the daemon's router requires of this request."""
    return level_of(TABLE.get((namespace, name), UNKNOWN_CALL), args)


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


def test_every_registered_level_is_a_known_level():
    """The daemon's calls use only the three levels (check_access accepts each)."""
    for entry in TABLE.values():
        check_access(entry)
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
    key: TABLE[key]
    for key in [("rpc", "identify"), ("rpc", "auth"), ("rpc", "query"), ("events", "subscribe"), ("rpc", "dispatcher")]
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


def test_query_lists_only_registered_calls():
    """Only registered calls are advertised, each at its registered level."""
    assert query("full", {("rpc", "identify"): PUBLIC}) == {"rpc/identify": "read"}
    assert query("limited", {("rpc", "extra"): LIMITED}) == {"rpc/extra": "read"}
    assert query(None, {("rpc", "extra"): LIMITED}) == {}


def test_query_of_nothing_available_is_empty():
    """No registered calls, nothing to list."""
    assert query("full", {}) == {}
