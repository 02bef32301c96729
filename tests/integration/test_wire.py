"""The envelope, error replies and limits, against the real daemon."""

import json
import signal
import time

import pytest

from tests.integration.harness import Client


def error_code(frame):
    assert frame["namespace"] == "error" and frame["name"] == "error", frame
    assert set(frame["args"]) == {"code", "message", "details"}, frame
    return frame["args"]["code"]


def test_identify_works_before_authentication(client):
    reply = client.call("rpc", "identify", {}, request_id="ident")
    assert reply["namespace"] == "rpc"
    assert reply["name"] == "response"
    assert reply["id"] == "ident"
    assert reply["args"]["type"] == "server"
    assert reply["args"]["hostname"]
    assert reply["args"]["version"]


def test_numeric_id_is_echoed_exactly(client):
    reply = client.call("rpc", "identify", {}, request_id=42)
    assert reply["id"] == 42 and isinstance(reply["id"], int)
    reply = client.call("rpc", "identify", {}, request_id=1.5)
    assert reply["id"] == 1.5


@pytest.mark.parametrize(
    "namespace,name,args",
    [
        ("rpc", "query", {}),
        ("events", "subscribe", ["ticker"]),
        ("rpc", "dispatcher", {"action": "list"}),
        ("nosuch", "thing", {}),
    ],
)
def test_everything_else_needs_authentication(client, namespace, name, args):
    reply = client.call(namespace, name, args, request_id="x")
    assert error_code(reply) == 401
    assert reply["id"] == "x"
    assert reply["args"]["message"] == "Unauthorized"


@pytest.mark.parametrize(
    "raw,echoed_id",
    [
        ("{not json", None),
        ("[1, 2, 3]", None),
        ('"just a string"', None),
        ('{"namespace": "rpc", "name": "identify", "args": {}}', None),
        ('{"namespace": "rpc", "name": "identify", "id": true, "args": {}}', None),
        ('{"namespace": "rpc", "name": "identify", "id": {"a": 1}, "args": {}}', None),
        ('{"namespace": "rpc", "name": "identify", "id": "m"}', "m"),
        ('{"namespace": 5, "name": "identify", "id": "n", "args": {}}', "n"),
        ('{"namespace": "rpc", "name": [], "id": 7, "args": {}}', 7),
        ('{"namespace": "rpc", "name": "identify", "id": "c", "args": NaN}', None),
    ],
)
def test_malformed_requests_get_400_and_the_connection_stays(client, raw, echoed_id):
    client.send(raw)
    reply = client.recv()
    assert error_code(reply) == 400
    assert reply["id"] == echoed_id
    assert "Traceback" not in json.dumps(reply)
    assert client.call("rpc", "identify", {})["name"] == "response"


def test_invalid_utf8_in_a_binary_frame_gets_400(client):
    client.send(b'{"namespace": "rpc", "name": "\xff\xfe", "id": 1, "args": {}}')
    assert error_code(client.recv()) == 400
    assert client.call("rpc", "identify", {})["name"] == "response"


def test_binary_frames_carry_requests_too(client):
    client.send(b'{"namespace": "rpc", "name": "identify", "id": "b", "args": {}}')
    reply = client.recv()
    assert reply["name"] == "response" and reply["id"] == "b"


def test_unknown_call_is_404_once_authenticated(admin):
    assert error_code(admin.call("nosuch", "thing", {})) == 404
    assert error_code(admin.call("rpc", "nosuch", {})) == 404


def test_oversized_message_closes_with_1009(admin):
    admin.send(json.dumps({"namespace": "rpc", "name": "identify", "id": 1,
                           "args": {"pad": "x" * 70000}}))
    assert admin.wait_closed() == 1009


def test_query_lists_calls_by_access(daemon, admin):
    calls = admin.call("rpc", "query", {})["args"]
    assert calls["events/subscribe"] == "read"
    assert calls["rpc/identify"] == "read"
    viewer = Client(daemon.url)
    viewer.login("viewer", "viewer-secret-pw")
    assert viewer.call("rpc", "query", {})["args"]["events/subscribe"] == "read"
    viewer.close()


def test_sigterm_closes_clients_with_1001_and_exits_0(daemon, admin):
    daemon.process.send_signal(signal.SIGTERM)
    assert admin.wait_closed() == 1001
    assert daemon.process.wait(20) == 0
    log = daemon.log_text()
    assert "Traceback" not in log


def test_a_second_sigterm_while_stopping_is_no_error(daemon, admin):
    """make, timeout and service managers may signal twice: a SIGTERM that comes while
    the daemon is still stopping (here it waits for a job that ignores TERM) is logged
    and ignored; the stop ends with status 0 and no traceback."""
    command = "sh -c \"trap '' TERM; echo started; sleep 30\""
    reply = admin.call("rpc", "dispatcher", {"action": "run", "stubborn": [command]})
    assert reply["args"] == {"started": ["stubborn"]}, reply
    daemon.wait_for_log(r"event source dispatcher started")
    deadline = time.monotonic() + 10
    while "stubborn" not in json.dumps(admin.call("rpc", "dispatcher", {"action": "list"})["args"]) or \
            '"running"' not in json.dumps(admin.call("rpc", "dispatcher", {"action": "list"})["args"]):
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.1)
    daemon.process.send_signal(signal.SIGTERM)
    daemon.wait_for_log("received SIGTERM, shutting down")
    time.sleep(0.3)
    assert daemon.process.poll() is None, "the daemon should still be waiting for the job"
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(30) == 0
    log = daemon.log_text()
    assert "received SIGTERM again; already shutting down" in log
    assert "Traceback" not in log and "ReactorNotRunning" not in log


def test_log_names_bound_address_and_connections(daemon, admin):
    assert daemon.url.startswith("ws://127.0.0.1:")
    daemon.wait_for_log(r"client connected from 127\.0\.0\.1")
    daemon.wait_for_log(r"admin authenticated from 127\.0\.0\.1")
