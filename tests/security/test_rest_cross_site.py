"""Issue 13, item 4: cross-site requests to REST. A POST with ``Content-Type:
text/plain`` (what an HTML form sends without a CORS preflight), a foreign Origin and
Basic credentials ran a command; the 401 sent ``WWW-Authenticate: Basic``, which makes a
browser prompt for, cache and then send credentials, so a cross-site form could drive a
signed-in browser."""

import base64
import http.client
import json

import pytest

from tests.security.flood import address_of

ADMIN = {"Authorization": "Basic " + base64.b64encode(b"admin:admin-secret-pw").decode()}
RUN = json.dumps({"action": "run", "crosssite": "echo pwned"}).encode()


def request(daemon, method, path, body=None, headers=None):
    """One HTTP request; returns (status, headers as a lower-cased dict, parsed JSON body)."""
    host, port = address_of(daemon)
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
        found = {name.lower(): value for name, value in response.getheaders()}
    finally:
        connection.close()
    return response.status, found, (json.loads(raw) if raw.startswith(b"{") else raw)


def job_exists(daemon):
    status, _, body = request(
        daemon, "POST", "/rpc/dispatcher", json.dumps({"action": "log", "job_id": "crosssite"}),
        {**ADMIN, "Content-Type": "application/json"},
    )
    return status == 200


@pytest.mark.parametrize("origin", [None, "http://evil.example"])
def test_a_form_post_as_text_plain_is_415_and_runs_nothing(daemon, origin):
    headers = {**ADMIN, "Content-Type": "text/plain"}
    if origin:
        headers["Origin"] = origin
    status, found, body = request(daemon, "POST", "/rpc/dispatcher", RUN, headers)
    expected = 403 if origin else 415  # the foreign Origin is refused first
    assert status == expected and body["args"]["code"] == expected
    status, _, body = request(daemon, "POST", "/rpc/dispatcher", RUN, {**ADMIN})
    assert status == 415 and "application/json" in body["args"]["details"]
    assert not job_exists(daemon)


def test_a_foreign_origin_is_403_even_with_json_and_credentials(daemon):
    headers = {**ADMIN, "Content-Type": "application/json", "Origin": "http://evil.example"}
    status, found, body = request(daemon, "POST", "/rpc/dispatcher", RUN, headers)
    assert status == 403 and body["args"]["details"] == "Origin not allowed."
    assert not job_exists(daemon)
    daemon.wait_for_log("refused HTTP request from 127.0.0.1: Origin not allowed")


def test_the_daemons_own_origin_still_works(daemon):
    host, port = address_of(daemon)
    headers = {**ADMIN, "Content-Type": "application/json; charset=utf-8",
               "Origin": f"http://{host}:{port}"}
    status, _, body = request(daemon, "POST", "/rpc/identify", b"{}", headers)
    assert status == 200 and body["args"]["type"] == "server"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic " + base64.b64encode(b"admin:nope").decode()}])
def test_a_401_sends_no_www_authenticate(daemon, headers):
    status, found, _ = request(daemon, "POST", "/rpc/query", b"{}",
                               {**headers, "Content-Type": "application/json"})
    assert status == 401
    assert "www-authenticate" not in found


@pytest.mark.parametrize("path", ["/", "/health", "/metrics", "/rpc/dispatcher", "/static/app.js", "/nope/x"])
def test_options_is_405_with_no_cors_headers(daemon, path):
    """A preflight is never granted, on any path."""
    headers = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "content-type, authorization"}
    status, found, _ = request(daemon, "OPTIONS", path, None, headers)
    assert status == 405
    assert not [name for name in found if name.startswith("access-control-")]
