"""Updates on FreeBSD, with ``pkg`` and ``freebsd-version``.

- Reboot required: ``freebsd-version -k -r`` prints the installed kernel's version, then
  the running kernel's; when they differ, a new kernel (normally a newer one, from
  ``freebsd-update`` or ``pkg`` base packages) waits for a reboot. Where there is no
  installed kernel to read (a jail), the check goes on without it.
- Updates available: ``pkg upgrade -n -U`` (dry run, no catalogue update) prints
  "Your packages are up to date." or "The following N package(s) will be affected" and
  the packages by section (exit status 0, or 1 when there is something to do). The
  catalogue is updated (``pkg update -q``, network) first only with ``updates_refresh``.
- Update running: pkg's own database lock ("Cannot get an advisory lock on a database,
  it is locked by another process") means a pkg that changes packages is at work.
"""

import re
from typing import NamedTuple

from twisted.internet import defer
from zope.interface import implementer

from sysadmd.systemstate.updates import (
    NO_UPDATES,
    REBOOT_REQUIRED,
    UPDATE_RUNNING,
    UPDATES_AVAILABLE,
    CheckResult,
    IUpdateBackend,
    UpdateCheckFailed,
    package_lines,
    plural,
    refresh_lists,
)
from sysadmd.util.commands import CommandError, RepeatedFailure
from sysadmd.util.log import Logger

_AFFECTED = re.compile(r"The following (\d+) package\(s\) will be affected")
_UP_TO_DATE = "Your packages are up to date"
_LOCKED = "Cannot get an advisory lock on a database"
_SECTION = re.compile(r"^(?:Installed|New) packages to be (\w+):")
_PACKAGE = re.compile(r"^\s+(\S+?): (.+)$")
# Some pkg versions color their summary lines.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class PkgPlan(NamedTuple):
    """What ``pkg upgrade -n`` would do: None when its output says nothing usable."""

    count: int | None
    lines: list[str]  # "upgraded: curl 8.4.0 -> 8.5.0"
    locked: bool


def parse_upgrade(text):
    """The :class:`PkgPlan` of ``pkg upgrade -n`` output (stdout and stderr together)."""
    text = _ANSI.sub("", text)
    if _LOCKED in text:
        return PkgPlan(None, [], True)
    match = _AFFECTED.search(text)
    if match is None:
        return PkgPlan(0 if _UP_TO_DATE in text else None, [], False)
    lines, section = [], None
    for line in text.splitlines():
        heading = _SECTION.match(line)
        if heading:
            section = heading.group(1).lower()
            continue
        package = _PACKAGE.match(line) if section else None
        if package:
            lines.append(f"{section}: {package.group(1)} {package.group(2).strip()}")
        elif not line.strip() and lines:
            section = None
    return PkgPlan(int(match.group(1)), lines, False)


def describe_plan(plan):
    """``details`` for a plan with a count."""
    if not plan.count:
        return "No updates: your packages are up to date (pkg upgrade -n, local catalogue)."
    return package_lines(
        f"{plural(plan.count, 'package')} to change (pkg upgrade -n):", plan.lines
    )


@implementer(IUpdateBackend)
class PkgBackend:
    """Checks with pkg (see the module docstring); program paths are parameters."""

    name = "pkg"
    log = Logger()

    def __init__(self, pkg="pkg", freebsd_version="freebsd-version", refresh=False,
                 source="system-state"):
        self.pkg = pkg
        self.freebsd_version = freebsd_version
        self.refresh = refresh
        self._refresh_failures = RepeatedFailure(self.log, source, "pkg update")
        self._kernel_failures = RepeatedFailure(self.log, source, "freebsd-version -k -r")

    def upgrade_argv(self):
        """The dry run's argv (-U: never the network from here)."""
        return [self.pkg, "upgrade", "-n", "-U"]

    def check(self, run):
        """Kernel versions, then (refresh and) the dry run."""
        d = self._kernel(run)

        def kernel_known(reboot):
            after = self._refresh(run) if self.refresh else defer.succeed(None)
            after.addCallback(
                lambda note: run(self.upgrade_argv()).addCallback(self._read, reboot, note)
            )
            return after

        return d.addCallback(kernel_known)

    def _kernel(self, run):
        """Fires with None, or the details of a required reboot."""
        argv = [self.freebsd_version, "-k", "-r"]

        def ran(result):
            versions = result.stdout.split()
            if result.exit_code != 0 or len(versions) != 2:
                raise CommandError(argv, f"exit code {result.exit_code}: "
                                         f"{result.first_error_line() or 'no output'}")
            self._kernel_failures.succeeded()
            installed, running = versions
            if installed != running:
                return (f"A reboot is required: the installed kernel is {installed}, "
                        f"the running one {running}.")
            return None

        def failed(failure):
            # A jail has no kernel of its own to compare: report the packages anyway.
            failure.trap(CommandError)
            self._kernel_failures.failed(failure.value)

        return run(argv).addCallback(ran).addErrback(failed)

    def _refresh(self, run):
        return refresh_lists(run, [self.pkg, "update", "-q"], self._refresh_failures, "The package catalogue")

    def _read(self, result, reboot, note):
        plan = parse_upgrade(result.stdout + "\n" + result.stderr)
        if plan.locked:
            status, details = UPDATE_RUNNING, "An update is running: pkg's database is locked."
        elif plan.count is None or result.exit_code not in (0, 1):
            raise UpdateCheckFailed(
                f"{self.pkg} upgrade -n exited with {result.exit_code}: "
                f"{result.first_error_line() or 'no output'}"
            )
        else:
            status = UPDATES_AVAILABLE if plan.count else NO_UPDATES
            details = describe_plan(plan)
        if note:
            details = f"{details}\n{note}"
        if reboot is not None:
            return CheckResult(REBOOT_REQUIRED, f"{reboot}\n{details}")
        return CheckResult(status, details)
