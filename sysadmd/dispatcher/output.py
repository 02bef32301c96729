"""A job's output file: every chunk its commands wrote, as it arrived, by byte offset.

The file (``<state_dir>/output/<job seq>.out``, mode 0600) is the truth about a job's
output: chunks are appended the moment they are read from the child, so a daemon killed
mid-job keeps everything written until then. It starts with :data:`MAGIC`, then holds
records, each a 15-byte header (:data:`RECORD`: the chunk's offset in the job's output, its
length, its command's index, its stream) and the raw bytes. Offsets count the raw bytes
of the whole output, so they stay valid when the middle is dropped.

Past ``max_bytes`` of kept output, the file is rewritten (a new file renamed over the old
one: a reader with the old one open keeps a consistent copy) with the first ``head_bytes``
and the newest half of the rest of the budget: each byte is copied about once more, and
at least half the budget of newest output is always kept. A hole between two records'
offsets is what was dropped. A record cut short by a crash is ignored.
"""

import bisect
import errno
import os
import struct
from array import array

MAGIC = b"sysadmd-output 1\n"
RECORD = struct.Struct(">QIHB")
STDOUT, STDERR = 1, 2
STREAMS = {STDOUT: "stdout", STDERR: "stderr"}
HEAD_BYTES = 1024 * 1024
# A mark (offset -> file position) every MARK_EVERY bytes of output: reading at an offset
# scans at most this much of the file's headers.
MARK_EVERY = 256 * 1024
COPY_BYTES = 1024 * 1024


class Chunk:
    """Bytes of one command's stream at ``offset`` of the job's output."""

    __slots__ = ("command", "stream", "offset", "data")

    def __init__(self, command, stream, offset, data):
        self.command = command
        self.stream = stream
        self.offset = offset
        self.data = data

    def wire(self):
        """The chunk as ``output`` and ``job_output`` carry it (text decoded as UTF-8
        with replacement)."""
        return {
            "command": self.command,
            "stream": STREAMS.get(self.stream, "stdout"),
            "offset": self.offset,
            "data": self.data.decode("utf-8", "replace"),
        }


class Slice:
    """What one read returned: contiguous bytes from ``offset`` to ``next_offset``
    (``offset`` is past the one asked for when the bytes there were dropped)."""

    __slots__ = ("offset", "next_offset", "chunks", "cursor")

    def __init__(self, offset, next_offset, chunks, cursor=None):
        self.offset = offset
        self.next_offset = next_offset
        self.chunks = chunks
        self.cursor = cursor


def _incomplete_tail(data):
    """How many bytes at the end of ``data`` start a UTF-8 character it does not finish
    (0 when it ends on a boundary, or the bytes are not valid UTF-8 anyway)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return 0
        if byte >= 0xC0:
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return back if need > back else 0
    return 0


class OutputFile:
    """One job's output file, open for appending (:meth:`create`) or reading (:meth:`open`).

    ``end`` is the offset after the last byte written; ``dropped`` counts the bytes
    dropped from the middle (or lost to a failed write). ``max_bytes`` (0: no limit) is
    ``[dispatcher] max_output_bytes``.
    """

    def __init__(self, path, max_bytes=0, head_bytes=HEAD_BYTES):
        self.path = path
        self.max_bytes = max_bytes
        self.head_bytes = head_bytes
        self.end = 0
        self.dropped = 0
        self.kept = 0
        self.write_error = None
        self._fd = None
        self._read_fd = None
        # Changes when the file is rewritten or cut: cursors of earlier reads are stale.
        self._generation = 0
        self._marks_offset = array("Q")
        self._marks_position = array("Q")
        self._next_mark = 0
        self._size = 0

    @classmethod
    def create(cls, path, max_bytes=0, head_bytes=HEAD_BYTES):
        """A new, empty output file at ``path`` (replacing any), open for appending.
        Raises OSError when it cannot be created."""
        output = cls(path, max_bytes, head_bytes)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, MAGIC)
        except OSError:
            os.close(fd)
            raise
        output._fd = fd
        output._size = len(MAGIC)
        return output

    @classmethod
    def open(cls, path):
        """The existing output file at ``path``, for reading (its records are scanned
        once to learn its end and where offsets are). Raises OSError (ENOENT when the job
        has none)."""
        output = cls(path)
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                raise OSError(f"{path} is not a sysadmd output file")
            output._size = len(MAGIC)
            for offset, length, _, _, position in _records(f):
                output._account(offset, length, position)
        return output

    @property
    def generation(self):
        """Changes whenever bytes already written move or go (a rewrite, a cut)."""
        return self._generation

    @property
    def writable(self):
        """True while open for appending."""
        return self._fd is not None

    def _account(self, offset, length, position):
        if offset > self.end:
            self.dropped += offset - self.end
        if offset >= self._next_mark or not self._marks_offset:
            self._marks_offset.append(offset)
            self._marks_position.append(position)
            self._next_mark = offset + MARK_EVERY
        self.end = offset + length
        self.kept += length
        self._size = position + RECORD.size + length

    def append(self, command, stream, data):
        """Append ``data`` of command ``command``'s ``stream`` (STDOUT or STDERR). A write
        that fails (a full disk) loses these bytes, counted as dropped; the error is kept
        in ``write_error`` and returned (None when written)."""
        if not data:
            return None
        offset, position = self.end, self._size
        try:
            written = os.write(self._fd, RECORD.pack(offset, len(data), command, stream) + data)
        except OSError as e:
            written, error = 0, e
        else:
            error = None if written == RECORD.size + len(data) else OSError("short write")
        if error is not None:
            # A torn record would hide every later one: cut it, and count the bytes lost.
            self._truncate(position)
            self.end += len(data)
            self.dropped += len(data)
            self.write_error = error
            return error
        self._account(offset, len(data), position)
        if self.max_bytes and self.kept > self.max_bytes:
            self._drop_middle()
        return None

    def _truncate(self, position):
        self._generation += 1
        try:
            os.ftruncate(self._fd, position)
        except OSError:
            pass

    def close(self):
        """Stop appending."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- reading --------------------------------------------------------------------

    def read(self, offset, limit, final=False, cursor=None):
        """Up to ``limit`` bytes from ``offset`` (or from the first kept byte after it), as
        a :class:`Slice` of chunks, adjacent bytes of one command and stream merged. The
        slice stops at a dropped range, and (unless ``final``: nothing more will be
        written) before a UTF-8 character whose end is not written yet. ``cursor``, the
        last slice's, lets a reader that goes on where it stopped skip the search."""
        if offset >= self.end or limit <= 0:
            return Slice(offset, offset, [])
        if cursor is not None and cursor[0] == self._generation and cursor[1] == offset:
            position = cursor[2]
        else:
            index = bisect.bisect_right(self._marks_offset, offset) - 1
            position = self._marks_position[index] if index >= 0 else len(MAGIC)
        fd = self._reading_fd()
        size = os.fstat(fd).st_size
        chunks = []
        start = None
        taken = 0
        while position + RECORD.size <= size:
            rec_offset, length, command, stream = RECORD.unpack(os.pread(fd, RECORD.size, position))
            body = position + RECORD.size
            if body + length > size:
                break  # cut short (a crash while writing): what is there is all
            if rec_offset + length <= offset:
                position = body + length
                continue
            if start is None:
                start = max(offset, rec_offset)
            elif rec_offset != start + taken:
                break  # a dropped range: the next read starts past it
            skip = start + taken - rec_offset
            want = min(length - skip, limit - taken)
            data = os.pread(fd, want, body + skip)
            last = chunks[-1] if chunks else None
            if last is not None and last.command == command and last.stream == stream:
                last.data += data
            else:
                chunks.append(Chunk(command, stream, rec_offset + skip, data))
            taken += want
            if skip + want < length:
                break  # the limit: the next read starts inside this record
            position = body + length
            if taken >= limit:
                break
        if start is None:
            return Slice(offset, offset, [])
        cursor = (self._generation, start + taken, position)
        if chunks and not (final and start + taken == self.end):
            cut = _incomplete_tail(chunks[-1].data)
            if cut and cut < len(chunks[-1].data):
                chunks[-1].data = chunks[-1].data[:-cut]
                taken -= cut
                cursor = None  # the end moved back, maybe into an earlier record
        return Slice(start, start + taken, chunks, cursor)

    def _reading_fd(self):
        if self._read_fd is None:
            self._read_fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        return self._read_fd

    def release(self):
        """Close the descriptor reads use (opened again when needed)."""
        if self._read_fd is not None:
            os.close(self._read_fd)
            self._read_fd = None

    # -- dropping the middle --------------------------------------------------------

    def _drop_middle(self):
        """Rewrite the file with the first ``head_bytes`` and the newest half of the
        rest of the budget; the offsets between are the dropped ones."""
        keep_from = self.end - max((self.max_bytes - self.head_bytes) // 2, 1)
        temporary = self.path + ".tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            with open(self.path, "rb") as f, os.fdopen(fd, "wb", buffering=0, closefd=False) as out:
                out.write(MAGIC)
                f.seek(len(MAGIC))
                head_end = self._size
                for offset, length, command, stream, position in _records(f):
                    if offset < self.head_bytes:
                        continue  # the head (its last record whole) is copied as it is
                    head_end = position
                    break
                _copy(f, out, len(MAGIC), head_end - len(MAGIC))
                f.seek(head_end)
                for offset, length, command, stream, position in _records(f):
                    if offset + length <= keep_from:
                        continue
                    skip = max(0, keep_from - offset)
                    f.seek(position + RECORD.size + skip)
                    out.write(RECORD.pack(offset + skip, length - skip, command, stream) + f.read(length - skip))
                    _copy(f, out, position + RECORD.size + length, self._size - (position + RECORD.size + length))
                    break
            os.replace(temporary, self.path)
        except OSError as e:
            os.close(fd)
            _unlink_quietly(temporary)
            # Keeping everything beats losing the file; try again after another budget.
            self.write_error = e
            self.max_bytes += self.max_bytes
            return
        os.close(self._fd)
        self._fd = fd
        self._generation += 1
        self.release()  # it reads the old file
        os.lseek(fd, 0, os.SEEK_END)
        end = self.end
        self.end = self.dropped = self.kept = self._next_mark = 0
        del self._marks_offset[:]
        del self._marks_position[:]
        with open(self.path, "rb") as f:
            f.seek(len(MAGIC))
            self._size = len(MAGIC)
            for offset, length, _, _, position in _records(f):
                self._account(offset, length, position)
        self.dropped += end - self.end
        self.end = end


def _records(f):
    """``(offset, length, command, stream, position)`` of each whole record from the file
    position of ``f`` on (the caller may seek between records; each header is read at
    the position after the last record yielded)."""
    position = f.tell()
    size = os.fstat(f.fileno()).st_size
    while position + RECORD.size <= size:
        f.seek(position)
        header = f.read(RECORD.size)
        offset, length, command, stream = RECORD.unpack(header)
        if position + RECORD.size + length > size:
            return  # torn: written when the daemon was killed
        yield offset, length, command, stream, position
        position += RECORD.size + length


def _copy(source, target, position, count):
    if hasattr(os, "copy_file_range"):
        # In the kernel: no bytes through Python while the reactor waits.
        try:
            while count > 0:
                copied = os.copy_file_range(source.fileno(), target.fileno(), count, position)
                if not copied:
                    return
                position += copied
                count -= copied
            return
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
    source.seek(position)
    while count > 0:
        data = source.read(min(COPY_BYTES, count))
        if not data:
            return
        target.write(data)
        count -= len(data)


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def command_logs(path, commands, cap):
    """Each command's log from the output file at ``path``: ``{index: (text, left_out)}``,
    the last ``cap`` bytes of its stdout and stderr in order, and how many bytes before
    them are not included (dropped ones too). Runs off the reactor thread (it may read
    ``cap`` bytes per command). Raises OSError when there is no file."""
    spans = {}
    end = 0
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise OSError(f"{path} is not a sysadmd output file")
        for offset, length, command, _, position in _records(f):
            # A dropped range is counted to the command whose record follows it.
            spans.setdefault(command, []).append((position, length, offset - end))
            end = offset + length
        logs = {}
        for command, records in spans.items():
            if command >= commands:
                continue
            kept, parts = 0, []
            left_out = 0
            for position, length, hole in reversed(records):
                if kept >= cap:
                    left_out += length + hole
                    continue
                take = min(length, cap - kept)
                f.seek(position + RECORD.size + length - take)
                parts.append(f.read(take))
                kept += take
                left_out += (length - take) + hole
            data = b"".join(reversed(parts))
            logs[command] = (data.decode("utf-8", "replace"), left_out)
    return logs
