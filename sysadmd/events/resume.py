"""Resuming a subscription after a reconnect, and telling a client what it missed.

``events/subscribe`` args may mix names and objects::

    ["system-state", {"name": "dispatcher", "since": 1234, "epoch": "9f1c..."}]

For an object, the events of that source after ``since`` are sent when its log (same
epoch) still holds ``since + 1``; otherwise a ``gap`` event says what cannot be had, and
the source's current state follows (:func:`gap_frame`). The subscriber is added and the
missed events sent in one step, so no live event can come between them, twice, or never.
"""

from sysadmd.protocol import envelope
from sysadmd.protocol.envelope import RequestError

EXPIRED = "expired"
EPOCH_CHANGED = "epoch_changed"
OVERFLOW = "overflow"


class Resume:
    """A request to resume ``name`` after event ``since`` of log ``epoch`` (None: the
    current one)."""

    __slots__ = ("name", "since", "epoch")

    def __init__(self, name, since, epoch):
        self.name = name
        self.since = since
        self.epoch = epoch


def parse(args):
    """``(names, resumes)`` from subscribe args: a name, or a list of names and objects
    ``{"name", "since"?, "epoch"?}`` (an object without ``since`` is a plain name).
    RequestError(400) for anything else."""
    if isinstance(args, str):
        return [args], {}
    if not isinstance(args, list) or not args:
        raise RequestError(400, "args must be an event source name or a non-empty list of names "
                                "and {\"name\", \"since\", \"epoch\"} objects.")
    names, resumes = [], {}
    for item in args:
        if isinstance(item, str):
            names.append(item)
            continue
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise RequestError(400, "each subscription is a source name or an object with a \"name\".")
        unknown = sorted(set(item) - {"name", "since", "epoch"})
        if unknown:
            raise RequestError(400, f"unknown key(s) in a subscription: {', '.join(unknown)}.")
        name, since, epoch = item["name"], item.get("since"), item.get("epoch")
        names.append(name)
        if epoch is not None and not isinstance(epoch, str):
            raise RequestError(400, f"\"epoch\" of {name} must be a string.")
        if since is None:
            continue
        if not isinstance(since, int) or isinstance(since, bool) or since < 0:
            raise RequestError(400, f"\"since\" of {name} must be an integer >= 0.")
        resumes[name] = Resume(name, since, epoch)
    return names, resumes


def gap_frame(source_log, missed_from, reason, missed_to=None):
    """The ``gap`` event for ``source_log`` from seq ``missed_from`` (to ``missed_to``,
    when known: an overflow)."""
    args = {
        "source": source_log.name,
        "epoch": source_log.epoch,
        "missed_from": missed_from,
        "first_available": source_log.first_available,
        "head": source_log.head,
        "reason": reason,
    }
    if missed_to is not None:
        args["missed_to"] = missed_to
    return envelope.event("gap", args)


def missed(source_log, resume):
    """What a resuming client is sent: ``(retained entries after since, None)`` when it
    can have everything, else ``(None, gap frame)``. RequestError(400) for a ``since``
    beyond the head of the same epoch (the client's numbers are not this log's)."""
    # No epoch given: the client means the current one (``sysadm watch --since``).
    source_log.expire()  # a quiet source has not expired anything since its last event
    same = resume.epoch is None or resume.epoch == source_log.epoch
    if same and resume.since > source_log.head:
        raise RequestError(
            400, f"\"since\" of {resume.name} ({resume.since}) is past its newest event "
                 f"({source_log.head}) in epoch {source_log.epoch}.")
    if same and resume.since + 1 >= source_log.first_available:
        return source_log.since(resume.since), None
    reason = EXPIRED if same else EPOCH_CHANGED
    return None, gap_frame(source_log, resume.since + 1, reason)
