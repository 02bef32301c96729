"""Reading a job's output, and following it as it is written (``job-output``).

``rpc/dispatcher`` ``output`` and the ``job_output`` events carry the same args
(:func:`output_args`)::

    {"job_id": "x", "offset": 0, "next_offset": 52, "dropped_bytes": 0, "eof": false,
     "chunks": [{"command": 0, "stream": "stdout", "offset": 0, "data": "..."}]}

and, once ``eof`` is true, ``"state": "finished"``, ``"return_codes": {"0": 0}`` and the
job's flags (``"killed": true``...).

A follower (``events/subscribe`` ``{"name": "job-output", "job_id", "offset"}``) reads
from the job's output file, never from memory, and only while nothing waits in its
client's outgoing queue: a client that stops reading holds nothing in the daemon, and
loses nothing (the file keeps it). Events are coalesced: one is sent once
``batch_bytes`` are ready, or ``batch_ms`` after the first of them was written. Bytes
dropped from the middle of a long output (``max_output_bytes``) are announced by a
``gap`` event naming the lost range before the event that follows it.
"""

from twisted.internet import defer
from zope.interface import implementer

from sysadmd.auth.policy import LIMITED
from sysadmd.dispatcher.job import FINISHED, PENDING
from sysadmd.dispatcher.output import Slice
from sysadmd.interfaces import IEventStream
from sysadmd.protocol import envelope
from sysadmd.protocol.envelope import RequestError
from sysadmd.util.log import Logger
from sysadmd.util.timers import cancel_call

NAME = "job-output"
EVENT = "job_output"
DROPPED = "dropped"
# Batches sent in one go to a follower that is behind, before letting others have a turn.
BATCHES_PER_TURN = 8


def output_args(job, output, piece):
    """The args of an ``output`` reply or ``job_output`` event: ``piece`` (a
    :class:`~sysadmd.dispatcher.output.Slice`) of ``job``'s ``output`` (its
    OutputFile, or None when it has none)."""
    end = output.end if output is not None else 0
    eof = job.state == FINISHED and piece.next_offset >= end
    args = {
        "job_id": job.job_id,
        "offset": piece.offset,
        "next_offset": piece.next_offset,
        "chunks": [chunk.wire() for chunk in piece.chunks],
        "eof": eof,
        "dropped_bytes": output.dropped if output is not None else 0,
        "state": job.state,
    }
    if eof:
        args["return_codes"] = {str(index): rc for index, rc in sorted(job.return_codes.items())}
        for name, value in job.flags().items():
            args[name] = value == "true"
    return args


def check_offset(item, key="offset"):
    """The offset in ``item`` (0 when absent); RequestError(400) unless an integer >= 0."""
    offset = item.get(key, 0)
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise RequestError(400, f'"{key}" must be a byte offset (an integer >= 0).')
    return offset


class Follow:
    """One client following one job's output from ``position``."""

    def __init__(self, followers, sink, job, position):
        self._followers = followers
        self.sink = sink
        self.job = job
        self.position = position
        self._call = None
        self._waiting = False
        self._cursor = None
        self.done = False

    def start(self):
        """Send what is there already, then follow."""
        self.pump()

    def wake(self):
        """New output was written, or the job ended: send a full batch (or the end) now,
        else within ``batch_ms``."""
        if self.done:
            return
        output = self._followers.outputs.reader(self.job.seq)
        ready = (output.end if output is not None else 0) - self.position
        if self.job.state == FINISHED or ready >= self._followers.batch_bytes:
            # A full batch, or the end, is not held back by the timer of a smaller one.
            self._call = cancel_call(self._call)
            self.pump()
        elif ready > 0 and self._call is None:
            self._call = self._followers.clock.callLater(self._followers.batch_ms / 1000.0, self._due)

    def _due(self):
        self._call = None
        self.pump()

    def pump(self):
        """Send batches while the client keeps up; wait for it otherwise."""
        followers = self._followers
        sink = self.sink
        if self.done:
            return
        if sink.closed:
            self.stop()
            return
        if self._waiting:
            return
        if sink.paused or sink.queued_bytes:
            self._retry()
            return
        job = self.job
        output = followers.outputs.reader(job.seq) if job.state != PENDING else None
        final = job.state == FINISHED
        for _ in range(BATCHES_PER_TURN):
            if output is None:
                if final:
                    self._finish(None)
                return
            piece, eof, payload = followers.batch(job, output, self.position, final, self._cursor)
            self._cursor = piece.cursor
            if piece.offset > self.position:
                sink.send_frame(envelope.event("gap", {
                    "source": NAME, "job_id": job.job_id, "missed_from": self.position,
                    "missed_to": piece.offset, "reason": DROPPED,
                }))
            if payload is None:
                return  # nothing new yet: a wake() comes with the next output
            self.position = piece.next_offset
            sink.send_payload(payload)
            if eof:
                self.stop()
                return
            if sink.paused or sink.queued_bytes:
                self._retry()
                return
            if output.end - self.position < followers.batch_bytes and not final:
                if output.end > self.position:
                    self.wake()
                return
        self._call = followers.clock.callLater(0, self._due)

    def _retry(self):
        # The client has not taken the last batch: go on once its connection drained.
        if not self._waiting:
            self._waiting = True
            self.sink.when_drained(self._drained)

    def _drained(self):
        self._waiting = False
        if not self.done and self._call is None:
            self.pump()

    def _finish(self, output):
        end = Slice(self.position, self.position, [])
        self.sink.send_frame(envelope.event(EVENT, output_args(self.job, output, end)))
        self.stop()

    def stop(self):
        """Stop following (eof sent, unsubscribed, or the client is gone)."""
        self.done = True
        self._call = cancel_call(self._call)
        self._followers.forget(self)


@implementer(IEventStream)
class OutputFollowers:
    """The ``job-output`` stream: every :class:`Follow`, by job and by client.

    ``find(job_id)`` returns a Deferred of the live or newest recorded job with that id
    (None: unknown); ``outputs`` is the :class:`~sysadmd.dispatcher.outputs.OutputDirectory`.
    """

    name = NAME
    access = LIMITED
    log = Logger()

    def __init__(self, clock, find, outputs, batch_bytes, batch_ms):
        self.clock = clock
        self._find = find
        self.outputs = outputs
        self.batch_bytes = batch_bytes
        self.batch_ms = batch_ms
        self._by_job = {}
        self._by_sink = {}
        # The last batch read and encoded (see batch()), kept for the next follower.
        self._last = None

    def batch(self, job, output, position, final, cursor):
        """``(slice, eof, payload)``: the next batch of ``job``'s ``output`` from
        ``position`` and its encoded ``job_output`` event (None when there is nothing to
        send). Followers that keep up ask for the same batch in the same turn: it is read
        and encoded once for all of them."""
        key = (job.seq, output.generation, output.end, position, final, job.state)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        piece = output.read(position, self.batch_bytes, final, cursor)
        args = output_args(job, output, piece)
        payload = None
        if piece.chunks or args["eof"]:
            payload = envelope.encode(envelope.event(EVENT, args))
        result = (piece, args["eof"], payload)
        self._last = (key, result)
        return result

    def follow(self, sink, item):
        """Follow ``{"name": "job-output", "job_id", "offset"?}`` (see :class:`IEventStream`)."""
        unknown = sorted(set(item) - {"name", "job_id", "offset"})
        if unknown:
            return defer.fail(RequestError(400, f"unknown key(s) in a job-output subscription: {', '.join(unknown)}."))
        job_id = item.get("job_id")
        if not isinstance(job_id, str) or not job_id:
            return defer.fail(RequestError(400, 'a job-output subscription needs a "job_id".'))
        try:
            offset = check_offset(item)
        except RequestError:
            return defer.fail()

        def found(job):
            if job is None:
                raise RequestError(404, f"No job {job_id!r} is known (running or in history).")
            # One follow per client and job: subscribing again moves it to the new offset.
            self.unfollow(sink, item)
            follow = Follow(self, sink, job, offset)
            self._by_job.setdefault(job.seq, set()).add(follow)
            self._by_sink.setdefault(sink, set()).add(follow)
            return follow.start

        return self._find(job_id).addCallback(found)

    def unfollow(self, sink, item):
        """Stop following the job ``item`` names (all of them for a bare name)."""
        job_id = item.get("job_id") if isinstance(item, dict) else None
        for follow in list(self._by_sink.get(sink, ())):
            if job_id is None or follow.job.job_id == job_id:
                follow.stop()

    def drop(self, sink):
        """``sink`` is gone: stop every follow it has."""
        for follow in list(self._by_sink.get(sink, ())):
            follow.stop()

    def forget(self, follow):
        """``follow`` has stopped."""
        for table, key in ((self._by_job, follow.job.seq), (self._by_sink, follow.sink)):
            follows = table.get(key)
            if follows is not None:
                follows.discard(follow)
                if not follows:
                    del table[key]

    def written(self, job):
        """``job`` wrote output, or ended: wake its followers."""
        for follow in list(self._by_job.get(job.seq, ())):
            follow.wake()

    def count(self):
        """How many follows are active (for metrics and tests)."""
        return sum(len(follows) for follows in self._by_job.values())

    def close(self):
        """The daemon stops: every follow ends (its clients are being disconnected)."""
        for follow in [f for follows in self._by_job.values() for f in follows]:
            follow.stop()
