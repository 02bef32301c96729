"""Named FIFO queues, each starting jobs while fewer than ``max_running`` run (and, over
all queues, fewer than ``[dispatcher] max_processes``: the scheduler's business)."""

import re
from collections import OrderedDict

DEFAULT_QUEUE = "no_queue"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def parse_queues(text):
    """Parse ``[dispatcher] queues``: whitespace-separated ``name:max_running`` pairs
    (0 = unlimited). Returns an ordered dict name -> max_running; raises ValueError."""
    queues = OrderedDict()
    for item in text.split():
        name, sep, limit = item.partition(":")
        if not sep or not _NAME.match(name):
            raise ValueError(
                f"{item!r} is not NAME:MAX_RUNNING (NAME of letters, digits, '_', '.', '-')"
            )
        try:
            value = int(limit)
        except ValueError:
            raise ValueError(f"{item!r}: {limit!r} is not a whole number") from None
        if value < 0:
            raise ValueError(f"{item!r}: max_running cannot be negative (0 = unlimited)")
        if name in queues:
            raise ValueError(f"queue {name!r} is listed twice")
        queues[name] = value
    if not queues:
        raise ValueError("at least one queue is needed, e.g. no_queue:0")
    return queues


def default_queue(queues):
    """The queue of jobs that name none: ``no_queue`` when configured, else the first."""
    return DEFAULT_QUEUE if DEFAULT_QUEUE in queues else next(iter(queues))


class JobQueue:
    """One queue: pending jobs in submission order, and the running ones."""

    def __init__(self, name, max_running):
        self.name = name
        self.max_running = max_running
        self.pending = OrderedDict()
        self.running = OrderedDict()
        # Pending jobs not yet announced (recorded, then their pending event sent).
        self._held = set()

    def __repr__(self):
        return f"<JobQueue {self.name} {len(self.running)}/{self.max_running or 'inf'} +{len(self.pending)}>"

    def add(self, job, held=False):
        """Append a pending job; a ``held`` one cannot start before :meth:`release`."""
        self.pending[job.seq] = job
        if held:
            self._held.add(job.seq)

    def release(self, job):
        """``job`` has been announced: it may start."""
        self._held.discard(job.seq)

    def discard(self, job):
        """Forget ``job`` wherever it is."""
        self.pending.pop(job.seq, None)
        self.running.pop(job.seq, None)
        self._held.discard(job.seq)

    def has_room(self):
        """Whether one more job may start."""
        return self.max_running == 0 or len(self.running) < self.max_running

    def startable(self):
        """The job that may start next (the oldest pending) when the queue has room, or
        None. A held job (not yet announced) blocks those behind it."""
        if not self.pending or not self.has_room():
            return None
        seq, job = next(iter(self.pending.items()))
        return None if seq in self._held else job

    def take(self, job):
        """Move ``job`` (what :meth:`startable` returned) from pending to running."""
        del self.pending[job.seq]
        self.running[job.seq] = job

    def listing(self):
        """``list``'s view: id -> commands, state and queue position ("0" while running,
        then 1, 2, ... in the order pending jobs will start)."""
        jobs = {}
        for job in self.running.values():
            jobs[job.job_id] = {"commands": list(job.commands), "state": job.state, "queue_position": "0"}
        for position, job in enumerate(self.pending.values(), 1):
            jobs[job.job_id] = {
                "commands": list(job.commands),
                "state": job.state,
                "queue_position": str(position),
            }
        return jobs
