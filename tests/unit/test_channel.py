"""The one connection pipeline in memory: a :class:`Channel` over a recording transport,
and every provider of the channel's interfaces checked with ``verifyObject``."""

import json
from types import SimpleNamespace

import pytest
from twisted.internet import defer, task
from zope.interface import implementer
from zope.interface.verify import verifyObject

from sysadmd.auth.bans import BanList
from sysadmd.auth.handlers import Authenticator
from sysadmd.auth.policy import LIMITED
from sysadmd.auth.tokens import TokenStore
from sysadmd.bridge.clients import RelayedClients
from sysadmd.bridge.relayed import RelayedClient
from sysadmd.bridge.server import BridgeServerFactory
from sysadmd.channel.channel import AUTH_TIMEOUT, IDLE, TOO_SLOW, Channel, ChannelParts
from sysadmd.channel.outbound import Outbound
from sysadmd.channel.router import Router
from sysadmd.channel.settings import ConnectionSettings
from sysadmd.events import handlers as event_handlers
from sysadmd.events.hub import EventHub
from sysadmd.interfaces import (
    IChannelTransport,
    IEventSink,
    IOutgoingQueue,
    IPasswordBackend,
    ISessionListener,
)
from sysadmd.protocol.framing import prepare_text
from sysadmd.rpc import handlers as rpc_handlers
from sysadmd.web.rest import RestTransport
from tests.unit.test_protocol import Daemon
from tests.unit.wsfake import Peer


@implementer(IPasswordBackend)
class Backend:
    name = "fake"

    def authenticate(self, username, password):
        return defer.succeed("full" if password == "right" else None)

    def role_of(self, username):
        return defer.succeed(None)


@implementer(IChannelTransport)
class Recorder:
    """A transport that records what the channel does to it."""

    peer_host = "192.0.2.7"

    def __init__(self, can_pause_reading=True):
        self.can_pause_reading = can_pause_reading
        self.written = []
        self.limits = []
        self.reading = True
        self.ended = []

    def prepare(self, payload):
        return prepare_text(payload)

    def frame_event(self, event):
        return event.prepared()

    def write(self, prepared):
        self.written.append(prepared)

    def set_message_limit(self, limit):
        self.limits.append(limit)

    def pause_reading(self):
        self.reading = False

    def resume_reading(self):
        self.reading = True

    def end(self, ending):
        self.ended.append(ending)

    def messages(self):
        sent, self.written = self.written, []
        return [json.loads(m.payload) for m in sent]


def make_channel(transport=None, **settings):
    clock = task.Clock()
    router = Router()
    tokens = TokenStore(clock, 900)
    hub = EventHub(prepare_text)
    rpc_handlers.register(router)
    Authenticator(clock, tokens, BanList(clock, 3, 600, 3600), [Backend()], None, None, 0).register(router)
    event_handlers.register(router, hub)
    hub.add_source("demo", "demo_frame", False)
    parts = ChannelParts(ConnectionSettings(**settings), router, tokens, hub, clock)
    channel = Channel(transport or Recorder(), parts)
    channel.open()
    return channel, clock


def request(channel, namespace, name, args=None, request_id=1):
    channel.received(json.dumps({"namespace": namespace, "name": name, "id": request_id, "args": args or {}}).encode())


def sign_in(channel):
    request(channel, "rpc", "auth", {"username": "admin", "password": "right"}, "login")
    [reply] = channel.transport.messages()
    assert reply["name"] == "response"


def test_the_channel_and_its_queue_provide_their_interfaces():
    """The channel listens to its session; its outgoing queue is an event sink."""
    channel, _ = make_channel()
    assert verifyObject(ISessionListener, channel)
    assert verifyObject(IOutgoingQueue, channel.outbound)
    assert verifyObject(IEventSink, channel.outbound)
    outbound = Outbound(lambda p: None, prepare_text, 1024, "drop", lambda: None)
    assert verifyObject(IOutgoingQueue, outbound)


def test_every_transport_provides_the_channel_transport_interface():
    """Direct WebSocket connections (daemon and bridge), relayed clients and REST
    requests are all transports of the one channel."""
    daemon = Daemon()
    direct = Peer(daemon.factory).protocol
    assert verifyObject(IChannelTransport, direct)
    clock = task.Clock()
    bridge = BridgeServerFactory(
        clock, ConnectionSettings(handshake_timeout=0, ping_interval=0), Router(), TokenStore(clock, 9),
        BanList(clock, 3, 600, 3600),
    )
    bridge.setProtocolOptions(closeHandshakeTimeout=0)
    bridged = Peer(bridge).protocol
    assert verifyObject(IChannelTransport, bridged)
    relay_daemon = SimpleNamespace(parts=ChannelParts(ConnectionSettings(), Router(), None, None, clock))
    clients = RelayedClients("nick", relay_daemon, lambda p: None, lambda p: p)
    relayed = RelayedClient(clients, "c1", relay_daemon, lambda p: None, lambda p: p)
    assert verifyObject(IChannelTransport, relayed)
    relayed.close()
    assert verifyObject(IChannelTransport, RestTransport("192.0.2.7"))
    for protocol in (direct, bridged):
        protocol.channel.close()


def test_a_message_over_the_limit_is_answered_400_and_the_limit_grows_at_sign_in():
    """preauth_max_message_bytes before sign-in, max_message_bytes after; the transport is told each limit."""
    channel, _ = make_channel(preauth_max_message_bytes=300, max_message_bytes=4096)
    assert channel.transport.limits == [300]
    request(channel, "rpc", "identify", {"pad": "x" * 400})
    [reply] = channel.transport.messages()
    assert reply["args"]["code"] == 400 and "300 bytes" in reply["args"]["details"]
    sign_in(channel)
    assert channel.transport.limits[-1] == 4096
    request(channel, "rpc", "identify", {"pad": "x" * 400})
    assert channel.transport.messages()[0]["name"] == "response"


def test_a_transport_that_can_pause_stops_reading_at_the_inflight_limit():
    """Past max_inflight_requests a socket is not read; requests already read wait in order."""
    channel, _ = make_channel(max_inflight_requests=2)
    pending = []
    channel.parts.router.register("test", "slow", lambda s, a: pending.append(defer.Deferred()) or pending[-1], LIMITED)
    sign_in(channel)
    for i in range(3):
        request(channel, "test", "slow", request_id=i)
    assert len(pending) == 2 and not channel.transport.reading
    pending[0].callback("a")
    assert len(pending) == 3  # the third, already read, had waited its turn
    for d in pending[1:]:
        d.callback("b")
    assert channel.transport.reading
    assert [m["id"] for m in channel.transport.messages()] == [0, 1, 2]


def test_a_transport_that_cannot_pause_gets_503_past_the_inflight_limit():
    """A relayed client cannot be paused: the request past the bound is answered 503."""
    channel, _ = make_channel(Recorder(can_pause_reading=False), max_inflight_requests=1)
    pending = []
    channel.parts.router.register("test", "slow", lambda s, a: pending.append(defer.Deferred()) or pending[-1], LIMITED)
    sign_in(channel)
    request(channel, "test", "slow", request_id="a")
    request(channel, "test", "slow", request_id="b")
    [refused] = channel.transport.messages()
    assert refused["id"] == "b" and refused["args"]["code"] == 503
    assert channel.transport.reading  # never paused
    pending[0].callback(1)
    assert channel.transport.messages()[0]["id"] == "a"


def test_no_authentication_in_time_ends_the_client():
    """auth_timeout without signing in ends the client with AUTH_TIMEOUT."""
    channel, clock = make_channel(auth_timeout=5, idle_timeout=0)
    clock.advance(4.9)
    assert channel.transport.ended == []
    clock.advance(0.2)
    assert channel.transport.ended == [AUTH_TIMEOUT]


def test_silence_ends_a_signed_in_client_and_each_message_restarts_the_timer():
    """idle_timeout counts from the last message, signed in or not."""
    channel, clock = make_channel(auth_timeout=5, idle_timeout=10)
    sign_in(channel)
    clock.advance(9)
    request(channel, "rpc", "identify")
    clock.advance(9)
    assert channel.transport.ended == []
    clock.advance(2)
    assert channel.transport.ended == [IDLE]


def test_a_client_that_does_not_read_is_ended_in_disconnect_mode():
    """A client that stops reading is not read, and past its buffer it is ended (disconnect mode)."""
    channel, _ = make_channel(subscriber_buffer_bytes=4096, slow_subscriber="disconnect", idle_timeout=0)
    sign_in(channel)
    request(channel, "events", "subscribe", ["demo"])
    channel.outbound.pauseProducing()
    assert not channel.transport.reading  # a client that does not read is not read
    hub = channel.parts.hub
    for _ in range(20):
        hub.publish("demo", {"pad": "x" * 500})
    assert channel.transport.ended == [TOO_SLOW]
    assert hub.channel("demo").dropped >= 1


def test_close_releases_subscriptions_and_timers():
    """Closing drops subscriptions and timers, and nothing is handled afterwards."""
    channel, clock = make_channel(auth_timeout=5, idle_timeout=10)
    sign_in(channel)
    request(channel, "events", "subscribe", ["demo"])
    assert channel.parts.hub.subscriptions(channel.outbound) == ["demo"]
    channel.transport.messages()
    channel.close()
    assert channel.parts.hub.subscriptions(channel.outbound) == []
    assert clock.getDelayedCalls() == []
    request(channel, "rpc", "identify")
    assert channel.transport.messages() == []  # nothing is handled after close


@pytest.mark.parametrize("payload", [b"{", b"[]", b'{"id": 1}'])
def test_undecodable_messages_are_answered_400(payload):
    """Malformed frames get a 400 error reply, not a closed connection."""
    channel, _ = make_channel()
    channel.received(payload)
    [reply] = channel.transport.messages()
    assert reply["namespace"] == "error" and reply["args"]["code"] == 400
