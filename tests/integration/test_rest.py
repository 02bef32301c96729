"""REST calls and /health on the daemon's WebSocket port, driven with treq."""

import base64
import json

import pytest_twisted
import treq

from tests.integration.harness import BASE_CONFIG, Client


def http_url(daemon, path):
    return daemon.url.replace("ws://", "http://", 1) + path


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest_twisted.inlineCallbacks
def post(daemon, path, body=None, headers=None, raw=None):
    data = raw if raw is not None else json.dumps({} if body is None else body).encode()
    response = yield treq.post(
        http_url(daemon, path), data=data,
        headers={"Content-Type": "application/json", **(headers or {})}, persistent=False,
    )
    content = yield response.content()
    return response.code, (json.loads(content) if content else None), response


@pytest_twisted.inlineCallbacks
def test_health_answers_without_authentication(daemon):
    response = yield treq.get(http_url(daemon, "/health"), persistent=False)
    body = yield response.json()
    assert response.code == 200
    assert body["status"] == "ok" and body["version"]


@pytest_twisted.inlineCallbacks
def test_identify_needs_no_authentication(daemon):
    code, body, _ = yield post(daemon, "/rpc/identify")
    assert code == 200 and body["args"]["type"] == "server"


@pytest_twisted.inlineCallbacks
def test_unauthenticated_call_is_401_without_a_browser_challenge(daemon):
    """No WWW-Authenticate: it would make browsers prompt for, cache and then send
    credentials with cross-site requests (issue 13)."""
    code, body, response = yield post(daemon, "/rpc/query")
    assert code == 401 and body["args"]["code"] == 401
    assert response.headers.getRawHeaders("www-authenticate") is None


@pytest_twisted.inlineCallbacks
def test_basic_authentication(daemon):
    code, body, _ = yield post(daemon, "/rpc/query", headers=basic("admin", "admin-secret-pw"))
    assert code == 200 and body["args"]["events/subscribe"] == "read"
    code, body, _ = yield post(daemon, "/rpc/query", headers=basic("admin", "wrong"))
    assert code == 401


@pytest_twisted.inlineCallbacks
def test_bearer_token_from_a_websocket_login(daemon):
    ws = Client(daemon.url)
    token = ws.login("viewer", "viewer-secret-pw")["args"][0]
    ws.close()
    code, body, _ = yield post(daemon, "/rpc/query", headers={"Authorization": f"Bearer {token}"})
    assert code == 200 and "events/subscribe" in body["args"]
    code, _, _ = yield post(daemon, "/rpc/query", headers={"Authorization": "Bearer " + "0" * 64})
    assert code == 401


@pytest_twisted.inlineCallbacks
def test_limited_user_gets_403(daemon):
    code, body, _ = yield post(
        daemon, "/rpc/dispatcher", {"action": "run", "job": "true"},
        headers=basic("viewer", "viewer-secret-pw"),
    )
    assert code == 403 and body["args"]["code"] == 403


@pytest_twisted.inlineCallbacks
def test_unknown_call_is_404_and_bad_json_is_400(daemon):
    code, _, _ = yield post(daemon, "/rpc/nosuch", headers=basic("admin", "admin-secret-pw"))
    assert code == 404
    code, body, _ = yield post(daemon, "/rpc/query", raw=b"{nope",
                               headers=basic("admin", "admin-secret-pw"))
    assert code == 400 and "JSON" in body["args"]["details"]


@pytest_twisted.inlineCallbacks
def test_events_namespace_is_refused_with_400(daemon):
    code, body, _ = yield post(daemon, "/events/subscribe", ["ticker"],
                               headers=basic("admin", "admin-secret-pw"))
    assert code == 400 and "WebSocket" in body["args"]["details"]


@pytest_twisted.inlineCallbacks
def test_conflict_is_409(daemon):
    headers = basic("admin", "admin-secret-pw")
    code, body, _ = yield post(daemon, "/rpc/dispatcher",
                               {"action": "run", "rest-sleeper": "sleep 30"}, headers=headers)
    assert code == 200, body
    code, body, _ = yield post(daemon, "/rpc/dispatcher",
                               {"action": "run", "rest-sleeper": "sleep 30"}, headers=headers)
    assert code == 409
    yield post(daemon, "/rpc/dispatcher", {"action": "kill", "job_id": "rest-sleeper"}, headers=headers)


@pytest_twisted.inlineCallbacks
def test_banned_address_gets_429(make_daemon):
    config = BASE_CONFIG.replace("[auth]\n", "[auth]\nban_loopback = yes\nmax_failures = 2\n")
    d = make_daemon(config, start=False)
    d.add_user("admin", "admin-secret-pw")
    d.start()
    for _ in range(2):
        code, _, _ = yield post(d, "/rpc/query", headers=basic("admin", "nope"))
        assert code == 401
    code, _, _ = yield post(d, "/rpc/query", headers=basic("admin", "admin-secret-pw"))
    assert code == 429


@pytest_twisted.inlineCallbacks
def test_oversized_body_is_refused(daemon):
    response = yield treq.post(http_url(daemon, "/rpc/identify"), data=b"x" * 200000,
                               persistent=False)
    assert response.code == 413


@pytest_twisted.inlineCallbacks
def test_websocket_is_also_served_at_ws_path(daemon):
    ws = Client(daemon.url + "/ws")
    assert ws.call("rpc", "identify", {})["name"] == "response"
    ws.close()
    # and plain HTTP at / does not break the WebSocket at /
    response = yield treq.get(http_url(daemon, "/"), persistent=False)
    yield response.content()
    ws = Client(daemon.url + "/")
    assert ws.call("rpc", "identify", {})["name"] == "response"
    ws.close()
