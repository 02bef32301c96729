"""The daemon's relayed clients in memory: one session per client id, replies and events
addressed back through the bridge, limits and the end of sessions."""

import json
from types import SimpleNamespace

from autobahn.websocket.protocol import PreparedMessage
from twisted.internet import task

from sysadmd.auth.bans import BanList
from sysadmd.auth.handlers import Authenticator
from sysadmd.auth.tokens import TokenStore
from sysadmd.bridge.clients import RelayedClients
from sysadmd.channel.channel import ChannelParts
from sysadmd.channel.router import Router
from sysadmd.channel.settings import ConnectionSettings
from sysadmd.events import handlers as event_handlers
from sysadmd.events.hub import EventHub
from sysadmd.protocol.framing import prepare_text
from sysadmd.rpc import handlers as rpc_handlers
from tests.unit.test_protocol import FakeBackend


class Link:
    """A daemon's parts and one bridge link's RelayedClients, writing into a list."""

    def __init__(self, legacy=True, tunnel_server=None, **settings):
        settings.setdefault("auth_timeout", 0)
        self.clock = task.Clock()
        self.hub = EventHub(prepare_text)
        self.hub.add_source("demo", "demo_frame", False)
        router = Router()
        tokens = TokenStore(self.clock, 900)
        bans = BanList(self.clock, 3, 600, 3600, ban_loopback=True)
        rpc_handlers.register(router)
        Authenticator(self.clock, tokens, bans, [FakeBackend()], None, None, 0).register(router)
        event_handlers.register(router, self.hub)
        self.daemon = SimpleNamespace(
            parts=ChannelParts(ConnectionSettings(**settings), router, tokens, self.hub, self.clock)
        )
        self.written = []
        self.clients = RelayedClients("test", self.daemon, self.written.append, self._prepare,
                                      legacy=legacy, tunnel_server=tunnel_server)

    @staticmethod
    def _prepare(payload):
        return PreparedMessage(payload, isBinary=False, applyMask=True, doNotCompress=False)

    def take(self):
        """``(client id, decoded payload)`` of everything written since the last call."""
        frames, self.written[:] = list(self.written), []
        out = []
        for prepared in frames:
            client_id, _, payload = prepared.payload.partition(b"\n")
            out.append((client_id.decode(), json.loads(payload)))
        return out

    def request(self, client_id, namespace, name, args=None, request_id=1):
        self.clients.relayed(client_id, json.dumps(
            {"namespace": namespace, "name": name, "id": request_id, "args": {} if args is None else args}
        ).encode())

    def login(self, client_id, user="admin"):
        self.request(client_id, "rpc", "auth", {"username": user, "password": "right"}, "login")
        [(to, reply)] = self.take()
        assert to == client_id and reply["name"] == "response", reply


def test_messages_from_ids_the_bridge_did_not_list_are_ignored():
    """Only clients in the last bridge event get a session."""
    link = Link()
    link.request("c1", "rpc", "identify")
    assert link.take() == [] and len(link.clients) == 0
    link.clients.bridge_event(["c1"])
    link.request("c1", "rpc", "identify", request_id="i")
    [(to, reply)] = link.take()
    assert to == "c1" and reply["id"] == "i" and reply["args"]["type"] == "server"


def test_each_relayed_client_authenticates_on_its_own():
    """Signing in one client does not sign in another relayed by the same bridge."""
    link = Link()
    link.clients.bridge_event(["c1", "c2"])
    link.login("c1")
    link.request("c2", "events", "subscribe", "demo", "s")
    [(to, reply)] = link.take()
    assert to == "c2" and reply["namespace"] == "error" and reply["args"]["code"] == 401
    link.request("c1", "events", "subscribe", "demo", "s")
    [(to, reply)] = link.take()
    assert to == "c1" and reply["args"] == {"subscribe": ["demo"]}


def test_events_go_to_subscribed_relayed_clients_with_the_hubs_payload():
    """The hub's encoded payload, seq and epoch included, is sent behind the client's id
    line, to subscribers only."""
    link = Link()
    link.clients.bridge_event(["c1", "c2"])
    link.login("c1")
    link.login("c2")
    link.request("c1", "events", "subscribe", "demo", "s")
    link.take()
    link.hub.publish("demo", {"n": 1})
    [prepared] = link.written
    epoch = link.hub.channel("demo").log.epoch
    assert prepared.payload == b"c1\n" + json.dumps(
        {"namespace": "events", "name": "demo_frame", "id": "none", "args": {"n": 1}, "seq": 1, "epoch": epoch},
        separators=(",", ":"),
    ).encode()


def test_a_client_the_bridge_no_longer_lists_loses_its_session():
    """A bridge event without the client ends its session and subscriptions."""
    link = Link()
    link.clients.bridge_event(["c1"])
    link.login("c1")
    link.request("c1", "events", "subscribe", "demo", "s")
    link.take()
    session = link.clients.get("c1").session
    assert link.hub.subscriptions(session.outbound) == ["demo"]
    link.clients.bridge_event([])
    assert link.clients.get("c1") is None
    assert link.hub.subscriptions(session.outbound) == []
    link.hub.publish("demo", {"n": 2})
    assert link.take() == []


def test_a_client_that_comes_back_starts_unauthenticated():
    """After its session ended a client id must authenticate again (tokens aside)."""
    link = Link()
    link.clients.bridge_event(["c1"])
    link.login("c1")
    link.clients.bridge_event([])
    link.clients.bridge_event(["c1"])
    link.request("c1", "rpc", "query", request_id="q")
    [(_, reply)] = link.take()
    assert reply["args"]["code"] == 401


def test_unauthenticated_relayed_sessions_end_after_auth_timeout():
    """The daemon's auth_timeout ends the session with a 401 notice."""
    link = Link(auth_timeout=30)
    link.clients.bridge_event(["c1"])
    link.request("c1", "rpc", "identify")
    link.take()
    link.clock.advance(31)
    [(to, notice)] = link.take()
    assert to == "c1" and notice["id"] is None and notice["args"]["code"] == 401
    assert link.clients.get("c1") is None


def test_idle_relayed_sessions_end():
    """idle_timeout without a message ends a signed-in session too."""
    link = Link(idle_timeout=100)
    link.clients.bridge_event(["c1"])
    link.login("c1")
    link.clock.advance(60)
    link.request("c1", "rpc", "identify")
    link.clock.advance(60)
    assert link.clients.get("c1") is not None
    link.take()
    link.clock.advance(41)
    [(_, notice)] = link.take()
    assert notice["args"]["code"] == 401 and link.clients.get("c1") is None


def test_message_limits_apply_per_client():
    """Before authentication a relayed message is limited to preauth_max_message_bytes."""
    link = Link(preauth_max_message_bytes=300, max_message_bytes=2000)
    link.clients.bridge_event(["c1"])
    big = {"username": "admin", "password": "right", "pad": "x" * 400}
    link.request("c1", "rpc", "auth", big, "big")
    [(_, reply)] = link.take()
    assert reply["args"]["code"] == 400
    link.login("c1")
    link.request("c1", "rpc", "identify", {"pad": "x" * 400}, "ok")
    [(_, reply)] = link.take()
    assert reply["name"] == "response"


def test_a_paused_link_queues_and_drops_events_per_client():
    """While the link's transport is full, each client's events wait within its buffer;
    beyond, they are dropped, and once it drains the client gets a gap naming exactly
    the seqs it lost (it can resume from it)."""
    link = Link(subscriber_buffer_bytes=4096, slow_subscriber="drop")
    link.clients.bridge_event(["c1"])
    link.login("c1")
    link.request("c1", "events", "subscribe", "demo", "s")
    link.take()
    link.clients.pauseProducing()
    for n in range(20):
        link.hub.publish("demo", {"n": n, "pad": "x" * 500})
    assert link.take() == []
    link.clients.resumeProducing()
    received = link.take()
    numbers = [frame["args"]["n"] for _, frame in received if frame["name"] == "demo_frame"]
    assert 0 < len(numbers) < 20 and numbers == list(range(len(numbers)))
    gap = received[-1][1]
    assert gap["name"] == "gap" and gap["args"]["reason"] == "overflow" and gap["args"]["source"] == "demo"
    # seq n + 1 carries args n: delivered 1..len(numbers), lost the rest up to 20.
    assert (gap["args"]["missed_from"], gap["args"]["missed_to"]) == (len(numbers) + 1, 20)
    assert (gap["args"]["first_available"], gap["args"]["head"]) == (1, 20)


def test_closing_the_link_ends_every_session():
    """close_all (the link is gone) ends all sessions."""
    link = Link()
    link.clients.bridge_event(["c1", "c2"])
    link.login("c1")
    link.login("c2")
    link.clients.close_all()
    assert len(link.clients) == 0 and link.clients.available == frozenset()


def test_a_link_that_drains_a_little_at_a_time_serves_every_client_in_turn():
    """Each resume of the link starts with the first client the last one did not reach:
    when one client's frames fill the link again, the others still get their turn
    (always starting with the same client starved the rest)."""
    link = Link(legacy=True)
    ids = ["c1", "c2", "c3"]
    link.clients.bridge_event(ids)
    for client_id in ids:
        link.login(client_id)
    link.clients.pauseProducing()
    for client_id in ids:
        link.request(client_id, "rpc", "identify", request_id=client_id)
    assert link.take() == []
    served = []

    def link_full_after(client):
        # The link takes this client's frame, then is full again.
        def write(prepared):
            served.append(client.client_id)
            link.clients.pauseProducing()
        return write

    for client_id in ids:
        client = link.clients.get(client_id)
        client.outbound._write = link_full_after(client)
    for n in range(len(ids)):
        # c1 always has more waiting (a busy subscriber) by the time the link drains.
        link.request("c1", "rpc", "identify", request_id=f"more-{n}")
        link.clients.resumeProducing()
    assert sorted(served) == ids
