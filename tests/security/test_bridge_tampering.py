"""Issue 18, proofs 2 and 3: a malicious bridge can neither alter relayed sessions nor
pose as the server.

The network: the real bridge (``twistd sysadm-bridge``), a man in the middle in front of
it (:mod:`tests.security.mitm`) and two real daemons connected to the bridge through the
MITM: the victim, and a rogue paired with the bridge under its own bridge key. Both
accept the keys of the clients alice and bob (the rogue is the attacker's: it lists
anyone). The clients sign in to the bridge with their keys, pick the victim by its
pinned fingerprint (what ``sysadmd-admin bridge export-key`` printed), open the tunnel
(:class:`TunnelClient`, built on ``sysadmd.protocol.tunnel``, the code the client uses)
and sign in with alice's password inside it.

Each tampering (flip, replay, drop, swap) hits the frame that carries a job, or the
frame before it: the client gets ``noise:error``, the daemon logs why the session ended,
and the job never runs (its file never appears, the daemon's own ``history`` and
``list``, asked directly, do not have it). The same requests relayed faithfully do run.
"""

import contextlib
import json
import os
import re
import threading
import time
import uuid
from types import SimpleNamespace

import pytest

from sysadmd.protocol import tunnel
from sysadmd.protocol.tunnel import TunnelError
from tests.integration.bridge_harness import (
    BridgeClient,
    BridgeDaemon,
    add_key,
    export_key,
    new_key,
    public_line,
)
from tests.integration.harness import BASE_CONFIG, Client, Daemon
from tests.security.mitm import (
    TO_BRIDGE,
    TO_DAEMON,
    Answer,
    BridgeMitm,
    Drop,
    Flip,
    Redirect,
    Replay,
    Swap,
)

PASSWORD = "alice-pw-" + uuid.uuid4().hex
SIGNED_IN = r"signed in to bridge test with key"
MAX_MESSAGE = 4 << 20
WARNING = r"relayed client {id} of bridge test: {reason}; its session ends"
UNDECRYPTABLE = "a tunnel message did not decrypt: it was altered, replayed, dropped or reordered on the way"


class Ended(Exception):
    """The server ended the session: ``payload`` is its plaintext last word
    (``noise:error <reason>``, or the 403 notice of a session that is no longer a tunnel)."""

    def __init__(self, payload):
        super().__init__(payload)
        self.payload = payload


class TunnelClient:
    """A bridge client talking to the server whose bridge key is ``pinned``, through the
    tunnel, as ``sysadm`` does: sign in to the bridge with ``key``, pick the server the
    bridge says has that key, check its offer against the pin, handshake, then sealed
    messages only."""

    def __init__(self, net, key, pinned):
        self.link = BridgeClient(net.bridge.url)
        net.clients.append(self.link)
        reply = self.link.sign_in(key)
        assert reply["name"] == "response", reply
        self.pinned = pinned
        self.server = self.link.wait_for(lambda: self.link.server_with_key(pinned), what=f"the server {pinned}")
        self.id = self.link.connection_id
        self.tunnel = None
        self._read = 0
        self._ids = 0

    def send_plain(self, text):
        self.link.relay(self.server, text)

    def next_payload(self, timeout=10):
        """The next payload relayed from the server, as it came."""
        def found():
            frames = self.link.raw_relayed
            while self._read < len(frames):
                sender, payload = frames[self._read]
                self._read += 1
                if sender == self.server:
                    return (payload,)
            return None

        return self.link.wait_for(found, timeout, f"a frame from {self.server}")[0]

    def open(self):
        """Offer, check, handshake: the tunnel (TunnelError when the server is not the
        pinned one or cannot prove it)."""
        self.send_plain(tunnel.OFFER)
        static, rekey = tunnel.check_offer(self.next_payload(), self.pinned)
        initiator = tunnel.Initiator(static, rekey, MAX_MESSAGE)
        self.send_plain(initiator.hello())
        self.tunnel = initiator.welcome(self.next_payload())
        return self

    def send(self, namespace, name, args):
        """Seal and send a request; returns its id."""
        self._ids += 1
        request_id = f"t-{self._ids}"
        message = {"namespace": namespace, "name": name, "id": request_id, "args": args}
        for frame in self.tunnel.seal(json.dumps(message).encode()):
            self.send_plain(frame)
        return request_id

    def receive(self, timeout=10):
        """The next message from the server; :class:`Ended` for a plaintext one,
        TunnelError for one that does not open."""
        while True:
            payload = self.next_payload(timeout)
            if payload.startswith(tunnel.ERROR) or payload.lstrip().startswith("{"):
                raise Ended(payload)
            message = self.tunnel.open(payload)
            if message is not None:
                return json.loads(message)

    def reply(self, request_id, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            message = self.receive(max(0.01, deadline - time.monotonic()))
            if message.get("id") == request_id:
                return message

    def call(self, namespace, name, args=None):
        return self.reply(self.send(namespace, name, {} if args is None else args))

    def sign_in(self):
        reply = self.call("rpc", "auth", {"username": "alice", "password": PASSWORD})
        assert reply["name"] == "response", reply
        return self


def start_server(tmp_path, name, net):
    """A daemon connecting to the bridge through the MITM, accepting alice's and bob's
    keys and alice's password, paired with the bridge under its own bridge key."""
    directory = tmp_path / name
    directory.mkdir()
    config = BASE_CONFIG + f"\n[bridge]\nconnections = test={net.mitm.url}\n"
    daemon = Daemon(directory, config)
    daemon.add_user("alice", PASSWORD)
    for key in (net.alice, net.bob):
        add_key(os.path.join(daemon.state_dir, "keys"), "alice", public_line(key))
    net.bridge.register_server(name, export_key(daemon))
    return daemon


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("tampering")
    bridge = BridgeDaemon(tmp_path / "bridge").start()
    mitm = BridgeMitm(bridge.url).start()
    net = SimpleNamespace(bridge=bridge, mitm=mitm, alice=new_key(), bob=new_key(), clients=[], tmp_path=tmp_path)
    daemons = []
    try:
        bridge.register("alice", public_line(net.alice))
        bridge.register("bob", public_line(net.bob))
        net.victim = start_server(tmp_path, "victim", net)
        net.rogue = start_server(tmp_path, "rogue", net)
        daemons = [net.victim, net.rogue]
        starting = [threading.Thread(target=d.start) for d in daemons]
        for thread in starting:
            thread.start()
        for thread in starting:
            thread.join()
        for daemon in daemons:
            assert daemon.process is not None and daemon.process.poll() is None, daemon.log_text()
            daemon.wait_for_log(SIGNED_IN)
        assert net.victim.bridge_fingerprint != net.rogue.bridge_fingerprint
        yield net
    finally:
        for daemon in daemons:
            daemon.stop()
        mitm.stop()
        bridge.stop()


@pytest.fixture
def network(net):
    """The shared network, faithful again and without clients after the test."""
    yield net
    net.mitm.disarm()
    for c in net.clients:
        with contextlib.suppress(Exception):
            c.close()
    net.clients.clear()


def client(net, key=None):
    """A client of the victim, its tunnel open and signed in with alice's password."""
    return TunnelClient(net, key or net.alice, net.victim.bridge_fingerprint).open().sign_in()


def job_file(net):
    """A job id and the file its ``touch`` would create."""
    job_id = "tamper-" + uuid.uuid4().hex[:12]
    return job_id, net.tmp_path / f"{job_id}.touched"


def run_args(job_id, path):
    return {"action": "run", job_id: f"touch {path}"}


def jobs_named(net, job_id):
    """The victim's own record of ``job_id``, asked directly (not through the bridge):
    its history entries, and whether it is pending or running."""
    direct = Client(net.victim.url)
    try:
        assert direct.login("alice", PASSWORD)["name"] == "response"
        history = direct.call("rpc", "dispatcher", {"action": "history", "limit": 1000})["args"]["history"]
        jobs = direct.call("rpc", "dispatcher", {"action": "list"})["args"]["jobs"]
    finally:
        direct.close()
    queued = any(job_id in queue for queue in jobs.values())
    return [entry for entry in history if entry["process_id"] == job_id], queued


def assert_never_ran(net, job_id, path):
    time.sleep(0.5)  # a job let through would have started by now
    assert not path.exists()
    assert jobs_named(net, job_id) == ([], False)


def assert_daemon_warned(net, client_id, reason=UNDECRYPTABLE):
    net.victim.wait_for_log(WARNING.format(id=re.escape(client_id), reason=re.escape(reason)))


def assert_detected_on_both_ends(net, c, ended):
    """The client got the daemon's noise:error for a frame that did not open, and the
    daemon logged it."""
    assert ended.value.payload == tunnel.ERROR + UNDECRYPTABLE
    assert_daemon_warned(net, c.id)


def wait_until(predicate, what, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# Tampering


def test_relayed_faithfully_the_job_runs(network):
    """The control: with the MITM relaying every frame unchanged, the tunnel opens, the
    password sign-in and the job go through it, the file appears and the job is in the
    history. The MITM saw only sealed frames of the session: never the password or the
    command."""
    c = client(network)
    job_id, path = job_file(network)
    reply = c.call("rpc", "dispatcher", run_args(job_id, path))
    assert reply["args"] == {"started": [job_id]}, reply
    wait_until(path.exists, f"{path} to appear")
    wait_until(lambda: jobs_named(network, job_id)[0], f"{job_id} in the history")
    [entry] = jobs_named(network, job_id)[0]
    assert entry["state"] == "finished" and entry[f"return_codes/touch {path}"] == "0", entry
    sent = network.mitm.frames(TO_DAEMON, c.id)
    assert sent == network.mitm.frames(TO_DAEMON, c.id, received=True)
    assert sent[0] == tunnel.OFFER and sent[1].startswith(tunnel.HELLO)
    assert len(sent) == 4 and all(not frame.startswith("noise:") for frame in sent[2:])
    network.victim.wait_for_log(r"alice authenticated from bridge:test:")
    seen = network.mitm.everything()
    assert PASSWORD not in seen and job_id not in seen and str(path) not in seen


def test_a_flipped_byte_ends_the_session_and_the_job_never_runs(network):
    """One bit of the sealed run request flipped on the way: the daemon cannot open it,
    says so to the client (``noise:error``) and in its log, and runs nothing."""
    c = client(network)
    job_id, path = job_file(network)
    flip = network.mitm.arm(Flip(c.id))
    with pytest.raises(Ended) as ended:
        c.call("rpc", "dispatcher", run_args(job_id, path))
    assert flip.done.is_set()
    assert_detected_on_both_ends(network, c, ended)
    assert_never_ran(network, job_id, path)


def test_a_replayed_run_request_does_not_run_the_job_again(network):
    """A job runs; the MITM then sends its sealed request again (before the client's next
    frame): the daemon refuses the replay and ends the session (the client gets
    ``noise:error``, and another for its next frame, which has no tunnel to open it), and
    the job ran once only."""
    c = client(network)
    job_id, path = job_file(network)
    assert c.call("rpc", "dispatcher", run_args(job_id, path))["args"] == {"started": [job_id]}
    wait_until(lambda: jobs_named(network, job_id)[0], f"{job_id} in the history")
    path.unlink()
    captured = network.mitm.frames(TO_DAEMON, c.id)[-1]  # the sealed run request
    replay = network.mitm.arm(Replay(c.id, captured))
    with pytest.raises(Ended) as ended:
        c.call("rpc", "identify")
    assert replay.done.is_set()
    assert_detected_on_both_ends(network, c, ended)
    with pytest.raises(Ended) as after:  # the identify: its session is gone
        c.receive()
    assert after.value.payload.startswith(tunnel.ERROR), after.value.payload
    time.sleep(0.5)
    assert not path.exists()
    history, queued = jobs_named(network, job_id)
    assert len(history) == 1 and not queued


def test_a_dropped_frame_ends_the_session_at_the_next_and_the_job_never_runs(network):
    """The MITM drops a sealed request (an identify); the run request after it does not
    open (its nonce is one ahead): ``noise:error``, a warning, nothing run."""
    c = client(network)
    job_id, path = job_file(network)
    drop = network.mitm.arm(Drop(c.id))
    c.send("rpc", "identify", {})
    with pytest.raises(Ended) as ended:
        c.call("rpc", "dispatcher", run_args(job_id, path))
    assert drop.done.is_set()
    assert_detected_on_both_ends(network, c, ended)
    assert_never_ran(network, job_id, path)


def test_two_clients_frames_swapped_end_both_sessions_and_neither_job_runs(network):
    """Alice's and Bob's sealed run requests, each delivered as from the other: neither
    opens under the other's tunnel; both clients get ``noise:error``, the daemon warns for
    both, neither job runs."""
    a = client(network, network.alice)
    b = client(network, network.bob)
    (job_a, path_a), (job_b, path_b) = job_file(network), job_file(network)
    swap = network.mitm.arm(Swap(a.id, b.id))
    request_a = a.send("rpc", "dispatcher", run_args(job_a, path_a))
    request_b = b.send("rpc", "dispatcher", run_args(job_b, path_b))
    for c, request_id in ((a, request_a), (b, request_b)):
        with pytest.raises(Ended) as ended:
            c.reply(request_id)
        assert_detected_on_both_ends(network, c, ended)
    assert swap.done.is_set()
    assert_never_ran(network, job_a, path_a)
    assert_never_ran(network, job_b, path_b)


def test_a_flipped_reply_is_detected_by_the_client(network):
    """The other way: one bit of a sealed reply flipped. The client's tunnel does not
    open it; the client says so (``noise:error``) and the daemon ends the session."""
    c = client(network)
    network.mitm.arm(Flip(c.id, direction=TO_BRIDGE))
    with pytest.raises(TunnelError, match="did not decrypt"):
        c.call("rpc", "identify")
    c.send_plain(tunnel.ERROR + str(c.tunnel.broken))
    # The daemon takes the client's noise:error for what it is and ends the session.
    network.victim.wait_for_log(
        r"relayed client {id} of bridge test closed its tunnel: {reason}".format(
            id=re.escape(c.id), reason=re.escape(str(c.tunnel.broken))))
    job_id, path = job_file(network)
    with pytest.raises(TunnelError):
        c.send("rpc", "dispatcher", run_args(job_id, path))  # the broken tunnel seals nothing


# Impersonation: the bridge hands the victim's clients to the rogue


def rogue_lists(net, rogue, client_id):
    """Whether the bridge told the rogue (through the MITM) it may talk to ``client_id``:
    a frame of that client handed to the rogue is then taken, not ignored."""
    events = [e for e in net.mitm.envelopes(rogue.connection_id)
              if e.get("namespace") == "events" and e.get("name") == "bridge"]
    return bool(events) and client_id in events[-1]["args"]["available_connections"]


def impostor_client(net):
    """A client pinning the victim, once the rogue may answer it too; ``(client, the
    victim's link, the rogue's link)``."""
    c = TunnelClient(net, net.alice, net.victim.bridge_fingerprint)
    rogue_id = c.link.wait_for(lambda: c.link.server_with_key(net.rogue.bridge_fingerprint), what="the rogue")
    rogue = net.mitm.link(rogue_id)
    wait_until(lambda: rogue_lists(net, rogue, c.id), "the rogue to list the client")
    return c, net.mitm.link(c.server), rogue


def assert_nothing_reached_the_rogue(net, c, rogue, steps):
    """The client sent nothing but the tunnel ``steps`` (names: ``noise:offer``...) and the
    rogue got nothing else of it: no sign-in, no password, no signature; the password
    crossed no link in any form; the rogue signed no one in."""
    sent = net.mitm.frames(TO_DAEMON, c.id, received=True)
    assert [frame.split(" ", 1)[0] for frame in sent] == steps
    assert set(net.mitm.frames(TO_DAEMON, c.id, rogue.connection_id)) <= set(sent)
    assert PASSWORD not in net.mitm.everything()
    assert "alice" not in net.rogue.log_text()


def test_the_rogues_own_offer_under_the_victims_id_is_refused_by_fingerprint(network):
    """The bridge lists the victim, but the rogue answers: its offer carries its own
    bridge key, and the client refuses it before sending anything else."""
    c, victim, rogue = impostor_client(network)
    network.mitm.arm(Redirect(c.id, victim, rogue))
    with pytest.raises(TunnelError) as refused:
        c.open()
    assert str(refused.value) == (f"the tunnel is offered by key {network.rogue.bridge_fingerprint}, "
                                  f"not by the pinned server {network.victim.bridge_fingerprint}")
    assert_nothing_reached_the_rogue(network, c, rogue, ["noise:offer"])
    assert network.mitm.frames(TO_DAEMON, c.id, rogue.connection_id) == [tunnel.OFFER]
    assert network.mitm.frames(TO_DAEMON, c.id, victim.connection_id) == []


def victims_offer(network):
    """The victim's offer, recorded by the MITM from an honest session."""
    honest = TunnelClient(network, network.bob, network.victim.bridge_fingerprint).open()
    [offer] = [frame for frame in network.mitm.frames(TO_BRIDGE, honest.id) if frame.startswith(tunnel.OFFER)]
    return offer


def test_the_victims_offer_replayed_with_the_rogue_answering_the_hello_fails_the_handshake(network):
    """The bridge replays the victim's real offer (the fingerprint and signature check
    out) and hands the hello to the rogue, which lacks the victim's static key: it
    cannot read the hello, the handshake fails, and the client sends nothing more."""
    offer = victims_offer(network)
    c, victim, rogue = impostor_client(network)
    network.mitm.arm(Answer(c.id, victim, lambda payload: offer if payload == tunnel.OFFER else None))
    network.mitm.arm(Redirect(c.id, victim, rogue))
    with pytest.raises(TunnelError, match="^the server refused the tunnel: the tunnel handshake failed$"):
        c.open()
    network.rogue.wait_for_log(WARNING.format(id=re.escape(c.id), reason="the tunnel handshake failed"))
    [hello] = network.mitm.frames(TO_DAEMON, c.id, rogue.connection_id)
    assert hello.startswith(tunnel.HELLO)
    assert_nothing_reached_the_rogue(network, c, rogue, ["noise:offer", "noise:hello"])
    assert network.mitm.frames(TO_DAEMON, c.id, victim.connection_id) == []


def test_a_welcome_forged_without_the_static_key_does_not_prove_the_pinned_key(network):
    """The bridge replays the victim's offer and answers the hello itself with a well-formed
    welcome of a handshake under another static key (all a party without the victim's
    static key can make): the client's handshake fails and it sends nothing more."""
    offer = victims_offer(network)
    forger = tunnel.new_static_key()

    def answer(payload):
        if payload == tunnel.OFFER:
            return offer
        if payload.startswith(tunnel.HELLO):
            own = tunnel.Initiator(tunnel.static_public(forger), tunnel.DEFAULT_REKEY_MESSAGES, MAX_MESSAGE)
            welcome, _ = tunnel.Responder(forger, tunnel.DEFAULT_REKEY_MESSAGES, MAX_MESSAGE).hello(own.hello())
            return welcome
        return None

    c, victim, rogue = impostor_client(network)
    network.mitm.arm(Answer(c.id, victim, answer))
    with pytest.raises(TunnelError, match=r"could not prove the pinned key \(handshake failed\)"):
        c.open()
    time.sleep(0.3)
    sent = network.mitm.frames(TO_BRIDGE, c.id, victim.connection_id)
    assert [frame.split(" ", 1)[0] for frame in sent] == ["noise:offer", "noise:welcome"]
    assert_nothing_reached_the_rogue(network, c, rogue, ["noise:offer", "noise:hello"])
    assert network.mitm.frames(TO_DAEMON, c.id) == []  # the bridge kept it all to itself
