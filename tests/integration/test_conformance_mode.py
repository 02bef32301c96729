"""The conformance echo mode on the real daemon (``make conformance`` runs the suite)."""

import os

from tests.integration.harness import BASE_CONFIG, Client
from tests.integration.test_config_errors import run_twistd

ECHO = BASE_CONFIG.replace("ping_interval = 0\n", "ping_interval = 0\nconformance_echo = yes\ncompression = yes\n")


def test_echo_mode_echoes_on_loopback(make_daemon):
    """Text comes back as text and binary as binary, without signing in; permessage-deflate
    is negotiated when compression is on."""
    daemon = make_daemon(ECHO, ticker=False)
    client = Client(daemon.url, compression="deflate")
    assert [e.name for e in client.ws.protocol.extensions] == ["permessage-deflate"]
    payload = os.urandom(5000)
    client.ws.send("héllo")
    client.ws.send(payload)
    assert client.ws.recv(timeout=10) == "héllo"
    assert client.ws.recv(timeout=10) == payload
    client.close()
    daemon.wait_for_log("sysadmd listening on ws://127.0.0.1:")


def test_echo_mode_is_refused_on_a_non_loopback_endpoint(tmp_path):
    """Listening on every address with the echo mode stops the start with one line."""
    path, result = run_twistd(
        tmp_path, ECHO.replace("tcp:0:interface=127.0.0.1", "tcp:0").format(state_dir=tmp_path / "state")
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"sysadmd: {path}: [server] conformance_echo: refused: every [server] listen endpoint "
        "must be tcp or ssl with a loopback interface= (e.g. tcp:0:interface=127.0.0.1), not tcp:0"
    ]
