"""Which update check a machine gets (``[source:system-state] updates``).

``auto`` picks ``pkg`` on FreeBSD and ``apt`` on Debian and its derivatives (Ubuntu,
Raspberry Pi OS, Mint...), recognised as Debian itself recognises them: the file
``/etc/debian_version`` (every Debian-based system has it, from base-files), or else
``debian`` or ``ubuntu`` in ``ID``/``ID_LIKE`` of os-release (``/etc/os-release``, falling
back to ``/usr/lib/os-release`` as os-release(5) says). Anywhere else it is ``none``, as
it is when the tool is not installed.
"""

import os
import platform
import shlex
from typing import NamedTuple

from sysadmd.systemstate.apt import AptBackend
from sysadmd.systemstate.pkg import PkgBackend
from sysadmd.systemstate.updates import CommandBackend
from sysadmd.util.commands import MINIMAL_ENV
from sysadmd.util.process import find_executable

OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")
DEBIAN_VERSION = "/etc/debian_version"
_DEBIAN_IDS = {"debian", "ubuntu"}


class Choice(NamedTuple):
    """The chosen backend (None: no update checks) and why, for the log."""

    backend: object | None
    reason: str


def os_release_ids(paths=OS_RELEASE):
    """The words of ``ID`` and ``ID_LIKE`` in the first os-release file that exists."""
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        ids = set()
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() in ("ID", "ID_LIKE"):
                # A quoted value holds several words: ID_LIKE="ubuntu debian".
                try:
                    value = " ".join(shlex.split(value))
                except ValueError:
                    value = value.strip("'\" ")
                ids.update(value.lower().split())
        return ids
    return set()


def detect(system=None, debian_version=DEBIAN_VERSION, os_release=OS_RELEASE):
    """``("pkg" | "apt" | None, why)`` for this machine."""
    system = platform.system() if system is None else system
    if system == "FreeBSD":
        return "pkg", "FreeBSD"
    if os.path.exists(debian_version):
        return "apt", f"{debian_version} exists"
    ids = os_release_ids(os_release)
    if ids & _DEBIAN_IDS:
        return "apt", f"os-release ID/ID_LIKE: {' '.join(sorted(ids))}"
    return None, f"{system or 'this system'} is neither FreeBSD nor Debian-based"


def choose(kind, command=None, refresh=False, source="system-state", system=None,
           debian_version=DEBIAN_VERSION, os_release=OS_RELEASE, lookup=find_executable):
    """The :class:`Choice` for the ``updates``, ``updates_command`` and
    ``updates_refresh`` options."""
    if kind == "none":
        return Choice(None, "updates = none")
    if command:
        return Choice(CommandBackend(command), f"updates_command {command[0]}")
    why = f"updates = {kind}"
    if kind == "auto":
        kind, found = detect(system, debian_version, os_release)
        if kind is None:
            return Choice(None, f"updates = auto: {found}")
        program = "apt-get" if kind == "apt" else "pkg"
        path, _ = lookup(program, MINIMAL_ENV)
        if path is None:
            return Choice(None, f"updates = auto: {found}, but there is no {program}")
        why = f"updates = auto: {found}"
    if kind == "apt":
        return Choice(AptBackend(refresh=refresh, source=source), why)
    return Choice(PkgBackend(refresh=refresh, source=source), why)
