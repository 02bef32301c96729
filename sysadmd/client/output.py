"""A job's output followed live by byte offset: ``run --follow`` and ``log -f``.

The daemon keeps each job's output (every command's stdout and stderr, in the order it
was written) as one byte stream, and ``events/subscribe`` with ``{"name": "job-output",
"job_id": ID, "offset": N}`` sends it from byte N as ``job_output`` events::

    {"job_id", "offset", "next_offset", "eof", "dropped_bytes",
     "chunks": [{"command": 0, "stream": "stdout"|"stderr", "offset": n, "data": "text"}]}

then live as it is written, until the last event (``"eof": true``, with ``return_codes``
by command index and the flags ``killed``, ``timed_out``, ``interrupted``). Bytes the
daemon dropped (its ``max_output_bytes``) are announced by a ``gap`` frame
(``"source": "job-output"``, bytes ``[missed_from, missed_to)`` lost) before the event
that follows them.

:class:`OutputPrinter` writes each chunk to the stream it came from and remembers the
offset printed up to, so a chunk sent twice is printed once and a part of a chunk printed
already is left out. :class:`OutputFollow` subscribes, and on a dropped connection (or an
ended session) reconnects, signs in again and subscribes from that offset (the reconnect
logic is :class:`sysadmd.client.watch.Resubscriber`'s, shared with ``watch``), so every
byte is printed once; at the end it fires with the job's exit status, mapped like
``run --wait`` does (:func:`sysadmd.client.follow.end_status`).
"""

from twisted.internet import defer

from sysadmd.client.errors import ClientError, ConnectionClosed, ErrorReply
from sysadmd.client.follow import FLAGS, end_status
from sysadmd.client.watch import BACKOFF_CAP, KEEPALIVE, Resubscriber

#: The event source, and the name of its events.
JOB_OUTPUT = "job-output"
JOB_OUTPUT_EVENT = "job_output"


def _count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def dropped_notice(count):
    """The line telling the user ``count`` bytes of output will never be shown."""
    return f"[... {count} byte{'s' if count != 1 else ''} of output dropped by the server ...]"


def last_return_code(return_codes):
    """The return code of the last command that has one in ``return_codes`` (``{"<command
    index>": rc}``), as an int; None when there is none."""
    if not isinstance(return_codes, dict):
        return None
    codes = {}
    for index, value in return_codes.items():
        try:
            codes[int(index)] = int(value)
        except (TypeError, ValueError):
            continue
    return codes[max(codes)] if codes else None


class OutputPrinter:
    """Prints job ``job_id``'s output from ``job_output`` events and ``gap`` frames,
    starting at byte ``offset``: ``stdout(text)`` and ``stderr(text)`` get the chunks of
    each stream as they are, ``note(line)`` the notices of dropped bytes. ``position`` is
    the offset to ask for next (every byte before it was printed or announced as lost)."""

    def __init__(self, job_id, stdout, stderr, note, offset=0):
        self.job_id = job_id
        self._write = {"stdout": stdout, "stderr": stderr}
        self._note = note
        self.position = offset
        self.eof = False
        self.return_code = None
        self.flags = []

    def event(self, args):
        """Print what is new in a ``job_output`` event's ``args``; True once the last
        event arrived (then ``return_code`` and ``flags`` are known)."""
        if not isinstance(args, dict) or args.get("job_id") != self.job_id or self.eof:
            return self.eof
        chunks = [c for c in args.get("chunks") or () if isinstance(c, dict) and _count(c.get("offset"))
                  and isinstance(c.get("data"), str)] if isinstance(args.get("chunks"), list) else []
        next_offset = args.get("next_offset") if _count(args.get("next_offset")) else None
        for i, chunk in enumerate(chunks):
            boundary = chunks[i + 1]["offset"] if i + 1 < len(chunks) else next_offset
            self._chunk(chunk, boundary)
        if next_offset is not None:
            self._skip_to(next_offset)
        if args.get("eof") is True:
            self.eof = True
            self.return_code = last_return_code(args.get("return_codes"))
            self.flags = [flag for flag in FLAGS if args.get(flag) in (True, "true")]
        return self.eof

    def gap(self, args):
        """A ``gap`` frame's ``args``: announce the bytes lost before the next event."""
        if not isinstance(args, dict) or args.get("source") != JOB_OUTPUT or args.get("job_id") != self.job_id:
            return
        if _count(args.get("missed_to")):
            self._skip_to(args["missed_to"])

    def _chunk(self, chunk, boundary):
        offset, data = chunk["offset"], chunk["data"]
        encoded = data.encode("utf-8")
        # The text is as long in UTF-8 as the bytes it came from, unless they were not
        # UTF-8: then it is longer (replacement characters), and the next chunk's offset
        # (or next_offset) says where it really ends.
        end = offset + len(encoded)
        if boundary is not None and offset <= boundary < end:
            end = boundary
        if end <= self.position:
            return  # printed already (sent again after a resubscription)
        if offset < self.position:
            data = encoded[self.position - offset:].decode("utf-8", "replace")
        else:
            self._skip_to(offset)
        self.position = end
        if data:
            self._write.get(chunk.get("stream"), self._write["stdout"])(data)

    def _skip_to(self, offset):
        """Move to ``offset``; the bytes skipped on the way are announced as lost."""
        if offset > self.position:
            self._note(dropped_notice(offset - self.position))
            self.position = offset


class NotFollowed(ClientError):
    """The daemon will not send this job's output (no such job, or no ``job-output``)."""


class OutputFollow(Resubscriber):
    """Follows job ``job_id``'s output from byte ``offset`` to its end through links made
    by ``open_link()``, printing through ``out`` (``write`` for the job's stdout,
    ``write_err`` for its stderr, ``error`` for notices); :meth:`run` fires with the job's
    exit status. ``start(session)``, when given, is called once on the first session,
    after signing in and before subscribing (``run --follow`` submits the job with it: a
    job must exist to be followed)."""

    _fatal = (NotFollowed,)

    def __init__(self, clock, open_link, credentials, job_id, out, offset=0, start=None,
                 keepalive=KEEPALIVE, backoff_cap=BACKOFF_CAP):
        super().__init__(clock, open_link, credentials, out, keepalive, backoff_cap)
        self.job_id = job_id
        self.printer = OutputPrinter(job_id, out.write, out.write_err, out.error, offset)
        self._start = start
        self._started = False
        self._subscribed_once = False
        self._from = offset

    @defer.inlineCallbacks
    def _subscribe(self, session):
        if self._start is not None and not self._started:
            yield self._start(session)
            self._started = True
        offset = self.printer.position
        item = {"name": JOB_OUTPUT, "job_id": self.job_id, "offset": offset}
        try:
            reply = yield session.call("events", "subscribe", [item])
        except ErrorReply as e:
            raise NotFollowed(f"cannot follow job {self.job_id}: {e.details or e.reason or e}") from None
        except ConnectionClosed as e:
            if self._start is not None and not self._subscribed_once:
                raise ConnectionClosed(f"{e}; job {self.job_id} was started (follow it with: "
                                       f"sysadm log -f {self.job_id})") from None
            raise
        names = reply.get("subscribe") if isinstance(reply, dict) else None
        if isinstance(names, list) and JOB_OUTPUT not in names:
            raise NotFollowed(f"cannot follow job {self.job_id}: the daemon does not offer {JOB_OUTPUT}")
        self._subscribed_once = True
        self._from = offset

    def _resubscribed(self):
        return f"following job {self.job_id} from byte {self._from}"

    def _event(self, frame):
        name, args = frame.get("name"), frame.get("args")
        if name == "gap":
            self.printer.gap(args)
        elif name == JOB_OUTPUT_EVENT and not self.printer.eof and self.printer.event(args):
            printer = self.printer
            self.finish(end_status(self.job_id, printer.return_code, printer.flags, self._out.error))
