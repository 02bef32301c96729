"""Turn Life Preserver log lines into ``life_preserver`` events.

Life Preserver writes ``echo "`date`: message"``, for example::

    Fri Nov 27 10:00:00 UTC 2026: Creating snapshot on tank/data
    Fri Nov 27 10:00:05 UTC 2026: Starting replication SYNC task on tank/data: /var/log/lpreserver/lastrep-send-log
    Fri Nov 27 10:05:00 UTC 2026: Finished replication task on tank/data -> backup.example.org
    Fri Nov 27 10:05:00 UTC 2026: FAILED replication task on tank/data -> backup.example.org: LOGFILE: /var/log/lpreserver/lpreserver_failed.log
    Fri Nov 27 10:00:00 UTC 2026: Rotate Logfile

The mapping is the original's: creating snapshot -> snapshot, 1; starting replication ->
replication, 1 (and the send log to watch); finished -> replication, 1; FAILED ->
replication, 7 with the log file. Other lines of ``lpreserver.log`` are not events. Lines
of ``error.log`` are mapped the same way; any other line there is an error of its own,
reported with priority 6.

In the original dialect (:mod:`sysadmd.protocol.dialect`) the message of an event mapped
from a dated line begins with that line's date, whitespace collapsed, and ``": "``, as
the original server sent it (``"Fri Nov 27 10:00:00 UTC 2026: New snapshot of
tank/data"``); replication progress, which comes from zfs send's log, has no date there
either.
"""

import re
from dataclasses import dataclass
from typing import Optional

from sysadmd.events import priority
from sysadmd.protocol.dialect import WithOriginal

SNAPSHOT = "snapshot"
REPLICATION = "replication"

ERROR_LEVEL = priority.CRITICAL

# `date` in the C locale: "Fri Nov 27 10:00:00 UTC 2026" (the zone may be absent).
_DATED = re.compile(
    r"^\s*([A-Za-z]{3}\s+[A-Za-z]{3}\s+\d{1,2}\s+\d{1,2}:\d{2}:\d{2}(?:\s+\S+)?\s+\d{4})\s*:\s?(.*)$"
)


@dataclass(frozen=True)
class Mapped:
    """What one line means: an event (args dict) and/or a replication change.

    ``replication`` is ``("start", dataset, send_log_path_or_None)``, ``("end",)`` or
    None.
    """

    event: Optional[dict] = None
    replication: Optional[tuple] = None


NOTHING = Mapped()


def event(message, level, kind):
    """The args of a ``life_preserver`` event."""
    return {"message": message, "priority": priority.display(level), "class": kind}


def message_of(line):
    """The message part of a log line (the date prefix removed)."""
    match = _DATED.match(line)
    return (match.group(2) if match else line).strip()


def date_of(line):
    """The date of a log line, whitespace collapsed as the original server did
    (``"Fri Nov 27 10:00:00 UTC 2026"``), or None for a line without one."""
    match = _DATED.match(line)
    return " ".join(match.group(1).split()) if match else None


def dated(args, date):
    """``args`` of an event mapped from a line of ``date``: the spec args, carrying the
    original dialect's (message prefixed with the date)."""
    if date is None:
        return args
    return WithOriginal(args, dict(args, message=f"{date}: {args['message']}"))


def _dataset_before_arrow(text):
    """``... task on tank/data -> host...`` -> ("tank/data", "host...")."""
    left, _, right = text.partition("->")
    words = left.split()
    return (words[-1] if words else ""), right.strip()


def map_line(line, error_log=False):
    """The :class:`Mapped` meaning of one complete log line (its event carries the
    original dialect's dated message, see :func:`dated`)."""
    mapped = _map(line, error_log)
    if mapped.event is None:
        return mapped
    return Mapped(dated(mapped.event, date_of(line)), mapped.replication)


def _map(line, error_log):
    message = message_of(line)
    lower = message.lower()
    if not message:
        return NOTHING
    if "creating snapshot" in lower:
        dataset = message.split()[-1]
        return Mapped(event(f"New snapshot of {dataset}", 1, SNAPSHOT))
    if "starting replication" in lower:
        after_on = message.split(" on ", 1)[1] if " on " in message else message
        dataset, sep, send_log = after_on.partition(":")
        dataset = dataset.strip()
        send_log = send_log.strip() or None
        return Mapped(
            event(f"Starting replication for {dataset}", 1, REPLICATION),
            ("start", dataset, send_log if sep else None),
        )
    if "finished replication task" in lower:
        dataset, target = _dataset_before_arrow(message)
        text = f"Finished replication for {dataset}" + (f" to {target}" if target else "")
        return Mapped(event(text, 1, REPLICATION), ("end",))
    if "failed replication" in lower:
        head, _, logfile = message.partition("LOGFILE:")
        dataset, target = _dataset_before_arrow(head)
        target = target.rstrip(": ").strip()
        text = f"Replication failed for {dataset}" + (f" to {target}" if target else "")
        if logfile.strip():
            text += f"; log file: {logfile.strip()}"
        return Mapped(event(text, 7, REPLICATION), ("end",))
    if error_log and "rotate logfile" not in lower:
        kind = SNAPSHOT if "snap" in lower else REPLICATION
        return Mapped(event(f"Life Preserver error: {message}", ERROR_LEVEL, kind))
    return NOTHING
