"""Eager writes on real loopback TCP: sent at once when nothing is buffered, the rest of a
turn corked and sent together next turn, through the transport when it holds bytes; in
order, with the transport's buffer and producer pause intact."""

import hashlib
import os
import select
import socket
import time
from collections import namedtuple

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, ssl, task, tcp
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol

from sysadmd.server.eager import EagerWriter, WriteTurns, eager_writer, no_delay
from sysadmd.server.tls import ensure_certificate

TIMEOUT = 5  # seconds the peer's socket, or a wait for bytes, may take

Pair = namedtuple("Pair", "protocol transport peer")


class _Server(Protocol):
    """Tells its factory it is connected; ``lost`` fires when the connection ends."""

    def connectionMade(self):
        self.lost = defer.Deferred()
        self.factory.made.callback(self)

    def connectionLost(self, reason):
        self.lost.callback(None)


class _Producer:
    """A streaming producer recording what the transport asks of it."""

    def __init__(self):
        self.events = []

    def pauseProducing(self):
        self.events.append("pause")

    def resumeProducing(self):
        self.events.append("resume")

    def stopProducing(self):
        self.events.append("stop")


@pytest.fixture
def cleanups():
    """Closers run, in reverse, when the test ends (waiting for any Deferred they return)."""
    pending = []
    yield pending
    for cleanup in reversed(pending):
        result = cleanup()
        if isinstance(result, defer.Deferred):
            pytest_twisted.blockon(result)


def _connect(cleanups, wrap=None, rcvbuf=None):
    """A port on 127.0.0.1 and a plain blocking socket connected to it (in a fixture:
    test bodies run in the reactor's greenlet, where blockon cannot wait)."""
    factory = Factory.forProtocol(_Server)
    factory.made = defer.Deferred()
    port = reactor.listenTCP(0, wrap(factory) if wrap else factory, interface="127.0.0.1")
    cleanups.append(port.stopListening)
    peer = socket.socket()
    cleanups.append(peer.close)
    if rcvbuf:  # before connecting, so that the window offered is small from the start
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    peer.settimeout(TIMEOUT)
    peer.connect(("127.0.0.1", port.getHost().port))
    server = pytest_twisted.blockon(factory.made)
    cleanups.append(lambda: _abort(server))
    return Pair(server, server.transport, peer)


def _abort(server):
    """Drop the server's connection unless it has ended; fires when it has."""
    if not server.lost.called:
        server.transport.abortConnection()
    return server.lost


@pytest.fixture
def pair(cleanups):
    """A connected pair: the server side's ``tcp.Server`` transport and the peer socket."""
    return _connect(cleanups)


@pytest.fixture
def small_pair(cleanups):
    """A connected pair whose peer offers a small receive window."""
    return _connect(cleanups, rcvbuf=4096)


@pytest.fixture
def tls_pair(cleanups, tmp_path):
    """A connected pair whose server side is TLS (self-signed), before any handshake: the
    wrapped protocol has its TLSMemoryBIOProtocol transport from connectionMade."""
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    ensure_certificate(cert, key, True, "localhost")
    with open(cert) as c, open(key) as k:
        options = ssl.PrivateCertificate.loadPEM(c.read() + k.read()).options()
    return _connect(cleanups, wrap=lambda factory: TLSMemoryBIOFactory(options, False, factory))


def _writer(transport):
    """``eager_writer`` with turns of its own, counted by the real reactor."""
    return eager_writer(transport, WriteTurns(reactor))


def _spy(writer):
    """Record every ``data`` the writer hands to ``socket.send`` (and still send it)."""
    calls, send = [], writer._send

    def spying(data):
        calls.append(len(data))
        return send(data)

    writer._send = spying
    return calls


def _buffered(transport):
    """Bytes waiting in the transport's own buffer."""
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


def _read_now(peer, size):
    """Read ``size`` bytes with the reactor stopped: only what the kernel already holds."""
    data = b""
    while len(data) < size:
        chunk = peer.recv(size - len(data))  # blocking, TIMEOUT
        assert chunk, f"the connection ended after {data!r}"
        data += chunk
    return data


def _readable(peer):
    return select.select([peer], [], [], 0)[0] == [peer]


@defer.inlineCallbacks
def _receive(peer, size):
    """Let the reactor run until the peer has read ``size`` bytes; fire with them."""
    chunks, got, deadline = [], 0, time.monotonic() + TIMEOUT
    while got < size:
        if not _readable(peer):
            assert time.monotonic() < deadline, f"the peer got {got} of {size} bytes"
            yield task.deferLater(reactor, 0.001, lambda: None)
            continue
        chunk = peer.recv(min(size - got, 1 << 20))
        assert chunk, f"the connection ended after {got} of {size} bytes"
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def test_plain_tcp_server_gets_an_eager_writer(pair):
    """A tcp.Server transport gets an EagerWriter; a StringTransport its own write."""
    assert type(pair.transport) is tcp.Server
    assert isinstance(_writer(pair.transport), EagerWriter)
    fake = StringTransport()
    assert _writer(fake) == fake.write


@pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")
def test_tls_connection_gets_its_own_write(tls_pair):
    """Over TLS (TLSMemoryBIOProtocol on a tcp.Server) the writer is the TLS layer's write."""
    tls = tls_pair
    assert isinstance(tls.transport, TLSMemoryBIOProtocol)
    assert type(tls.transport.transport) is tcp.Server
    assert _writer(tls.transport) == tls.transport.write


def test_empty_buffer_sends_at_once(pair):
    """With nothing buffered the bytes reach the peer before any reactor turn."""
    writer = _writer(pair.transport)
    writer(b"hello")
    assert pair.transport.dataBuffer == b"" and pair.transport._tempDataLen == 0
    assert pair.transport not in reactor.getWriters()
    assert _read_now(pair.peer, 5) == b"hello"


@pytest_twisted.inlineCallbacks
def test_buffered_bytes_go_first(pair):
    """With bytes already buffered the call goes behind them, through the transport."""
    writer = _writer(pair.transport)
    calls = _spy(writer)
    pair.transport.write(b"first")
    writer(b"second")
    assert calls == []
    assert not _readable(pair.peer)
    assert pair.transport._tempDataLen == len(b"firstsecond")
    received = yield _receive(pair.peer, len(b"firstsecond"))
    assert received == b"firstsecond"


@pytest_twisted.inlineCallbacks
def test_later_frames_of_a_turn_are_corked_and_sent_together_next_turn(pair):
    """After a send, the turn's next frames wait, then leave in order in one send."""
    writer = _writer(pair.transport)
    calls = _spy(writer)
    for frame in (b"one", b"two", b"three"):
        writer(frame)
    assert calls == [len(b"one")]
    assert _buffered(pair.transport) == 0
    assert _read_now(pair.peer, 3) == b"one" and not _readable(pair.peer)
    received = yield _receive(pair.peer, len(b"twothree"))
    assert received == b"twothree"
    assert calls == [len(b"one"), len(b"twothree")]


def test_corked_frames_leave_at_once_on_flush_or_past_buffer_size(pair):
    """flush() sends the corked frames now; so does corking more than bufferSize."""
    writer = _writer(pair.transport)
    calls = _spy(writer)
    writer(b"a")
    writer(b"b")
    writer(b"c")
    writer.flush()
    assert calls == [1, 2]
    assert _read_now(pair.peer, 3) == b"abc"
    big = b"x" * pair.transport.bufferSize
    writer(b"d")
    assert calls == [1, 2]
    writer(big)
    assert calls == [1, 2, 1 + len(big)]


def test_a_frame_past_buffer_size_is_never_corked(pair):
    """Corked bytes stay within bufferSize, as eager.py says: a bigger frame leaves at once."""
    writer = _writer(pair.transport)
    calls = _spy(writer)
    writer(b"a")
    big = b"x" * (pair.transport.bufferSize + 1)
    writer(big)
    assert calls == [1, len(big)]


@pytest_twisted.inlineCallbacks
def test_partial_send_leaves_the_rest_to_the_transport_and_its_producer_pause(small_pair):
    """What the kernel does not take is buffered, pauses the producer, arrives in order."""
    pair, transport = small_pair, small_pair.transport
    transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    producer = _Producer()
    transport.registerProducer(producer, True)
    writer = _writer(transport)
    calls = _spy(writer)
    data, chunk = os.urandom(4 << 20), 256 << 10
    writer(data[:chunk])
    kept = _buffered(transport)
    assert calls == [chunk] and 0 < kept < chunk  # the kernel took part, the transport the rest
    for start in range(chunk, len(data), chunk):
        writer(data[start:start + chunk])
    writer.flush()  # the last chunk may be corked; the next turn would hand it over so
    assert calls == [chunk]
    assert _buffered(transport) == len(data) - (chunk - kept)
    assert producer.events and set(producer.events) == {"pause"}
    assert transport.producerPaused
    received = yield _receive(pair.peer, len(data))
    assert hashlib.sha256(received).hexdigest() == hashlib.sha256(data).hexdigest()
    assert producer.events[-1] == "resume" and not transport.producerPaused
    assert _buffered(transport) == 0


@pytest_twisted.inlineCallbacks
def test_closed_connection_is_not_sent_to(pair):
    """After loseConnection and connectionLost the writer neither sends nor raises."""
    writer = _writer(pair.transport)
    calls = _spy(writer)
    pair.transport.loseConnection()
    yield pair.protocol.lost
    writer(b"late")
    assert calls == []
    assert pair.peer.recv(100) == b""  # the end of the stream, and nothing before it


@pytest_twisted.inlineCallbacks
def test_disconnecting_hands_bytes_to_the_transport(pair):
    """While disconnecting the writer does not send; the transport flushes, then closes."""
    writer = _writer(pair.transport)
    calls = _spy(writer)
    pair.transport.loseConnection()
    assert pair.transport.disconnecting
    writer(b"bye")
    assert calls == []
    assert pair.transport._tempDataLen == len(b"bye")
    received = yield _receive(pair.peer, len(b"bye"))
    assert received == b"bye"
    yield pair.protocol.lost
    assert pair.peer.recv(100) == b""


@pytest.mark.parametrize(
    "error", [BlockingIOError, InterruptedError, ConnectionResetError, BrokenPipeError]
)
@pytest_twisted.inlineCallbacks
def test_send_error_hands_everything_to_the_transport(pair, error):
    """A send raising OSError does not raise: the whole data goes to transport.write."""
    writer = _writer(pair.transport)
    calls = []

    def failing(data):
        calls.append(len(data))
        raise error()

    writer._send = failing
    writer(b"payload")
    assert calls == [len(b"payload")]
    assert _buffered(pair.transport) == len(b"payload")
    assert pair.transport in reactor.getWriters()
    received = yield _receive(pair.peer, len(b"payload"))
    assert received == b"payload"


def _nodelay(transport):
    """TCP_NODELAY of the socket under ``transport``."""
    while not isinstance(transport, tcp.Connection):
        transport = transport.transport
    return transport.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_no_delay_turns_nagle_off(pair):
    """A plain TCP connection starts with Nagle on; no_delay turns it off."""
    assert _nodelay(pair.transport) == 0
    assert no_delay(pair.transport) is True
    assert _nodelay(pair.transport) != 0


def test_no_delay_through_tls(tls_pair):
    """Under a TLS layer, no_delay finds the TCP connection and turns Nagle off there."""
    assert isinstance(tls_pair.transport, TLSMemoryBIOProtocol)
    assert _nodelay(tls_pair.transport) == 0
    assert no_delay(tls_pair.transport) is True
    assert _nodelay(tls_pair.transport) != 0


def test_no_delay_without_tcp():
    """A transport with no TCP connection under it is left alone."""
    assert no_delay(StringTransport()) is False


@pytest_twisted.inlineCallbacks
def test_daemon_connections_have_nagle_off(cleanups):
    """The daemon's own protocol turns Nagle off on a real connection (Autobahn means to
    and does not: tcpNoDelay is read before it is copied from the factory)."""
    from tests.unit.test_protocol import Daemon

    port = reactor.listenTCP(0, Daemon().factory, interface="127.0.0.1")
    cleanups.append(port.stopListening)
    peer = socket.socket()
    cleanups.append(peer.close)
    peer.setblocking(False)
    peer.connect_ex(("127.0.0.1", port.getHost().port))
    local = None
    for _ in range(200):
        yield task.deferLater(reactor, 0.01, lambda: None)
        local = local or peer.getsockname()[1]
        servers = [r for r in reactor.getReaders()
                   if isinstance(r, tcp.Server) and r.getPeer().port == local]
        if servers:
            break
    [server] = servers
    cleanups.append(server.abortConnection)
    assert _nodelay(server) != 0
