"""The relayed load client of ``make bench``'s relay section (driven by bench/relay.py; see
bench/README.md).

    python relay_client.py --url ws://127.0.0.1:PORT/ --key KEY.pem --server SHA256:...
        --variant tunnel|plain --n N --user U --password P [--token T] [--deadline SECONDS]

Opens N connections to a bridge. Each answers the bridge's identify as a ``client``, signs
in to it with ``rpc/auth_ssl`` and the Ed25519 key in ``--key``, and waits for the
bridge event offering the server whose key fingerprint is ``--server``. Then, relayed to
that server (``"<server id>\\n<payload>"``), it opens a session:

- ``tunnel``: ``noise:offer``, the offer checked against ``--server``
  (``sysadmd.protocol.tunnel.check_offer``), ``noise:hello`` / ``noise:welcome``, and
  from then on every message sealed, every one received opened: the work a real
  ``sysadm`` client does;
- ``plain``: the messages as they are (what the server takes only with ``[bridge]
  legacy_clients = yes``).

Inside it the first session signs in with ``rpc/auth`` (unless ``--token``), the others
with ``rpc/auth_token`` and its token, and each subscribes to ``bench``. The client then
prints ``{"event": "ready", ...}`` and obeys bench/client/load.js's ``measure`` and
``quit`` commands on stdin, answering with the same JSON (same latency histogram, so
bench/loadclient.py merges several processes' answers).

Latency is ``time.monotonic_ns()`` when an event's plaintext is in hand (opened, for a
tunnel) minus its ``t``. The WebSocket side is a minimal RFC 6455 client written for the
bench (the bridge sends unmasked, unfragmented text frames; pings are answered) so that
framing costs the client little next to the relay. Only 127.0.0.1 is ever contacted, and
the process exits by itself after ``--deadline`` seconds.
"""

import argparse
import base64
import json
import math
import os
import sys
import time
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from twisted.internet import defer, protocol, reactor, stdio, task
from twisted.protocols.basic import LineOnlyReceiver

from sysadmd.protocol import tunnel

SOURCE = "bench"
PREFIX = f'{{"namespace":"events","name":"{SOURCE}","id":"none","args":{{"t":'.encode()
MAX_MESSAGE = 1 << 24
STEP_TIMEOUT = 30.0


def out(obj):
    """One JSON answer line on stdout."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# -- the latency histogram of load.js, in microseconds -------------------------------


class Histogram:
    """bench/client/load.js's ``Histogram``: exact below 1024 us, then 64 sub-buckets per
    power of two; the same bucket indices, so bench/loadclient.py merges them."""

    SIZE = 1024 + 64 * 40

    def __init__(self):
        self.counts = {}
        self.n = 0
        self.max = 0.0
        self.sum = 0.0

    def add(self, us):
        if us < 0:
            us = 0.0
        if us < 1024:
            i = int(us)
        else:
            e = math.floor(math.log2(us))
            i = min(1024 + (e - 10) * 64 + math.floor(us / 2 ** (e - 6) - 64), self.SIZE - 1)
        self.counts[i] = self.counts.get(i, 0) + 1
        self.n += 1
        self.sum += us
        self.max = max(self.max, us)

    @staticmethod
    def value(i):
        if i < 1024:
            return i
        e = (i - 1024) // 64 + 10
        return (64 + (i - 1024) % 64 + 0.5) * 2 ** (e - 6)

    def quantile(self, q):
        if not self.n:
            return None
        target, seen = q * self.n, 0
        for i in sorted(self.counts):
            seen += self.counts[i]
            if seen >= target:
                return self.value(i)
        return self.max

    def buckets(self):
        return sorted(self.counts.items())

    def summary(self):
        def ms(v):
            return None if v is None else round(v) / 1000

        return {
            "count": self.n, "p50_ms": ms(self.quantile(0.5)), "p90_ms": ms(self.quantile(0.9)),
            "p99_ms": ms(self.quantile(0.99)), "p999_ms": ms(self.quantile(0.999)),
            "max_ms": ms(self.max), "mean_ms": ms(self.sum / self.n) if self.n else None,
        }


# -- a minimal WebSocket client --------------------------------------------------------


def masked_frame(payload, opcode=1):
    """A client (masked) frame of ``payload`` bytes."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = os.urandom(4)
    stream = (key * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")).to_bytes(n, "little")
    return head + key + body


class WebSocket(protocol.Protocol):
    """The client end of one WebSocket: ``opened`` fires after the 101 answer;
    ``on_message(bytes)`` gets each complete text or binary message."""

    def __init__(self, url):
        self._url = urlsplit(url)
        self._buffer = bytearray()
        self._open = False
        self._fragments = None
        self.opened = defer.Deferred()
        self.lost = defer.Deferred()

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            (f"GET {self._url.path or '/'} HTTP/1.1\r\nHost: {self._url.netloc}\r\n"
             f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
             "Sec-WebSocket-Version: 13\r\n\r\n").encode()
        )

    def connectionLost(self, reason):
        if not self.opened.called:
            self.opened.errback(reason)
        self.lost.callback(None)

    def send_text(self, text):
        self.transport.write(masked_frame(text.encode("utf-8")))

    def dataReceived(self, data):
        buf = self._buffer
        buf += data
        if not self._open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:buf.find(b"\r\n")])
            del buf[:end + 4]
            if not status.startswith(b"HTTP/1.1 101"):
                self.transport.loseConnection()
                self.opened.errback(RuntimeError(f"WebSocket handshake refused: {status!r}"))
                return
            self._open = True
            self.opened.callback(self)
        pos, end = 0, len(buf)
        while end - pos >= 2:
            b0, n = buf[pos], buf[pos + 1] & 0x7F
            start = pos + 2
            if n == 126:
                if end - pos < 4:
                    break
                n, start = int.from_bytes(buf[pos + 2:pos + 4], "big"), pos + 4
            elif n == 127:
                if end - pos < 10:
                    break
                n, start = int.from_bytes(buf[pos + 2:pos + 10], "big"), pos + 10
            if start + n > end:
                break
            payload = bytes(buf[start:start + n])
            pos = start + n
            opcode = b0 & 0x0F
            if opcode in (1, 2):
                if b0 & 0x80:
                    self.on_message(payload)
                else:
                    self._fragments = [payload]
            elif opcode == 0 and self._fragments is not None:
                self._fragments.append(payload)
                if b0 & 0x80:
                    message, self._fragments = b"".join(self._fragments), None
                    self.on_message(message)
            elif opcode == 9:
                self.transport.write(masked_frame(payload, 10))
            elif opcode == 8:
                self.transport.write(masked_frame(payload[:2], 8))
                self.transport.loseConnection()
                break
        del buf[:pos]

    def on_message(self, data):
        raise NotImplementedError


# -- a relayed subscriber --------------------------------------------------------------


class Subscriber(WebSocket):
    """One bridge connection and the relayed session through it (module docstring)."""

    def __init__(self, client, index):
        super().__init__(client.opts.url)
        self.client = client
        self.index = index
        self.received = 0
        self.dropped = 0
        self.server_id = None
        self._server_prefix = None
        self.tunnel = None
        self._ids = 0
        self._bridge_calls = {}
        self._calls = {}
        self._step = None
        self._offered = defer.Deferred()

    # Receiving

    def on_message(self, data):
        if data[:1] == b"{":
            self._bridge_frame(json.loads(data))
            return
        if self._server_prefix is None or not data.startswith(self._server_prefix):
            return
        body = data[len(self._server_prefix):]
        if self.tunnel is not None:
            try:
                body = self.tunnel.open(body.decode("ascii"))
            except (tunnel.TunnelError, UnicodeDecodeError):
                self.client.errors += 1
                self.transport.abortConnection()
                return
            if body is None:
                return
        elif body.startswith(b"noise:"):
            step, self._step = self._step, None
            if step is not None:
                step.callback(body.decode("utf-8"))
            return
        if body.startswith(PREFIX):
            self._event(body)
        else:
            self._session_frame(json.loads(body))

    def _event(self, body):
        self.received += 1
        c = self.client
        if not c.measuring:
            return
        c.in_window += 1
        c.last_event = time.monotonic()
        if c.latency:
            start = len(PREFIX)
            t = int(body[start:body.index(b",", start)])
            c.hist.add((time.monotonic_ns() - t) / 1000)

    def _bridge_frame(self, frame):
        if frame.get("namespace") == "rpc" and frame.get("name") == "identify":
            self.send_text(json.dumps({"namespace": "rpc", "name": "response", "id": frame.get("id"),
                                       "args": {"type": "client"}}))
        elif frame.get("namespace") == "events" and frame.get("name") == "bridge":
            args = frame.get("args") or {}
            if self.server_id is None:
                for connection_id in args.get("available_connections") or ():
                    entry = (args.get("connections") or {}).get(connection_id) or {}
                    if entry.get("role") == "server" and entry.get("fingerprint") == self.client.opts.server:
                        self.server_id = connection_id
                        self._server_prefix = connection_id.encode("utf-8") + b"\n"
                        self._offered.callback(connection_id)
                        break
        else:
            d = self._bridge_calls.pop(frame.get("id"), None)
            if d is not None:
                d.callback(frame)
            elif frame.get("namespace") == "error":
                self.client.errors += 1

    def _session_frame(self, frame):
        if frame.get("namespace") == "events" and frame.get("name") in ("dropped", "gap", "heads"):
            args = frame.get("args") or {}
            if frame.get("name") == "dropped":
                self.dropped += args.get("count", 0)
            elif frame.get("name") == "gap" and args.get("reason") == "overflow":
                self.dropped += args["missed_to"] - args["missed_from"] + 1
            return
        d = self._calls.pop(frame.get("id"), None)
        if d is not None:
            d.callback(frame)

    # Sending

    def _relay(self, text):
        self.send_text(f"{self.server_id}\n{text}")

    def _send_message(self, text):
        if self.tunnel is None:
            self._relay(text)
        else:
            for sealed in self.tunnel.seal(text.encode("utf-8")):
                self._relay(sealed)

    def _call(self, namespace, name, args, to_bridge=False):
        self._ids += 1
        request_id = f"{self.index}-{self._ids}"
        d = defer.Deferred()
        d.addTimeout(STEP_TIMEOUT, reactor)
        text = json.dumps({"namespace": namespace, "name": name, "id": request_id, "args": args})
        if to_bridge:
            self._bridge_calls[request_id] = d
            self.send_text(text)
        else:
            self._calls[request_id] = d
            self._send_message(text)
        return d

    def _tunnel_step(self, text):
        self._step = d = defer.Deferred()
        d.addTimeout(STEP_TIMEOUT, reactor)
        self._relay(text)
        return d

    @defer.inlineCallbacks
    def start(self):
        """Sign in to the bridge, reach the server, open the session, sign in to it and
        subscribe; fires with the session's token."""
        opts = self.client.opts
        yield self.opened
        stage1 = yield self._call("rpc", "auth_ssl", {}, to_bridge=True)
        if stage1.get("name") != "response":
            raise RuntimeError(f"bridge sign-in refused: {stage1}")
        signature = self.client.key.sign(stage1["args"]["test_string"].encode("utf-8"))
        stage2 = yield self._call("rpc", "auth_ssl", {"encrypted_string": base64.b64encode(signature).decode()},
                                  to_bridge=True)
        if stage2.get("name") != "response":
            raise RuntimeError(f"bridge sign-in refused: {stage2}")
        self._offered.addTimeout(STEP_TIMEOUT, reactor)
        yield self._offered
        if opts.variant == "tunnel":
            offer = yield self._tunnel_step(tunnel.OFFER)
            static, rekey = tunnel.check_offer(offer, opts.server)
            initiator = tunnel.Initiator(static, rekey, MAX_MESSAGE)
            welcome = yield self._tunnel_step(initiator.hello())
            self.tunnel = initiator.welcome(welcome)
        if self.client.token:
            reply = yield self._call("rpc", "auth_token", {"token": self.client.token})
        else:
            reply = yield self._call("rpc", "auth", {"username": opts.user, "password": opts.password})
            if reply.get("name") == "response":
                self.client.token = reply["args"][0]
        if reply.get("name") != "response":
            raise RuntimeError(f"sign-in refused: {reply}")
        reply = yield self._call("events", "subscribe", [SOURCE])
        if reply.get("name") != "response":
            raise RuntimeError(f"subscribe refused: {reply}")
        return self.client.token


class Client:
    """N subscribers of one process, and the commands of bench/client/load.js."""

    def __init__(self, opts):
        self.opts = opts
        with open(opts.key, "rb") as f:
            self.key = serialization.load_pem_private_key(f.read(), password=None)
        self.token = opts.token
        self.subs = []
        self.errors = 0
        self.closed = 0
        self.quitting = False
        self.measuring = False
        self.latency = True
        self.in_window = 0
        self.last_event = 0.0
        self.hist = Histogram()

    @defer.inlineCallbacks
    def connect(self):
        started = time.monotonic()
        url = urlsplit(self.opts.url)
        if url.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise RuntimeError(f"refusing {self.opts.url}: the bench client talks to loopback only")

        def one(index):
            sub = Subscriber(self, index)
            reactor.connectTCP(url.hostname, url.port, _Once(sub), timeout=30)
            sub.lost.addCallback(lambda _: self._lost(sub))
            self.subs.append(sub)
            return sub.start()

        todo = list(range(self.opts.n))
        if not self.token:
            yield one(todo.pop(0))
        yield defer.gatherResults([one(i) for i in todo], consumeErrors=True)
        return time.monotonic() - started

    def _lost(self, sub):
        if not self.quitting:
            self.closed += 1

    @defer.inlineCallbacks
    def measure(self, cmd):
        subs = self.subs
        if cmd.get("warmup"):
            yield task.deferLater(reactor, cmd["warmup"], lambda: None)
        before = [s.received for s in subs]
        dropped_before = sum(s.dropped for s in subs)
        self.hist = Histogram()
        self.in_window = 0
        self.last_event = time.monotonic()
        self.latency = cmd.get("latency", True) is not False
        cpu0, t0 = time.process_time(), time.monotonic()
        self.measuring = True
        if cmd.get("duration"):
            yield task.deferLater(reactor, cmd["duration"], lambda: None)
        else:
            # Until quiet: the run is over once no event came for `quiet` seconds.
            deadline = t0 + cmd.get("timeout", 300)
            while time.monotonic() < deadline:
                yield task.deferLater(reactor, 0.05, lambda: None)
                idle = time.monotonic() - self.last_event
                if self.in_window and idle > cmd["quiet"]:
                    break
                if not self.in_window and time.monotonic() - t0 > cmd.get("start_timeout", 10):
                    break
        self.measuring = False
        now = time.monotonic()
        elapsed = now - t0
        cpu = time.process_time() - cpu0
        per = [s.received - b for s, b in zip(subs, before)]
        delivered = sum(per)
        active = elapsed if cmd.get("duration") else max(1e-9, elapsed - (now - self.last_event))
        return {
            "event": "measured", "subscribers": len(subs), "elapsed_s": elapsed, "active_s": active,
            "delivered": delivered, "rate": delivered / active,
            "per_subscriber_min": min(per), "per_subscriber_max": max(per),
            "starved": sum(1 for count in per if count == 0),
            "dropped": sum(s.dropped for s in subs) - dropped_before,
            "latency": self.hist.summary(), "buckets": self.hist.buckets(),
            "client_cpu": cpu / elapsed, "errors": self.errors, "closed": self.closed,
        }

    def handle(self, cmd):
        if cmd.get("cmd") == "measure":
            return self.measure(cmd)
        if cmd.get("cmd") == "quit":
            self.quitting = True
            for s in self.subs:
                if s.transport is not None:
                    s.transport.abortConnection()
            return defer.succeed({"event": "bye"})
        return defer.succeed({"event": "error", "error": f"unknown command {cmd.get('cmd')}"})


class _Once(protocol.ClientFactory):
    """A factory for one already built protocol."""

    def __init__(self, sub):
        self._sub = sub

    def buildProtocol(self, addr):
        return self._sub

    def clientConnectionFailed(self, connector, reason):
        self._sub.opened.errback(reason)


class Commands(LineOnlyReceiver):
    """JSON commands on stdin, one a line, handled in order; answers on stdout."""

    delimiter = b"\n"

    def __init__(self, client):
        self.client = client
        self._queue = defer.succeed(None)

    def lineReceived(self, line):
        if not line.strip():
            return
        cmd = json.loads(line)

        def run(_):
            return self.client.handle(cmd)

        def answer(result):
            out(result)
            if cmd.get("cmd") == "quit":
                reactor.callLater(0, reactor.stop)

        def failed(failure):
            out({"event": "error", "error": failure.getTraceback()})

        self._queue.addCallback(run).addCallbacks(answer, failed)

    def connectionLost(self, reason):
        self._queue.addBoth(lambda _: reactor.callLater(0, _stop))


def _stop():
    if reactor.running:
        reactor.stop()


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True, help="PEM Ed25519 private key registered at the bridge")
    parser.add_argument("--server", required=True, help="the server's bridge key fingerprint, SHA256:...")
    parser.add_argument("--variant", choices=("tunnel", "plain"), required=True)
    parser.add_argument("--n", type=int, default=1)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--token")
    parser.add_argument("--deadline", type=float, default=600)
    return parser.parse_args(argv)


def main(argv):
    opts = parse(argv)
    client = Client(opts)
    exit_code = []

    def ready(setup_s):
        out({"event": "ready", "connections": len(client.subs), "setup_s": setup_s, "token": client.token})
        stdio.StandardIO(Commands(client))

    def failed(failure):
        if isinstance(failure.value, defer.FirstError):
            failure = failure.value.subFailure
        out({"event": "error", "error": f"{opts.variant} client setup: {failure.getErrorMessage()}"})
        exit_code.append(1)
        _stop()

    reactor.callWhenRunning(lambda: client.connect().addCallbacks(ready, failed))
    reactor.callLater(opts.deadline, _stop)
    reactor.run()
    return exit_code[0] if exit_code else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
