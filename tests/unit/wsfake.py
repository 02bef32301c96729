"""Drive a server protocol in memory: handshake and frames over a StringTransport."""

import base64
import json
import os
import struct

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport


def client_frame(payload, opcode=1):
    """A masked client frame."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


def parse_frames(data):
    """Split unmasked server frames: a list of (opcode, payload bytes)."""
    frames = []
    while data:
        opcode = data[0] & 0x0F
        length = data[1] & 0x7F
        offset = 2
        if length == 126:
            length = struct.unpack("!H", data[2:4])[0]
            offset = 4
        elif length == 127:
            length = struct.unpack("!Q", data[2:10])[0]
            offset = 10
        frames.append((opcode, data[offset:offset + length]))
        data = data[offset + length:]
    return frames


class Transport(StringTransport):
    """A StringTransport that, like TCP transports, tolerates unregistering when no
    producer is registered (Autobahn does that when it drops a connection)."""

    def unregisterProducer(self):
        if self.producer is not None:
            super().unregisterProducer()


class Peer:
    """A client connected to ``factory`` through a StringTransport."""

    def __init__(self, factory, host="10.0.0.1", origin=None, handshake=True):
        address = IPv4Address("TCP", host, 40000)
        self.transport = Transport(peerAddress=address)
        self.protocol = factory.buildProtocol(address)
        self.protocol.makeConnection(self.transport)
        self.status = None
        if handshake:
            self.handshake(origin)

    def handshake(self, origin=None, extra_headers=()):
        """Send the opening handshake; returns the HTTP status code (the response's
        head, lower-cased, is kept in ``response_head``)."""
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            "GET / HTTP/1.1",
            "Host: 127.0.0.1:12150",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if origin:
            lines.append(f"Origin: {origin}")
        lines.extend(extra_headers)
        self.protocol.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = self.transport.value()
        self.transport.clear()
        self.response_head = response.split(b"\r\n\r\n", 1)[0].decode().lower()
        self.status = int(response.split(b" ", 2)[1])
        return self.status

    def send(self, message, opcode=1):
        """Send a dict (as JSON), str or bytes."""
        if isinstance(message, dict):
            message = json.dumps(message)
        self.protocol.dataReceived(client_frame(message, opcode))

    def request(self, namespace, name, args=None, request_id=1):
        """Send a request."""
        self.send({"namespace": namespace, "name": name, "id": request_id,
                   "args": {} if args is None else args})

    def frames(self):
        """Frames written since the last call: (opcode, payload)."""
        data = self.transport.value()
        self.transport.clear()
        return parse_frames(data)

    def messages(self):
        """Text frames written since the last call, decoded from JSON."""
        return [json.loads(p) for op, p in self.frames() if op == 1]

    def close_code(self):
        """The code of a close frame written since the last call, or None."""
        for opcode, payload in self.frames():
            if opcode == 8:
                return struct.unpack("!H", payload[:2])[0]
        return None
