"""A real bridge, two real daemons and clients holding different keys, over loopback.

Daemon A accepts the keys of clients 1 and 2, daemon B only client 1's. The daemons'
bridge keys come from the real ``sysadmd-admin bridge export-key`` and are registered in
the bridge's server keys file with ``sysadmd-admin key add``. A has the user alice, B the user bob, so a
password login through the relay tells which daemon answers.

Clients pin both daemons' fingerprints: every relayed session runs inside the encrypted
tunnel, as the daemons' default (``[bridge] legacy_clients = no``) requires. Plaintext
sessions appear only where plaintext is the subject: refused by default, served by a
daemon configured with ``legacy_clients = yes``.
"""

import contextlib
import os
import subprocess
import threading
import time
from types import SimpleNamespace

import pytest

from sysadmd.protocol import tunnel
from tests.integration.bridge_harness import (
    BRIDGE_CONFIG,
    BridgeClient,
    BridgeDaemon,
    add_key,
    export_key,
    new_key,
    public_line,
)
from tests.integration.conftest import install_ticker
from tests.integration.harness import BASE_CONFIG, TWISTD, Daemon

SIGNED_IN = r"signed in to bridge test with key"

DAEMON_CONFIG = BASE_CONFIG + """
[bridge]
connections = test={url}
"""
LEGACY = "legacy_clients = yes\n"


def start_daemon(tmp_path, name, bridge, user, password, client_keys, env, bridge_extra=""):
    """A daemon connecting to ``bridge`` that accepts ``client_keys`` (for ``user``);
    ``bridge_extra`` goes at the end of its [bridge] section."""
    directory = tmp_path / name
    directory.mkdir()
    daemon = Daemon(directory, DAEMON_CONFIG.replace("{url}", bridge.url) + bridge_extra, env=env)
    daemon.add_user(user, password)
    for key in client_keys:
        add_key(os.path.join(daemon.state_dir, "keys"), user, public_line(key))
    bridge.register_server(f"server-{name}", export_key(daemon))
    return daemon


@contextlib.contextmanager
def running_network(tmp_path):
    """The bridge, daemons A and B (signed in to it) and the two client keys."""
    env = {"PYTHONPATH": install_ticker(tmp_path)}
    bridge = BridgeDaemon(tmp_path / "bridge").start()
    key1, key2 = new_key(), new_key()
    bridge.register("client1", public_line(key1))
    bridge.register("client2", public_line(key2))
    a = start_daemon(tmp_path, "a", bridge, "alice", "alice-secret-pw", [key1, key2], env)
    b = start_daemon(tmp_path, "b", bridge, "bob", "bob-secret-pw", [key1], env)
    net = SimpleNamespace(bridge=bridge, a=a, b=b, key1=key1, key2=key2, clients=[],
                          pins={a.bridge_fingerprint, b.bridge_fingerprint})
    try:
        starting = [threading.Thread(target=daemon.start) for daemon in (a, b)]
        for thread in starting:
            thread.start()
        for thread in starting:
            thread.join()
        for daemon in (a, b):
            daemon.wait_for_log(SIGNED_IN)
        yield net
    finally:
        for daemon in (a, b, net.bridge):
            daemon.stop()


@contextlib.contextmanager
def clients_of(net):
    """``net.client(key, expect)``: bridge clients closed at the end, whose sessions with
    the daemons are tunnelled (pinned), or ``plaintext``."""
    clients = []

    def client(key=None, expect=None, plaintext=False):
        c = BridgeClient(net.bridge.url, pins=() if plaintext else net.pins)
        clients.append(c)
        if key is not None:
            reply = c.sign_in(key)
            assert reply["name"] == "response", reply
            if expect is not None:
                c.wait_for(lambda: c.available is not None and len(c.available) == expect,
                           what=f"{expect} servers")
        return c

    net.client = client
    try:
        yield net
    finally:
        for c in clients:
            try:
                c.close()
            except Exception:
                pass


@pytest.fixture(scope="module")
def shared_network(tmp_path_factory):
    """One network for the tests that leave it as they found it."""
    with running_network(tmp_path_factory.mktemp("bridge-net")) as net:
        yield net


@pytest.fixture
def network(shared_network):
    """The shared network, with clients closed after the test."""
    with clients_of(shared_network) as net:
        yield net


@pytest.fixture
def own_network(tmp_path):
    """A network of the test's own, for tests that stop a part of it."""
    with running_network(tmp_path) as net, clients_of(net):
        yield net


def identify_servers(net, c1, c2):
    """``(id of A, id of B)`` from the clients' lists, checked by logging in."""
    [a_id] = c2.available
    [b_id] = [i for i in c1.available if i != a_id]
    assert c2.call(a_id, "rpc", "auth", {"username": "alice", "password": "alice-secret-pw"})["name"] == "response"
    assert c1.call(b_id, "rpc", "auth", {"username": "bob", "password": "bob-secret-pw"})["name"] == "response"
    return a_id, b_id


def test_each_client_sees_only_the_servers_that_accept_its_key(network):
    """Client 1 (accepted by A and B) sees two servers, client 2 (accepted by A) one; the
    bridge event names each by the key it proved."""
    c1 = network.client(network.key1, expect=2)
    c2 = network.client(network.key2, expect=1)
    a_id, b_id = identify_servers(network, c1, c2)
    assert sorted(c1.available) == sorted([a_id, b_id])
    assert c2.available == [a_id]
    assert c1.server_with_key(network.a.bridge_fingerprint) == a_id
    assert c1.server_with_key(network.b.bridge_fingerprint) == b_id
    assert c2.connections[a_id]["role"] == "server" and c2.connection_id not in (a_id, b_id, c1.connection_id)
    # B does not know alice: the reply really comes from another daemon.
    reply = c1.call(b_id, "rpc", "auth", {"username": "alice", "password": "alice-secret-pw"})
    assert reply["namespace"] == "error" and reply["args"]["code"] == 401


def test_dispatcher_job_events_come_back_through_the_relay(network):
    """A client signs in to A with its key through the bridge, subscribes, runs a job and
    receives its pending, running and finished events."""
    c1 = network.client(network.key1, expect=2)
    c2 = network.client(network.key2, expect=1)
    [a_id] = c2.available
    # In the tunnel, the signature is over the challenge bound to A's key and the
    # tunnel's handshake hash.
    challenge, reply = c1.key_sign_in(a_id, network.key1, network.a.bridge_fingerprint)
    assert challenge["args"]["bind"] == {"scheme": "sysadm-noise-v1", "server": network.a.bridge_fingerprint,
                                         "handshake": c1.tunnels[a_id].handshake_hash.hex()}
    assert reply["name"] == "response" and len(reply["args"][0]) == 64, reply
    assert c1.call(a_id, "events", "subscribe", ["dispatcher"])["args"] == {"subscribe": ["dispatcher"]}
    started = c1.call(a_id, "rpc", "dispatcher", {"action": "run", "bridged-job": ["echo through the bridge"]})
    assert started["args"] == {"started": ["bridged-job"]}, started
    states = []
    for state in ("pending", "running", "finished"):
        event = c1.next_event(
            a_id, "dispatcher", lambda args: args.get("process_id") == "bridged-job" and args["state"] == state
        )
        states.append(event["args"]["state"])
    assert states == ["pending", "running", "finished"]
    details = event["args"]["process_details"]
    assert details["echo through the bridge"].strip() == "through the bridge"
    assert details["return_codes/echo through the bridge"] == "0"
    # Client 2 is signed in to nothing on A: it got none of these events.
    c2.quiet(0.5)
    assert c2.relayed[a_id] == []


def test_job_output_is_read_and_followed_through_the_relay(network):
    """output and a job-output follow work for a relayed client as for a direct one: the
    same events, every byte, then the final one with the return code."""
    c1 = network.client(network.key1, expect=2)
    c2 = network.client(network.key2, expect=1)
    [a_id] = c2.available
    _, reply = c1.key_sign_in(a_id, network.key1, network.a.bridge_fingerprint)
    assert reply["name"] == "response", reply
    command = "sh -c 'echo relayed-out; echo relayed-err >&2; exit 4'"
    started = c1.call(a_id, "rpc", "dispatcher", {"action": "run", "relayed-output": command})
    assert started["args"] == {"started": ["relayed-output"]}, started
    subscribed = c1.call(a_id, "events", "subscribe", [{"name": "job-output", "job_id": "relayed-output"}])
    assert subscribed["args"] == {"subscribe": ["job-output"]}, subscribed
    chunks = []
    while True:
        event = c1.next_event(a_id, "job_output", lambda args: args["job_id"] == "relayed-output")
        chunks += [(c["stream"], c["data"]) for c in event["args"]["chunks"]]
        if event["args"]["eof"]:
            break
    assert event["args"]["return_codes"] == {"0": 4}
    assert sorted(chunks) == [("stderr", "relayed-err\n"), ("stdout", "relayed-out\n")]
    read = c1.call(a_id, "rpc", "dispatcher", {"action": "output", "job_id": "relayed-output"})["args"]
    assert sorted((c["stream"], c["data"]) for c in read["chunks"]) == sorted(chunks) and read["eof"] is True


def test_sessions_are_per_client_and_tokens_work_through_the_relay(network):
    """Each relayed client has its own session: one subscribed to the ticker gets its
    events, the other does not until it authenticates (here with the first's token)."""
    c1 = network.client(network.key1, expect=2)
    c2 = network.client(network.key2, expect=1)
    [a_id] = c2.available
    login = c1.call(a_id, "rpc", "auth", {"username": "alice", "password": "alice-secret-pw"})
    token = login["args"][0]
    assert c1.call(a_id, "events", "subscribe", "ticker")["name"] == "response"
    first = c1.next_event(a_id, "ticker")
    assert isinstance(first["args"]["n"], int)
    refused = c2.call(a_id, "events", "subscribe", "ticker")
    assert refused["args"]["code"] == 401
    assert c2.call(a_id, "rpc", "auth_token", {"token": token})["name"] == "response"
    assert c2.call(a_id, "events", "subscribe", "ticker")["name"] == "response"
    # The ticker replays its last event to a new subscriber, then ticks on.
    assert c2.next_event(a_id, "ticker")["args"]["n"] >= first["args"]["n"]
    c2.next_event(a_id, "ticker", lambda args: args["n"] > first["args"]["n"])


def test_a_client_that_leaves_the_bridge_loses_its_session(network):
    """When a client disconnects, the bridge's event to the server drops it and the
    server ends its session."""
    c1 = network.client(network.key1, expect=2)
    c2 = network.client(network.key2, expect=1)
    [a_id] = c2.available
    c1.call(a_id, "rpc", "auth", {"username": "alice", "password": "alice-secret-pw"})
    c1.close()
    network.a.wait_for_log(r"relayed client \S+ left bridge test")


def test_stopping_a_daemon_sends_the_remaining_clients_a_list_without_it(own_network):
    """B stops: client 1 is told its list is now A only; client 2's list did not change,
    so it hears nothing."""
    network = own_network
    c1 = network.client(network.key1, expect=2)
    c2 = network.client(network.key2, expect=1)
    a_id, b_id = identify_servers(network, c1, c2)
    c1.quiet(0.2)
    c2.quiet(0.2)
    seen_by_c2 = len(c2.bridge_events)
    assert network.b.stop() == 0
    assert c1.bridge_event_where(lambda ids: b_id not in ids) == [a_id]
    c2.quiet(1.0)
    assert len(c2.bridge_events) == seen_by_c2
    reply = c1.call(a_id, "rpc", "identify")
    assert reply["args"]["type"] == "server"


def test_daemons_reconnect_after_the_bridge_restarts(own_network, tmp_path):
    """After a bridge restart on the same port both daemons sign in again within the
    backoff, and a new client reaches them."""
    network = own_network
    network.client(network.key1, expect=2)
    port = network.bridge.port
    assert network.bridge.stop() == 0
    for daemon in (network.a, network.b):
        daemon.wait_for_log(r"disconnected from bridge test")
    time.sleep(1.0)
    network.bridge = BridgeDaemon(tmp_path / "bridge", listen=f"tcp:{port}:interface=127.0.0.1").start()
    ready = time.monotonic()
    deadline = ready + 20
    for daemon in (network.a, network.b):
        while daemon.log_text().count("signed in to bridge test") < 2:
            assert time.monotonic() < deadline, daemon.log_text()
            time.sleep(0.1)
    elapsed = time.monotonic() - ready
    # Retries run at 1.5, 2.25, 3.4, 5.1 ... s (+ <1 s jitter) after the drop.
    assert elapsed < 15, elapsed
    network.client(network.key1, expect=2)


def test_a_relay_to_an_unreachable_id_gets_an_error(network):
    """Client 2 may not reach B (B does not accept its key), nor an unknown id."""
    c1 = network.client(network.key1, expect=2)
    c2 = network.client(network.key2, expect=1)
    a_id, b_id = identify_servers(network, c1, c2)
    for destination in (b_id, "no-such-connection"):
        c2.relay(destination, {"namespace": "rpc", "name": "identify", "id": "x", "args": {}})
        error = c2.bridge_error()
        assert error["args"]["code"] == 404 and error["args"]["destination"] == destination
    assert c2.relayed.get(b_id) in (None, [])


def test_an_unauthenticated_connection_cannot_relay(network):
    """Before auth_ssl the bridge refuses relays (401) and the server sees nothing."""
    c1 = network.client(network.key1, expect=2)
    c2 = network.client(network.key2, expect=1)
    [a_id] = c2.available
    before = network.a.log_text().count("relayed client")
    stranger = network.client()
    stranger.wait_for(lambda: stranger.identified, what="the identify request")
    stranger.relay(a_id, {"namespace": "rpc", "name": "identify", "id": "x", "args": {}})
    error = stranger.bridge_error()
    assert error["args"]["code"] == 401
    stranger.quiet(0.5)
    assert stranger.raw_relayed == []
    assert network.a.log_text().count("relayed client") == before
    # A key the bridge does not know does not sign in either.
    reply = stranger.sign_in(new_key())
    assert reply["namespace"] == "error" and reply["args"]["code"] == 401
    assert c1.available  # the others are unaffected


def test_a_tunnel_pinned_to_another_server_is_refused_before_anything_is_sent(network):
    """B's offer does not prove A's key: a client pinning A's fingerprint on B's
    connection stops at the offer, before its hello; pinned right, B's tunnel opens."""
    c1 = network.client(network.key1, expect=2)
    b_id = c1.server_with_key(network.b.bridge_fingerprint)
    with pytest.raises(tunnel.TunnelError, match="not by the pinned server"):
        c1.open_tunnel(b_id, network.a.bridge_fingerprint)
    assert b_id not in c1.tunnels
    c1.open_tunnel(b_id, network.b.bridge_fingerprint)
    reply = c1.call(b_id, "rpc", "auth", {"username": "bob", "password": "bob-secret-pw"})
    assert reply["name"] == "response", reply


def test_a_frame_that_does_not_open_ends_the_tunnel_and_a_new_one_starts_over(network):
    """A relayed frame that is not a sealed message of the tunnel ends the session with
    noise:error; the client does not go on in plaintext, and a new tunnel is a new,
    unauthenticated session."""
    c2 = network.client(network.key2, expect=1)
    [a_id] = c2.available
    assert c2.call(a_id, "rpc", "auth", {"username": "alice", "password": "alice-secret-pw"})["name"] == "response"
    c2.relay_raw(a_id, tunnel.b64(b"\0" * 40))
    assert "did not decrypt" in c2.tunnel_error(a_id)
    with pytest.raises(tunnel.TunnelError, match="open a new one"):
        c2.call(a_id, "rpc", "identify")
    c2.open_tunnel(a_id, network.a.bridge_fingerprint)
    assert c2.call(a_id, "events", "subscribe", "ticker")["args"]["code"] == 401


def test_a_plaintext_relayed_client_is_refused_by_default(network, tmp_path):
    """With the default [bridge] legacy_clients = no, every plaintext message a relayed
    client sends (a password login, then a job) is answered 403 with no id and ends its
    session: nothing signs in and nothing runs."""
    c2 = network.client(network.key2, expect=1, plaintext=True)
    [a_id] = c2.available
    marker = tmp_path / "ran"
    refused_before = network.a.log_text().count("sent plaintext; refused")
    authenticated_before = network.a.log_text().count("alice authenticated")
    c2.relay(a_id, {"namespace": "rpc", "name": "auth", "id": "login",
                    "args": {"username": "alice", "password": "alice-secret-pw"}})
    c2.relay(a_id, {"namespace": "rpc", "name": "dispatcher", "id": "run",
                    "args": {"action": "run", "plaintext-job": f"touch {marker}"}})
    c2.wait_for(lambda: len(c2.relayed[a_id]) >= 2, what="two answers")
    c2.quiet(1.0)
    assert len(c2.relayed[a_id]) == 2, c2.relayed[a_id]
    for notice in c2.relayed[a_id]:
        assert notice["namespace"] == "error" and notice["id"] is None, notice
        assert notice["args"]["code"] == 403 and "legacy_clients = no" in notice["args"]["details"]
    log = network.a.log_text()
    assert log.count("sent plaintext; refused") == refused_before + 2
    assert log.count("alice authenticated") == authenticated_before
    assert not marker.exists()
    # The same client, in a tunnel, is served.
    c2.open_tunnel(a_id, network.a.bridge_fingerprint)
    assert c2.call(a_id, "rpc", "auth", {"username": "alice", "password": "alice-secret-pw"})["name"] == "response"


@pytest.fixture
def legacy_network(tmp_path):
    """A bridge and one daemon L (user lee) with [bridge] legacy_clients = yes; its key
    for the clients is ``net.key``."""
    bridge = BridgeDaemon(tmp_path / "bridge").start()
    key = new_key()
    bridge.register("client", public_line(key))
    daemon = None
    clients = []
    try:
        daemon = start_daemon(tmp_path, "legacy", bridge, "lee", "lee-secret-pw", [key], None,
                              bridge_extra=LEGACY)
        daemon.start()
        daemon.wait_for_log(SIGNED_IN)

        def client(pins=()):
            c = BridgeClient(bridge.url, pins=pins)
            clients.append(c)
            assert c.sign_in(key)["name"] == "response"
            c.wait_for(lambda: c.server_with_key(daemon.bridge_fingerprint), what="the legacy daemon")
            return c

        yield SimpleNamespace(bridge=bridge, daemon=daemon, key=key, client=client)
    finally:
        for c in clients:
            with contextlib.suppress(Exception):
                c.close()
        if daemon is not None:
            daemon.stop()
        bridge.stop()


def test_legacy_clients_yes_serves_plaintext_sessions_and_tunnels(legacy_network):
    """With legacy_clients = yes a plaintext relayed client is served as before the
    tunnel: a password login, a key sign-in bound to the server and its connection, a
    job and its events. A tunnelled client of the same daemon is served too."""
    net = legacy_network
    fp = net.daemon.bridge_fingerprint
    plain = net.client()
    server = plain.server_with_key(fp)
    assert plain.call(server, "rpc", "auth", {"username": "lee", "password": "lee-secret-pw"})["name"] == "response"
    challenge, reply = plain.key_sign_in(server, net.key, fp)
    assert challenge["args"]["bind"] == {"scheme": "sysadm-relay-v1", "server": fp,
                                         "connection": plain.connection_id}
    assert reply["name"] == "response" and len(reply["args"][0]) == 64, reply
    assert plain.call(server, "events", "subscribe", ["dispatcher"])["name"] == "response"
    started = plain.call(server, "rpc", "dispatcher", {"action": "run", "legacy-job": ["echo in the clear"]})
    assert started["args"] == {"started": ["legacy-job"]}, started
    event = plain.next_event(server, "dispatcher", lambda args: args.get("process_id") == "legacy-job"
                             and args["state"] == "finished")
    assert event["args"]["process_details"]["echo in the clear"].strip() == "in the clear"
    assert server not in plain.tunnels and plain.control[server] == []
    assert "sent plaintext; refused" not in net.daemon.log_text()
    sealed = net.client(pins={fp})
    _, reply = sealed.key_sign_in(server, net.key, fp)
    assert reply["name"] == "response", reply
    assert server in sealed.tunnels


def test_bridge_configuration_errors_name_file_section_and_key(tmp_path):
    """The bridge reports every config mistake as one line on stderr and exits 1."""
    path = tmp_path / "bad.ini"
    path.write_text(
        f"[server]\nstate_dir = {tmp_path}/state\n[relay]\nbuffer_bytes = 10\nnope = 1\n[events]\n"
    )
    result = subprocess.run(
        [TWISTD, "-n", "--pidfile=", "sysadm-bridge", "--config", str(path)],
        capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3, result.stderr
    assert f"sysadm-bridge: {path}: [relay] buffer_bytes: 10 is below the minimum of 4096" in lines
    assert any(line.startswith(f"sysadm-bridge: {path}: [relay] nope: unknown key") for line in lines)
    assert f"sysadm-bridge: {path}: [events]: unknown section (known: server, auth, relay)" in lines


def test_daemon_reports_a_bad_bridge_entry(tmp_path):
    """A malformed [bridge] connections entry stops sysadmd with one line."""
    path = tmp_path / "bad.ini"
    path.write_text(f"[server]\nstate_dir = {tmp_path}/state\n[bridge]\nconnections = office=http://x\n")
    result = subprocess.run(
        [TWISTD, "-n", "--pidfile=", "sysadmd", "--config", str(path)],
        capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"sysadmd: {path}: [bridge] connections: bridge office: 'http://x' must start with ws:// or wss://"
    ]


def test_wss_bridge_with_a_pinned_certificate(tmp_path):
    """A bridge on ssl: with a generated certificate; the daemon trusts it through
    [bridge] ca_file and a client through its own TLS context, and relaying works."""
    import ssl

    bridge = BridgeDaemon(
        tmp_path / "bridge",
        listen="ssl:0:interface=127.0.0.1",
        config=BRIDGE_CONFIG.replace("[auth]", "tls_generate = yes\n\n[auth]"),
    ).start()
    try:
        assert bridge.url.startswith("wss://127.0.0.1:")
        cert = os.path.join(bridge.state_dir, "tls", "cert.pem")
        key = new_key()
        bridge.register("client", public_line(key))
        (tmp_path / "d").mkdir()
        config = DAEMON_CONFIG.replace("{url}", bridge.url) + f"ca_file = {cert}\n"
        daemon = Daemon(tmp_path / "d", config)
        daemon.add_user("alice", "alice-secret-pw")
        bridge.register_server("server", export_key(daemon))
        daemon.start()
        try:
            daemon.wait_for_log(SIGNED_IN)
            context = ssl.create_default_context(cafile=cert)
            c = BridgeClient(bridge.url, ssl=context)
            try:
                assert c.sign_in(key)["name"] == "response"
                # The daemon does not accept this client's key: no server listed.
                assert c.next_bridge_event() == []
            finally:
                c.close()
        finally:
            daemon.stop()
    finally:
        bridge.stop()


def test_a_daemon_does_not_sign_in_to_an_untrusted_wss_bridge(tmp_path):
    """Without ca_file the system CAs are used: a self-signed bridge is refused at the TLS
    handshake and the key is never offered."""
    bridge = BridgeDaemon(
        tmp_path / "bridge",
        listen="ssl:0:interface=127.0.0.1",
        config=BRIDGE_CONFIG.replace("[auth]", "tls_generate = yes\n\n[auth]"),
    ).start()
    try:
        (tmp_path / "d").mkdir()
        daemon = Daemon(tmp_path / "d", DAEMON_CONFIG.replace("{url}", bridge.url))
        bridge.register_server("server", export_key(daemon))
        daemon.start()
        try:
            daemon.wait_for_log(r"certificate verify failed", timeout=20)
            daemon.wait_for_log(r"no sign-in to bridge test \(2 failed link", timeout=20)
            assert "signed in to bridge" not in daemon.log_text()
            assert "authenticated" not in bridge.log_text()
        finally:
            daemon.stop()
    finally:
        bridge.stop()
