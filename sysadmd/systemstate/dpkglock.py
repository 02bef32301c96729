"""Is a package manager changing packages right now? Asked of dpkg's own locks.

Every program that changes Debian packages (``apt-get``/``apt`` install or upgrade,
``aptitude``, ``unattended-upgrade``'s install phase, PackageKit, ``dpkg -i``) holds a
POSIX lock on ``/var/lib/dpkg/lock-frontend`` and ``/var/lib/dpkg/lock`` while it works,
and only then: that is what keeps two of them apart. So the lock is the sound test, where
a list of process names would miss some frontends and count read-only runs (``dpkg -l``,
``apt-get -s``, ``apt-get update``, none of which takes these locks).

The test takes no lock (it must never make a real upgrade fail): ``fcntl(F_GETLK)``
asks the kernel who would stop us from locking the file, with a read-only descriptor.
A daemon not running as root cannot open the files (mode 0640); it reads the same answer
from ``/proc/locks`` by the files' device and inode. Linux only: elsewhere (no dpkg
there) nothing is ever held.
"""

import fcntl
import os
import struct
import sys
from typing import NamedTuple

DPKG_LOCKS = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock")

# Linux's struct flock with a 64-bit off_t (Python is built with large file support):
# l_type, l_whence, l_start, l_len, l_pid; native alignment pads it like the C struct.
_FLOCK = struct.Struct("hhqqi")


class LockHolder(NamedTuple):
    """A held lock: the file, and the holder's pid when the kernel says it (None for an
    open-file-description lock, or a holder outside our pid namespace)."""

    path: str
    pid: int | None

    def describe(self, proc="/proc"):
        """``dpkg lock /var/lib/dpkg/lock held by apt-get (pid 1234)``."""
        if self.pid is None:
            return f"dpkg lock {self.path} is held"
        return f"dpkg lock {self.path} held by {process_name(self.pid, proc)} (pid {self.pid})"


def process_name(pid, proc="/proc"):
    """The command name of ``pid`` (``/proc/PID/comm``), or ``a process`` if unknown."""
    try:
        with open(os.path.join(proc, str(pid), "comm"), encoding="utf-8", errors="replace") as f:
            return f.read().strip() or "a process"
    except OSError:
        return "a process"


def held_lock(paths=DPKG_LOCKS, proc_locks="/proc/locks"):
    """The first of ``paths`` that some other process holds a lock on, as a
    :class:`LockHolder`; None when none is held (or the files do not exist)."""
    if not sys.platform.startswith("linux"):
        return None
    unreadable = []
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
        except FileNotFoundError:
            continue
        except OSError:
            unreadable.append(path)
            continue
        try:
            held, pid = _get_lock(fd)
        except OSError:
            unreadable.append(path)
            continue
        finally:
            # We hold no lock on it, so closing releases nothing of anyone's.
            os.close(fd)
        if held:
            return LockHolder(path, pid)
    if unreadable:
        return held_in_proc_locks(unreadable, proc_locks)
    return None


def _get_lock(fd):
    """(held, pid) for a write lock on the whole file, by F_GETLK (takes no lock)."""
    request = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    answer = fcntl.fcntl(fd, fcntl.F_GETLK, request)
    l_type, _, _, _, pid = _FLOCK.unpack(answer[: _FLOCK.size])
    if l_type == fcntl.F_UNLCK:
        return False, None
    return True, pid if pid > 0 else None


def held_in_proc_locks(paths, proc_locks="/proc/locks"):
    """The first of ``paths`` with a lock in ``/proc/locks``, as a :class:`LockHolder`,
    else None; the answer for files we cannot open (lines like ``1: POSIX
    ADVISORY WRITE 1234 fe:00:402117 0 EOF``; ``->`` lines are waiters, not holders)."""
    wanted = {}
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        wanted[(os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)] = path
    if not wanted:
        return None
    try:
        with open(proc_locks, encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or "->" in fields:
            continue
        try:
            major, minor, inode = fields[5].split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
            pid = int(fields[4])
        except ValueError:
            continue
        if key in wanted:
            return LockHolder(wanted[key], pid if pid > 0 else None)
    return None
