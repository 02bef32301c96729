"""Finding the processes a test started, from /proc."""

import os
import time
import uuid


def unique_sleep():
    """A sleep duration no other process has on its command line (GNU and BSD sleep
    take fractions), to find the sleeps a test started."""
    return "299." + str(uuid.uuid4().int)[:9]


def _live(with_parent=False):
    """(pid, argv, pgid) of every live (not zombie) process (and its parent's pid)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().decode("utf-8", "replace").split("\0")
            with open(f"/proc/{name}/stat") as f:
                # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            yield (int(name), argv, int(fields[2])) + ((int(fields[1]),) if with_parent else ())


def group_members(pgid):
    """Pids of the live processes of process group ``pgid``."""
    return [pid for pid, _, group in _live() if group == pgid]


def children_of(pid):
    """Pids of the live child processes of ``pid``."""
    return [child for child, _, _, parent in _live(with_parent=True) if parent == pid]


def open_descriptors(pid):
    """How many file descriptors ``pid`` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def alive_with(marker):
    """{pid: pgid} of live (not zombie) processes with ``marker`` as one of their
    arguments."""
    return {pid: pgid for pid, argv, pgid in _live() if marker in argv}


def wait_for_count(marker, count, timeout=10):
    """Wait (real time) until exactly ``count`` processes carry ``marker``; returns them."""
    deadline = time.monotonic() + timeout
    while True:
        found = alive_with(marker)
        if len(found) == count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def kill_all(marker):
    """Clean up after a failed test: SIGKILL whatever carries ``marker``."""
    for pid in alive_with(marker):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
