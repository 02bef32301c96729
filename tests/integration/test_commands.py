"""sysadmd.util.commands with real child processes; timeouts from an injected clock."""

import os
import signal

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.internet import reactor as global_reactor

from sysadmd.util.commands import (
    MINIMAL_ENV,
    CommandKilled,
    CommandNotFound,
    CommandResult,
    CommandTimedOut,
    run_command,
    spawn_command,
)
from tests.integration.clocked import ClockedReactor


def within(d, seconds=10):
    """``d``, failing the test if it has not fired after ``seconds`` of real time."""
    return d.addTimeout(seconds, global_reactor)


def pause(seconds):
    return task.deferLater(global_reactor, seconds, lambda: None)


@pytest.fixture
def clocked():
    return ClockedReactor()


@pytest_twisted.inlineCallbacks
def test_result_is_exit_code_stdout_and_stderr(clocked):
    result = yield within(
        run_command(clocked, ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], 30)
    )
    assert isinstance(result, CommandResult)
    code, out, err = result
    assert (code, out, err) == (3, "out\n", "err\n")
    assert result.first_error_line() == "err"


@pytest_twisted.inlineCallbacks
def test_the_environment_is_exactly_the_minimal_one(clocked):
    result = yield within(run_command(clocked, ["env"], 30))
    seen = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert seen == MINIMAL_ENV


@pytest_twisted.inlineCallbacks
def test_argv_is_not_a_shell_string(clocked, tmp_path):
    marker = tmp_path / "marker"
    result = yield within(run_command(clocked, ["echo", f"x; touch {marker}"], 30))
    assert result.stdout == f"x; touch {marker}\n"
    assert not marker.exists()


@pytest_twisted.inlineCallbacks
def test_a_missing_command_fails_clearly(clocked, tmp_path):
    with pytest.raises(CommandNotFound) as e:
        yield run_command(clocked, [str(tmp_path / "no-such-zpool"), "list"], 30)
    assert "no-such-zpool" in str(e.value)
    with pytest.raises(CommandNotFound):
        yield run_command(clocked, ["no-such-command-anywhere"], 30)


@pytest_twisted.inlineCallbacks
def test_a_hung_command_is_killed_at_its_timeout(clocked):
    command = spawn_command(clocked, ["/bin/sh", "-c", "exec sleep 60"], 30)
    yield pause(0.2)
    assert not command.result.called
    clocked.clock.advance(29)
    assert not command.result.called
    clocked.clock.advance(1)
    with pytest.raises(CommandTimedOut) as e:
        yield command.result
    assert "still running after 30 s" in str(e.value)
    yield within(command.ended)  # SIGTERM was enough
    assert command.finished


@pytest_twisted.inlineCallbacks
def test_a_command_ignoring_sigterm_gets_sigkill_after_the_grace(clocked):
    command = spawn_command(
        clocked, ["/bin/sh", "-c", "trap '' TERM; exec sleep 60"], 5, kill_grace=2
    )
    yield pause(0.2)
    clocked.clock.advance(5)
    with pytest.raises(CommandTimedOut):
        yield command.result
    yield pause(0.5)
    assert not command.ended.called, "sleep ignores SIGTERM: it must still run"
    clocked.clock.advance(2)
    yield within(command.ended)


@pytest_twisted.inlineCallbacks
def test_a_grandchild_holding_the_pipes_does_not_keep_us_waiting(clocked, tmp_path):
    pidfile = tmp_path / "grandchild"
    command = spawn_command(
        clocked, ["/bin/sh", "-c", f"sleep 30 & echo $! > {pidfile}; exec sleep 30"], 3
    )
    try:
        yield pause(0.3)
        clocked.clock.advance(3)
        with pytest.raises(CommandTimedOut):
            yield command.result
        yield within(command.ended, 5)
    finally:
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest_twisted.inlineCallbacks
def test_death_by_signal_is_a_failure(clocked):
    with pytest.raises(CommandKilled) as e:
        yield within(run_command(clocked, ["/bin/sh", "-c", "kill -9 $$"], 30))
    assert "signal 9" in str(e.value)


@pytest_twisted.inlineCallbacks
def test_runaway_output_kills_the_command(clocked):
    with pytest.raises(CommandKilled) as e:
        yield within(run_command(clocked, ["yes"], 30, max_output=10000))
    assert "more than 10000 bytes" in str(e.value)


@pytest_twisted.inlineCallbacks
def test_cancelling_kills_the_command(clocked):
    command = spawn_command(clocked, ["sleep", "60"], 30)
    yield pause(0.2)
    command.result.cancel()
    with pytest.raises(defer.CancelledError):
        yield command.result
    yield within(command.ended)
    assert clocked.clock.getDelayedCalls() == []
