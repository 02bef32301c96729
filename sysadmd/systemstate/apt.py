"""Updates on Debian and its derivatives, with ``apt-get``.

- Updates available: ``apt-get -s -q -o Debug::NoLocking=true dist-upgrade`` simulates
  the upgrade from the package lists the machine already has, in the C locale, and its
  ``Inst``/``Remv`` lines are read. ``dist-upgrade``, because a new kernel or library
  ABI comes as a new package that plain ``upgrade`` keeps back. The lists are refreshed
  (``apt-get -q update``, network) first only with ``updates_refresh = yes``.
- Reboot required: ``/var/run/reboot-required`` exists (packages' postinst scripts
  create it); ``/var/run/reboot-required.pkgs`` names the packages.
- Update running: a process holds dpkg's lock (see :mod:`.dpkglock`); then nothing is
  simulated (the package database is changing under us).
"""

import os
import re
from typing import NamedTuple

from twisted.internet import defer
from zope.interface import implementer

from sysadmd.systemstate import dpkglock
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
from sysadmd.util.commands import RepeatedFailure
from sysadmd.util.log import Logger

REBOOT_REQUIRED_FILE = "/var/run/reboot-required"
REBOOT_REQUIRED_PKGS = "/var/run/reboot-required.pkgs"

# "Inst name [installed version] (new version Origin:... [arch]) [...]"; a package new
# to the machine has no [installed version].
_INST = re.compile(r"^Inst (\S+) (?:\[([^\]]*)\] )?\((\S+)")
_REMV = re.compile(r"^Remv (\S+)")


class AptPlan(NamedTuple):
    """What the simulated upgrade would do."""

    upgrades: list[tuple[str, str, str]]  # (package, installed version, new version)
    installs: list[tuple[str, str]]  # (package, version): new packages
    removals: list[str]

    @property
    def changes(self):
        """How many packages the upgrade would touch."""
        return len(self.upgrades) + len(self.installs) + len(self.removals)


def parse_simulation(text):
    """The :class:`AptPlan` of ``apt-get -s`` output (its ``Conf`` lines and the
    human-readable summary are ignored: the ``Inst``/``Remv`` lines are the plan)."""
    upgrades, installs, removals = [], [], []
    for line in text.splitlines():
        match = _INST.match(line)
        if match:
            name, old, new = match.groups()
            if old is None:
                installs.append((name, new))
            else:
                upgrades.append((name, old, new))
            continue
        match = _REMV.match(line)
        if match:
            removals.append(match.group(1))
    return AptPlan(upgrades, installs, removals)


def describe_plan(plan):
    """``details`` for a plan: a summary line, then one line per package."""
    if not plan.changes:
        return "No updates: apt-get dist-upgrade has nothing to do (from the local package lists)."
    counts = [f"{plural(len(plan.upgrades), 'package')} to upgrade"]
    if plan.installs:
        counts.append(f"{len(plan.installs)} new")
    if plan.removals:
        counts.append(f"{len(plan.removals)} to remove")
    lines = [f"{name} {old} -> {new}" for name, old, new in plan.upgrades]
    lines += [f"{name} {new} (new)" for name, new in plan.installs]
    lines += [f"{name} (remove)" for name in plan.removals]
    return package_lines(", ".join(counts) + " (apt-get dist-upgrade, simulated):", lines)


def reboot_required(path=REBOOT_REQUIRED_FILE, pkgs=REBOOT_REQUIRED_PKGS):
    """None, or the details of a required reboot (naming the packages that asked)."""
    if not os.path.exists(path):
        return None
    names = []
    try:
        with open(pkgs, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.strip() and line.strip() not in names:
                    names.append(line.strip())
    except OSError:
        pass
    if names:
        return f"A reboot is required ({path}), for: {', '.join(names)}."
    return f"A reboot is required ({path})."


@implementer(IUpdateBackend)
class AptBackend:
    """Checks with apt (see the module docstring). The paths are parameters for tests."""

    name = "apt"
    log = Logger()

    def __init__(self, apt_get="apt-get", refresh=False, reboot_file=REBOOT_REQUIRED_FILE,
                 reboot_pkgs=REBOOT_REQUIRED_PKGS, lock_files=dpkglock.DPKG_LOCKS,
                 proc_locks="/proc/locks", proc="/proc", source="system-state"):
        self.apt_get = apt_get
        self.refresh = refresh
        self._reboot_file = reboot_file
        self._reboot_pkgs = reboot_pkgs
        self._lock_files = lock_files
        self._proc_locks = proc_locks
        self._proc = proc
        self._refresh_failures = RepeatedFailure(self.log, source, "apt-get update")

    def simulate_argv(self):
        """The simulation's argv."""
        # NoLocking: a simulation changes nothing, and older apt takes dpkg's lock for
        # it when run as root, which would make an administrator's apt-get fail meanwhile.
        return [self.apt_get, "-s", "-q", "-o", "Debug::NoLocking=true", "dist-upgrade"]

    def check(self, run):
        """Lock, then (refresh and) simulation, then the reboot file."""
        holder = dpkglock.held_lock(self._lock_files, self._proc_locks)
        if holder is not None:
            # dpkg is changing the database: a simulation now would read it half-done.
            return defer.succeed(self._result(
                UPDATE_RUNNING, f"An update is running: {holder.describe(self._proc)}."
            ))
        d = self._refresh(run) if self.refresh else defer.succeed(None)
        d.addCallback(lambda note: run(self.simulate_argv()).addCallback(self._read, note))
        return d

    def _refresh(self, run):
        return refresh_lists(run, [self.apt_get, "-q", "update"], self._refresh_failures, "The package lists")

    def _read(self, result, note):
        if result.exit_code != 0:
            raise UpdateCheckFailed(
                f"{self.apt_get} -s dist-upgrade exited with {result.exit_code}: "
                f"{result.first_error_line() or 'no output'}"
            )
        plan = parse_simulation(result.stdout)
        details = describe_plan(plan)
        if note:
            details = f"{details}\n{note}"
        return self._result(UPDATES_AVAILABLE if plan.changes else NO_UPDATES, details)

    def _result(self, status, details):
        reboot = reboot_required(self._reboot_file, self._reboot_pkgs)
        if reboot is not None:
            # The most pressing status wins; what else is true stays in the details.
            return CheckResult(REBOOT_REQUIRED, f"{reboot}\n{details}")
        return CheckResult(status, details)

