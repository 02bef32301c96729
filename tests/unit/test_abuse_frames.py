"""Arbitrary frames against the request handling, in memory (hypothesis).

Whatever a client sends, it gets well-formed replies (never a traceback, never a 500,
nothing logged as a failure) or a close frame with a proper code; and while its connection
is open, a well-formed request after the garbage is answered.
"""

import json
import shutil
import struct
import tempfile

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from twisted.logger import globalLogPublisher

from sysadmd.dispatcher.api import ACCESS, DispatcherCall
from sysadmd.protocol.envelope import REASONS, loads
from tests.unit.dispatcher_fakes import make_dispatcher
from tests.unit.test_protocol import Daemon
from tests.unit.wsfake import parse_frames

TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10
# 1002 protocol error, 1007 invalid UTF-8 in a text frame, 1009 too big.
PROPER_CLOSE_CODES = {1002, 1007, 1008, 1009}
CALLS = [
    ("rpc", "identify"), ("rpc", "query"), ("rpc", "auth"), ("rpc", "auth_token"),
    ("rpc", "auth_ssl"), ("rpc", "auth_clear"), ("rpc", "dispatcher"),
    ("events", "subscribe"), ("events", "unsubscribe"),
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
# Arguments shaped like the real calls' (so handlers get past their first check).
call_args = json_values | st.fixed_dictionaries(
    {},
    optional={
        "username": json_values, "password": json_values, "token": json_values,
        "encrypted_string": json_values, "action": st.sampled_from(["run", "list", "kill", "log", "history"]) | json_values,
        "job_id": json_values, "limit": json_values, "queue": json_values, "timeout": json_values,
        "job": json_values,
    },
) | st.lists(st.sampled_from(["demo", "nope", ""]) | json_values, max_size=3)


@st.composite
def envelopes(draw):
    """Requests, valid or nearly: mostly real calls, fields sometimes missing or mistyped."""

    def often(value, otherwise):
        # `value` four times in five: enough to reach the handlers, not only the checks.
        return value if draw(st.integers(0, 4)) else draw(otherwise)

    namespace, name = often(draw(st.sampled_from(CALLS)), st.tuples(st.text(max_size=8), st.text(max_size=8)))
    message = {
        "namespace": often(namespace, json_values),
        "name": often(name, json_values),
        "id": draw(st.integers() | st.text(max_size=10) | json_values),
        "args": draw(call_args),
    }
    if not draw(st.integers(0, 4)):
        for key in draw(st.sets(st.sampled_from(sorted(message)), min_size=1, max_size=2)):
            del message[key]
    return message


def _json_bytes(value):
    # allow_nan: NaN and Infinity are what a sloppy client sends; they must get a 400.
    return json.dumps(value, allow_nan=True).encode("utf-8")


payloads = (
    st.binary(max_size=300)
    | st.text(max_size=100).map(lambda t: t.encode("utf-8"))
    | json_values.map(_json_bytes)
    | envelopes().map(_json_bytes)
)
# Complete data frames and valid control frames: the stream stays in sync, so a
# well-formed request afterwards must be understood.
frames = st.tuples(st.sampled_from([TEXT, BINARY]), payloads) | st.tuples(
    st.sampled_from([PING, PONG]), st.binary(max_size=125)
)


def masked_frame(opcode, payload, fin=True, rsv=0, mask=True):
    """A client frame with any header bits."""
    length = len(payload)
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if mask else 0
    if length < 126:
        header = struct.pack("!BB", first, mask_bit | length)
    elif length < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not mask:
        return header + payload
    key = b"\x12\x34\x56\x78"
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@pytest.fixture(scope="module")
def dispatcher():
    """One dispatcher (fake processes, real SQLite) shared by every example."""
    path = tempfile.mkdtemp(prefix="sysadmd-abuse-")
    from pathlib import Path

    _, running, _ = make_dispatcher(Path(path))
    yield running
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def failures():
    """Log events that carry a failure (a traceback in the daemon's log)."""
    seen = []

    def observe(event):
        if "log_failure" in event:
            seen.append(event)

    globalLogPublisher.addObserver(observe)
    yield seen
    globalLogPublisher.removeObserver(observe)


def connect(dispatcher, signed_in):
    daemon = Daemon(idle_timeout=0, auth_timeout=0, max_message_bytes=65536, preauth_max_message_bytes=8192)
    daemon.router.register("rpc", "dispatcher", DispatcherCall(dispatcher), ACCESS)
    peer = daemon.signed_in() if signed_in else daemon.peer()
    return daemon, peer


def is_open(peer):
    protocol = peer.protocol
    return protocol.state == protocol.STATE_OPEN and not peer.transport.disconnecting


def check_output(data, protocol):
    """The frames the server wrote: (replies, close code or None). Asserts that each is
    well-formed: a close the server starts carries an error code; one answering the
    client's own (valid) close frame may be anything the client's close allows."""
    replies, close = [], None
    assert b"Traceback" not in data
    for opcode, payload in parse_frames(data):
        if opcode == TEXT:
            message = json.loads(payload)
            assert set(message) == {"namespace", "name", "id", "args"}, message
            if message["name"] == "error":
                assert message["namespace"] == "error"
                code = message["args"]["code"]
                assert code in REASONS and code != 500, message
                assert message["args"]["message"] == REASONS[code]
                assert isinstance(message["args"]["details"], str)
            if message["name"] in ("response", "error"):
                replies.append(message)
        elif opcode == CLOSE:
            close = struct.unpack("!H", payload[:2])[0]
            assert close in PROPER_CLOSE_CODES or not protocol.closedByMe, close
        else:
            assert opcode == PONG, opcode
    return replies, close


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=st.lists(frames, min_size=1, max_size=8), signed_in=st.booleans())
def test_arbitrary_frames_get_replies_or_a_proper_close(dispatcher, failures, sequence, signed_in):
    """Each data frame gets exactly one reply (an id it sent comes back) or the
    connection is closed with a proper code; a ping gets a pong; nothing is logged as a
    failure; and an open connection still answers a well-formed request afterwards."""
    daemon, peer = connect(dispatcher, signed_in)
    for opcode, payload in sequence:
        peer.protocol.dataReceived(masked_frame(opcode, payload))
        daemon.clock.advance(0)
        data = peer.transport.value()
        peer.transport.clear()
        replies, close = check_output(data, peer.protocol)
        if close is not None:
            assert not is_open(peer)
            break
        if opcode in (PING, PONG):
            assert replies == []
            continue
        assert len(replies) == 1, (payload, replies)
        try:
            # The daemon's strict JSON: a NaN or a lone surrogate makes it unreadable.
            sent = loads(payload.decode("utf-8"))
        except (ValueError, RecursionError):
            sent = None
        if isinstance(sent, dict) and isinstance(sent.get("id"), (str, int)) and not isinstance(sent["id"], bool):
            assert replies[0]["id"] == sent["id"]
    assert failures == []
    if is_open(peer):
        peer.request("rpc", "identify", request_id="follow-up")
        replies, close = check_output(peer.transport.value(), peer.protocol)
        assert close is None
        assert [(r["id"], r["name"]) for r in replies] == [("follow-up", "response")]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    raw=st.lists(
        st.tuples(
            st.booleans(), st.integers(0, 7), st.integers(0, 15), st.booleans(), st.binary(max_size=200)
        ).map(lambda f: masked_frame(f[2], f[4], fin=f[0], rsv=f[1], mask=f[3]))
        | st.binary(max_size=64),
        min_size=1,
        max_size=6,
    ),
    signed_in=st.booleans(),
)
# A valid client close frame: the server's answering close (1000) is proper.
@example(raw=[b"\x88\x80\x124Vx"], signed_in=False)
def test_malformed_framing_never_breaks_the_server(dispatcher, failures, raw, signed_in):
    """Any header bits (reserved bits, unknown opcodes, unmasked or fragmented frames,
    oversized control frames) and plain garbage: only well-formed replies, pongs and
    proper close codes come back, and nothing is logged as a failure."""
    daemon, peer = connect(dispatcher, signed_in)
    for chunk in raw:
        peer.protocol.dataReceived(chunk)
        daemon.clock.advance(0)
        _, close = check_output(peer.transport.value(), peer.protocol)
        peer.transport.clear()
        if close is not None:
            assert not is_open(peer)
            break
    assert failures == []
