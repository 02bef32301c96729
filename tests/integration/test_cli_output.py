"""The real ``sysadm`` following a job's output (``run --follow``, ``log -f``) from the
real daemon, with real jobs (``tests/fixtures/printer.py``)."""

import os
import re
import shlex
import sys

import pytest

from tests.integration.harness import BASE_CONFIG
from tests.integration.test_cli import (
    SYSADM,
    Streaming,
    dispatcher_available,
    environment,
    one_error_line,
    sysadm,
)

PRINTER = os.path.join(os.path.dirname(__file__), "..", "fixtures", "printer.py")


@pytest.fixture
def dispatching(daemon):
    """The daemon, its dispatcher answering."""
    assert dispatcher_available(daemon), "rpc/dispatcher must answer in the daemon"
    return daemon


@pytest.fixture
def streams():
    """Start ``sysadm`` processes whose output is read as it comes (stopped after)."""
    started = []

    def start(daemon, *args):
        argv = [SYSADM, "--url", daemon.url, "--user", "admin", *args]
        stream = Streaming(argv, environment(daemon.tmp_path, "admin-secret-pw"))
        started.append(stream)
        return stream

    yield start
    for stream in started:
        stream.stop()


def printer(*steps):
    """The job command running printer.py with ``steps`` (``out:TEXT``, ``err:TEXT``,
    ``wait:PATH``, ``exit:N``)."""
    return shlex.join([sys.executable, os.path.abspath(PRINTER), *steps])


def test_run_follow_prints_stdout_and_stderr_apart_and_exits_with_the_code(dispatching):
    """``run ID CMD --follow``: the job's stdout on stdout, its stderr on stderr, each in
    order, and the command exits with the job's code (3)."""
    result = sysadm(dispatching, "run", "printer1",
                    printer("out:one", "err:warn one", "out:two", "err:warn two", "exit:3"), "--follow")
    assert result.returncode == 3, result
    assert result.stdout == "one\ntwo\n"
    assert result.stderr.splitlines() == ["warn one", "warn two", "sysadm: job printer1 finished with return code 3"]


def test_run_follow_of_a_chain_exits_with_the_last_commands_code(dispatching):
    result = sysadm(dispatching, "run", "printer2", printer("out:first"), printer("err:second", "exit:0"),
                    "--follow")
    assert result.returncode == 0, result
    assert result.stdout == "first\n" and result.stderr == "second\n"


def test_run_follow_prints_while_the_job_runs(dispatching, streams, tmp_path):
    """Output arrives as it is written, not at the end."""
    gate = tmp_path / "gate"
    job = streams(dispatching, "run", "printer3", printer("out:before", f"wait:{gate}", "out:after", "exit:5"),
                  "--follow")
    job.wait_for("out", lambda line: line == "before\n")
    assert job.process.poll() is None
    gate.write_text("")
    assert job.finish() == 5
    assert "".join(job.out) == "before\nafter\n"


def test_log_follow_from_an_offset_prints_from_that_byte(dispatching):
    """``log -f ID --offset N`` on a finished job prints its output from byte N to the
    end and exits with its code; without --offset, from the start."""
    result = sysadm(dispatching, "run", "printer4", printer("out:0123456789", "err:E", "exit:2"), "--follow")
    assert result.returncode == 2, result
    result = sysadm(dispatching, "log", "-f", "printer4", "--offset", "4")
    assert result.returncode == 2, result
    assert result.stdout == "456789\n"
    assert result.stderr.splitlines() == ["E", "sysadm: job printer4 finished with return code 2"]
    result = sysadm(dispatching, "log", "-f", "printer4")
    assert result.returncode == 2 and result.stdout == "0123456789\n"
    # Past the out line: only the err line is left.
    result = sysadm(dispatching, "log", "-f", "printer4", "--offset", "11")
    assert result.returncode == 2 and result.stdout == "" and result.stderr.startswith("E\n")


def test_log_follow_a_running_job_prints_live_until_it_ends(dispatching, streams, tmp_path):
    gate = tmp_path / "gate"
    started = sysadm(dispatching, "run", "printer5", printer("out:early", f"wait:{gate}", "out:late"))
    assert started.returncode == 0, started
    follower = streams(dispatching, "log", "-f", "printer5")
    follower.wait_for("out", lambda line: line == "early\n")
    assert follower.process.poll() is None
    gate.write_text("")
    assert follower.finish() == 0
    assert "".join(follower.out) == "early\nlate\n" and follower.err == []


def test_log_follow_of_an_unknown_job_is_one_error_line(dispatching):
    one_error_line(sysadm(dispatching, "log", "-f", "no-such-job"), r"^sysadm: cannot follow job no-such-job: ")


def test_log_offset_without_follow_is_a_usage_error(dispatching):
    result = sysadm(dispatching, "log", "printer6", "--offset", "3")
    assert result.returncode == 2
    one_error_line(result, r"^sysadm: log: --offset goes with -f$")


DROPPED = re.compile(r"^sysadm: \[\.\.\. (\d+) bytes of output dropped by the server \.\.\.\]$", re.M)


@pytest.fixture
def capped(make_daemon):
    """A daemon that keeps at most 2 MiB of each job's output (the least allowed)."""
    d = make_daemon(config=BASE_CONFIG + "\n[dispatcher]\nmax_output_bytes = 2097152\n", start=False)
    d.add_user("admin", "admin-secret-pw", "full")
    return d.start()


def test_output_dropped_by_the_daemon_is_one_notice_and_every_other_byte_is_printed(capped):
    """A job writing 4 MiB to a daemon keeping 2 MiB: ``log -f`` prints the head and the
    tail, and one notice whose count makes up the rest; ``run --follow`` (live, so it may
    have read bytes before they were dropped) accounts for every byte too."""
    total = len("head\n") + 4 * 1024 * 1024 + len("tail\n")
    result = sysadm(capped, "run", "big", printer("out:head", f"fill:{4 * 1024 * 1024}", "out:tail"), "--follow")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("head\n") and result.stdout.endswith("xxx\ntail\n")
    live = [int(n) for n in DROPPED.findall(result.stderr)]
    assert len(result.stdout) + sum(live) == total
    assert DROPPED.sub("", result.stderr).strip() == ""
    result = sysadm(capped, "log", "-f", "big")
    assert result.returncode == 0, result.stderr
    dropped = [int(n) for n in DROPPED.findall(result.stderr)]
    assert len(dropped) == 1 and result.stderr.count("\n") == 1
    assert result.stdout.startswith("head\n") and result.stdout.endswith("\ntail\n")
    assert len(result.stdout) + dropped[0] == total
