"""The ``updates`` field of a system-state event, and what a check for updates returns.

The field is what the original SysAdm server sent and its Qt client reads::

    "updates": {"status": "noupdates" | "updatesavailable" | "rebootrequired" |
                          "updaterunning" | "checkingforupdates",
                "details": "<text>",
                "last_check": "<ISO 8601 time of the last check that succeeded, or ''>"}

A check is done by a backend (:class:`IUpdateBackend`): :mod:`.apt`, :mod:`.pkg`, or
:class:`CommandBackend`, the administrator's own program (``updates_command``).
:mod:`.checker` runs the checks in the background; :mod:`.backends` picks the backend.

When several things are true, the status says the most pressing, as the original did:
a required reboot, then an update running, then updates available.
"""

import shlex
import time
from typing import NamedTuple

from zope.interface import Attribute, Interface, implementer

from sysadmd.util.commands import CommandError

NO_UPDATES = "noupdates"
UPDATES_AVAILABLE = "updatesavailable"
REBOOT_REQUIRED = "rebootrequired"
UPDATE_RUNNING = "updaterunning"
CHECKING = "checkingforupdates"

#: What a finished check may report (``checkingforupdates`` is only ever ours).
CHECK_STATUSES = (NO_UPDATES, UPDATES_AVAILABLE, REBOOT_REQUIRED, UPDATE_RUNNING)

#: Package lines kept in ``details``: the event is cached and sent to every subscriber at
#: every change, and a release upgrade can list thousands of packages.
MAX_PACKAGE_LINES = 50


class CheckResult(NamedTuple):
    """What a check found: one of :data:`CHECK_STATUSES` and a text for people."""

    status: str
    details: str


class UpdateCheckFailed(Exception):
    """A check that found nothing usable; its message is one line for the log."""


class IUpdateBackend(Interface):
    """One way of checking for updates (apt, pkg, an administrator's command).

    An implementer only decides *what* to run and how to read it: every program is run
    through the ``run`` it is given, so the source's timeout, process groups and stop
    apply, and it never touches the network unless it was configured to.
    """

    name = Attribute("A short name for logs, e.g. 'apt'.")

    def check(run):
        """Check once. ``run(argv)`` starts a program (argv list, no shell) and returns a
        Deferred of :class:`sysadmd.util.commands.CommandResult`, failing with
        :class:`sysadmd.util.commands.CommandError`. Returns a Deferred of
        :class:`CheckResult`, failing with ``CommandError`` or
        :class:`UpdateCheckFailed` when nothing can be said."""


def iso_time(seconds):
    """``seconds`` since the epoch as an ISO 8601 local time with its UTC offset, to the
    second (``2026-11-30T20:15:00+01:00``): Qt's ``Qt::ISODate`` reads it."""
    local = time.localtime(seconds)
    offset = local.tm_gmtoff // 60
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset), 60)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', local)}{sign}{hours:02d}:{minutes:02d}"


def package_lines(header, lines, limit=MAX_PACKAGE_LINES):
    """``header`` then ``lines``, one per line, cut to ``limit`` lines with a last line
    saying how many were left out."""
    lines = list(lines)
    shown = lines[:limit]
    if len(lines) > limit:
        shown.append(f"... and {len(lines) - limit} more")
    return "\n".join([header] + shown)


def plural(count, word):
    """``3 packages``, ``1 package``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def refresh_lists(run, argv, failures, what):
    """Run ``argv`` (apt-get update, pkg update) before a check: a failure is recorded in
    ``failures`` (a :class:`sysadmd.util.commands.RepeatedFailure`) and becomes a note
    naming ``what``, and the check goes on with the lists as they are. Fires with the
    note, or None."""

    def ran(result):
        if result.exit_code != 0:
            raise CommandError(argv, f"exit code {result.exit_code}: "
                                     f"{result.first_error_line() or 'no output'}")
        failures.succeeded()

    def failed(failure):
        failure.trap(CommandError)
        failures.failed(failure.value)
        return f"{what} could not be refreshed ({failure.value})."

    return run(argv).addCallback(ran).addErrback(failed)


def split_command(text):
    """The ``updates_command`` option: split like a shell would (quotes, backslashes),
    run without one. Empty: no command (None)."""
    try:
        argv = shlex.split(text)
    except ValueError as e:
        raise ValueError(f"cannot split {text.strip()!r} into arguments: {e}") from None
    return argv or None


@implementer(IUpdateBackend)
class CommandBackend:
    """The administrator's own check (``updates_command``).

    The program must print the status on its first line (``noupdates``,
    ``updatesavailable``, ``rebootrequired`` or ``updaterunning``), may print details
    on the lines after it, and must exit 0. Anything else is a failed check.
    """

    name = "updates_command"

    def __init__(self, argv):
        self.argv = list(argv)

    def check(self, run):
        """Run the program and read its first line."""
        return run(self.argv).addCallback(self._read)

    def _read(self, result):
        if result.exit_code != 0:
            raise UpdateCheckFailed(
                f"{self.argv[0]} exited with {result.exit_code}: "
                f"{result.first_error_line() or 'no output'}"
            )
        lines = result.stdout.strip("\n").splitlines()
        status = lines[0].strip() if lines else ""
        if status not in CHECK_STATUSES:
            raise UpdateCheckFailed(
                f"{self.argv[0]} printed {status!r} on its first line, not one of "
                + ", ".join(CHECK_STATUSES)
            )
        return CheckResult(status, "\n".join(lines[1:]).strip())
