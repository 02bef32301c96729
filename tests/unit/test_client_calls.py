"""Request/reply matching by id in the client's RpcSession."""

import json

import pytest
from twisted.internet import task

from sysadmd.client.calls import RpcSession
from sysadmd.client.errors import CallTimeout, ConnectionClosed, ErrorReply


def make_session(timeout=30.0):
    clock = task.Clock()
    sent = []
    session = RpcSession(clock, lambda text: sent.append(json.loads(text)), timeout=timeout)
    return clock, session, sent


def reply(session, request, args, name="response"):
    session.text_received(json.dumps(
        {"namespace": request["namespace"], "name": name, "id": request["id"], "args": args}))


def results(d):
    box = []
    d.addBoth(box.append)
    return box


def test_requests_carry_the_envelope_and_unique_ids():
    _, session, sent = make_session()
    session.call("rpc", "identify")
    session.call("events", "subscribe", ["dispatcher"])
    assert [set(f) for f in sent] == [{"namespace", "name", "id", "args"}] * 2
    assert sent[0]["args"] == {} and sent[1]["args"] == ["dispatcher"]
    assert sent[0]["id"] != sent[1]["id"]
    assert session.in_flight == 2


def test_replies_arriving_out_of_order_go_to_their_own_request():
    _, session, sent = make_session()
    first = results(session.call("rpc", "dispatcher", {"action": "list"}))
    second = results(session.call("rpc", "identify"))
    reply(session, sent[1], {"type": "server"})
    assert first == [] and second == [{"type": "server"}]
    reply(session, sent[0], {"jobs": {}})
    assert first == [{"jobs": {}}]
    assert session.in_flight == 0


def test_an_error_frame_fails_its_request_with_the_code_and_details():
    _, session, sent = make_session()
    got = results(session.call("rpc", "dispatcher", {"action": "run", "x": "true"}))
    session.text_received(json.dumps({"namespace": "error", "name": "error", "id": sent[0]["id"],
                                       "args": {"code": 403, "message": "Forbidden",
                                                "details": "User 'viewer' may not do this."}}))
    error = got[0].value
    assert isinstance(error, ErrorReply) and error.code == 403
    assert str(error) == "rpc/dispatcher: 403 Forbidden: User 'viewer' may not do this."


def test_events_and_unknown_replies_do_not_resolve_requests():
    _, session, sent = make_session()
    events, unsolicited, requests = [], [], []
    session.on_event = events.append
    session.on_unsolicited_error = unsolicited.append
    session.on_request = requests.append
    got = results(session.call("rpc", "query"))
    session.text_received(json.dumps({"namespace": "events", "name": "dispatcher", "id": sent[0]["id"],
                                      "args": {"state": "pending", "process_id": "a"}}))
    session.text_received(json.dumps({"namespace": "rpc", "name": "response", "id": "not-ours", "args": 1}))
    session.text_received(json.dumps({"namespace": "error", "name": "error", "id": None,
                                      "args": {"code": 401, "message": "Unauthorized", "details": "expired"}}))
    session.text_received(json.dumps({"namespace": "rpc", "name": "identify", "id": "b", "args": {}}))
    session.text_received("not json")
    session.text_received("[1, 2]")
    assert got == []
    assert [e["name"] for e in events] == ["dispatcher"]
    assert unsolicited == [{"code": 401, "message": "Unauthorized", "details": "expired"}]
    assert [r["name"] for r in requests] == ["identify"]
    reply(session, sent[0], {"rpc/query": "read"})
    assert got == [{"rpc/query": "read"}]


def test_a_request_without_reply_times_out_on_the_clock():
    clock, session, sent = make_session(timeout=5)
    got = results(session.call("rpc", "identify"))
    clock.advance(4.9)
    assert got == []
    clock.advance(0.2)
    assert isinstance(got[0].value, CallTimeout)
    assert "rpc/identify: no reply within 5 s" in str(got[0].value)
    reply(session, sent[0], {"late": True})  # a late reply is ignored
    assert session.in_flight == 0 and not clock.getDelayedCalls()


def test_a_reply_cancels_the_timeout():
    clock, session, sent = make_session(timeout=5)
    results(session.call("rpc", "identify"))
    reply(session, sent[0], {})
    assert not clock.getDelayedCalls()


def test_losing_the_connection_fails_pending_and_later_calls():
    clock, session, sent = make_session()
    pending = results(session.call("rpc", "identify"))
    session.connection_lost(ConnectionClosed("connection to x lost: dropped"))
    assert isinstance(pending[0].value, ConnectionClosed)
    later = results(session.call("rpc", "query"))
    assert str(later[0].value) == "connection to x lost: dropped"
    assert len(sent) == 1 and not clock.getDelayedCalls()


@pytest.mark.parametrize("frame_id", [True, [1], {"a": 1}])
def test_replies_with_unusable_ids_are_ignored(frame_id):
    _, session, sent = make_session()
    got = results(session.call("rpc", "identify"))
    session.text_received(json.dumps({"namespace": "rpc", "name": "response", "id": frame_id, "args": 1}))
    assert got == [] and session.in_flight == 1
