"""Admission and the front door: every connection, WebSocket or HTTP, counts against its
address and the daemon's cap from the moment it is accepted (issue 13, item 3)."""

from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from sysadmd.server.admission import (
    FULL,
    HEALTH,
    HEALTH_SLOTS,
    REFUSALS_PER_HOST,
    REFUSE,
    Admission,
)
from sysadmd.server.frontdoor import REFUSAL_GRACE, FrontDoorFactory
from tests.unit.wsfake import Transport as _Transport


class Transport(_Transport):
    """A TCP-like transport that can half-close."""

    write_closed = False

    def loseWriteConnection(self):
        self.write_closed = True


def kinds(admission, host, count):
    tickets = [admission.admit(host) for _ in range(count)]
    return tickets, [t.kind if t is not None else None for t in tickets]


def test_an_address_holds_at_most_its_limit_then_a_few_are_refused_then_dropped():
    admission = Admission(3)
    _, got = kinds(admission, "10.0.0.1", 3 + REFUSALS_PER_HOST + 2)
    assert got == [FULL] * 3 + [REFUSE] * REFUSALS_PER_HOST + [None, None]
    assert admission.count_from("10.0.0.1") == 3
    assert admission.admit("10.0.0.2").kind == FULL


def test_a_released_place_is_free_again_and_release_twice_is_harmless():
    admission = Admission(2)
    (first, _), _ = kinds(admission, "10.0.0.1", 2)
    assert admission.admit("10.0.0.1").kind == REFUSE
    first.release()
    first.release()
    assert admission.count_from("10.0.0.1") == 1
    assert admission.admit("10.0.0.1").kind == FULL


def test_at_the_cap_only_health_slots_are_left_one_per_address():
    admission = Admission(100, max_total=4)
    for host in ("10.0.0.1", "10.0.0.2"):
        assert [admission.admit(host).kind for _ in range(2)] == [FULL, FULL]
    # At the cap: one /health place per address, HEALTH_SLOTS in all, then nothing.
    assert admission.admit("10.0.0.1").kind == HEALTH
    assert admission.admit("10.0.0.1") is None
    health = [admission.admit(f"10.1.0.{i}") for i in range(HEALTH_SLOTS + 2)]
    assert [t.kind if t else None for t in health] == [HEALTH] * (HEALTH_SLOTS - 1) + [None] * 3
    assert admission.total == 4 + HEALTH_SLOTS
    # A released health place serves the next monitor.
    health[0].release()
    assert admission.admit("10.2.0.1").kind == HEALTH


def test_refused_connections_count_against_the_cap_too():
    admission = Admission(1, max_total=3)
    admission.admit("10.0.0.1")
    assert admission.admit("10.0.0.1").kind == REFUSE
    assert admission.admit("10.0.0.2").kind == FULL
    # Three held (one being refused): the next address gets only a /health place.
    assert admission.admit("10.0.0.3").kind == HEALTH


def test_refusals_are_logged_at_powers_of_two():
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        admission = Admission(1, refusals_per_host=1000)
        for _ in range(1 + 20):
            admission.admit("10.0.0.1")
    finally:
        globalLogPublisher.removeObserver(events.append)
    counts = [e["count"] for e in events if e.get("log_namespace", "").startswith("sysadmd.server.admission")]
    assert counts == [1, 2, 4, 8, 16]


class Recorder(Protocol):
    """What a front door hands a connection to."""

    def __init__(self):
        self.received = b""
        self.lost = False

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.lost = True


def door(admission, handshake_timeout=10):
    clock = task.Clock()
    websocket, web = ServerFactory.forProtocol(Recorder), ServerFactory.forProtocol(Recorder)
    return clock, FrontDoorFactory(clock, websocket, web, handshake_timeout, admission)


def connect(factory, host):
    address = IPv4Address("TCP", host, 5000)
    protocol = factory.buildProtocol(address)
    if protocol is None:
        return None, None
    transport = Transport(peerAddress=address)
    protocol.makeConnection(transport)
    return protocol, transport


def test_plain_http_connections_count_toward_the_per_address_limit():
    """An HTTP connection holds its place until it closes, like a WebSocket one: past the
    limit the address is answered 503 at once, then dropped without a protocol."""
    admission = Admission(2)
    clock, factory = door(admission)
    held = []
    for _ in range(2):
        protocol, transport = connect(factory, "10.0.0.1")
        protocol.dataReceived(b"POST /rpc/x HTTP/1.1\r\nContent-Length: 100\r\n\r\nab")
        held.append(protocol)
    assert held[0]._inner.ticket.kind == FULL and held[0]._inner.received.startswith(b"POST")
    assert admission.count_from("10.0.0.1") == 2

    refused, transport = connect(factory, "10.0.0.1")
    assert transport.value() == b""  # answered once its request is in
    refused.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n")
    clock.advance(REFUSAL_GRACE / 2)
    refused.dataReceived(b"\r\n")
    assert transport.value().startswith(b"HTTP/1.1 503 ")
    assert transport.write_closed and not transport.disconnecting  # half-closed, reading
    refused.dataReceived(b"more body")  # discarded
    assert refused._inner is None
    clock.advance(REFUSAL_GRACE / 2)
    assert transport.disconnected  # cut after the grace
    refused.connectionLost(Failure(ConnectionDone()))

    for _ in range(REFUSALS_PER_HOST):
        connect(factory, "10.0.0.1")
    assert connect(factory, "10.0.0.1") == (None, None)  # closed before any protocol

    held[0].connectionLost(Failure(ConnectionDone()))
    assert held[0]._inner.lost
    assert admission.count_from("10.0.0.1") == 1


def test_the_handshake_timeout_drops_a_connection_that_never_sends_its_request():
    admission = Admission(5)
    clock, factory = door(admission, handshake_timeout=10)
    protocol, transport = connect(factory, "10.0.0.1")
    clock.advance(9)
    assert not transport.disconnected
    clock.advance(1)
    assert transport.disconnected
    protocol.connectionLost(Failure(ConnectionDone()))
    assert admission.count_from("10.0.0.1") == 0


def test_the_inner_protocol_gets_the_ticket_with_the_acceptance_time():
    admission = Admission(5)
    clock, factory = door(admission)
    clock.advance(100)
    protocol, _ = connect(factory, "10.0.0.1")
    clock.advance(3)
    protocol.dataReceived(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n")
    ticket = protocol._inner.ticket
    assert ticket.started == 100 and protocol._inner.factory is factory.websocket


def test_a_place_kept_back_for_health_serves_only_get_health():
    """At the cap, a connection in a /health place is answered 503 as soon as its
    request line is anything else, without waiting for a body."""
    admission = Admission(10, max_total=1)
    clock, factory = door(admission)
    connect(factory, "10.0.0.1")
    monitor, _ = connect(factory, "10.0.0.2")
    monitor.dataReceived(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert monitor._inner.ticket.kind == HEALTH and monitor._inner.received
    other, transport = connect(factory, "10.0.0.3")
    other.dataReceived(b"POST /rpc/dispatcher HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{")
    assert other._inner is None and transport.value().startswith(b"HTTP/1.1 503 ")
    assert b"only GET /health" in transport.value()


def test_a_websocket_handshake_at_the_cap_is_503_and_counted():
    """Listening without a front door (the bridge), the protocol admits itself: at the
    cap a handshake in a /health place is refused with 503."""
    from tests.unit.test_protocol import Daemon
    from tests.unit.wsfake import Peer

    daemon = Daemon()
    daemon.factory.admission.max_total = 1
    assert Peer(daemon.factory, host="10.0.0.1").status == 101
    assert Peer(daemon.factory, host="10.0.0.2").status == 503
    assert daemon.factory.admission.refused["the daemon is at its connection limit"] == 1
