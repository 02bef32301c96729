"""The update checks' backends (apt, pkg, updates_command), the choice of backend, and
the updates options: each backend is given a fake ``run`` answering as the real program
would, so these tests never start a process. (The checks on a fake process reactor, in
the source: test_systemstate_updates_source.py; with the real apt-get:
tests/compat/test_updates.py.)"""

import fcntl
import os
import struct
import subprocess
import sys

import pytest
from twisted.internet import defer
from zope.interface.verify import verifyObject

from sysadmd.config import ConfigErrors
from sysadmd.plugins.systemstate_source import system_state
from sysadmd.systemstate import dpkglock
from sysadmd.systemstate.apt import AptBackend, parse_simulation
from sysadmd.systemstate.backends import choose, detect
from sysadmd.systemstate.pkg import PkgBackend, parse_upgrade
from sysadmd.systemstate.updates import (
    MAX_PACKAGE_LINES,
    CheckResult,
    CommandBackend,
    IUpdateBackend,
    UpdateCheckFailed,
    split_command,
)
from sysadmd.taps.sections import load_daemon_config
from sysadmd.util.commands import CommandNotFound, CommandResult

# apt-get -s -q dist-upgrade, LC_ALL=C, as Debian 12's apt 2.6 prints it.
APT_NOTHING = """\
Reading package lists...
Building dependency tree...
Reading state information...
Calculating upgrade...
0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.
"""

APT_THREE = """\
Reading package lists...
Building dependency tree...
Reading state information...
Calculating upgrade...
The following NEW packages will be installed:
  linux-image-6.1.0-30-amd64
The following packages will be upgraded:
  bash libpam-modules-bin linux-image-amd64
2 upgraded, 1 newly installed, 1 to remove and 0 not upgraded.
Remv oldthing [1.0-1]
Inst bash [5.2.15-2+b8] (5.2.15-2+b13 Debian:12.15/oldstable [amd64])
Conf bash (5.2.15-2+b13 Debian:12.15/oldstable [amd64])
Inst libpam-modules-bin [1.5.2-6+deb12u1] (1.5.2-6+deb12u2 Debian:12.15/oldstable [amd64]) [libpam-modules:amd64 on libpam-modules-bin:amd64] [libpam-modules:amd64 ]
Inst linux-image-6.1.0-30-amd64 (6.1.124-1 Debian-Security:12/stable-security [amd64])
Conf libpam-modules-bin (1.5.2-6+deb12u2 Debian:12.15/oldstable [amd64])
"""

PKG_UP_TO_DATE = """\
Checking for upgrades (0 candidates): 100%
Processing candidates (0 candidates): 100%
Checking integrity... done (0 conflicting)
Your packages are up to date.
"""

PKG_THREE = """\
Checking for upgrades (3 candidates): 100%
Processing candidates (3 candidates): 100%
The following 3 package(s) will be affected (of 0 checked):

New packages to be INSTALLED:
\tlibnghttp2: 1.58.0

Installed packages to be UPGRADED:
\tcurl: 8.4.0 -> 8.5.0
\tsudo: 1.9.14p3 -> 1.9.15p2

Number of packages to be upgraded: 2

2 MiB to be downloaded.
"""

PKG_LOCKED = "pkg: Cannot get an advisory lock on a database, it is locked by another process\n"


class FakeRun:
    """``run`` for a backend: answers each argv from ``answers`` (argv tuple -> a
    CommandResult, or an exception to fail with) and records what was run."""

    def __init__(self, answers):
        self.answers = {tuple(k): v for k, v in answers.items()}
        self.argvs = []

    def __call__(self, argv):
        self.argvs.append(list(argv))
        answer = self.answers[tuple(argv)]
        if isinstance(answer, Exception):
            return defer.fail(answer)
        return defer.succeed(answer)


def ok(stdout="", stderr="", code=0):
    return CommandResult(code, stdout, stderr)


def result_of(d):
    """The result of a Deferred that has fired (raising its failure)."""
    results = []
    d.addBoth(results.append)
    assert results, "the check has not finished"
    if hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


@pytest.fixture
def apt(tmp_path):
    """An AptBackend whose files are in tmp_path (no lock held, no reboot file)."""
    locks = (tmp_path / "lock-frontend", tmp_path / "lock")
    for lock in locks:
        lock.write_text("")
    return AptBackend(apt_get="apt-get", reboot_file=str(tmp_path / "reboot-required"),
                      reboot_pkgs=str(tmp_path / "reboot-required.pkgs"),
                      lock_files=tuple(map(str, locks)), proc_locks=str(tmp_path / "locks"))


SIMULATE = ("apt-get", "-s", "-q", "-o", "Debug::NoLocking=true", "dist-upgrade")


def test_every_backend_provides_the_interface(apt):
    for backend in (apt, PkgBackend(), CommandBackend(["/bin/true"])):
        assert verifyObject(IUpdateBackend, backend)


# apt

def test_apt_parses_upgrades_new_packages_and_removals():
    plan = parse_simulation(APT_THREE)
    assert plan.upgrades == [("bash", "5.2.15-2+b8", "5.2.15-2+b13"),
                             ("libpam-modules-bin", "1.5.2-6+deb12u1", "1.5.2-6+deb12u2")]
    assert plan.installs == [("linux-image-6.1.0-30-amd64", "6.1.124-1")]
    assert plan.removals == ["oldthing"]
    assert plan.changes == 4
    assert parse_simulation(APT_NOTHING).changes == 0


def test_apt_no_updates_simulates_without_refreshing(apt):
    run = FakeRun({SIMULATE: ok(APT_NOTHING)})
    result = result_of(apt.check(run))
    assert result.status == "noupdates"
    assert "nothing to do" in result.details
    assert run.argvs == [list(SIMULATE)], "only the simulation: no apt-get update"


def test_apt_upgrades_available_are_listed(apt):
    result = result_of(apt.check(FakeRun({SIMULATE: ok(APT_THREE)})))
    assert result.status == "updatesavailable"
    lines = result.details.splitlines()
    assert lines[0] == "2 packages to upgrade, 1 new, 1 to remove (apt-get dist-upgrade, simulated):"
    assert "bash 5.2.15-2+b8 -> 5.2.15-2+b13" in lines
    assert "linux-image-6.1.0-30-amd64 6.1.124-1 (new)" in lines
    assert "oldthing (remove)" in lines


def test_apt_long_lists_are_cut(apt):
    many = "".join(f"Inst p{i} [1] (2 Debian:12 [amd64])\n" for i in range(MAX_PACKAGE_LINES + 7))
    result = result_of(apt.check(FakeRun({SIMULATE: ok(many)})))
    lines = result.details.splitlines()
    assert len(lines) == 1 + MAX_PACKAGE_LINES + 1
    assert lines[-1] == "... and 7 more"


def test_apt_reboot_required_file_wins_and_names_the_packages(apt, tmp_path):
    (tmp_path / "reboot-required").write_text("*** System restart required ***\n")
    (tmp_path / "reboot-required.pkgs").write_text("linux-image-6.1.0-30-amd64\nlibc6\nlibc6\n")
    result = result_of(apt.check(FakeRun({SIMULATE: ok(APT_THREE)})))
    assert result.status == "rebootrequired"
    first, *rest = result.details.splitlines()
    assert first.endswith("for: linux-image-6.1.0-30-amd64, libc6.")
    assert rest[0].startswith("2 packages to upgrade"), "the pending updates are still said"
    (tmp_path / "reboot-required.pkgs").unlink()
    result = result_of(apt.check(FakeRun({SIMULATE: ok(APT_NOTHING)})))
    assert result.status == "rebootrequired"
    assert result.details.startswith(f"A reboot is required ({tmp_path}/reboot-required).")


def test_apt_refresh_runs_apt_get_update_first_and_survives_its_failure(apt):
    apt.refresh = True
    update = ("apt-get", "-q", "update")
    run = FakeRun({update: ok(), SIMULATE: ok(APT_NOTHING)})
    assert result_of(apt.check(run)).status == "noupdates"
    assert run.argvs == [list(update), list(SIMULATE)]
    run = FakeRun({update: ok("", "E: Could not resolve 'deb.debian.org'\n", 100),
                   SIMULATE: ok(APT_THREE)})
    result = result_of(apt.check(run))
    assert result.status == "updatesavailable", "the local lists still answer"
    assert "could not be refreshed" in result.details and "Could not resolve" in result.details


def _ofd_lock(path):
    """Hold a write lock on ``path`` as an open file description lock: the kernel
    reports it to F_GETLK from this same process (a classic POSIX lock it would not)."""
    fd = os.open(path, os.O_RDWR)
    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 0, 0))
    return fd


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="dpkg locks are Linux's")
def test_apt_update_running_when_the_dpkg_lock_is_held(apt, tmp_path):
    fd = _ofd_lock(tmp_path / "lock")
    try:
        run = FakeRun({})
        result = result_of(apt.check(run))
    finally:
        os.close(fd)
    assert result.status == "updaterunning"
    assert f"dpkg lock {tmp_path}/lock is held" in result.details
    assert run.argvs == [], "no simulation while dpkg changes the database"
    assert result_of(apt.check(FakeRun({SIMULATE: ok(APT_NOTHING)}))).status == "noupdates"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="dpkg locks are Linux's")
def test_the_lock_holder_is_named_by_pid(tmp_path):
    """A classic fcntl lock held by another process, as apt and dpkg hold theirs."""
    lock = tmp_path / "lock-frontend"
    lock.write_text("")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         ("import fcntl, os, sys, time\n"
         f"fd = os.open({str(lock)!r}, os.O_RDWR)\n"
         "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
         "print('locked', flush=True)\n"
         "sys.stdin.read()\n")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        found = dpkglock.held_lock((str(lock),))
        assert found == dpkglock.LockHolder(str(lock), holder.pid)
        assert found.describe().endswith(f"(pid {holder.pid})")
        in_proc = dpkglock.held_in_proc_locks((str(lock),))
        assert in_proc == dpkglock.LockHolder(str(lock), holder.pid), "/proc/locks agrees"
    finally:
        holder.stdin.close()
        holder.wait(10)
        holder.stdout.close()
    assert dpkglock.held_lock((str(lock),)) is None


def test_proc_locks_are_read_by_device_and_inode_waiters_ignored(tmp_path):
    """The answer for a daemon that cannot open dpkg's lock files (not root)."""
    lock = tmp_path / "lock"
    lock.write_text("")
    st = os.stat(lock)
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    table = tmp_path / "locks"
    table.write_text(f"1: POSIX  ADVISORY  WRITE 77 00:01:5 0 EOF\n"
                     f"2: -> POSIX  ADVISORY  WRITE 88 {where} 0 EOF\n")
    assert dpkglock.held_in_proc_locks((str(lock),), str(table)) is None
    table.write_text(table.read_text() + f"2: POSIX  ADVISORY  WRITE 4321 {where} 0 EOF\n")
    assert dpkglock.held_in_proc_locks((str(lock),), str(table)) == (str(lock), 4321)
    assert dpkglock.held_in_proc_locks((str(tmp_path / "missing"),), str(table)) is None


def test_apt_failure_is_a_failed_check(apt):
    bad = ok("", "E: The package lists or status file could not be parsed or opened.\n", 100)
    with pytest.raises(UpdateCheckFailed, match="exited with 100: E: The package lists"):
        result_of(apt.check(FakeRun({SIMULATE: bad})))
    with pytest.raises(CommandNotFound):
        result_of(apt.check(FakeRun({SIMULATE: CommandNotFound(list(SIMULATE), "not found")})))


# pkg

KERNEL = ("freebsd-version", "-k", "-r")
PKG_UPGRADE = ("pkg", "upgrade", "-n", "-U")


def test_pkg_up_to_date_without_touching_the_network():
    run = FakeRun({KERNEL: ok("14.1-RELEASE-p5\n14.1-RELEASE-p5\n"), PKG_UPGRADE: ok(PKG_UP_TO_DATE)})
    result = result_of(PkgBackend().check(run))
    assert result == CheckResult(
        "noupdates", "No updates: your packages are up to date (pkg upgrade -n, local catalogue).")
    assert ["pkg", "update", "-q"] not in run.argvs


def test_pkg_packages_to_change_are_listed():
    plan = parse_upgrade(PKG_THREE)
    assert plan.count == 3
    assert plan.lines == ["installed: libnghttp2 1.58.0", "upgraded: curl 8.4.0 -> 8.5.0",
                          "upgraded: sudo 1.9.14p3 -> 1.9.15p2"]
    run = FakeRun({KERNEL: ok("14.1-RELEASE-p5\n14.1-RELEASE-p5\n"), PKG_UPGRADE: ok(PKG_THREE, code=1)})
    result = result_of(PkgBackend().check(run))
    assert result.status == "updatesavailable"
    assert result.details.splitlines()[0] == "3 packages to change (pkg upgrade -n):"


def test_pkg_newer_installed_kernel_requires_a_reboot():
    run = FakeRun({KERNEL: ok("14.1-RELEASE-p6\n14.1-RELEASE-p5\n"), PKG_UPGRADE: ok(PKG_UP_TO_DATE)})
    result = result_of(PkgBackend().check(run))
    assert result.status == "rebootrequired"
    assert result.details.splitlines()[0] == (
        "A reboot is required: the installed kernel is 14.1-RELEASE-p6, the running one 14.1-RELEASE-p5.")


def test_pkg_in_a_jail_without_a_kernel_still_reports_packages():
    run = FakeRun({KERNEL: ok("", "freebsd-version: unable to locate kernel\n", 1),
                   PKG_UPGRADE: ok(PKG_THREE, code=1)})
    assert result_of(PkgBackend().check(run)).status == "updatesavailable"


def test_pkg_locked_database_is_an_update_running_and_refresh_is_pkg_update():
    run = FakeRun({KERNEL: ok("14.1\n14.1\n"), ("pkg", "update", "-q"): ok(),
                   PKG_UPGRADE: ok("", PKG_LOCKED, 1)})
    result = result_of(PkgBackend(refresh=True).check(run))
    assert result.status == "updaterunning"
    assert run.argvs == [list(KERNEL), ["pkg", "update", "-q"], list(PKG_UPGRADE)]


def test_pkg_unreadable_output_is_a_failed_check():
    run = FakeRun({KERNEL: ok("14.1\n14.1\n"),
                   PKG_UPGRADE: ok("", "pkg: Repository FreeBSD missing. 'pkg update' required\n", 3)})
    with pytest.raises(UpdateCheckFailed, match="exited with 3: pkg: Repository FreeBSD missing"):
        result_of(PkgBackend().check(run))


# updates_command

def test_updates_command_first_line_is_the_status():
    run = FakeRun({("/x/check", "--fast"): ok("rebootrequired\nnew kernel\nreally\n")})
    result = result_of(CommandBackend(["/x/check", "--fast"]).check(run))
    assert result == CheckResult("rebootrequired", "new kernel\nreally")
    run = FakeRun({("/x/check",): ok("noupdates\n")})
    assert result_of(CommandBackend(["/x/check"]).check(run)) == CheckResult("noupdates", "")


@pytest.mark.parametrize("answer, message", [
    (ok("maybe\n"), "printed 'maybe' on its first line"),
    (ok(""), "printed '' on its first line"),
    (ok("noupdates\n", "boom\n", 2), "exited with 2: boom"),
    (ok("checkingforupdates\n"), "printed 'checkingforupdates'"),
])
def test_updates_command_other_output_is_a_failed_check(answer, message):
    with pytest.raises(UpdateCheckFailed, match=message):
        result_of(CommandBackend(["/x/check"]).check(FakeRun({("/x/check",): answer})))


# choosing the backend

def test_auto_detects_debian_freebsd_and_others(tmp_path):
    missing = str(tmp_path / "no-debian_version")
    os_release = tmp_path / "os-release"
    assert detect("FreeBSD", missing, ())[0] == "pkg"
    (tmp_path / "debian_version").write_text("12.8\n")
    assert detect("Linux", str(tmp_path / "debian_version"), ()) == (
        "apt", f"{tmp_path}/debian_version exists")
    os_release.write_text('NAME="Linux Mint"\nID=linuxmint\nID_LIKE="ubuntu debian"\n')
    assert detect("Linux", missing, (str(tmp_path / "nope"), str(os_release)))[0] == "apt"
    os_release.write_text('ID="fedora"\nID_LIKE="rhel centos"\n')
    kind, why = detect("Linux", missing, (str(os_release),))
    assert kind is None and "neither FreeBSD nor Debian-based" in why
    assert detect("Darwin", missing, ())[0] is None


def test_choose_follows_the_options(tmp_path):
    found = lambda name, env: (f"/usr/bin/{name}", None)
    absent = lambda name, env: (None, "not found")
    debian = str(tmp_path / "debian_version")
    (tmp_path / "debian_version").write_text("12\n")
    assert choose("none", ["/x/check"]).backend is None, "none wins over a command"
    assert isinstance(choose("apt", ["/x/check"]).backend, CommandBackend)
    chosen = choose("auto", None, True, system="Linux", debian_version=debian, lookup=found)
    assert isinstance(chosen.backend, AptBackend) and chosen.backend.refresh
    chosen = choose("auto", None, system="Linux", debian_version=debian, lookup=absent)
    assert chosen.backend is None and "there is no apt-get" in chosen.reason
    assert isinstance(choose("pkg").backend, PkgBackend), "an explicit choice is not second-guessed"
    assert choose("auto", system="FreeBSD", lookup=found).backend.name == "pkg"


# options

def _section(text):
    options = {"system-state": system_state.options}
    return load_daemon_config(text=text, source_options=options).source_section("system-state")


def test_updates_options_defaults_and_values():
    section = _section("")
    assert (section["updates"], section["updates_interval"], section["updates_refresh"],
            section["updates_command"]) == ("auto", 3600.0, False, None)
    section = _section("[source:system-state]\nupdates = pkg\nupdates_interval = 600\n"
                       "updates_refresh = yes\nupdates_command = /usr/local/bin/check 'two words'\n")
    assert (section["updates"], section["updates_interval"], section["updates_refresh"],
            section["updates_command"]) == ("pkg", 600.0, True, ["/usr/local/bin/check", "two words"])
    assert split_command("  ") is None


def test_bad_updates_options_name_the_file_section_and_key(tmp_path):
    path = tmp_path / "sysadmd.ini"
    path.write_text("[source:system-state]\nupdates = yum\nupdates_interval = 5\n"
                    "updates_refresh = sometimes\nupdates_command = /x/check 'unclosed\n")
    with pytest.raises(ConfigErrors) as e:
        load_daemon_config(str(path), source_options={"system-state": system_state.options})
    lines = str(e.value).splitlines()
    assert lines == [
        f"{path}: [source:system-state] updates: 'yum' is not one of: auto, apt, pkg, none",
        f"{path}: [source:system-state] updates_interval: 5 is below the minimum of 60",
        f"{path}: [source:system-state] updates_refresh: 'sometimes' is not yes or no",
        (f"{path}: [source:system-state] updates_command: cannot split \"/x/check 'unclosed\" "
        "into arguments: No closing quotation"),
    ]
