"""Replication progress from the ``zfs send -v`` log a Life Preserver replication writes.

The log holds an estimate, then one line per second of ``<time> <bytes sent> <snapshot>``::

    full send of tank/data@auto-2026-11-27-10-00-00 estimated size is 1.20G
    total estimated size is 1.20G
    TIME        SENT   SNAPSHOT
    10:00:06   1.03M   tank/data@auto-2026-11-27-10-00-00

:class:`ReplicationProgress` turns those lines into the message
``"Replicating <dataset>: <sent>/<total> (<pct>%)"`` (``<total>`` is ``??`` and the
percentage is left out when there is no estimate), only when the sent figure changes.
"""

import re

_UNITS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([KMGTPE]?)(?:i?B)?$", re.IGNORECASE)
_TIME = re.compile(r"^\d{1,2}:\d{2}:\d{2}$")


def size_in_bytes(text):
    """``"1.5K"`` -> 1536.0, ``"1234"`` -> 1234.0; None when it is not a size."""
    match = _SIZE.match(text.strip())
    if not match:
        return None
    return float(match.group(1)) * 1024 ** _UNITS[match.group(2).upper()]


def percent_text(done, total):
    """The percentage of ``done`` in ``total`` cut to one decimal, as the original
    showed it: ``"45.5%"``, ``"50%"``."""
    value = int(done * 1000 / total) / 10.0
    return f"{value:.1f}".rstrip("0").rstrip(".") + "%"


class ReplicationProgress:
    """The progress of one replication of ``dataset``, fed line by line."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.total = None
        self._total_is_final = False
        self._last_sent = None

    def feed(self, line):
        """Read one complete line; returns the progress message when the sent figure
        changed, else None."""
        text = line.strip()
        lower = text.lower()
        if "estimated size is" in lower:
            estimate = text[lower.index("estimated size is") + len("estimated size is"):]
            estimate = estimate.split()[0] if estimate.split() else ""
            if lower.startswith("total estimated size is"):
                self.total, self._total_is_final = estimate, True
            elif not self._total_is_final:
                self.total = estimate
            return None
        fields = text.split()
        if len(fields) != 3 or not _TIME.match(fields[0]):
            return None
        sent = fields[1]
        if size_in_bytes(sent) is None or sent == self._last_sent:
            return None
        self._last_sent = sent
        return self.message(sent)

    def message(self, sent):
        """The progress message for ``sent`` (as printed by zfs send)."""
        total = self.total if self.total else "??"
        status = f"{sent}/{total}"
        done, whole = size_in_bytes(sent), size_in_bytes(total)
        if done is not None and whole:
            status += f" ({percent_text(done, whole)})"
        return f"Replicating {self.dataset}: {status}"
