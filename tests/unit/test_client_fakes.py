"""Fakes shared by the ``sysadm`` client's unit tests (this module has no tests itself).

:class:`FakePeer` plays the daemon (or a bridge) behind an
:class:`sysadmd.client.calls.RpcSession`: handlers answer requests synchronously, and
events can be pushed. :class:`FakeLink` is a link whose connection can be dropped.
"""

import json

from twisted.internet import defer

from sysadmd.client.calls import RpcSession
from sysadmd.client.errors import ConnectionClosed


class Refuse(Exception):
    """Raised by a handler: the peer answers an error frame with this code."""

    def __init__(self, code, details="refused"):
        super().__init__(code, details)
        self.code = code
        self.details = details


REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict"}


class FakePeer:
    """The far end of an RpcSession. ``handlers[(namespace, name)] = f(args)`` returns the
    reply's args or raises :class:`Refuse`; a request without handler gets no reply."""

    def __init__(self, clock):
        self.sent = []
        self.handlers = {}
        self.session = RpcSession(clock, self.receive)

    def receive(self, text):
        frame = json.loads(text)
        self.sent.append(frame)
        handler = self.handlers.get((frame["namespace"], frame["name"]))
        if handler is None:
            return
        try:
            reply = {"namespace": frame["namespace"], "name": "response", "id": frame["id"],
                     "args": handler(frame["args"])}
        except Refuse as e:
            reply = {"namespace": "error", "name": "error", "id": frame["id"],
                     "args": {"code": e.code, "message": REASONS.get(e.code, ""), "details": e.details}}
        self.session.text_received(json.dumps(reply))

    def push(self, name, args, frame_id="none", **fields):
        """Send an event frame to the session; ``fields`` are more top-level keys
        (``seq``, ``epoch``)."""
        frame = {"namespace": "events", "name": name, "id": frame_id, "args": args}
        frame.update(fields)
        self.session.text_received(json.dumps(frame))

    def reply(self, request, args):
        """Answer ``request`` (a frame in :attr:`sent` that got no reply) now."""
        self.session.text_received(json.dumps(
            {"namespace": request["namespace"], "name": "response", "id": request["id"], "args": args}))

    def requests(self, namespace=None, name=None):
        """The frames sent so far, optionally only those of one call."""
        return [f for f in self.sent
                if (namespace is None or f["namespace"] == namespace) and (name is None or f["name"] == name)]


class FakeLink:
    """A link (``session``, ``closed``, ``close()``, ``url``, ``broken``) to a
    :class:`FakePeer`."""

    url = "ws://fake:12150"
    broken = None

    def __init__(self, peer):
        self.peer = peer
        self.session = peer.session
        self.closed = defer.Deferred()
        self.close_calls = 0

    def drop(self, description="the connection was dropped"):
        """The connection ends from the far side."""
        if not self.closed.called:
            self.session.connection_lost(ConnectionClosed(description))
            self.closed.callback(description)

    def close(self):
        self.close_calls += 1
        self.drop("closed by us")
        return defer.succeed(None)


class Lines:
    """An Output stand-in that records what would be printed."""

    colour = False

    def __init__(self):
        self.out = []
        self.err = []

    def write(self, text):
        self.out.append(text)

    def line(self, text):
        self.out.append(text + "\n")

    def note(self, text):
        self.err.append(text)

    def error(self, text):
        self.err.append("sysadm: " + text)

    @property
    def stdout(self):
        return "".join(self.out)
