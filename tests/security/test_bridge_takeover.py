"""Issue 13, attack 1: a bridge peer posing as a server to take over a session.

The attack: a peer signed in to the bridge with an ordinary (client) key answered identify
as ``{"type": "server", "hostname": <the victim's server>}`` and claimed to accept every
key; ``sysadm --bridge ... --server vm`` probed identify on every offered connection and
took the first matching host name, so it talked to the fake server. The fake server fetched
an ``auth_ssl`` challenge from the real daemon (through the bridge, as a client), had the
victim sign it, relayed the signature and got a full-access token.

Each test repeats a step against the real ``twistd sysadm-bridge`` and ``twistd sysadmd``
(keys paired with the real ``sysadmd-admin``), and the real ``sysadm`` for the victim,
and fails if it gets through again. On the daemon, alice (the victim, full access) and
mallory (the attacker, limited) each have a key; the bridge knows both keys as clients and
the daemon's bridge key as a server.

Relayed sessions run in the encrypted tunnel (the daemon's default); the attacks that
went through plaintext sessions are repeated against a daemon with ``[bridge]
legacy_clients = yes`` too, where only the binding to the server and the connection
stops them. In the tunnel they also fail cryptographically: a fake server cannot prove
the pinned key, and a key signature covers the tunnel's handshake hash.
"""

import base64
import contextlib
import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization

from sysadmd.protocol import tunnel
from sysadmd.protocol.tunnel import Initiator, TunnelError
from tests.integration.bridge_harness import (
    BridgeClient,
    BridgeDaemon,
    add_key,
    export_key,
    new_key,
    public_line,
    relay_text,
)
from tests.integration.harness import BASE_CONFIG, Daemon

SYSADM = os.path.join(os.path.dirname(sys.executable), "sysadm")
SIGNED_IN = r"signed in to bridge test with key"
FAILED = 401


def _sign(key, text):
    return base64.b64encode(key.sign(text.encode("utf-8"))).decode()


def _fingerprint(key):
    from sysadmd.auth.keys_file import fingerprint

    return fingerprint(key.public_key())


@contextlib.contextmanager
def running(tmp_path, auth_extra="", legacy=False):
    """The bridge, one daemon signed in to it, and the keys of alice and mallory.
    ``legacy``: the daemon has ``[bridge] legacy_clients = yes`` and clients relay in
    plaintext; otherwise they pin the daemon's key and relay in the tunnel."""
    bridge = BridgeDaemon(tmp_path / "bridge").start()
    (tmp_path / "vm").mkdir()
    daemon = Daemon(
        tmp_path / "vm",
        BASE_CONFIG + auth_extra + f"\n[bridge]\nconnections = test={bridge.url}\n"
        + ("legacy_clients = yes\n" if legacy else ""),
    )
    net = SimpleNamespace(bridge=bridge, daemon=daemon, alice=new_key(), mallory=new_key(), clients=[],
                          legacy=legacy)
    try:
        daemon.add_user("alice", "alice-secret-pw")
        daemon.add_user("mallory", "mallory-secret-pw", role="limited")
        for user in ("alice", "mallory"):
            key = getattr(net, user)
            add_key(os.path.join(daemon.state_dir, "keys"), user, public_line(key))
            bridge.register(user, public_line(key))
        bridge.register_server("vm", export_key(daemon))
        daemon.start()
        daemon.wait_for_log(SIGNED_IN)
        net.server_fp = daemon.bridge_fingerprint
        yield net
    finally:
        for c in net.clients:
            with contextlib.suppress(Exception):
                c.close()
        daemon.stop()
        bridge.stop()


def connect(net, key, **kwargs):
    """A bridge client signed in with ``key``, once its first bridge event arrived; it
    pins the daemon's key unless the network is ``legacy``."""
    kwargs.setdefault("pins", () if net.legacy else {net.server_fp})
    c = BridgeClient(net.bridge.url, **kwargs)
    net.clients.append(c)
    reply = c.sign_in(key)
    assert reply["name"] == "response", reply
    c.wait_for(lambda: c.bridge_args, what="the first bridge event")
    return c


def offered(c, fingerprint):
    """Wait until the bridge lists the server with ``fingerprint``; its id."""
    return c.wait_for(lambda: c.server_with_key(fingerprint), what=f"the server {fingerprint}")


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    """One bridge and daemon (tunnel only) for the tests that leave them as they found them."""
    with running(tmp_path_factory.mktemp("takeover")) as net:
        yield net


@pytest.fixture(scope="module")
def legacy_network(tmp_path_factory):
    """The same with ``[bridge] legacy_clients = yes`` and plaintext clients."""
    with running(tmp_path_factory.mktemp("takeover-legacy"), legacy=True) as net:
        yield net


@pytest.fixture
def fake_server(network):
    """Mallory's peer posing as the victim's server: signed in with her client key, it
    answers identify as a server with the daemon's host name and sends an accept list
    holding alice's fingerprint, unasked."""
    fake = connect(network, network.mallory, identify_as="server", hostname=socket.gethostname())
    fake.send({"namespace": "rpc", "name": "response", "id": "bridge_request_list_keys",
               "args": {"sha256_keys": [_fingerprint(network.alice), _fingerprint(network.mallory)]}})
    fake.quiet(0.3)
    yield fake
    fake.close()
    network.clients.remove(fake)


def test_a_client_key_posing_as_a_server_is_never_offered_to_the_victim(network, fake_server):
    """(a) The fake's role is client: the victim's bridge events never list it, the bridge
    says the real server is the only server, and a relay to the fake is refused (404)."""
    network.bridge.wait_for_log(r"claims to be a server but signed in with key")
    victim = connect(network, network.alice)
    real_id = offered(victim, network.server_fp)
    victim.quiet(0.5)
    fake_id = fake_server.connection_id
    assert all(fake_id not in ids for ids in victim.bridge_events)
    assert victim.available == [real_id]
    assert victim.connections == {
        real_id: {"role": "server", "fingerprint": network.server_fp, "hostname": socket.gethostname()}
    }
    victim.relay(fake_id, {"namespace": "rpc", "name": "identify", "id": "x", "args": {}})
    error = victim.bridge_error()
    assert error["args"]["code"] == 404 and error["args"]["destination"] == fake_id
    # The fake was never asked for its accept list and reaches only what mallory's key may.
    fake_server.quiet(0.3)
    assert fake_server.raw_relayed == []
    assert fake_server.available == [real_id]
    assert fake_server.connections[real_id]["role"] == "server"


def _sysadm(net, server, *command):
    key_path = net.daemon.tmp_path / "alice-key"
    if not key_path.exists():
        key_path.write_bytes(net.alice.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ))
        os.chmod(key_path, 0o600)
    env = dict(os.environ, XDG_CONFIG_HOME=str(net.daemon.tmp_path / "xdg"))
    env.pop("SYSADM_PASSWORD", None)
    return subprocess.run(
        [SYSADM, "--bridge", net.bridge.url, "--server", server, "--key", str(key_path),
         "--user", "alice", *command],
        capture_output=True, text=True, timeout=60, env=env,
    )


def test_the_victim_cli_reaches_the_real_server_by_key_and_refuses_a_host_name(network, fake_server):
    """(b) With the fake connected under the same host name, ``sysadm --server SHA256:...``
    signs in to the real daemon (key sign-in, bound) and runs a job there; the fake sees
    nothing. ``--server <host name>`` is refused before anything is sent."""
    result = _sysadm(network, network.server_fp, "run", "by-key", "echo reached the real server", "--wait")
    assert (result.returncode, result.stdout) == (0, "reached the real server\n"), result
    network.daemon.wait_for_log(r"alice authenticated from bridge:test:SHA256:\S+ by key")
    fake_server.quiet(0.5)
    assert fake_server.raw_relayed == []
    before = network.bridge.log_text().count("bridge connection")
    result = _sysadm(network, socket.gethostname(), "jobs")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert "is not a key fingerprint" in line and "sysadmd-admin bridge export-key" in line
    assert network.bridge.log_text().count("bridge connection") == before  # never connected


def test_a_fake_server_cannot_prove_the_pinned_key_even_if_a_bridge_routed_to_it(network):
    """(a, in the tunnel) Were a bridge to hand the victim's session to mallory's fake
    server, the victim's client would stop at the tunnel: an offer signed by mallory's
    key is not the pinned server's; with the real server's offer replayed (it is public:
    mallory fetches it through the bridge) the fake cannot read the victim's hello, and
    the welcome the real server gave mallory's own hello does not complete the victim's
    handshake. Only the real server answers the victim's hello."""
    attacker = connect(network, network.mallory)
    real_id = offered(attacker, network.server_fp)

    def control():
        return attacker.wait_for(lambda: attacker.control[real_id] and attacker.control[real_id].pop(0),
                                 what="the real server's answer")

    attacker.relay_raw(real_id, tunnel.OFFER)
    real_offer = control()
    # The fake's own offer, signed by mallory's key.
    own = tunnel.make_offer(network.mallory, tunnel.new_static_key())
    with pytest.raises(TunnelError, match="not by the pinned server"):
        tunnel.check_offer(own, network.server_fp)
    # The real offer replayed: a responder with any other static key cannot read the hello.
    static, rekey = tunnel.check_offer(real_offer, network.server_fp)
    hello = Initiator(static, rekey, 1 << 20).hello()
    with pytest.raises(TunnelError, match="handshake failed"):
        tunnel.Responder(tunnel.new_static_key(), rekey, 1 << 20).hello(hello)
    # The real server's welcome to mallory's own hello, replayed to the victim.
    attacker.relay_raw(real_id, Initiator(static, rekey, 1 << 20).hello())
    welcome_to_mallory = control()
    assert welcome_to_mallory.startswith(tunnel.WELCOME)
    victim = Initiator(static, rekey, 1 << 20)
    victim.hello()
    with pytest.raises(TunnelError, match="could not prove the pinned key"):
        victim.welcome(welcome_to_mallory)
    # The victim's hello itself, forwarded to the real server (a new session), completes.
    victim = Initiator(static, rekey, 1 << 20)
    victims_hello = victim.hello()
    forwarder = connect(network, network.mallory)
    forwarder.relay_raw(offered(forwarder, network.server_fp), victims_hello)
    answer = forwarder.wait_for(lambda: forwarder.control[real_id] and forwarder.control[real_id].pop(0),
                                what="the real server's welcome")
    assert victim.welcome(answer).handshake_hash


@pytest.mark.parametrize("mode", ["tunnel", "legacy"])
def test_a_signature_made_for_another_server_is_useless_at_the_real_one(request, mode):
    """(c) Mallory, a client of the real daemon through the bridge, gets an auth_ssl
    challenge and has alice's key sign it the way alice's client would for mallory's fake
    server, or even for the real server in alice's own session, or in another binding, or
    bare: every one is 401 and mallory gets no token. In the tunnel the binding is the
    server's key and the handshake hash; with legacy_clients the server's key and the
    connection id."""
    network = request.getfixturevalue("network" if mode == "tunnel" else "legacy_network")
    attacker = connect(network, network.mallory)
    victim = connect(network, network.alice)
    real_id = offered(attacker, network.server_fp)
    offered(victim, network.server_fp)
    fake_fp = _fingerprint(network.mallory)  # what a fake server would present
    if mode == "tunnel":
        mine = attacker.open_tunnel(real_id, network.server_fp).handshake_hash
        alices = victim.open_tunnel(real_id, network.server_fp).handshake_hash
        expected_bind = tunnel.binding_description(network.server_fp, mine)
        forgeries = {
            "for the fake server, in alice's tunnel": lambda ts: tunnel.binding_text(fake_fp, alices, ts),
            "for the real server, in alice's tunnel": lambda ts: tunnel.binding_text(
                network.server_fp, alices, ts),
            "the plaintext binding of mallory's connection": lambda ts: relay_text(
                network.server_fp, attacker.connection_id, ts),
            "bare, as a direct client signs": lambda ts: ts,
        }
    else:
        expected_bind = {"scheme": "sysadm-relay-v1", "server": network.server_fp,
                         "connection": attacker.connection_id}
        forgeries = {
            "for the fake server": lambda ts: relay_text(fake_fp, victim.connection_id, ts),
            "for the real server, on alice's connection": lambda ts: relay_text(
                network.server_fp, victim.connection_id, ts),
            "for the fake server, on mallory's connection": lambda ts: relay_text(
                fake_fp, attacker.connection_id, ts),
            "bare, as a direct client signs": lambda ts: ts,
        }
    for how, text_of in forgeries.items():
        challenge = attacker.call(real_id, "rpc", "auth_ssl")
        assert challenge["args"]["bind"] == expected_bind, (how, challenge)
        reply = attacker.call(real_id, "rpc", "auth_ssl",
                              {"encrypted_string": _sign(network.alice, text_of(challenge["args"]["test_string"]))})
        assert reply["namespace"] == "error" and reply["args"]["code"] == FAILED, (how, reply)
        assert not isinstance(reply["args"], list)
    run = attacker.call(real_id, "rpc", "dispatcher", {"action": "run", "stolen": ["echo pwned"]})
    assert run["namespace"] == "error" and run["args"]["code"] == 401
    assert "alice authenticated from bridge:test:" + _fingerprint(network.mallory) not in network.daemon.log_text()
    # Alice's own bound signature, in her own session, still works.
    _, reply = victim.key_sign_in(real_id, network.alice, network.server_fp)
    assert reply["name"] == "response" and len(reply["args"][0]) == 64


@pytest.mark.parametrize("legacy", [False, True], ids=["tunnel", "legacy"])
def test_relayed_failures_count_on_the_key_across_bridge_reconnects(tmp_path, legacy):
    """(d) With ban_loopback = yes and max_failures = 3, mallory's failed relayed key
    logins from three successive bridge connections (three connection ids, three
    tunnels) ban her key: the fourth connection gets 429 at once. Alice, on the same
    link, is not affected."""
    with running(tmp_path, auth_extra="ban_loopback = yes\nmax_failures = 3\n", legacy=legacy) as net:
        ids, codes = [], []
        for _ in range(4):
            c = connect(net, net.mallory)
            server_id = offered(c, net.server_fp)
            ids.append(c.connection_id)
            challenge = c.call(server_id, "rpc", "auth_ssl")
            if challenge["namespace"] == "error":
                codes.append(challenge["args"]["code"])
            else:
                reply = c.call(server_id, "rpc", "auth_ssl",
                               {"encrypted_string": _sign(net.mallory, "not the challenge")})
                codes.append(reply["args"]["code"])
            c.close()
            net.clients.remove(c)
        assert len(set(ids)) == 4  # a new connection id each time
        assert codes == [401, 401, 401, 429]
        net.daemon.wait_for_log(r"banned bridge:test:" + _fingerprint(net.mallory).replace("+", r"\+"))
        alice = connect(net, net.alice)
        _, reply = alice.key_sign_in(offered(alice, net.server_fp), net.alice, net.server_fp)
        assert reply["name"] == "response", reply
