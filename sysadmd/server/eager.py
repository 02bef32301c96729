"""Writing to a client's socket at once, as Node's ``socket.write`` does, without
giving up Twisted's coalescing when many frames go out in one reactor turn.

Twisted's ``transport.write`` only appends to a buffer and registers the socket for
writing; the bytes leave in a later reactor iteration's ``doWrite``. For one event fanned
out to 1,000 subscribers that is 1,000 ``epoll_ctl`` calls to register, one ``epoll_wait``
returning 1,000 sockets, 1,000 ``doWrite`` calls through the reactor's logging context,
and 1,000 ``epoll_ctl`` calls to unregister, and no subscriber gets a byte before the whole
publish loop has ended (bench/README.md has the profile).

:class:`EagerWriter` sends the first frame of a turn there and then when the transport has
nothing buffered. Further frames in the same turn are *corked*: kept in order and sent
together, in one ``send``, at the start of the next turn (:class:`WriteTurns`), so a burst
of events costs one system call per subscriber, as it did with the transport. What the
kernel does not take goes to the transport's own ``write``, so ordering, the transport's
buffer limit and the producer's pause (the slow-subscriber bound) work as before; corked
bytes are bounded by the transport's ``bufferSize`` too (past it they are sent at once).
"""

from twisted.internet import tcp

# Attributes of twisted.internet.abstract.FileDescriptor that say whether anything waits
# in the transport's buffer: checked once per transport rather than trusted blindly.
_BUFFER_STATE = ("dataBuffer", "_tempDataLen", "connected", "disconnecting", "_writeDisconnected", "bufferSize")


class WriteTurns:
    """The reactor turn count that writers compare, advanced lazily (one ``callLater(0)``
    in a turn where something was sent or corked, nothing while idle), and the corked
    writers to flush when it advances."""

    def __init__(self, reactor):
        self._reactor = reactor
        self.number = 0
        self._call = None
        self._corked = []

    def touch(self):
        """Something was sent this turn: make sure the count advances next turn."""
        if self._call is None:
            self._call = self._reactor.callLater(0, self._advance)

    def cork(self, writer):
        """``writer`` holds frames to send next turn."""
        self._corked.append(writer)
        self.touch()

    def _advance(self):
        self._call = None
        self.number += 1
        corked, self._corked = self._corked, []
        for writer in corked:
            writer.flush()


def no_delay(transport):
    """Turn Nagle's algorithm off on the TCP connection under ``transport`` (through a TLS
    layer too); True when done.

    Autobahn's Twisted protocols try this in ``connectionMade``, but read their
    ``tcpNoDelay`` option before copying it from the factory, so the attempt fails and is
    swallowed: every Autobahn connection keeps Nagle on. With eager writes a small frame
    then waits for the ACK of the previous one, and a peer's delayed ACK costs up to 40 ms.
    """
    while transport is not None:
        if isinstance(transport, tcp.Connection):
            try:
                transport.setTcpNoDelay(True)
                return True
            except OSError:
                return False
        transport = getattr(transport, "transport", None)  # a wrapper: TLS, a policy
    return False


def eager_writer(transport, turns):
    """The fastest correct ``write(data)`` for ``transport``: an :class:`EagerWriter` for
    a plain TCP connection (not TLS, whose bytes must go through its own layer), its own
    ``write`` for anything else."""
    if (type(transport) is tcp.Server and all(hasattr(transport, a) for a in _BUFFER_STATE)
            and not getattr(transport, "TLS", False)):  # not after startTLS either
        return EagerWriter(transport, turns)
    return transport.write


class EagerWriter:
    """``write(data)`` for a Twisted TCP transport (see the module docstring).
    :meth:`flush` sends what is corked now: before a close frame, nothing may stay
    behind."""

    __slots__ = ("_transport", "_send", "_turns", "_turn", "_corked", "_corked_bytes")

    def __init__(self, transport, turns):
        self._transport = transport
        self._send = transport.socket.send
        self._turns = turns
        self._turn = -1
        self._corked = None
        self._corked_bytes = 0

    def __call__(self, data):
        corked = self._corked
        if corked is not None:
            corked.append(data)
            self._corked_bytes += len(data)
            if self._corked_bytes > self._transport.bufferSize:
                self.flush()
            return
        if self._turn == self._turns.number and len(data) <= self._transport.bufferSize:
            self._corked = [data]
            self._corked_bytes = len(data)
            self._turns.cork(self)
            return
        self._write_now(data)

    def flush(self):
        """Send the corked frames now, in one piece."""
        corked = self._corked
        if corked is None:
            return
        self._corked = None
        self._write_now(corked[0] if len(corked) == 1 else b"".join(corked))

    def _write_now(self, data):
        transport = self._transport
        if (transport.dataBuffer or transport._tempDataLen or not transport.connected
                or transport.disconnecting or transport._writeDisconnected):
            transport.write(data)
            return
        turns = self._turns
        self._turn = turns.number
        turns.touch()
        try:
            sent = self._send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            # Reset or broken: the reactor finds out on doWrite and closes the connection
            # its usual way (connectionLost, the producer stopped).
            transport.write(data)
            return
        if sent < len(data):
            transport.write(data[sent:])
