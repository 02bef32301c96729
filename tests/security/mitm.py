"""A malicious bridge, for the tests of the encrypted tunnel (issue 18): a WebSocket
man-in-the-middle between daemons and the real bridge.

A daemon's ``[bridge] connections`` points at :attr:`BridgeMitm.url`. For every daemon
connection the MITM accepts, it opens its own connection to the real bridge (a
:class:`Link`) and relays every message both ways, unchanged, in order. Everything it
relays is recorded (:attr:`BridgeMitm.record`), and so is everything it receives
(:attr:`BridgeMitm.seen`), tampered with or not.

The tests arm *tamperings* (:meth:`BridgeMitm.arm`): objects that see each relayed frame
``"<client id>\\n<payload>"`` (``peer`` is the client's id whichever the direction) and
say what to send instead. Those given here act on the frames a tunnel carries once it is
open (``payload`` is a Noise transport message, base64): flip a byte (:class:`Flip`),
send an earlier frame again (:class:`Replay`), drop one (:class:`Drop`), deliver two
clients' frames each as from the other (:class:`Swap`); and, to pose as a server, hand a
client's session to another daemon's link (:class:`Redirect`) or answer the handshake
itself (:class:`Answer`).

The relaying runs on an asyncio loop in a thread of its own, with the ``websockets``
library; the tests drive it from their thread (arming takes a lock).
"""

import asyncio
import base64
import json
import threading
from dataclasses import dataclass

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

TO_DAEMON = "to daemon"  # from the bridge: "<sender id>\n<payload>"
TO_BRIDGE = "to bridge"  # from the daemon: "<destination id>\n<payload>"
# No keepalive pings of the MITM's own: it adds nothing to the traffic it relays.
OPTIONS = {"max_size": None, "ping_interval": None, "compression": None}


@dataclass(frozen=True)
class Frame:
    """One relayed frame seen by the MITM on ``link``, going ``direction``."""

    link: "Link"
    direction: str
    peer: str
    payload: str

    @property
    def text(self):
        """The frame as it is on the wire."""
        return f"{self.peer}\n{self.payload}"

    @property
    def sealed(self):
        """True for a Noise transport message (anything of a tunnel but its
        plaintext ``noise:`` steps)."""
        return not self.payload.startswith("noise:")

    def but(self, **changes):
        """This frame with ``changes`` (``peer``, ``payload``, ``link``)."""
        values = {"link": self.link, "direction": self.direction, "peer": self.peer, "payload": self.payload}
        values.update(changes)
        return Frame(**values)


class Link:
    """One daemon's connection through the MITM: ``daemon`` (the connection it opened to
    us) and ``bridge`` (ours to the real bridge). ``connection_id`` is the daemon's id at
    the bridge, read from the bridge's events to it."""

    def __init__(self, daemon, bridge):
        self.daemon = daemon
        self.bridge = bridge
        self.connection_id = None

    def socket(self, direction):
        """The connection a frame going ``direction`` is sent on."""
        return self.daemon if direction == TO_DAEMON else self.bridge


class BridgeMitm:
    """The man in the middle in front of the bridge at ``upstream`` (a ``ws://`` URL).
    Use :meth:`start` and :meth:`stop`, or ``with``."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.url = None
        self.links = []
        # (direction, link's connection id, text) of every message relayed, in order:
        # what the malicious bridge saw (and, for TO_DAEMON, what the daemons got).
        self.record = []
        # The same for every message received, before any tampering.
        self.seen = []
        self._tamperings = []
        self._lock = threading.Lock()
        self._loop = None
        self._stopped = None
        self._thread = None

    # Life cycle

    def start(self, timeout=10):
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or self.url is None:
            raise AssertionError("the MITM did not start")
        return self

    def stop(self, timeout=10):
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _run(self, ready):
        asyncio.run(self._serve(ready))

    async def _serve(self, ready):
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        async with serve(self._accept, "127.0.0.1", 0, **OPTIONS) as server:
            host, port = server.sockets[0].getsockname()[:2]
            self.url = f"ws://{host}:{port}"
            ready.set()
            await self._stopped.wait()

    # What the tests use

    def arm(self, tampering):
        """Apply ``tampering`` to the frames relayed from now on; returns it."""
        with self._lock:
            self._tamperings.append(tampering)
        return tampering

    def disarm(self):
        """Relay faithfully again."""
        with self._lock:
            self._tamperings.clear()

    def link(self, connection_id):
        """The link of the daemon the bridge knows as ``connection_id``."""
        for link in list(self.links):
            if link.connection_id == connection_id:
                return link
        raise AssertionError(f"no daemon behind the MITM is {connection_id}")

    def frames(self, direction, peer, connection_id=None, received=False):
        """The payloads relayed ``direction`` to or from client ``peer`` (on the link of
        ``connection_id`` only, when given), in order; with ``received``, those the MITM
        received instead of those it sent."""
        return [text.partition("\n")[2] for d, link_id, text in list(self.seen if received else self.record)
                if d == direction and isinstance(text, str) and text.partition("\n")[0] == peer
                and (connection_id is None or link_id == connection_id)]

    def envelopes(self, connection_id):
        """The envelopes the bridge sent the daemon of ``connection_id``, decoded."""
        found = []
        for direction, link_id, text in list(self.record):
            if direction == TO_DAEMON and link_id == connection_id and isinstance(text, str) \
                    and text.lstrip().startswith("{"):
                found.append(json.loads(text))
        return found

    def everything(self):
        """All the text the MITM received or sent, one message a line."""
        return "\n".join(text for _, _, text in list(self.seen) + list(self.record) if isinstance(text, str))

    # Relaying

    async def _accept(self, daemon):
        async with connect(self.upstream, **OPTIONS) as bridge:
            link = Link(daemon, bridge)
            self.links.append(link)
            try:
                await asyncio.gather(self._pump(link, daemon, TO_BRIDGE), self._pump(link, bridge, TO_DAEMON))
            finally:
                self.links.remove(link)

    async def _pump(self, link, source, direction):
        try:
            async for message in source:
                await self._relay(link, direction, message)
        except ConnectionClosed:
            pass
        # One side is gone: so is the other (the daemon reconnects, as to a bridge).
        await link.daemon.close()
        await link.bridge.close()

    async def _relay(self, link, direction, message):
        self.seen.append((direction, link.connection_id, message))
        if isinstance(message, bytes) or message.lstrip().startswith("{") or "\n" not in message:
            if direction == TO_DAEMON and isinstance(message, str):
                self._learn_id(link, message)
            await self._send(link, direction, message)
            return
        peer, _, payload = message.partition("\n")
        frame = Frame(link, direction, peer, payload)
        with self._lock:
            tamperings = list(self._tamperings)
        for tampering in tamperings:
            out = tampering.handle(frame)
            if out is not None:
                break
        else:
            out = [frame]
        for sent in out:
            await self._send(sent.link, sent.direction, sent.text)

    async def _send(self, link, direction, text):
        self.record.append((direction, link.connection_id, text))
        try:
            await link.socket(direction).send(text)
        except ConnectionClosed:
            pass

    @staticmethod
    def _learn_id(link, text):
        try:
            envelope = json.loads(text)
        except ValueError:
            return
        if isinstance(envelope, dict) and envelope.get("namespace") == "events" and envelope.get("name") == "bridge":
            link.connection_id = envelope.get("args", {}).get("connection_id")


# Tamperings: ``handle(frame)`` returns the frames to send instead (possibly none), or
# None to leave the frame to the next tampering (or relay it as it is).


class _OneShot:
    """Acts once, on the next sealed frame of ``peer`` going ``direction``."""

    def __init__(self, peer, direction=TO_DAEMON):
        self.peer = peer
        self.direction = direction
        self.done = threading.Event()

    def handle(self, frame):
        if self.done.is_set() or frame.peer != self.peer or frame.direction != self.direction or not frame.sealed:
            return None
        self.done.set()
        return self.act(frame)


class Flip(_OneShot):
    """Flip one bit of a byte in the middle of the next sealed frame."""

    def act(self, frame):
        data = bytearray(base64.b64decode(frame.payload))
        data[len(data) // 2] ^= 0x01
        return [frame.but(payload=base64.b64encode(bytes(data)).decode("ascii"))]


class Drop(_OneShot):
    """Relay nothing of the next sealed frame."""

    def act(self, frame):
        return []


class Replay(_OneShot):
    """Send ``earlier`` (a payload already relayed) again just before the next sealed frame."""

    def __init__(self, peer, earlier, direction=TO_DAEMON):
        super().__init__(peer, direction)
        self.earlier = earlier

    def act(self, frame):
        return [frame.but(payload=self.earlier), frame]


class Swap:
    """The next sealed frames of clients ``a`` and ``b`` going ``direction``: the first is
    held until the other comes, then each is delivered as the other's."""

    def __init__(self, a, b, direction=TO_DAEMON):
        self.peers = {a: b, b: a}
        self.direction = direction
        self.held = None
        self.done = threading.Event()

    def handle(self, frame):
        if self.done.is_set() or frame.peer not in self.peers or frame.direction != self.direction or not frame.sealed:
            return None
        if self.held is None:
            self.held = frame
            return []
        if frame.peer == self.held.peer:
            return None
        self.done.set()
        return [frame.but(peer=self.peers[frame.peer]), self.held.but(peer=self.peers[self.held.peer])]


class Redirect:
    """The bridge poses ``rogue`` (a link) as the server of ``victim`` (a link) to client
    ``peer``: what the client sends to the victim goes to the rogue instead (except the
    payloads ``keep`` says to let through), and what the rogue sends the client goes out
    on the victim's connection, so the bridge delivers it as the victim's."""

    def __init__(self, peer, victim, rogue, keep=lambda payload: False):
        self.peer = peer
        self.victim = victim
        self.rogue = rogue
        self.keep = keep

    def handle(self, frame):
        if frame.peer != self.peer:
            return None
        if frame.direction == TO_DAEMON and frame.link is self.victim and not self.keep(frame.payload):
            return [frame.but(link=self.rogue)]
        if frame.direction == TO_BRIDGE and frame.link is self.rogue:
            return [frame.but(link=self.victim)]
        return None


class Answer:
    """The bridge answers client ``peer`` itself: a frame it sends on ``link`` whose
    payload ``answer(payload)`` has an answer for (text) is not relayed, and the answer
    goes back to the client as from the daemon."""

    def __init__(self, peer, link, answer):
        self.peer = peer
        self.link = link
        self.answer = answer

    def handle(self, frame):
        if frame.peer != self.peer or frame.direction != TO_DAEMON or frame.link is not self.link:
            return None
        reply = self.answer(frame.payload)
        if reply is None:
            return None
        return [frame.but(direction=TO_BRIDGE, payload=reply)]
