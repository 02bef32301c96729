"""Files written safely: the one atomic write everything uses, and private directories."""

import errno
import os
import secrets


def make_private_dirs(path):
    """Create the directory ``path`` and any missing parents with mode 0700.

    ``os.makedirs`` applies its mode to the last directory only, so the parents are made
    one by one here.
    """
    path = os.path.abspath(path)
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass


def atomic_write(path, data, mode=0o600):
    """Replace the file ``path`` with ``data`` (bytes or str) in one step.

    The data goes to a temporary file in the same directory (``os.replace`` is atomic only
    within one filesystem), is flushed to disk, then renamed over ``path``. The temporary
    file is created with ``mode`` from the start, so the content is never readable by
    others, even for a moment.
    """
    if isinstance(data, str):
        # surrogateescape gives back any undecodable bytes (see CachedFile) unchanged.
        data = data.encode("utf-8", "surrogateescape")
    directory, base = os.path.split(os.path.abspath(path))
    temp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            # The umask may have narrowed the mode; the caller asked for this exact one.
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        _unlink_quietly(temp)
        raise
    _fsync_directory(directory)


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_directory(directory):
    # Makes the rename itself durable; some filesystems refuse, which is harmless.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.EBADF, errno.EISDIR):
            raise
    finally:
        os.close(fd)
