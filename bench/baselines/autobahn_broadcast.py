"""Baseline B: the plain Autobahn way to broadcast.

Every event is encoded to JSON and sent with ``sendMessage`` once per subscriber (no
shared frame, no bounded buffers). Options as close to sysadmd's as matter here: no
compression, no auto-ping, the same message size limit.

    python bench/baselines/autobahn_broadcast.py --control FILE [--port 0]
"""

import json

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor

import common


class BroadcastProtocol(WebSocketServerProtocol):
    def onMessage(self, payload, isBinary):
        frame, subscribe = common.reply(json.loads(payload))
        if subscribe:
            self.factory.subscribers.add(self)
        self.sendMessage(common.encode(frame))

    def onClose(self, wasClean, code, reason):
        self.factory.subscribers.discard(self)


class BroadcastFactory(WebSocketServerFactory):
    protocol = BroadcastProtocol

    def __init__(self):
        super().__init__()
        self.subscribers = set()
        self.setProtocolOptions(
            maxMessagePayloadSize=65536,
            maxFramePayloadSize=65536,
            autoPingInterval=0,
            webStatus=False,
            failByDrop=False,
        )

    def publish(self, args):
        frame = common.event(args)
        for protocol in list(self.subscribers):
            protocol.sendMessage(common.encode(frame))


def main():
    options = common.arguments(__doc__)
    factory = BroadcastFactory()
    factory.noisy = False
    common.run(reactor, factory, factory.publish, options)


if __name__ == "__main__":
    main()
