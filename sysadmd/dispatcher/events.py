"""The dispatcher's event payloads (``events.rst``, "Dispatcher") and the update throttle.

A plain job's events::

    {"state": "pending", "process_id": ID}
    {"state": "running", "process_id": ID, "process_details": {...}}
    {"state": "finished", "process_id": ID, "process_details": {...}}

A class job (one with ``event_system``) also carries ``event_system`` and its ``extra``
fields at the top level, and its pending event has ``process_details`` too (the pending
message), as in the "Dispatcher Class Event Message".

``process_details`` has ``state``, ``process_id``, ``time_started``, ``cmd_list``,
``current_cmd`` (while running), ``"<command>": <log>`` for each command with output,
``"return_codes/<command>": "<n>"`` for each finished command, ``time_finished`` once
finished, and ``"timed_out"``, ``"interrupted"`` or ``"killed"``: ``"true"`` when they apply.
"""

import time

from sysadmd.dispatcher.job import PENDING, RUNNING
from sysadmd.util.timers import cancel_call


def iso_time(seconds):
    """An ISO 8601 local time with its UTC offset, to the millisecond (one localtime
    call: twice per job, it shows in the dispatcher's throughput)."""
    local = time.localtime(seconds)
    offset = local.tm_gmtoff // 60
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset), 60)
    millis = int(seconds * 1000) % 1000
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', local)}.{millis:03d}{sign}{hours:02d}:{minutes:02d}"


def process_details(job, log_limit=None, logs=True):
    """The job's ``process_details``; each log is cut to its last ``log_limit`` bytes
    (None: everything kept) with a marker saying how much was left out. ``logs=False``
    leaves the logs out."""
    if job.state == PENDING:
        return {"state": PENDING, "process_id": job.job_id}
    details = {"state": job.state, "process_id": job.job_id}
    if job.time_started is not None:
        details["time_started"] = job.time_started
    if job.time_finished is not None:
        details["time_finished"] = job.time_finished
    details["cmd_list"] = list(job.commands)
    if job.state == RUNNING and job.current is not None:
        details["current_cmd"] = job.commands[job.current]
    for index, command in enumerate(job.commands):
        log = job.logs.get(index) if logs else None
        if log is not None:
            details[command] = log.text(log_limit)
        if index in job.return_codes:
            details["return_codes/" + command] = str(job.return_codes[index])
    details.update(job.flags())
    return details


def event(job, log_limit):
    """The event for the job's current state."""
    if job.event_system is None:
        args = {"state": job.state, "process_id": job.job_id}
        if job.state != PENDING:
            args["process_details"] = process_details(job, log_limit)
        return args
    args = {"event_system": job.event_system}
    args.update(job.extra)
    args["state"] = job.state
    args["process_id"] = job.job_id
    args["process_details"] = process_details(job, log_limit)
    return args


def summary(job):
    """A ``history`` entry: process_details without the logs, plus the queue."""
    details = process_details(job, logs=False)
    details["queue"] = job.queue
    if job.event_system is not None:
        details["event_system"] = job.event_system
    return details


class UpdateThrottle:
    """Sends a job's "running" event when its state changes, and while output arrives at
    most once per ``interval`` seconds per job (the last output is never left unsent:
    a delayed send carries everything received until then)."""

    def __init__(self, clock, interval, send):
        self._clock = clock
        self._interval = interval
        self._send = send
        self._last = {}
        self._calls = {}

    def changed(self, job):
        """Send now (the job started, or its current command changed)."""
        self._cancel(job)
        self._last[job.seq] = self._clock.seconds()
        self._send(job)

    def output(self, job):
        """Output arrived: send now if the interval has passed, else once it has."""
        if job.seq in self._calls:
            return
        now = self._clock.seconds()
        last = self._last.get(job.seq)
        if last is None or now - last >= self._interval:
            self._last[job.seq] = now
            self._send(job)
        else:
            self._calls[job.seq] = self._clock.callLater(last + self._interval - now, self._due, job)

    def _due(self, job):
        del self._calls[job.seq]
        if job.state == RUNNING:
            self._last[job.seq] = self._clock.seconds()
            self._send(job)

    def _cancel(self, job):
        cancel_call(self._calls.pop(job.seq, None))

    def forget(self, job):
        """The job finished: drop its timer and bookkeeping."""
        self._cancel(job)
        self._last.pop(job.seq, None)

    def close(self):
        """Cancel every timer."""
        for call in self._calls.values():
            cancel_call(call)
        self._calls.clear()
        self._last.clear()

