"""Deny by default: every call the daemon and the bridge answer, with the access level it
was registered with. Adding a call without deciding its level fails at registration;
adding one with a level fails here until this table says the same."""

from types import SimpleNamespace

import pytest
from twisted.internet import task

from sysadmd.auth.handlers import Authenticator
from sysadmd.bridge.server import register_calls as register_bridge_calls
from sysadmd.channel.router import Router
from sysadmd.dispatcher.follow import OutputFollowers
from sysadmd.events.hub import EventHub
from sysadmd.protocol.framing import prepare_text
from sysadmd.taps.daemon import register_calls

DAEMON = {
    "rpc/identify": "public",
    "rpc/auth": "public",
    "rpc/auth_token": "public",
    "rpc/auth_ssl": "public",
    "rpc/auth_clear": "public",
    # The machine's fleet agent signing in with a fleet key (never offered by the bridge).
    "rpc/auth_fleet": "public",
    "rpc/query": "limited",
    "events/subscribe": "limited",
    "events/unsubscribe": "limited",
    "rpc/settings list_ssl_checksums": "limited",
    # Limited users manage only their own keys (403 otherwise), checked by the handler.
    "rpc/settings register_ssl_cert": "limited",
    "rpc/settings list_ssl_certs": "limited",
    "rpc/settings revoke_ssl_cert": "limited",
    "rpc/dispatcher list": "limited",
    "rpc/dispatcher log": "limited",
    # A job's output is read as its log is (events/subscribe job-output likewise).
    "rpc/dispatcher output": "limited",
    "rpc/dispatcher history": "limited",
    "rpc/dispatcher run": "full",
    "rpc/dispatcher kill": "full",
}

BRIDGE = {
    "rpc/identify": "public",
    "rpc/auth_ssl": "public",
}


def listing(router):
    """``{"namespace/name[ action]": level}`` of every registered call."""
    rows = {}
    for (namespace, name), access in router.access_table().items():
        if isinstance(access, dict):
            for action, level in access.items():
                rows[f"{namespace}/{name} {action}"] = level
        else:
            rows[f"{namespace}/{name}"] = access
    return rows


def authenticator():
    clock = task.Clock()
    return Authenticator(clock, None, None, [], None, None, 0)


def test_every_daemon_call_and_its_level():
    """The daemon's calls, exactly, as ``taps.daemon`` registers them."""
    router = Router()
    register_calls(router, authenticator(), EventHub(prepare_text), SimpleNamespace(), None)
    assert listing(router) == DAEMON


def test_every_bridge_call_and_its_level():
    """The bridge answers identify and auth_ssl, both before authentication, and nothing else."""
    router = Router()
    register_bridge_calls(router, authenticator(), SimpleNamespace(peers={}))
    assert listing(router) == BRIDGE


@pytest.mark.parametrize("access", [None, "", "admin", {}, {"run": "root"}, {"": "full"}, ["full"]])
def test_a_call_without_a_valid_level_cannot_be_registered(access):
    """Registration without a level (or with one that is not a level) fails at start."""
    with pytest.raises((ValueError, TypeError)):
        Router().register("test", "call", lambda session, args: None, access)


def test_registration_needs_a_level_argument():
    """There is no default level: leaving it out is an error."""
    with pytest.raises(TypeError):
        Router().register("test", "call", lambda session, args: None)


def test_following_a_jobs_output_needs_what_reading_its_log_needs():
    """events/subscribe job-output checks the stream's own level: the one of log."""
    assert OutputFollowers.access == DAEMON["rpc/dispatcher log"] == DAEMON["rpc/dispatcher output"]
