"""Baseline C, the ceiling: a bare Twisted server writing pre-framed bytes.

The WebSocket handshake is done minimally (RFC 6455 section 4.2.2, nothing negotiated);
client frames are unmasked and answered with the fixed replies of ``common``. Each event
is encoded and framed once, then ``transport.write`` is called once per subscriber.

    python bench/baselines/raw_broadcast.py --control FILE [--port 0]
"""

import base64
import hashlib
import json
import struct

from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol

import common

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(payload, opcode=0x1):
    """A single unmasked server frame."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return header + payload


def unmask(data, mask):
    n = len(data)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


class RawProtocol(Protocol):
    def connectionMade(self):
        self._buffer = b""
        self._open = False

    def dataReceived(self, data):
        self._buffer += data
        if not self._open:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self._buffer = self._buffer[:end], self._buffer[end + 4:]
            key = None
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"sec-websocket-key":
                    key = value.strip()
            if key is None:
                self.transport.loseConnection()
                return
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            self._open = True
        while len(self._buffer) >= 6:
            b0, b1 = self._buffer[0], self._buffer[1]
            n, offset = b1 & 0x7F, 2
            if n == 126:
                n, offset = struct.unpack_from("!H", self._buffer, 2)[0], 4
            elif n == 127:
                n, offset = struct.unpack_from("!Q", self._buffer, 2)[0], 10
            if len(self._buffer) < offset + 4 + n:
                return
            mask = self._buffer[offset:offset + 4]
            payload = unmask(self._buffer[offset + 4:offset + 4 + n], mask)
            self._buffer = self._buffer[offset + 4 + n:]
            self._frame(b0 & 0x0F, payload)

    def _frame(self, opcode, payload):
        if opcode in (0x1, 0x2):
            reply, subscribe = common.reply(json.loads(payload))
            if subscribe:
                self.factory.subscribers.add(self)
            self.transport.write(frame(common.encode(reply)))
        elif opcode == 0x8:
            self.factory.subscribers.discard(self)
            self.transport.write(frame(payload[:2], 0x8))
            self.transport.loseConnection()
        elif opcode == 0x9:
            self.transport.write(frame(payload, 0xA))

    def connectionLost(self, reason):
        self.factory.subscribers.discard(self)


class RawFactory(Factory):
    protocol = RawProtocol
    noisy = False

    def __init__(self):
        self.subscribers = set()

    def publish(self, args):
        data = frame(common.encode(common.event(args)))
        for protocol in list(self.subscribers):
            protocol.transport.write(data)


def main():
    options = common.arguments(__doc__)
    factory = RawFactory()
    common.run(reactor, factory, factory.publish, options)


if __name__ == "__main__":
    main()
