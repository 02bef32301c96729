"""Follow a growing log file: complete new lines only, across truncation and rotation.

A :class:`LogFollower` remembers the file's identity (device and inode, and a digest of
its first line) and the offset just past the last complete line it returned. Each
:meth:`LogFollower.read_lines` returns the complete lines written since; a partial last
line is left for later. When the file was truncated, rewritten or replaced (Life
Preserver copies its log to ``<log>.old`` and truncates it, starting with a "Rotate
Logfile" line), the lines still unread in the old file are taken from the rotated copy
when it is recognisably ours, then the new file is read from its start.

:meth:`LogFollower.position` / the ``position`` argument persist all of that, so a
restarted daemon neither replays nor loses lines. Reads are plain file reads: the files
are local and each call reads at most ``max_bytes``.
"""

import hashlib
import os

HEAD_BYTES = 256


def _identity(st):
    return [st.st_dev, st.st_ino]


def _head_digest(f):
    """(digest, length) of the first line (at most HEAD_BYTES) of ``f``, read from its
    current position (the start), or ("", 0) when it has no complete first line yet."""
    data = f.read(HEAD_BYTES)
    end = data.find(b"\n")
    if end >= 0:
        data = data[: end + 1]
    elif len(data) < HEAD_BYTES:
        return "", 0
    return hashlib.sha256(data).hexdigest(), len(data)


def _decode(raw):
    return raw.decode("utf-8", "replace").rstrip("\r")


class LogFollower:
    """Reads the complete lines appended to ``path``.

    ``rotated_path`` is where a rotated copy of the file lands (``<path>.old`` for Life
    Preserver). ``position`` is a dict from :meth:`position` (a restart), or None for a
    first start, where ``from_end`` decides whether existing lines are skipped.
    """

    def __init__(self, path, rotated_path=None, position=None, from_end=True,
                 max_bytes=1 << 20):
        self.path = path
        self.rotated_path = rotated_path
        self.max_bytes = max_bytes
        self.more = False
        if position is not None:
            self._identity = position.get("identity")
            self._offset = int(position.get("offset", 0))
            self._head = position.get("head", "")
            self._head_len = int(position.get("head_len", 0))
        else:
            self._identity = None
            self._offset = 0
            self._head, self._head_len = "", 0
            if from_end:
                self._skip_to_end()

    def position(self):
        """A JSON-able dict from which a new follower resumes exactly here."""
        return {
            "identity": self._identity,
            "offset": self._offset,
            "head": self._head,
            "head_len": self._head_len,
        }

    def _skip_to_end(self):
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                self._identity = _identity(st)
                self._head, self._head_len = _head_digest(f)
                f.seek(0, os.SEEK_END)
                end = f.tell()
                # Stop after the last complete line: a partial one is still being written.
                f.seek(max(0, end - 65536))
                tail = f.read()
                cut = tail.rfind(b"\n")
                self._offset = end - len(tail) + cut + 1 if cut >= 0 else 0
        except FileNotFoundError:
            pass

    def read_lines(self):
        """The complete lines written since the last call (without line ends).

        Sets ``more`` when ``max_bytes`` stopped the read before the end.
        """
        lines = []
        self.more = False
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            if self._identity is not None:
                lines += self._rotated_remainder()
                self._reset(None)
            return lines
        with f:
            st = os.fstat(f.fileno())
            if self._identity is None:
                self._reset(_identity(st))
            elif self._replaced(f, st):
                lines += self._rotated_remainder()
                self._reset(_identity(st))
            lines += self._read_from(f)
            if not self._head:
                f.seek(0)
                self._head, self._head_len = _head_digest(f)
        return lines

    def _replaced(self, f, st):
        """True when ``f`` is no longer the file we were reading (or was truncated)."""
        if _identity(st) != self._identity or st.st_size < self._offset:
            return True
        if self._head:
            f.seek(0)
            return _head_digest(f) != (self._head, self._head_len)
        return False

    def _reset(self, identity):
        self._identity = identity
        self._offset = 0
        self._head, self._head_len = "", 0

    def _read_from(self, f):
        f.seek(self._offset)
        data = f.read(self.max_bytes)
        cut = data.rfind(b"\n")
        if cut >= 0:
            consumed, body = cut + 1, data[:cut]
        elif len(data) == self.max_bytes:
            # A "line" longer than max_bytes: take it as it is rather than stall on it.
            consumed, body = len(data), data
        else:
            return []
        self.more = len(data) == self.max_bytes
        self._offset += consumed
        return [_decode(raw) for raw in body.split(b"\n")]

    def _rotated_remainder(self):
        """Unread complete lines of our old file, from its rotated copy if it is ours."""
        if not self.rotated_path:
            return []
        try:
            f = open(self.rotated_path, "rb")
        except FileNotFoundError:
            return []
        with f:
            st = os.fstat(f.fileno())
            ours = _identity(st) == self._identity
            if not ours and self._head:
                f.seek(0)
                ours = _head_digest(f) == (self._head, self._head_len)
            if not ours or st.st_size < self._offset:
                return []
            f.seek(self._offset)
            data = f.read()
        cut = data.rfind(b"\n")
        return [_decode(raw) for raw in data[: cut + 1].split(b"\n")[:-1]] if cut >= 0 else []
