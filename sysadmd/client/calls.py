"""Requests and replies over one envelope channel, matched by id, and the events between.

A :class:`RpcSession` knows nothing of WebSockets: it sends text through a callable and is
given the text frames that arrive. A direct connection has one; a connection through a
bridge has two (one to the bridge itself, one relayed to the server).

Incoming frames are sorted like this:

- ``"name": "response"`` or ``"namespace": "error"`` with the id of a request in flight:
  that request's reply (an error frame fails it with :class:`ErrorReply`);
- an error frame with ``"id": null``: ``on_unsolicited_error(args)`` (the daemon says so
  when a token expires);
- ``"namespace": "events"``: ``on_event(frame)``;
- anything else is a request from the peer (a bridge asks ``rpc/identify``):
  ``on_request(frame)``.
"""

import functools
import itertools
import json

from twisted.internet import defer
from twisted.logger import Logger

from sysadmd.client.errors import CallTimeout, ConnectionClosed, ErrorReply

DEFAULT_TIMEOUT = 30.0


def _ignore(*args):
    pass


class RpcSession:
    """Calls with replies matched by id, over ``send_text(str)``; ``clock`` times calls out."""

    _log = Logger()

    def __init__(self, clock, send_text, timeout=DEFAULT_TIMEOUT, id_prefix="sysadm-"):
        self._clock = clock
        self._send_text = send_text
        self._timeout = timeout
        self._ids = (f"{id_prefix}{n}" for n in itertools.count(1))
        self._pending = {}
        self._lost = None
        self.on_event = _ignore
        self.on_request = _ignore
        self.on_unsolicited_error = _ignore
        # Set on a session inside a bridge's tunnel (sysadmd.client.binding.ChallengeBinding):
        # what rpc/auth_ssl signs besides the bare test string.
        self.challenge_binding = None

    @property
    def in_flight(self):
        """How many requests await their reply."""
        return len(self._pending)

    def send_frame(self, frame):
        """Send one frame (a dict) as JSON text."""
        self._send_text(json.dumps(frame, separators=(",", ":")))

    def call(self, namespace, name, args=None, timeout=None):
        """Send a request; a Deferred firing with the reply's ``args``, or failing with
        :class:`ErrorReply`, :class:`CallTimeout` or :class:`ConnectionClosed`."""
        if self._lost is not None:
            return defer.fail(self._lost)
        request_id = next(self._ids)
        label = f"{namespace}/{name}"
        d = defer.Deferred()
        timeout = self._timeout if timeout is None else timeout
        if timeout:
            # Whatever fires d first (reply, error, lost connection) cancels the timer.
            d.addTimeout(timeout, self._clock, functools.partial(self._timed_out, request_id, label))
        self._pending[request_id] = (label, d)
        self.send_frame(
            {"namespace": namespace, "name": name, "id": request_id, "args": {} if args is None else args}
        )
        return d

    def _timed_out(self, request_id, label, cancelled, timeout):
        self._pending.pop(request_id, None)
        raise CallTimeout(f"{label}: no reply within {timeout:g} s")

    def text_received(self, text):
        """Handle one incoming text frame."""
        try:
            frame = json.loads(text)
        except ValueError:
            self._log.warn("ignoring a frame that is not JSON: {text!r}", text=text[:200])
            return
        if not isinstance(frame, dict):
            self._log.warn("ignoring a frame that is not an object: {text!r}", text=text[:200])
            return
        self.frame_received(frame)

    def frame_received(self, frame):
        """Handle one decoded incoming frame (see the module docstring)."""
        namespace, name = frame.get("namespace"), frame.get("name")
        is_error = namespace == "error"
        if name == "response" or is_error:
            entry = self._pending.pop(frame.get("id"), None) if _hashable(frame.get("id")) else None
            if entry is not None:
                label, d = entry
                if is_error:
                    d.errback(_error_reply(label, frame.get("args")))
                else:
                    d.callback(frame.get("args"))
                return
            if is_error and frame.get("id") is None:
                self.on_unsolicited_error(frame.get("args"))
                return
            self._log.debug("ignoring a reply to no request of ours: {frame!r}", frame=frame)
            return
        if namespace == "events":
            self.on_event(frame)
            return
        self.on_request(frame)

    def connection_lost(self, error):
        """The channel is gone: every request in flight, and every later one, fails with
        ``error`` (a :class:`ConnectionClosed`)."""
        if self._lost is None:
            self._lost = error if isinstance(error, Exception) else ConnectionClosed(str(error))
        pending, self._pending = self._pending, {}
        for label, d in pending.values():
            d.errback(self._lost)


def _hashable(value):
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _error_reply(label, args):
    args = args if isinstance(args, dict) else {}
    code = args.get("code")
    return ErrorReply(label, code if isinstance(code, int) else 0, args.get("message") or "",
                      args.get("details") or "")
