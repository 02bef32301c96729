"""Small private files that sysadmd reads often and ``sysadmd-admin`` rewrites.

The users and keys files share three needs: a write never leaves a half-written file
behind (a crash mid-write must not lock everybody out), the file is readable by its owner
only, and the daemon sees an edit without a restart yet does not re-parse on every login.
"""

import fcntl
import os

from sysadmd.util.files import atomic_write, make_private_dirs


def is_blank_or_comment(line):
    """True for a line the line-based files ignore: blank, or starting with ``#``."""
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def join_lines(lines):
    """Join lines into file text, each ending with a newline."""
    return "".join(line + "\n" for line in lines)


def _decode(data):
    # Bytes that are not UTF-8 survive as surrogates: the parser then reports the line
    # they are on, and a rewrite keeps them in comments as they were.
    return data.decode("utf-8", "surrogateescape")


class CachedFile:
    """A text file parsed again only when it changed on disk.

    ``parse(text)`` turns the file's content into a value; a missing file parses as the
    empty string. The cache key is ``(st_mtime_ns, st_size, st_ino)``: every
    :func:`atomic_write` makes a new inode, and a hand edit changes the time or size.
    """

    def __init__(self, path, parse):
        self.path = path
        self._parse = parse
        # One tuple assigned at once, so threads reading concurrently never see a key
        # paired with another version's value.
        self._cached = None

    def read(self):
        """Return the parsed content, re-reading the file only when it changed."""
        try:
            with open(self.path, "rb") as handle:
                # fstat of the open file: the key describes exactly the bytes read.
                info = os.fstat(handle.fileno())
                key = (info.st_mtime_ns, info.st_size, info.st_ino)
                cached = self._cached
                if cached is not None and cached[0] == key:
                    return cached[1]
                text = _decode(handle.read())
        except FileNotFoundError:
            key = None
            cached = self._cached
            if cached is not None and cached[0] is None:
                return cached[1]
            text = ""
        value = self._parse(text)
        self._cached = (key, value)
        return value

    def read_text(self):
        """Return the file's current text without using the cache ('' when missing)."""
        try:
            with open(self.path, "rb") as handle:
                return _decode(handle.read())
        except FileNotFoundError:
            return ""

    def update(self, edit):
        """Rewrite the file as ``edit(current_text)`` returns it; return ``edit``'s result.

        ``edit`` returns ``(new_text, result)``. An exclusive lock on ``<path>.lock`` keeps
        two ``sysadmd-admin`` runs from losing each other's change. The current text is
        parsed first, so a damaged file is reported rather than silently rewritten. The
        file is not written when the text is unchanged. Missing parent directories are
        created with mode 0700.
        """
        make_private_dirs(os.path.dirname(os.path.abspath(self.path)))
        lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            text = self.read_text()
            self._parse(text)
            new_text, result = edit(text)
            if new_text != text:
                atomic_write(self.path, new_text)
            return result
        finally:
            os.close(lock_fd)
