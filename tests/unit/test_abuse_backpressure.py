"""Backpressure in memory: one connection cannot make the daemon handle more than
``max_inflight_requests`` of its requests at once, nor pile up replies it never reads."""

import json

from twisted.internet import defer

from sysadmd.auth.policy import LIMITED
from tests.unit.test_protocol import Daemon
from tests.unit.wsfake import client_frame


def slow_daemon(**settings):
    """A daemon with ``test/slow`` (answers when the test fires its Deferred)."""
    daemon = Daemon(**settings)
    daemon.pending = []

    def slow(session, args):
        d = defer.Deferred()
        daemon.pending.append((args, d))
        return d

    daemon.router.register("test", "slow", slow, LIMITED)
    return daemon


def requests(name, ids):
    """Frames of many requests, as one TCP read would deliver them."""
    return b"".join(
        client_frame(json.dumps({"namespace": "test" if name == "slow" else "rpc", "name": name, "id": i, "args": i}))
        for i in ids
    )


def test_one_read_of_many_requests_handles_at_most_the_limit():
    """Pausing the socket does not stop frames already read: of 50 requests in one read,
    3 are handled and the rest wait, in order, each starting as a slot frees."""
    daemon = slow_daemon(max_inflight_requests=3)
    peer = daemon.signed_in()
    peer.protocol.dataReceived(requests("slow", range(50)))
    assert [args for args, _ in daemon.pending] == [0, 1, 2]
    assert peer.transport.producerState == "paused"
    daemon.pending[1][1].callback("one")
    assert [args for args, _ in daemon.pending] == [0, 1, 2, 3]
    assert [m["id"] for m in peer.messages()] == [1]
    assert peer.transport.producerState == "paused"
    answered = 1
    while answered < 50:
        for _, d in daemon.pending:
            if not d.called:
                d.callback("ok")
                answered += 1
                running = [d for _, d in daemon.pending if not d.called]
                assert len(running) <= 3
    assert sorted(m["id"] for m in peer.messages()) == [i for i in range(50) if i != 1]
    assert peer.transport.producerState == "producing"


def test_a_long_backlog_of_quick_requests_does_not_recurse():
    """Thousands of requests waiting behind a slow one are answered in a loop, not by
    recursion, once it finishes."""
    daemon = slow_daemon(max_inflight_requests=1)
    peer = daemon.signed_in()
    peer.protocol.dataReceived(requests("slow", ["first"]) + requests("identify", range(3000)))
    assert len(daemon.pending) == 1 and peer.messages() == []
    daemon.pending[0][1].callback("done")
    replies = peer.messages()
    assert [m["id"] for m in replies] == ["first"] + list(range(3000))
    assert peer.transport.producerState == "producing"


def test_a_peer_that_does_not_read_is_not_read():
    """When the transport's send buffer is full (the peer stops reading), the daemon
    stops reading its requests too, so it cannot queue unbounded replies; reading
    resumes once the peer has taken what was queued."""
    daemon = slow_daemon(max_inflight_requests=5)
    peer = daemon.signed_in()
    outbound = peer.protocol.channel.outbound
    outbound.pauseProducing()  # what a full transport does
    assert peer.transport.producerState == "paused"
    outbound.resumeProducing()
    assert peer.transport.producerState == "producing"


def test_reading_stays_paused_while_requests_are_at_the_limit():
    """A peer that catches up on replies is still not read while its requests fill
    every slot; and one with free slots is not read while it does not read."""
    daemon = slow_daemon(max_inflight_requests=2)
    peer = daemon.signed_in()
    peer.protocol.dataReceived(requests("slow", range(2)))
    outbound = peer.protocol.channel.outbound
    outbound.pauseProducing()
    outbound.resumeProducing()
    assert peer.transport.producerState == "paused"
    outbound.pauseProducing()
    daemon.pending[0][1].callback("ok")
    assert peer.transport.producerState == "paused"
    outbound.resumeProducing()
    assert peer.transport.producerState == "producing"


def test_a_closed_connection_forgets_its_backlog():
    """Requests still waiting when the connection goes are never handled."""
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    daemon = slow_daemon(max_inflight_requests=1)
    peer = daemon.signed_in()
    peer.protocol.dataReceived(requests("slow", range(10)))
    peer.protocol.connectionLost(Failure(ConnectionDone()))
    daemon.pending[0][1].callback("late")
    assert len(daemon.pending) == 1
