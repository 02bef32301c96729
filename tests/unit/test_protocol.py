"""The WebSocket protocol in memory, with an injected clock."""

from twisted.internet import defer, task
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from sysadmd.auth.bans import BanList
from sysadmd.auth.handlers import Authenticator
from sysadmd.auth.policy import LIMITED
from sysadmd.auth.tokens import TokenStore
from sysadmd.channel.router import Router
from sysadmd.channel.settings import ConnectionSettings
from sysadmd.dispatcher.api import ACCESS
from sysadmd.events import handlers as event_handlers
from sysadmd.events.hub import EventHub
from sysadmd.interfaces import IPasswordBackend
from sysadmd.protocol.framing import prepare_text
from sysadmd.rpc import handlers as rpc_handlers
from sysadmd.server.factory import SysadmServerFactory
from tests.unit.wsfake import Peer


@implementer(IPasswordBackend)
class FakeBackend:
    """Accepts password 'right' for any user; 'viewer' is limited."""

    name = "fake"

    def authenticate(self, username, password):
        if password != "right":
            return defer.succeed(None)
        return defer.succeed("limited" if username == "viewer" else "full")

    def role_of(self, username):
        return defer.succeed(None)


class Daemon:
    """A factory wired like the real daemon, on a task.Clock."""

    def __init__(self, **settings):
        settings.setdefault("handshake_timeout", 0)
        settings.setdefault("ping_interval", 0)
        self.clock = task.Clock()
        self.router = Router()
        self.hub = EventHub(prepare_text)
        self.tokens = TokenStore(self.clock, settings.pop("token_ttl", 900))
        self.bans = BanList(self.clock, 3, 600, 3600, ban_loopback=True)
        self.factory = SysadmServerFactory(
            self.clock, ConnectionSettings(**settings), self.router, self.hub, self.tokens, self.bans
        )
        # Autobahn's close-handshake timer uses the global reactor; unit tests do without.
        self.factory.setProtocolOptions(closeHandshakeTimeout=0)
        rpc_handlers.register(self.router)
        Authenticator(self.clock, self.tokens, self.bans, [FakeBackend()], None, None, 0).register(
            self.router
        )
        event_handlers.register(self.router, self.hub)
        self.hub.add_source("demo", "demo_frame", True)

    def peer(self, **kwargs):
        return Peer(self.factory, **kwargs)

    def signed_in(self, user="admin", **kwargs):
        peer = self.peer(**kwargs)
        peer.request("rpc", "auth", {"username": user, "password": "right"}, "login")
        [reply] = peer.messages()
        assert reply["name"] == "response", reply
        return peer


def test_handshake_then_identify():
    """A client completes the handshake and identify answers before authentication."""
    peer = Daemon().peer()
    assert peer.status == 101
    peer.request("rpc", "identify", request_id="i")
    [reply] = peer.messages()
    assert reply["id"] == "i" and reply["args"]["type"] == "server"


def test_unauthenticated_connection_closes_after_auth_timeout():
    """Nothing but a close with 1008 after auth_timeout seconds without signing in."""
    daemon = Daemon(auth_timeout=30)
    peer = daemon.peer()
    daemon.clock.advance(29)
    assert peer.frames() == []
    daemon.clock.advance(1)
    assert peer.close_code() == 1008


def test_signing_in_cancels_the_auth_timeout():
    """An authenticated connection outlives auth_timeout."""
    daemon = Daemon(auth_timeout=30, idle_timeout=0)
    peer = daemon.signed_in()
    daemon.clock.advance(60)
    assert peer.close_code() is None


def test_idle_timeout_is_reset_by_messages():
    """idle_timeout counts from the last incoming message; then close with 1000."""
    daemon = Daemon(idle_timeout=100, auth_timeout=0)
    peer = daemon.peer()
    daemon.clock.advance(90)
    peer.request("rpc", "identify")
    peer.frames()
    daemon.clock.advance(90)
    assert peer.close_code() is None
    daemon.clock.advance(10)
    assert peer.close_code() == 1000


def test_preauth_frames_are_limited_and_lifted_after_sign_in():
    """Before sign-in a frame over preauth_max_message_bytes closes with 1009; after
    it, frames up to max_message_bytes are fine."""
    daemon = Daemon(preauth_max_message_bytes=1024, max_message_bytes=65536)
    big = {"namespace": "rpc", "name": "identify", "id": 1, "args": {"pad": "x" * 2000}}
    peer = daemon.peer()
    peer.send(big)
    assert peer.close_code() == 1009
    signed = daemon.signed_in()
    signed.send(big)
    [reply] = signed.messages()
    assert reply["name"] == "response"


def test_too_many_requests_in_flight_pause_reading():
    """At max_inflight_requests unanswered requests the socket is not read; it is read
    again when one finishes, and other connections are unaffected."""
    daemon = Daemon(max_inflight_requests=3)
    pending = []
    daemon.router.register(
        "test", "slow", lambda session, args: pending.append(defer.Deferred()) or pending[-1], LIMITED
    )
    peer = daemon.signed_in()
    for i in range(3):
        peer.request("test", "slow", request_id=i)
    assert peer.transport.producerState == "paused"
    other = daemon.signed_in(host="10.0.0.2")
    other.request("rpc", "identify", request_id="fast")
    assert other.messages()[0]["id"] == "fast"
    pending[0].callback({"done": 0})
    assert peer.transport.producerState == "producing"
    assert peer.messages()[0] == {"namespace": "test", "name": "response", "id": 0, "args": {"done": 0}}


def test_slow_subscriber_drops_then_reports_the_lost_range():
    """A connection whose transport is full queues events up to the buffer, drops the
    rest, and once it has drained gets a gap naming exactly the seqs it lost."""
    daemon = Daemon(subscriber_buffer_bytes=4096)
    peer = daemon.signed_in()
    peer.request("events", "subscribe", ["demo"])
    peer.messages()
    peer.protocol.channel.outbound.pauseProducing()  # what a full transport does
    for n in range(100):
        daemon.hub.publish("demo", {"n": n, "pad": "y" * 100})
    assert peer.messages() == []
    assert peer.protocol.channel.outbound.queued_bytes <= 4096
    peer.protocol.channel.outbound.resumeProducing()
    received = peer.messages()
    numbers = [m["args"]["n"] for m in received if m["name"] == "demo_frame"]
    assert numbers == list(range(len(numbers)))
    log = daemon.hub.channel("demo").log
    assert received[-1] == {"namespace": "events", "name": "gap", "id": "none",
                            "args": {"source": "demo", "epoch": log.epoch, "missed_from": len(numbers) + 1,
                                     "missed_to": 100, "first_available": 1, "head": 100, "reason": "overflow"}}
    assert daemon.hub.channel("demo").dropped == 100 - len(numbers)


def test_slow_subscriber_disconnect_mode_closes_with_1008():
    """With slow_subscriber = disconnect an overflowing subscriber is closed with 1008."""
    daemon = Daemon(subscriber_buffer_bytes=4096, slow_subscriber="disconnect")
    peer = daemon.signed_in()
    peer.request("events", "subscribe", ["demo"])
    peer.messages()
    peer.protocol.channel.outbound.pauseProducing()
    for n in range(100):
        daemon.hub.publish("demo", {"n": n, "pad": "y" * 100})
    assert peer.close_code() == 1008


def test_banned_address_is_refused_at_the_handshake():
    """After max_failures failed logins, the address's new handshakes get HTTP 429."""
    daemon = Daemon()
    peer = daemon.peer()
    for i in range(3):
        peer.request("rpc", "auth", {"username": "u", "password": "wrong"}, i)
    codes = [m["args"]["code"] for m in peer.messages()]
    assert codes == [401, 401, 401]
    peer.request("rpc", "auth", {"username": "u", "password": "right"}, "late")
    assert peer.messages()[0]["args"]["code"] == 429
    assert daemon.peer().status == 429
    assert daemon.peer(host="10.9.9.9").status == 101


def test_connections_per_address_are_limited():
    """More than max_connections_per_ip connections from one address get HTTP 503."""
    daemon = Daemon(max_connections_per_ip=2)
    assert [daemon.peer().status for _ in range(2)] == [101, 101]
    assert daemon.peer().status == 503
    assert daemon.peer(host="10.0.0.7").status == 101


def test_browser_origins_are_checked():
    """Origins other than the daemon's own host are refused with 403 by default; no
    Origin (command-line tools) is fine; allowed_origins opens others."""
    daemon = Daemon()
    assert daemon.peer(origin="http://evil.example").status == 403
    assert daemon.peer(origin="http://127.0.0.1:12150").status == 101
    assert daemon.peer().status == 101
    listed = Daemon(allowed_origins=["https://dash.example.org"])
    assert listed.peer(origin="https://dash.example.org").status == 101
    assert listed.peer(origin="http://127.0.0.1:12150").status == 403


def test_expired_session_is_told_and_loses_its_subscriptions():
    """When the token expires unused, the client gets a 401 with id null and its
    subscriptions end."""
    daemon = Daemon(token_ttl=60, idle_timeout=0)
    peer = daemon.signed_in()
    peer.request("events", "subscribe", ["demo"])
    peer.messages()
    daemon.clock.advance(61)
    [notice] = peer.messages()
    assert notice["id"] is None and notice["args"]["code"] == 401
    daemon.hub.publish("demo", {"n": 1})
    assert peer.messages() == []
    peer.request("rpc", "query")
    assert peer.messages()[0]["args"]["code"] == 401


def test_requests_extend_the_token():
    """Each authenticated request extends the token's life."""
    daemon = Daemon(token_ttl=60, idle_timeout=0)
    peer = daemon.signed_in()
    for _ in range(5):
        daemon.clock.advance(50)
        peer.request("rpc", "query")
        assert peer.messages()[0]["name"] == "response"


def test_limited_user_gets_403_for_full_calls():
    """Limited users are refused calls that need full access (before the handler runs),
    and stay connected."""
    daemon = Daemon()
    ran = []
    daemon.router.register("rpc", "dispatcher", lambda session, args: ran.append(args), ACCESS)
    peer = daemon.signed_in("viewer")
    peer.request("rpc", "dispatcher", {"action": "run", "j": "true"})
    assert peer.messages()[0]["args"]["code"] == 403
    assert ran == []
    peer.request("rpc", "identify")
    assert peer.messages()[0]["name"] == "response"


def test_handler_crash_is_500_without_details():
    """A failing handler answers 500 without the exception text; the failure is logged."""
    daemon = Daemon()
    daemon.router.register("test", "boom", lambda s, a: 1 / 0, LIMITED)
    peer = daemon.signed_in()
    peer.request("test", "boom")
    [reply] = peer.messages()
    assert reply["args"]["code"] == 500
    assert "ZeroDivision" not in str(reply) and "Traceback" not in str(reply)


def test_close_all_sends_1001_and_waits():
    """Shutdown closes open connections with 1001 and fires once they are gone."""
    daemon = Daemon()
    peer = daemon.signed_in()
    d = daemon.factory.close_all()
    assert peer.close_code() == 1001
    assert not d.called
    peer.protocol.connectionLost(Failure(ConnectionDone()))
    assert d.called
