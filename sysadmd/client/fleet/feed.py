"""Reading the fleet's streams: an ordered push consumer that resumes by stream sequence,
and the last message of every subject.

Why not nats-py's own ``ordered_consumer=True``: it restarts from "the last stream
sequence it delivered + 1", and before it delivered anything that is 1, so a ``watch``
started with ``new`` that loses its consumer (a NATS restart) before the first event
would print the whole stream; and it keeps ``opt_start_time`` in the consumer it
re-creates with ``by_start_sequence``, which nats-server refuses. :class:`OrderedFeed`
knows its position from the start: the consumer's creation reply says which stream
sequence precedes the first message it will deliver, whatever the start policy was.

It re-creates its consumer from the last stream sequence it delivered + 1 when a
message or heartbeat shows one was missed (the consumer sequence jumped), when no
heartbeat came for two intervals, and after every reconnect (an ephemeral consumer does
not outlive a nats-server restart). A message at or before that sequence is never
handed on: nothing twice, nothing missing that the stream still holds.
"""

import asyncio
import functools

from nats.js import api

from sysadmd.client.errors import ClientError
from sysadmd.client.fleet.arguments import Start
from sysadmd.client.fleet.connection import NoAnswer

HEARTBEAT = 5.0
#: The server forgets a consumer nobody listened to for this long (we died, or lost it).
INACTIVE_THRESHOLD = 30.0
RETRY_CAP = 10.0
STATUS = "Status"
CONTROL = "100"
LAST_CONSUMER = "Nats-Last-Consumer"
STALLED = "Nats-Consumer-Stalled"


def consumer_config(subject, start, deliver_subject, heartbeat=HEARTBEAT, flow_control=True):
    """The ephemeral push consumer's config for ``start`` (a :class:`Start` whose policy is
    ``new``, ``all``, ``time``, ``seq`` or ``last`` per subject)."""
    config = api.ConsumerConfig(
        filter_subject=subject, deliver_subject=deliver_subject, ack_policy=api.AckPolicy.NONE,
        max_deliver=1, mem_storage=True, num_replicas=1, inactive_threshold=INACTIVE_THRESHOLD,
    )
    if flow_control:
        config.flow_control = True
        config.idle_heartbeat = heartbeat
    if start.policy == "new":
        config.deliver_policy = api.DeliverPolicy.NEW
    elif start.policy == "all":
        config.deliver_policy = api.DeliverPolicy.ALL
    elif start.policy == "time":
        config.deliver_policy = api.DeliverPolicy.BY_START_TIME
        config.opt_start_time = start.time
    elif start.policy == "seq":
        config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = start.seq
    elif start.policy == "last":
        config.deliver_policy = api.DeliverPolicy.LAST_PER_SUBJECT
    else:
        raise ValueError(f"unknown start policy {start.policy!r}")
    return config


class OrderedFeed:
    """Messages of ``stream`` on ``subject`` from ``start``, each handed once and in order
    to ``handler(msg)`` (called synchronously: nothing can interrupt it half-way).
    ``failed`` gets a :class:`ClientError` when it cannot go on (the stream was deleted,
    the consumer refused, the handler raised)."""

    def __init__(self, connection, stream, subject, start, handler, heartbeat=HEARTBEAT):
        self._conn = connection
        self._stream = stream
        self._subject = subject
        self._start = start
        self._handler = handler
        self._heartbeat = heartbeat
        self.last = None  # stream sequence of the last message handed on (or just before the first)
        self.failed = asyncio.get_running_loop().create_future()
        self._generation = 0
        self._sub = None
        self._consumer = None
        self._next = 1
        self._active = True
        self._resetting = False
        self._reset_again = False
        self._closed = False
        self._tasks = set()
        self._watchdog = None

    async def open(self):
        """Create the first consumer (ClientError when NATS refuses it) and start watching
        its heartbeats."""
        await self._create(self._start)
        self._conn.on_reconnected.append(self.restart)
        self._conn.on_closed.append(self.lost)
        self._watchdog = asyncio.ensure_future(self._watch_heartbeats())

    async def close(self):
        """Stop, and delete the consumer (best effort: it expires by itself anyway)."""
        self._closed = True
        if self.restart in self._conn.on_reconnected:
            self._conn.on_reconnected.remove(self.restart)
        if self.lost in self._conn.on_closed:
            self._conn.on_closed.remove(self.lost)
        for task in [self._watchdog, *self._tasks]:
            if task is not None:
                task.cancel()
        await self._drop(self._sub, self._consumer)
        self._sub = self._consumer = None

    def lost(self):
        """The connection ended for good (nats-py gave up reconnecting)."""
        if not self._closed:
            self._fail(ClientError("lost the connection to NATS"))

    def restart(self):
        """Re-create the consumer after the last message handed on (soon, in a task)."""
        if self._closed:
            return
        if self._resetting:
            self._reset_again = True
            return
        self._resetting = True
        self._spawn(self._reset())

    def _spawn(self, coroutine):
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _fail(self, error):
        if not self.failed.done():
            self.failed.set_result(error)

    async def _create(self, start):
        self._generation += 1
        generation = self._generation
        nc = self._conn.nc
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, cb=functools.partial(self._message, generation))
        self._sub, self._next = sub, 1
        config = consumer_config(self._subject, start, inbox, self._heartbeat)
        try:
            info = await self._conn.api(self._conn.js.add_consumer(self._stream, config=config), self._stream)
        except BaseException:
            await self._drop(sub, None)
            raise
        self._consumer = info.name
        if info.delivered is not None:
            # What precedes the first message this consumer delivers: for ``new`` the
            # stream's last sequence, for a start time the one before the first after it.
            self.last = max(self.last or 0, info.delivered.stream_seq)

    async def _drop(self, sub, consumer):
        try:
            if sub is not None:
                await sub.unsubscribe()
        except Exception:
            pass
        if consumer is not None and self._conn.nc.is_connected:
            try:
                await asyncio.wait_for(self._conn.js.delete_consumer(self._stream, consumer), 2)
            except Exception:
                pass  # gone with a restart, or expires (INACTIVE_THRESHOLD)

    async def _reset(self):
        delay = 0.5
        try:
            while not self._closed:
                self._reset_again = False
                old_sub, old_consumer = self._sub, self._consumer
                self._generation += 1  # the old subscription's messages are ignored from now on
                self._sub = self._consumer = None
                self._spawn(self._drop(old_sub, old_consumer))
                start = self._start if self.last is None else Start("seq", seq=self.last + 1)
                try:
                    await self._create(start)
                except NoAnswer:
                    await asyncio.sleep(delay)  # NATS is not back yet
                    delay = min(delay * 2, RETRY_CAP)
                    continue
                except ClientError as e:
                    self._fail(e)  # NATS answered no: trying again will not help
                    return
                except Exception:
                    if self._conn.nc.is_closed:
                        return  # the connection's end fails the feed (lost)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_CAP)
                    continue
                self._active = True
                if not self._reset_again:
                    return
        finally:
            self._resetting = False

    async def _watch_heartbeats(self):
        while not self._closed:
            await asyncio.sleep(self._heartbeat * 2)
            if not self._active and self._conn.nc.is_connected and not self._resetting:
                self.restart()
            self._active = False

    async def _message(self, generation, msg):
        if generation != self._generation or self._closed:
            return
        self._active = True
        headers = msg.headers or {}
        status = headers.get(STATUS)
        if status is not None and not msg.data:
            if status != CONTROL:
                self.restart()  # e.g. 409 Consumer Deleted
            elif msg.reply:
                await self._conn.nc.publish(msg.reply, b"")  # flow control: everything before was handled
            else:
                if headers.get(STALLED):
                    await self._conn.nc.publish(headers[STALLED], b"")
                last = headers.get(LAST_CONSUMER)
                if last is not None and last.isdigit() and int(last) != self._next - 1:
                    self.restart()  # the heartbeat says more was sent than arrived
            return
        try:
            sequence = msg.metadata.sequence
        except Exception:
            return  # not a JetStream message
        if sequence.consumer != self._next:
            self.restart()
            return
        self._next += 1
        if self.last is not None and sequence.stream <= self.last:
            return  # handed on already, before a restart
        self.last = sequence.stream
        try:
            self._handler(msg)
        except Exception as e:
            self._fail(e if isinstance(e, ClientError) else ClientError(f"cannot show an event: {e}"))


async def last_per_subject(connection, stream, subject, timeout=10.0):
    """The last message of each subject matching ``subject`` in ``stream``, by subject."""
    nc = connection.nc
    found = {}
    done = asyncio.get_running_loop().create_future()

    async def message(msg):
        if msg.headers and msg.headers.get(STATUS) and not msg.data:
            return
        try:
            pending = msg.metadata.num_pending
        except Exception:
            return
        found[msg.subject] = msg
        if pending == 0 and not done.done():
            done.set_result(None)

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=message)
    consumer = None
    try:
        config = consumer_config(subject, Start("last"), inbox, flow_control=False)
        info = await connection.api(connection.js.add_consumer(stream, config=config), stream)
        consumer = info.name
        if info.num_pending:
            try:
                await asyncio.wait_for(done, timeout)
            except asyncio.TimeoutError:
                raise ClientError(f"stream {stream}: not every message arrived within {timeout:g} s") from None
    finally:
        try:
            await sub.unsubscribe()
            if consumer is not None:
                await asyncio.wait_for(connection.js.delete_consumer(stream, consumer), 2)
        except Exception:
            pass
    return found
