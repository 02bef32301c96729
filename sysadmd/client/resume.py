"""Where ``sysadm watch`` is in each source's numbered events, and what a gap means.

The daemon numbers each source's events ``seq`` 1, 2, 3 ... within an ``epoch`` (a name
for that source's log, new when the log is reset) and sends both in every event frame.
:class:`Positions` remembers, per source, the epoch and seq of the last event shown, so
that a new subscription can ask for what came after it (``{"name", "since", "epoch"}``),
and an event already shown is not shown again.

When the daemon cannot send everything after ``since`` it sends a ``gap`` frame
(``reason`` ``expired``, ``epoch_changed`` or ``overflow``); :meth:`Positions.gap` turns
it into one line for the user and says whether the missed events can be fetched again
(an overflow: the client read too slowly, the daemon still has them). A ``heads`` frame
(every source's newest seq, every 30 s by default) shows events that never arrived and
were not announced by a gap: :meth:`Positions.behind` finds them.
"""

import re

EXPIRED = "expired"
EPOCH_CHANGED = "epoch_changed"
OVERFLOW = "overflow"
SINCE_FORMAT = "SOURCE=SEQ or SOURCE=SEQ@EPOCH"
_SINCE = re.compile(r"\A([^=@\s]+)=(\d+)(?:@([^=@\s]+))?\Z")


def parse_since(text):
    """``(source, seq, epoch or None)`` from ``SOURCE=SEQ`` or ``SOURCE=SEQ@EPOCH``;
    ValueError with a message for the user otherwise."""
    match = _SINCE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not {SINCE_FORMAT} (e.g. dispatcher=812)")
    return match.group(1), int(match.group(2)), match.group(3)


def _count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def span(first, last):
    """``event 5`` or ``events 5-9``."""
    return f"event {first}" if first == last else f"events {first}-{last}"


def _numbers(first, last):
    return str(first) if first == last else f"{first}-{last}"


class Position:
    """One source: the ``epoch`` and ``seq`` of the last event shown (either None when
    unknown). ``fresh``: a gap was just announced, the next event is shown whatever its
    seq. ``held``: a re-subscription with ``since`` awaits its reply, events arriving
    before it will be sent again after it. ``announced``: the head told by the last
    ``heads`` frame."""

    __slots__ = ("epoch", "seq", "fresh", "held", "announced")

    def __init__(self, epoch=None, seq=None):
        self.epoch = epoch
        self.seq = seq
        self.fresh = False
        self.held = False
        self.announced = None


class Positions:
    """The positions of the sources watched; ``start`` maps sources to ``(seq, epoch)``
    to begin from (``--since``)."""

    def __init__(self, start=None):
        self._positions = {source: Position(epoch, seq) for source, (seq, epoch) in (start or {}).items()}

    def get(self, source):
        """The :class:`Position` of ``source``, or None."""
        return self._positions.get(source)

    def subscription(self, source):
        """What ``events/subscribe`` is given for ``source``: its name, or an object
        with ``since`` (and ``epoch`` when known) once a position is known."""
        position = self._positions.get(source)
        if position is None or position.seq is None:
            return source
        item = {"name": source, "since": position.seq}
        if position.epoch is not None:
            item["epoch"] = position.epoch
        return item

    def describe(self, sources):
        """``dispatcher (after 812), system-state``: the sources and where they resume."""
        return ", ".join(
            f"{source} (after {self._positions[source].seq})"
            if source in self._positions and self._positions[source].seq is not None else source
            for source in sources
        )

    def hold(self, sources):
        """Re-subscriptions of ``sources`` are on their way: hold their events back, and
        forget what the last heads frame said (a new connection may be a new daemon)."""
        for source in sources:
            position = self._positions.get(source)
            if position is not None and position.seq is not None:
                position.held = True
                position.announced = None

    def release(self, sources):
        """The re-subscriptions of ``sources`` were answered (or failed)."""
        for source in sources:
            position = self._positions.get(source)
            if position is not None:
                position.held = False

    def accept(self, frame, source):
        """Whether to show event ``frame`` of ``source``; remembers its seq and epoch.
        Not shown: an event not newer than the last one shown of the same epoch, and
        one arriving while the source's re-subscription is held (it comes again)."""
        seq, epoch = frame.get("seq"), frame.get("epoch")
        if not _count(seq) or not isinstance(epoch, str):
            return True  # a current-state event after a gap, or a daemon without numbers
        position = self._positions.get(source)
        if position is None:
            self._positions[source] = Position(epoch, seq)
            return True
        if position.held:
            return False
        if position.epoch == epoch and not position.fresh and position.seq is not None and seq <= position.seq:
            return False
        position.epoch, position.seq, position.fresh = epoch, seq, False
        return True

    def gap(self, args):
        """``(line, fetch)`` for a gap frame's args: the line telling the user what was
        missed (None: nothing this client has not seen already), and whether to
        re-subscribe the source from its position (:meth:`subscription`) to fetch the
        missed events again (an overflow the daemon still has). Updates the position."""
        source, epoch, reason = args.get("source"), args.get("epoch"), args.get("reason")
        missed_from, first, head = args.get("missed_from"), args.get("first_available"), args.get("head")
        if not isinstance(source, str) or not isinstance(epoch, str) or not all(
                _count(n) for n in (missed_from, first, head)):
            return f"{source}: the daemon says events were missed ({reason}); it sent no usable numbers", False
        position = self._positions.setdefault(source, Position())
        position.announced = None
        if reason == OVERFLOW:
            return self._overflow(position, args, source, epoch, missed_from, first, head)
        # The daemon sends the source's current state next, then live events.
        position.epoch, position.seq, position.fresh = epoch, head, True
        if reason == EXPIRED:
            if first - 1 < missed_from:
                return f"{source}: missed events after {missed_from - 1} (expired)", False
            kept = f"the daemon keeps only {_numbers(first, head)}" if first <= head else "the daemon keeps none"
            return f"{source}: missed {span(missed_from, first - 1)} ({EXPIRED}: {kept})", False
        if reason == EPOCH_CHANGED:
            return (f"{source}: the daemon's event log was reset (new epoch {epoch}); "
                    "showing its current state"), False
        return f"{source}: missed events from {missed_from} ({reason}); showing its current state", False

    @staticmethod
    def _overflow(position, args, source, epoch, missed_from, first, head):
        missed_to = args.get("missed_to")
        missed_to = missed_to if _count(missed_to) else head
        seen = position.seq if position.seq is not None and position.epoch in (None, epoch) else None
        lost_from = missed_from if seen is None else max(missed_from, seen + 1)
        if lost_from > missed_to:
            return None, False  # already fetched again (after a heads frame, say)
        count = missed_to - lost_from + 1
        line = (f"{source}: {count} event{'s' if count != 1 else ''} dropped because this client fell "
                f"behind ({OVERFLOW}, {_numbers(lost_from, missed_to)})")
        position.epoch, position.fresh = epoch, False
        fetch_from = max(lost_from, first)
        if fetch_from > missed_to:
            position.seq = missed_to  # live events go on after the lost ones
            return line + "; the daemon no longer keeps them", False
        position.seq = fetch_from - 1
        if fetch_from == lost_from:
            return line + "; fetching them again", True
        return (line + f"; fetching {_numbers(fetch_from, missed_to)} again, the daemon no longer "
                       "keeps the others"), True

    def behind(self, heads):
        """``[(source, line)]`` for a heads frame's args: the sources whose events
        up to the head told by the *previous* heads frame have neither all arrived nor
        been announced by a gap (one interval later, a gap of the daemon has had time to
        arrive): re-subscribe them from their position (:meth:`subscription`)."""
        found = []
        for source, head in heads.items() if isinstance(heads, dict) else ():
            position = self._positions.get(source)
            if position is None or not _count(head):
                continue
            previous, position.announced = position.announced, head
            if previous is None or position.held or position.seq is None or position.seq >= previous:
                continue
            line = (f"{source}: {span(position.seq + 1, previous)} never arrived (the daemon is at "
                    f"{head}); fetching them again")
            found.append((source, line))
        return found
