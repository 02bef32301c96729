"""sysadmd.util.commands: short commands on a fake process reactor and clock (the same
behaviour with real processes: tests/integration/test_commands.py)."""

import pytest
from twisted.internet import defer
from twisted.logger import Logger, capturedLogs

from sysadmd.util.commands import (
    COMMAND_CWD,
    MINIMAL_ENV,
    CommandError,
    CommandKilled,
    CommandNotFound,
    CommandResult,
    CommandTimedOut,
    RepeatedFailure,
    run_command,
    spawn_command,
)
from sysadmd.util.process import stdin_null
from tests.unit.process_fakes import FakeProcessReactor, answer


@pytest.fixture
def reactor():
    return FakeProcessReactor()


def outcome(d):
    """What a Deferred has fired with (a Failure stays a Failure); None if it has not."""
    results = []
    d.addBoth(results.append)
    return results[0] if results else None


def test_result_is_exit_code_stdout_and_stderr(reactor):
    """A command that ends gives its exit code and its two outputs, decoded."""
    reactor.programs["/bin/sh"] = answer("out\n", "err\n", 3)
    d = run_command(reactor, ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], 30)
    reactor.advance(0)
    result = outcome(d)
    assert isinstance(result, CommandResult)
    assert tuple(result) == (3, "out\n", "err\n")
    assert result.first_error_line() == "err"


def test_the_command_gets_its_argv_the_minimal_environment_and_no_stdin(reactor, tmp_path):
    """argv is passed as it is (never through a shell), with exactly MINIMAL_ENV, in "/",
    with /dev/null as stdin."""
    command = spawn_command(reactor, ["echo", f"x; touch {tmp_path}/marker"], 30)
    (process,) = reactor.processes
    assert process.executable.endswith("/echo")
    assert process.args == ["echo", f"x; touch {tmp_path}/marker"]
    assert process.env == MINIMAL_ENV and process.path == COMMAND_CWD
    assert process.child_fds == {0: stdin_null(), 1: "r", 2: "r"}
    process.exit(0)
    assert command.finished


def test_a_missing_command_fails_clearly_without_a_spawn(reactor, tmp_path):
    """Not found on PATH, or a path that does not exist: CommandNotFound at once."""
    for argv0 in (str(tmp_path / "no-such-zpool"), "no-such-command-anywhere"):
        command = spawn_command(reactor, [argv0, "list"], 30)
        failure = outcome(command.result)
        assert failure.check(CommandNotFound) and argv0 in str(failure.value)
        assert command.finished and command.ended.called
    assert reactor.processes == []


def test_a_command_that_cannot_be_spawned_fails_with_the_reason(reactor):
    """An OSError from the spawn (too many open files) is a CommandError."""

    def broken(*args, **kwargs):
        raise OSError(24, "Too many open files")

    reactor.spawnProcess = broken
    command = spawn_command(reactor, ["true"], 30)
    failure = outcome(command.result)
    assert failure.check(CommandError) and "Too many open files" in str(failure.value)
    assert command.ended.called


def test_a_hung_command_is_killed_at_its_timeout(reactor):
    """At the timeout the result fails at once (CommandTimedOut) and SIGTERM goes out;
    ended fires once the process is gone."""
    command = spawn_command(reactor, ["sleep", "60"], 30)
    (process,) = reactor.processes
    reactor.advance(29.9)
    assert not command.result.called
    reactor.advance(0.1)
    failure = outcome(command.result)
    assert failure.check(CommandTimedOut) and "still running after 30 s" in str(failure.value)
    assert process.signals == ["TERM"] and not command.ended.called
    process.exit(signal=15)
    assert command.ended.called and command.finished
    assert reactor.getDelayedCalls() == []


def test_a_command_ignoring_sigterm_gets_sigkill_after_the_grace(reactor):
    """SIGKILL kill_grace seconds after SIGTERM."""
    command = spawn_command(reactor, ["sleep", "60"], 5, kill_grace=2)
    (process,) = reactor.processes
    reactor.advance(5)
    assert outcome(command.result).check(CommandTimedOut)
    reactor.advance(1.9)
    assert process.signals == ["TERM"]
    reactor.advance(0.1)
    assert process.signals == ["TERM", "KILL"]
    process.exit(signal=9)
    assert command.ended.called


def test_death_by_signal_is_a_failure(reactor):
    """A command killed by a signal (not by us) fails with CommandKilled."""
    d = run_command(reactor, ["sh", "-c", "kill -9 $$"], 30)
    reactor.processes[0].exit(signal=9)
    failure = outcome(d)
    assert failure.check(CommandKilled) and "signal 9" in str(failure.value)


def test_runaway_output_kills_the_command(reactor):
    """More than max_output bytes: CommandKilled at once, SIGTERM, later output ignored."""
    command = spawn_command(reactor, ["yes"], 30, max_output=10000)
    (process,) = reactor.processes
    process.write(b"y\n" * 4000)
    assert not command.result.called
    process.write(b"y\n" * 2000)
    failure = outcome(command.result)
    assert failure.check(CommandKilled) and "more than 10000 bytes" in str(failure.value)
    assert process.signals == ["TERM"]
    process.write(b"y\n" * 2000)
    process.exit(signal=15)
    assert command.ended.called


def test_cancelling_kills_the_command(reactor):
    """Cancelling the result stops the process; ended fires once it has exited and no
    timer is left."""
    command = spawn_command(reactor, ["sleep", "60"], 30)
    (process,) = reactor.processes
    command.result.cancel()
    assert outcome(command.result).check(defer.CancelledError)
    assert process.signals == ["TERM"]
    process.exit(signal=15)
    assert command.ended.called
    assert reactor.getDelayedCalls() == []


def test_repeated_failures_are_logged_with_backoff_and_recovery_once():
    """The 1st, 2nd, 4th... failures are logged with their count; the recovery once."""
    failures = RepeatedFailure(Logger(), "system-state", "zpool list")
    with capturedLogs() as events:
        logged = [n for n in range(1, 70) if failures.failed("boom")]
        failures.succeeded()
        failures.succeeded()
    assert logged == [1, 2, 4, 8, 16, 32, 64]
    texts = [e["log_format"] for e in events]
    assert len(texts) == len(logged) + 1
    assert events[-1]["failures"] == 69 and "works again" in texts[-1]
    assert events[0]["problem"] == "boom" and events[0]["source"] == "system-state"
