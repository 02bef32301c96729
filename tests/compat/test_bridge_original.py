"""The original Qt client through a sysadmd bridge, the original way (issue 14, "Through a
bridge, the original way"), replayed frame by frame against the real bridge and the real
daemon under twistd, beside a scripted original SysAdm server.

The Qt client (``sysadm_client`` in trueos/sysadm-ui-qt) holds two RSA keys: one it signs
in to bridges with (``SSL_cfg_bridge``) and one it signs in to servers with
(``SSL_cfg``). A sysadmd bridge pairs it by the key it proved, so each server lists both
(the original bridge paired by the checksum the client claimed). Every message below is
what that client sends, as ``QJsonDocument::Compact`` writes it (keys sorted); signatures
are ``RSA_private_encrypt`` with PKCS#1 padding, spelled out here independently of sysadmd.
"""

import base64
import contextlib
import hashlib
import json
import os
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.sync.client import connect

from tests.integration.bridge_harness import BridgeDaemon, add_key, export_key
from tests.integration.conftest import install_ticker
from tests.integration.harness import BASE_CONFIG, Daemon
from tests.original_rsa import rsa_private_encrypt

QT_ORIGIN = "sysadm-client"
SERVER_ORIGIN = "sysadm-server"
AUTH_ID = "sysadm-client-auth-auto"
IDENTIFY_ID = "sysadm_client_identify"
EVENT_ID = "sysadm-client-event-auto"


def qt_json(obj):
    """A message as the Qt client writes it: compact, keys sorted (QJsonObject's order)."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


def pem(key):
    """``QSslKey::toPem()`` of the public half."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def md5_key(key):
    """The Qt client's ``pubkeyMD5``: base64(md5(public key PEM))."""
    return base64.b64encode(hashlib.md5(pem(key)).digest()).decode()


def openssh(key, comment):
    """The public half as an OpenSSH line, for ``sysadmd-admin key add``."""
    line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    return f"{line} {comment}"


class Peer:
    """A raw WebSocket peer of the bridge: frames from the bridge itself are envelopes,
    relayed ones ``<sender>\\n<payload>`` (payload kept as text)."""

    def __init__(self, url, origin, identify_args, checksums=None):
        self._connection = connect(url, origin=origin, open_timeout=10, max_size=None)
        self.ws = self._connection.__enter__()
        self.identify_args = identify_args
        self.checksums = checksums  # the args to answer list_ssl_checksums with
        self.frames = []  # envelopes from the bridge, not auto-answered
        self.relayed = []  # (sender, payload text)
        self.bridge_events = []  # the args of each events/bridge frame
        self.answered_checksums = False

    def send(self, text):
        self.ws.send(text)

    def _pump(self, timeout):
        try:
            text = self.ws.recv(timeout)
        except TimeoutError:
            return
        if not text.startswith("{"):
            sender, _, payload = text.partition("\n")
            self.relayed.append((sender, payload))
            return
        message = json.loads(text)
        key = (message.get("namespace"), message.get("name"))
        if key == ("rpc", "identify") and message["id"] == "sysadm_bridge_request_ident":
            self.send(qt_json({"args": self.identify_args, "id": message["id"],
                               "name": "response", "namespace": "rpc"}))
        elif key == ("rpc", "settings") and self.checksums is not None:
            self.send(qt_json({"args": self.checksums, "id": message["id"],
                               "name": "response", "namespace": "rpc"}))
            self.answered_checksums = True
        elif key == ("events", "bridge"):
            self.bridge_events.append(message["args"])
        else:
            self.frames.append(message)

    def wait(self, find, what, timeout=15):
        """Pump until ``find()`` returns something truthy; return it."""
        deadline = time.monotonic() + timeout
        while True:
            found = find()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            self._pump(0.2)

    def frame(self, request_id, what):
        """The envelope from the bridge answering ``request_id`` (removed)."""
        def find():
            for frame in self.frames:
                if frame.get("id") == request_id:
                    self.frames.remove(frame)
                    return frame
            return None
        return self.wait(find, what)

    def from_peer(self, sender, what):
        """The next relayed payload from ``sender`` (removed)."""
        def find():
            for item in self.relayed:
                if item[0] == sender:
                    self.relayed.remove(item)
                    return item[1]
            return None
        return self.wait(find, what)

    def sign_in(self, key, request_id):
        """``rpc/auth_ssl`` to the bridge, stage 2 in the raw RSA form."""
        self.send(qt_json({"args": "", "id": request_id, "name": "auth_ssl", "namespace": "rpc"}))
        stage1 = self.frame(request_id, "the bridge's test string")
        test_string = stage1["args"]["test_string"]
        signature = base64.b64encode(rsa_private_encrypt(key, test_string.encode("latin-1"))).decode()
        self.send(qt_json({"args": {"encrypted_string": signature}, "id": request_id,
                           "name": "auth_ssl", "namespace": "rpc"}))
        return self.frame(request_id, "the bridge's sign-in answer")

    def close(self):
        self.ws.close()


class QtClient(Peer):
    """The Qt client connected to a bridge."""

    def __init__(self, url, server_key, bridge_key, origin=QT_ORIGIN):
        # What it answers the bridge's list_ssl_checksums with: its (server) key's checksum.
        super().__init__(url, origin, {"hostname": "qt-desktop", "type": "client"},
                         {"md5_keys": [md5_key(server_key)]})
        self.server_key = server_key
        self.bridge_key = bridge_key

    def connect_to_bridge(self):
        """identify, then auth_ssl with the bridge key (performAuth for a bridge)."""
        self.send(qt_json({"args": "", "id": IDENTIFY_ID, "name": "identify", "namespace": "rpc"}))
        assert self.frame(IDENTIFY_ID, "the bridge's identify")["args"]["type"] == "bridge"
        reply = self.sign_in(self.bridge_key, AUTH_ID)
        assert reply["name"] == "response" and len(reply["args"]) >= 2, reply
        # What Qt answers if asked; a sysadmd bridge ignores it from a client.
        self.send(qt_json({"args": {"md5_keys": [md5_key(self.server_key)]},
                           "id": "bridge_request_list_keys", "name": "response", "namespace": "rpc"}))

    def relay(self, destination, message, encoded=False):
        """communicate_bridge: ``<id>\\n<JSON>``, base64 once the original flow started."""
        text = qt_json(message)
        if encoded:
            text = base64.b64encode(text.encode()).decode()
        self.send(f"{destination}\n{text}")

    def reply(self, sender, request_id, encoded, what):
        """The relayed reply to ``request_id`` from ``sender`` (events before it skipped)."""
        while True:
            payload = self.from_peer(sender, what)
            text = base64.b64decode(payload, validate=True).decode() if encoded else payload
            message = json.loads(text)
            if message.get("id") == request_id:
                return message

    def original_sign_in(self, server):
        """performAuth_bridge: identify and auth_ssl with md5_key in plain JSON, stage 2
        (and everything after) in base64. Returns (stage 1 args, stage 2 reply)."""
        self.relay(server, {"args": "", "id": IDENTIFY_ID, "name": "identify", "namespace": "rpc"})
        self.relay(server, {"args": {"md5_key": md5_key(self.server_key)}, "id": AUTH_ID,
                            "name": "auth_ssl", "namespace": "rpc"})
        identify = self.reply(server, IDENTIFY_ID, False, "the server's identify")
        assert identify["args"]["type"] == "server", identify
        stage1 = self.reply(server, AUTH_ID, False, "the server's test string")
        if stage1["name"] != "response":
            return stage1, None
        args = stage1["args"]
        randomkey = base64.b64decode(args["test_string"]).decode("latin-1")
        new_key = base64.b64decode(args["new_ssl_key"])
        assert b" PUBLIC KEY--" in new_key  # the client encodes its payloads from now on
        signature = base64.b64encode(rsa_private_encrypt(self.server_key, randomkey.encode("latin-1")))
        self.relay(server, {"args": {"encrypted_string": signature.decode()}, "id": AUTH_ID,
                            "name": "auth_ssl", "namespace": "rpc"}, encoded=True)
        return args, self.reply(server, AUTH_ID, True, "the server's sign-in answer")


DAEMON_CONFIG = BASE_CONFIG + """
[bridge]
connections = test={url}
legacy_clients = {legacy}
"""


@contextlib.contextmanager
def network(tmp_path, legacy="yes"):
    """The real bridge and daemon, the Qt client's two keys registered where its user
    would register them, and a scripted original server signed in to the bridge."""
    server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bridge_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    original_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bridge = BridgeDaemon(tmp_path / "bridge").start()
    add_key(bridge.keys_file, "qt-user", openssh(bridge_key, "qt bridge key"))
    add_key(bridge.server_keys_file, "original", openssh(original_key, "original server"))
    directory = tmp_path / "daemon"
    directory.mkdir()
    config = DAEMON_CONFIG.replace("{url}", bridge.url).replace("{legacy}", legacy)
    daemon = Daemon(directory, config, env={"PYTHONPATH": install_ticker(tmp_path)})
    daemon.add_user("admin", "admin-secret-pw", "full")
    for key, comment in ((server_key, "qt key"), (bridge_key, "qt bridge key")):
        add_key(os.path.join(daemon.state_dir, "keys"), "admin", openssh(key, comment))
    bridge.register_server("sysadmd", export_key(daemon))
    peers = []
    try:
        daemon.start()
        daemon.wait_for_log("signed in to bridge test with key")
        original = Peer(bridge.url, SERVER_ORIGIN, {"hostname": "original", "type": "server"},
                        {"md5_keys": [md5_key(server_key), md5_key(bridge_key)]})
        peers.append(original)
        reply = original.sign_in(original_key, "server_to_bridge_auth")
        assert reply["name"] == "response", reply
        original.wait(lambda: original.answered_checksums, "the bridge's list_ssl_checksums")
        qt = QtClient(bridge.url, server_key, bridge_key)
        peers.append(qt)
        yield qt, original, daemon
    finally:
        for peer in peers:
            with contextlib.suppress(Exception):
                peer.close()
        daemon.stop()
        bridge.stop()


def servers(qt, daemon):
    """Once the Qt client is offered both servers: (the daemon's id, the original's id),
    told apart by the fingerprint the bridge gives each (the daemon's bridge key)."""
    def find():
        for args in reversed(qt.bridge_events):
            ids = args["available_connections"]
            if len(ids) == 2:
                [mine] = [i for i in ids if args["connections"][i]["fingerprint"] == daemon.bridge_fingerprint]
                [other] = [i for i in ids if i != mine]
                return mine, other
        return None
    return qt.wait(find, "both servers offered")


def qt_id(original):
    """The Qt client's id, as the original server's last bridge event lists it."""
    original.wait(lambda: original.bridge_events and original.bridge_events[-1]["available_connections"],
                  "the Qt client offered to the original server")
    [client_id] = original.bridge_events[-1]["available_connections"]
    return client_id


def test_qt_client_through_a_sysadmd_bridge_the_original_way(tmp_path):
    """The Qt client signs in to the bridge (raw RSA), is offered the original server
    (paired by its md5_keys) and the daemon; through the relay it signs in to the daemon
    with md5_key, then talks base64(JSON) both ways in the original dialect."""
    with network(tmp_path) as (qt, original, daemon):
        qt.connect_to_bridge()
        server, original_id = servers(qt, daemon)
        # The original server is offered the Qt client and gets its frames.
        qt.relay(original_id, {"args": "", "id": IDENTIFY_ID, "name": "identify", "namespace": "rpc"})
        relayed = json.loads(original.from_peer(qt_id(original), "the relayed identify"))
        assert relayed["id"] == IDENTIFY_ID
        # The daemon: the original sign-in.
        args, reply = qt.original_sign_in(server)
        test_string = base64.b64decode(args["test_string"]).decode()
        assert len(test_string) >= 128 and test_string.isprintable()
        assert base64.b64decode(args["new_ssl_key"]).startswith(b"-----BEGIN PUBLIC KEY-----")
        assert reply["name"] == "response" and len(reply["args"]) == 2, reply
        daemon.wait_for_log("signs in the original way")
        qt.relay(server, {"args": "system-state", "id": EVENT_ID, "name": "subscribe",
                          "namespace": "events"}, encoded=True)
        subscribed = qt.reply(server, EVENT_ID, True, "the subscribe reply")
        assert subscribed["args"] == {"subscribe": "system-state"}, subscribed
        qt.relay(server, {"args": {"action": "list"}, "id": "dispatcher-list", "name": "dispatcher",
                          "namespace": "rpc"}, encoded=True)
        listed = qt.reply(server, "dispatcher-list", True, "the dispatcher list")
        assert listed["name"] == "response" and "jobs" in listed["args"], listed
        qt.relay(server, {"args": {"action": "nope"}, "id": "bad", "name": "dispatcher",
                          "namespace": "rpc"}, encoded=True)
        error = qt.reply(server, "bad", True, "an error")
        assert error["name"] == "error" and error["args"]["code"] == "404", error


def test_legacy_clients_no_refuses_the_original_client(tmp_path):
    """With [bridge] legacy_clients = no (the default since the encrypted tunnel) the
    daemon answers each plaintext message of the Qt client, its identify and its md5_key
    stage 1, with a 403 that names the option (no id: it ends the session), and nothing
    signs in; the client is still offered the server."""
    with network(tmp_path, legacy="no") as (qt, _original, daemon):
        qt.connect_to_bridge()
        server, _ = servers(qt, daemon)
        qt.relay(server, {"args": "", "id": IDENTIFY_ID, "name": "identify", "namespace": "rpc"})
        qt.relay(server, {"args": {"md5_key": md5_key(qt.server_key)}, "id": AUTH_ID,
                          "name": "auth_ssl", "namespace": "rpc"})
        for what in ("the identify", "the md5_key stage 1"):
            notice = json.loads(qt.from_peer(server, f"the refusal of {what}"))
            assert notice["namespace"] == "error" and notice["id"] is None, notice
            assert notice["args"]["code"] == 403 and "legacy_clients = no" in notice["args"]["details"]
        daemon.wait_for_log("sent plaintext; refused")
        assert "signs in the original way" not in daemon.log_text()
        assert "authenticated" not in daemon.log_text()
