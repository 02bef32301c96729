"""The job model: an id, an ordered list of commands, and what happened to them."""

import codecs
import json
import shlex

PENDING = "pending"
RUNNING = "running"
FINISHED = "finished"

# Keys of process_details a command's text must not collide with (its log is stored under
# the command text itself).
RESERVED_DETAILS = frozenset(
    {
        "state",
        "process_id",
        "time_started",
        "time_finished",
        "cmd_list",
        "current_cmd",
        "timed_out",
        "interrupted",
        "killed",
    }
)
# Top-level keys of an event that a class job's ``extra`` fields must not replace.
RESERVED_EVENT = frozenset({"event_system", "state", "process_id", "process_details"})
FLAGS = ("timed_out", "interrupted", "killed")


class InvalidJob(ValueError):
    """The job is malformed (bad types, empty command, unknown queue...): nothing started."""


class DuplicateJob(InvalidJob):
    """A pending or running job already has this id: nothing started."""


class DispatcherUnavailable(Exception):
    """The dispatcher is stopping, its database could not be opened, or the job could not
    be recorded (the state directory cannot be written): nothing started."""


def marker(left_out):
    """The line that replaces the start of a log whose first ``left_out`` bytes were cut."""
    return f"[... {left_out} bytes left out ...]\n"


class CommandLog:
    """One command's output, decoded as UTF-8 with replacement, keeping at most ``cap``
    bytes (the tail) and counting the bytes left out before it."""

    def __init__(self, cap, text="", dropped=0):
        self.cap = cap
        self.dropped = dropped
        self._buf = bytearray()
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        if text:
            self._add(text.encode("utf-8"))

    def feed(self, data):
        """Append raw output bytes (a multi-byte character may span two calls)."""
        self._add(self._decoder.decode(data).encode("utf-8"))

    def add_text(self, text):
        """Append a message of our own (e.g. why a command could not start)."""
        self.close()
        self._add(text.encode("utf-8"))

    def close(self):
        """Flush a trailing incomplete character (as U+FFFD)."""
        rest = self._decoder.decode(b"", final=True)
        if rest:
            self._add(rest.encode("utf-8"))

    def _add(self, data):
        self._buf += data
        if len(self._buf) > self.cap:
            cut = _char_boundary(self._buf, len(self._buf) - self.cap)
            del self._buf[:cut]
            self.dropped += cut

    def body(self):
        """The kept text, without marker (what the store saves beside ``dropped``)."""
        return self._buf.decode("utf-8", "replace")

    def text(self, limit=None):
        """The kept text, or its last ``limit`` bytes, preceded by a marker when anything
        was left out."""
        buf = self._buf
        left = self.dropped
        if limit is not None and len(buf) > limit:
            cut = _char_boundary(buf, len(buf) - limit)
            left += cut
            buf = buf[cut:]
        text = bytes(buf).decode("utf-8", "replace")
        return marker(left) + text if left else text


def _char_boundary(buf, cut):
    """Move ``cut`` forward past UTF-8 continuation bytes so no character is split."""
    while cut < len(buf) and 0x80 <= buf[cut] <= 0xBF:
        cut += 1
    return cut


class Job:
    """A job: what to run and, as it goes, its state, logs and return codes.

    ``seq`` orders jobs (the FIFO order, the database key); ``job_id`` is the client's name
    for it, unique only among live (pending or running) jobs.
    """

    def __init__(self, seq, job_id, commands, queue, timeout=None, event_system=None, extra=None,
                 argvs=None):
        self.seq = seq
        self.job_id = job_id
        self.commands = list(commands)
        # Each command split into arguments: given when the job was checked, else on use.
        self._argvs = list(argvs) if argvs is not None else [None] * len(self.commands)
        self.queue = queue
        self.timeout = timeout
        self.event_system = event_system
        self.extra = dict(extra or {})
        self.state = PENDING
        self.time_started = None
        self.time_finished = None
        self.finished_at = None
        self.current = None
        self.logs = {}
        self.return_codes = {}
        self.timed_out = False
        self.interrupted = False
        self.killed = False

    def __repr__(self):
        return f"<Job {self.job_id!r} #{self.seq} {self.state}>"

    def argv(self, index):
        """Command ``index`` split into arguments as a POSIX shell would (``shlex``);
        raises ValueError when it cannot be split."""
        argv = self._argvs[index]
        if argv is None:
            argv = self._argvs[index] = shlex.split(self.commands[index])
        return argv

    def log_for(self, index, cap):
        """The :class:`CommandLog` of command ``index``, created on first output."""
        log = self.logs.get(index)
        if log is None:
            log = self.logs[index] = CommandLog(cap)
        return log

    def flags(self):
        """The set flags, as process_details shows them (``{"timed_out": "true"}``)."""
        if not (self.timed_out or self.interrupted or self.killed):
            return {}
        return {name: "true" for name in FLAGS if getattr(self, name)}


def check_commands(commands):
    """Validate a job's commands; returns them as a list, and each one split into
    arguments. A string is one command."""
    if isinstance(commands, str):
        commands = [commands]
    if not isinstance(commands, (list, tuple)) or not commands:
        raise InvalidJob("a job needs a command or a non-empty list of commands")
    seen = set()
    argvs = []
    for command in commands:
        if not isinstance(command, str):
            raise InvalidJob("every command must be a string")
        try:
            argv = shlex.split(command)
        except ValueError as e:
            raise InvalidJob(f"cannot split command {command!r}: {e}") from None
        if not argv:
            raise InvalidJob("a command cannot be empty")
        if command in RESERVED_DETAILS or command.startswith("return_codes/"):
            raise InvalidJob(f"{command!r} cannot be a command: its log key is reserved")
        if command in seen:
            raise InvalidJob(
                f"{command!r} appears twice in one job (logs and return codes are keyed by "
                "command text)"
            )
        seen.add(command)
        argvs.append(argv)
    return list(commands), argvs


def check_job(job_id, commands, queue, timeout, event_system, extra, queues):
    """Validate ``submit``'s arguments against the known ``queues``; returns the commands
    as a list and each one split into arguments. Raises :class:`InvalidJob`."""
    if not isinstance(job_id, str) or not job_id:
        raise InvalidJob("a job id must be a non-empty string")
    commands, argvs = check_commands(commands)
    if not isinstance(queue, str) or queue not in queues:
        raise InvalidJob(f"unknown queue {queue!r} (known: {', '.join(queues)})")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise InvalidJob("timeout must be a number of seconds")
        if not 0 <= timeout < float("inf"):
            raise InvalidJob("timeout must be 0 (none) or a positive number of seconds")
    if event_system is not None and (not isinstance(event_system, str) or "/" not in event_system):
        raise InvalidJob("event_system must be a '<namespace>/<name>' string")
    if extra:
        if event_system is None:
            raise InvalidJob("extra fields need an event_system")
        if not isinstance(extra, dict) or not all(isinstance(k, str) for k in extra):
            raise InvalidJob("extra must be a dict with string keys")
        clash = sorted(RESERVED_EVENT.intersection(extra))
        if clash:
            raise InvalidJob(f"extra cannot set {', '.join(clash)}")
        try:
            json.dumps(extra)
        except (TypeError, ValueError) as e:
            raise InvalidJob(f"extra must be JSON-serializable: {e}") from None
    return commands, argvs
