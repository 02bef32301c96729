"""Issue 18, proof 1: what a bridge relays of a tunnelled session is unreadable to it.

A recording TCP proxy (asyncio, 127.0.0.1 port 0) sits between the real bridge and the
real daemon (the daemon's ``[bridge] connections`` points at it) and keeps every byte both
ways. Through it a client signs in with a password, gets a token, signs in again with the
token on another bridge connection, runs a job whose command and output hold a unique
marker and follows its output. The marker, the password and the token must not be in the
recording: not in its bytes, not in the WebSocket payloads unmasked (the daemon's frames
to the bridge are masked, which hides nothing from a bridge), and not base64-encoded at
any of the three alignments.

The real ``sysadm`` CLI does the same through the tunnel it speaks by default: a token
from a password login (by the harness client) in its token file, a job with its output
followed, then the job's output read again.

The control is the same session in plaintext with ``[bridge] legacy_clients = yes``: the
recording then shows all three, so the recorder records what a bridge reads.
"""

import asyncio
import base64
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization

from tests.integration.bridge_harness import (
    BridgeClient,
    BridgeDaemon,
    add_key,
    export_key,
    new_key,
    public_line,
)
from tests.integration.harness import BASE_CONFIG, Daemon

SYSADM = os.path.join(os.path.dirname(sys.executable), "sysadm")
SIGNED_IN = r"signed in to bridge test with key"
JOB = "recorded-job"


class RecordingProxy:
    """A TCP proxy on 127.0.0.1 port 0 to ``target_port``, run by an asyncio loop in a
    thread; every connection's bytes are kept, each way (:meth:`recordings`)."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.port = None
        self._lock = threading.Lock()
        self._connections = []  # [to the target, from the target], bytearrays
        self._writers = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self):
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accepted, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accepted(self, reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        record = [bytearray(), bytearray()]
        with self._lock:
            self._connections.append(record)
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer, record[0]),
            self._pipe(up_reader, writer, record[1]),
        )

    async def _pipe(self, reader, writer, record):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                with self._lock:
                    record += data
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)

    def recordings(self):
        """``[(bytes to the target, bytes from the target)]``, one per connection so far."""
        with self._lock:
            return [(bytes(up), bytes(down)) for up, down in self._connections]

    def stop(self):
        async def close():
            self._server.close()
            for writer in list(self._writers):
                writer.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def websocket_payloads(stream):
    """``(the HTTP head, [(opcode, unmasked payload)])`` of one direction of a recorded
    WebSocket connection; a frame cut short at the end is left out."""
    head, separator, data = stream.partition(b"\r\n\r\n")
    if not separator:
        return stream, []
    frames = []
    offset = 0
    while len(data) - offset >= 2:
        opcode, length, at = data[offset] & 0x0F, data[offset + 1] & 0x7F, offset + 2
        masked = data[offset + 1] & 0x80
        if length == 126:
            length, at = int.from_bytes(data[at:at + 2], "big"), at + 2
        elif length == 127:
            length, at = int.from_bytes(data[at:at + 8], "big"), at + 8
        mask = b""
        if masked:
            mask, at = data[at:at + 4], at + 4
        if at + length > len(data):
            break
        body = data[at:at + length]
        if masked:
            body = bytes(b ^ mask[i % 4] for i, b in enumerate(body))
        frames.append((opcode, body))
        offset = at + length
    return head, frames


def readable(proxy):
    """Everything a bridge could read of the recording: each direction's raw bytes and
    its WebSocket payloads unmasked (continuations joined), as a list of byte strings.
    Also checks that no extension (compression) hides the payloads from this search."""
    texts = []
    for up, down in proxy.recordings():
        for stream in (up, down):
            head, frames = websocket_payloads(stream)
            assert b"sec-websocket-extensions" not in head.lower(), head
            texts.append(stream)
            texts.append(b"\n".join(body for _, body in frames))
            texts.append(b"".join(body for _, body in frames))
    return texts


def forms(secret):
    """``secret`` (text) and what any base64 encoding of data holding it must contain, at
    each of the three alignments, in the standard and the URL-safe alphabets."""
    raw = secret.encode("utf-8")
    found = {raw}
    for skew in range(3):
        encoded = base64.b64encode(b"\0" * skew + raw)
        # Skip the group holding unknown bytes before it, and the last partial group
        # (it depends on the bytes after it).
        middle = encoded[4 if skew else 0:((skew + len(raw)) // 3) * 4]
        found |= {middle, middle.translate(bytes.maketrans(b"+/", b"-_"))}
    return {form for form in found if len(form) >= 8}


def seen(texts, secret):
    """The forms of ``secret`` found in ``texts``."""
    return sorted({form for form in forms(secret) for text in texts if form in text})


@contextlib.contextmanager
def recorded(tmp_path, legacy):
    """The bridge, the recording proxy in front of it, and a daemon linked to the bridge
    through the proxy (``legacy``: with ``[bridge] legacy_clients = yes``), alice's
    password and key; the key is known to the bridge and to the daemon."""
    bridge = BridgeDaemon(tmp_path / "bridge").start()
    proxy = None
    daemon = None
    clients = []
    try:
        proxy = RecordingProxy(bridge.port).start()
        (tmp_path / "vm").mkdir()
        config = BASE_CONFIG + f"\n[bridge]\nconnections = test=ws://127.0.0.1:{proxy.port}\n"
        if legacy:
            config += "legacy_clients = yes\n"
        daemon = Daemon(tmp_path / "vm", config)
        password = f"pw-{uuid.uuid4().hex}"
        daemon.add_user("alice", password)
        key = new_key()
        add_key(os.path.join(daemon.state_dir, "keys"), "alice", public_line(key))
        bridge.register("alice", public_line(key))
        bridge.register_server("vm", export_key(daemon))
        daemon.start()
        daemon.wait_for_log(SIGNED_IN)
        fingerprint = daemon.bridge_fingerprint

        def client():
            c = BridgeClient(bridge.url, pins=() if legacy else {fingerprint})
            clients.append(c)
            assert c.sign_in(key)["name"] == "response"
            server = c.wait_for(lambda: c.server_with_key(fingerprint), what="the daemon offered")
            return c, server

        yield SimpleNamespace(bridge=bridge, proxy=proxy, daemon=daemon, password=password,
                              key=key, fingerprint=fingerprint, client=client)
    finally:
        for c in clients:
            with contextlib.suppress(Exception):
                c.close()
        if daemon is not None:
            daemon.stop()
        if proxy is not None:
            proxy.stop()
        bridge.stop()


def run_session(net):
    """Password, token, a job with a marker followed to its end; returns ``(marker,
    token)`` once the client saw the marker in the output."""
    marker = f"MARK-{uuid.uuid4().hex}"
    first, server = net.client()
    login = first.call(server, "rpc", "auth", {"username": "alice", "password": net.password})
    assert login["name"] == "response", login
    token = login["args"][0]
    second, server = net.client()
    assert second.call(server, "rpc", "auth_token", {"token": token})["name"] == "response"
    started = second.call(server, "rpc", "dispatcher", {"action": "run", JOB: f"echo {marker}"})
    assert started["args"] == {"started": [JOB]}, started
    subscribed = second.call(server, "events", "subscribe", [{"name": "job-output", "job_id": JOB}])
    assert subscribed["name"] == "response", subscribed
    output = ""
    while True:
        event = second.next_event(server, "job_output", lambda args: args["job_id"] == JOB)
        output += "".join(chunk["data"] for chunk in event["args"]["chunks"] if chunk["stream"] == "stdout")
        if event["args"]["eof"]:
            break
    assert output == marker + "\n"
    assert event["args"]["return_codes"] == {"0": 0}
    # Everything the daemon sent is through the proxy once the client has it; let the
    # client's last frames reach the daemon too.
    second.call(server, "rpc", "identify")
    return marker, token


def test_a_tunnelled_session_leaves_no_marker_password_or_token_in_the_recording(tmp_path):
    """Through the tunnel (the default) the recording between the bridge and the server
    holds the tunnel's plaintext steps and ciphertext, and none of the marker, the
    password or the token, in any form."""
    with recorded(tmp_path, legacy=False) as net:
        marker, token = run_session(net)
        texts = readable(net.proxy)
        assert any(b"noise:welcome " in text for text in texts)  # the session was recorded
        for name, secret in (("marker", marker), ("password", net.password), ("token", token)):
            assert seen(texts, secret) == [], f"the {name} is in the recording"
        assert "sent plaintext; refused" not in net.daemon.log_text()


def test_control_a_plaintext_session_shows_them_all_in_the_recording(tmp_path):
    """With legacy_clients = yes and a plaintext client, the same session puts the
    marker, the password and the token in the recording: the recorder sees what a bridge
    reads."""
    with recorded(tmp_path, legacy=True) as net:
        marker, token = run_session(net)
        texts = readable(net.proxy)
        assert not any(b"noise:" in text for text in texts)
        for name, secret in (("marker", marker), ("password", net.password), ("token", token)):
            assert secret.encode() in b"".join(texts), f"the {name} is not in the recording"


def test_the_sysadm_cli_leaves_no_marker_password_or_token_in_the_recording(tmp_path):
    """The real ``sysadm --bridge ... --server SHA256:...`` signs in with a token got by
    a password login, runs a job whose command and output hold the marker with --follow,
    then reads its output with ``log``: none of them is in the recording."""
    with recorded(tmp_path, legacy=False) as net:
        marker = f"MARK-{uuid.uuid4().hex}"
        c, server = net.client()
        login = c.call(server, "rpc", "auth", {"username": "alice", "password": net.password})
        token = login["args"][0]
        token_file = tmp_path / "token"
        token_file.write_text(token + "\n")
        key_path = tmp_path / "alice-key"
        key_path.write_bytes(net.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ))
        os.chmod(key_path, 0o600)
        env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
        env.pop("SYSADM_PASSWORD", None)
        via = [SYSADM, "--bridge", net.bridge.url, "--server", net.fingerprint, "--key", str(key_path),
               "--user", "alice", "--token-file", str(token_file)]
        ran = subprocess.run([*via, "run", JOB, f"echo {marker}", "--follow"],
                             capture_output=True, text=True, timeout=60, env=env)
        assert (ran.returncode, ran.stdout) == (0, marker + "\n"), ran
        read = subprocess.run([*via, "log", JOB], capture_output=True, text=True, timeout=60, env=env)
        assert read.returncode == 0 and marker in read.stdout, read
        # It signed in with the token, never with its key.
        assert not re.search(r"alice authenticated from \S+ by key", net.daemon.log_text())
        cached = token_file.read_text().strip()
        tokens = {token, json.loads(cached)["token"] if cached.startswith("{") else cached}
        texts = readable(net.proxy)
        for name, secret in [("marker", marker), ("password", net.password)] + [("token", t) for t in tokens]:
            assert seen(texts, secret) == [], f"the {name} is in the recording"


@pytest.mark.parametrize("secret", ["MARK-0123456789abcdef", "pw-élan-0123456789", "a" * 64])
def test_the_base64_forms_are_found_at_every_alignment(secret):
    """The recorder's search: whatever precedes or follows it, a base64 encoding of data
    holding the secret contains one of its forms."""
    for before in (b"", b"x", b"xy", b'{"password":"'):
        for after in (b"", b"!", b'"}'):
            data = before + secret.encode() + after
            for encode in (base64.b64encode, base64.urlsafe_b64encode):
                assert seen([encode(data)], secret), (before, after)
