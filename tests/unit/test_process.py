"""sysadmd.util.process: the one child-process primitive, on a fake process reactor."""

import os

from twisted.internet import process as twisted_process
from twisted.internet.interfaces import IProcessProtocol
from twisted.internet.main import CONNECTION_DONE
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from sysadmd.util.process import (
    PIPE_GRACE,
    PIPE_READ,
    ChildProcess,
    ExecutableLookup,
    Exit,
    SessionProcess,
    WidePipeReader,
    find_executable,
    spawn_in_session,
    stdin_null,
)
from tests.unit.process_fakes import FakeProcessReactor

ENV = {"PATH": "/usr/bin:/bin"}


def started(reactor=None, **kwargs):
    """A ChildProcess started on a fake reactor; returns (reactor, child, process, output, ends)."""
    reactor = reactor or FakeProcessReactor()
    output, ends = [], []
    child = ChildProcess(reactor, lambda fd, data: output.append((fd, data)), **kwargs)
    child.ended.addCallback(ends.append)
    child.start("/bin/tool", ["tool", "a b"], dict(ENV), "/srv")
    return reactor, child, reactor.processes[-1], output, ends


def test_a_child_process_is_a_process_protocol():
    """ChildProcess provides IProcessProtocol (what spawnProcess expects)."""
    assert verifyObject(IProcessProtocol, ChildProcess(FakeProcessReactor(), print))


def test_exit_tells_an_exit_status_from_a_signal():
    """return_code is the exit status, -N for signal N, -1 when neither is known."""
    assert Exit(0, None).return_code == 0
    assert Exit(3, None).return_code == 3
    assert Exit(None, 9).return_code == -9
    assert Exit(None, None).return_code == -1


def test_a_child_gets_its_argv_env_cwd_and_dev_null_stdin():
    """argv as given (no shell), exactly the environment given, the working directory,
    /dev/null as stdin (one descriptor for all children) and two output pipes."""
    reactor, child, process, output, ends = started()
    assert process.executable == "/bin/tool"
    assert process.args == ["tool", "a b"]
    assert process.env == ENV and process.path == "/srv"
    assert process.child_fds == {0: stdin_null(), 1: "r", 2: "r"}
    assert os.path.samestat(os.fstat(stdin_null()), os.stat(os.devnull))
    assert child.pid == process.pid


def test_output_is_handed_over_with_its_descriptor_and_the_end_with_its_exit():
    """stdout (1) and stderr (2) arrive as written; ended fires with the Exit."""
    reactor, child, process, output, ends = started()
    process.write(b"out")
    process.write(b"err", stderr=True)
    process.exit(4)
    assert output == [(1, b"out"), (2, b"err")]
    assert ends == [Exit(4, None)]


def test_stop_sends_term_then_kill_after_the_grace():
    """SIGTERM at once; SIGKILL kill_grace later (on_kill is told), which also closes the
    pipes; ended fires when the process has ended."""
    kills = []
    reactor, child, process, output, ends = started(kill_grace=5.0, on_kill=lambda: kills.append(1))
    child.stop()
    child.stop()
    assert process.signals == ["TERM"]
    reactor.advance(4.9)
    assert process.signals == ["TERM"] and not process.lost
    reactor.advance(0.1)
    assert process.signals == ["TERM", "KILL"] and process.lost and kills == [1]
    process.exit(signal=9)
    assert ends == [Exit(None, 9)]
    assert reactor.getDelayedCalls() == []


def test_a_child_that_ends_on_term_gets_no_kill():
    """Once the process has ended, the pending SIGKILL is cancelled."""
    reactor, child, process, output, ends = started(kill_grace=5.0)
    child.stop()
    process.exit(signal=15)
    reactor.advance(10)
    assert process.signals == ["TERM"]
    assert ends == [Exit(None, 15)]


def test_pipes_held_open_after_the_exit_are_closed_after_the_pipe_grace():
    """A child that exits while something it left keeps the pipes open does not hang."""
    reactor, child, process, output, ends = started()
    process.exit_only(0)
    reactor.advance(PIPE_GRACE - 0.1)
    assert not process.lost
    reactor.advance(0.1)
    assert process.lost
    process.end(0)
    assert ends == [Exit(0, None)]


def test_stopping_a_child_whose_pipes_are_held_waits_for_the_kill():
    """Stopped, the child exits on SIGTERM but its group still holds the pipes: SIGKILL
    goes to the group at the grace and closes the pipes (no earlier pipe grace)."""
    reactor, child, process, output, ends = started(kill_grace=5.0)
    child.stop()
    process.group_alive = True
    process.exit_only(signal=15)
    reactor.advance(PIPE_GRACE)
    assert not process.lost
    reactor.advance(5.0 - PIPE_GRACE)
    assert process.signals == ["TERM", "KILL"] and process.lost
    process.end(signal=15)
    assert ends == [Exit(None, 15)]


def test_what_is_left_of_a_stopped_childs_group_gets_kill_at_the_end():
    """The child ended on SIGTERM and its pipes closed before the grace was over: what
    is left of its group gets SIGKILL at once, and no timer is left."""
    reactor, child, process, output, ends = started(kill_grace=5.0)
    child.stop()
    process.group_alive = True
    process.exit(signal=15)
    assert process.signals == ["TERM", "KILL"]
    assert ends == [Exit(None, 15)]
    assert reactor.getDelayedCalls() == []


def test_the_timeout_stops_the_child_and_says_so():
    """At the timeout: timed_out is set, on_timeout called, SIGTERM sent."""
    told = []
    reactor, child, process, output, ends = started(timeout=30, on_timeout=lambda: told.append(1))
    reactor.advance(29.9)
    assert process.signals == [] and not child.timed_out
    reactor.advance(0.1)
    assert child.timed_out and told == [1] and process.signals == ["TERM"]
    process.exit(signal=15)
    assert ends == [Exit(None, 15)]


def test_a_child_that_ends_before_its_timeout_leaves_no_timer():
    """The timeout is cancelled at the end."""
    reactor, child, process, output, ends = started(timeout=30)
    process.exit(0)
    assert reactor.getDelayedCalls() == []


def test_a_fake_reactor_gets_its_own_spawn_process_call():
    """spawn_in_session uses SessionProcess only on a POSIX reactor; anything else (a
    test's fake) gets a spawnProcess call with the same arguments."""
    reactor = FakeProcessReactor()
    transport = spawn_in_session(reactor, ChildProcess(reactor, print), "/bin/true", ["true"],
                                 {}, "/", {0: "w"})
    assert transport is reactor.processes[0] and transport.child_fds == {0: "w"}


def test_twisted_still_has_the_hooks_session_process_overrides():
    """SessionProcess starts the child's session in Twisted's (private) spawn and fork
    hooks; if Twisted renamed them, children would silently share the daemon's group."""
    for name in ("_trySpawnInsteadOfFork", "_execChild", "_fork", "signalProcess"):
        assert callable(getattr(twisted_process.Process, name, None)), name
        assert name in vars(SessionProcess), name
    for name in ("_listOpenFDs", "_getFileActions", "_PS_CLOSE", "_PS_DUP2"):
        assert hasattr(twisted_process, name), name


def make_tool(directory, name):
    path = directory / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


def test_find_executable_searches_path_or_the_working_directory(tmp_path):
    """A bare name on PATH (executable files only); a name with a slash from cwd; each
    failure with its reason."""
    script = tmp_path / "tool"
    script.write_text("#!/bin/sh\n")
    env = {"PATH": str(tmp_path)}
    assert find_executable("tool", env) == (None, f"tool: command not found (PATH={tmp_path})")
    assert find_executable("./tool", env, str(tmp_path)) == (None, "./tool: not an executable file")
    script.chmod(0o755)
    assert find_executable("tool", env) == (str(script), None)
    assert find_executable(str(script), {}) == (str(script), None)
    assert find_executable("tool", {"PATH": "/nonexistent"})[0] is None
    assert find_executable("x/tool", env, str(tmp_path)) == (None, "x/tool: no such file")


def test_lookup_remembers_a_found_program_for_its_ttl(tmp_path):
    """A found program is remembered for ttl seconds (a program put earlier on PATH
    meanwhile is found once it expires); what was not found is looked up every time."""
    clock = Clock()
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    env = {"PATH": f"{first}:{second}"}
    lookup = ExecutableLookup(clock, ttl=1.0)
    assert lookup("tool", env, "/") == (None, f"tool: command not found (PATH={env['PATH']})")
    late = make_tool(second, "tool")
    assert lookup("tool", env, "/") == (late, None)
    early = make_tool(first, "tool")
    assert lookup("tool", env, "/") == (late, None)
    clock.advance(1.0)
    assert lookup("tool", env, "/") == (early, None)


def test_lookup_keys_on_path_and_does_not_remember_paths_with_a_slash(tmp_path):
    """Another PATH is another lookup; a command given with a slash is checked each time."""
    clock = Clock()
    (tmp_path / "x").mkdir()
    tool = make_tool(tmp_path / "x", "tool")
    lookup = ExecutableLookup(clock)
    assert lookup("tool", {"PATH": str(tmp_path / "x")}, "/") == (tool, None)
    assert lookup("tool", {"PATH": "/nonexistent"}, "/")[0] is None
    assert lookup("x/tool", {}, str(tmp_path)) == (str(tmp_path / "x" / "tool"), None)
    os.remove(tool)
    assert lookup("x/tool", {}, str(tmp_path)) == (None, "x/tool: no such file")


def test_lookup_stays_bounded(tmp_path):
    """Expired entries are dropped once MAX_ENTRIES names are remembered."""
    clock = Clock()
    for i in range(ExecutableLookup.MAX_ENTRIES + 10):
        make_tool(tmp_path, f"t{i}")
    lookup = ExecutableLookup(clock, ttl=1.0)
    env = {"PATH": str(tmp_path)}
    for i in range(ExecutableLookup.MAX_ENTRIES):
        lookup(f"t{i}", env, "/")
    clock.advance(1.0)
    lookup(f"t{ExecutableLookup.MAX_ENTRIES}", env, "/")
    assert len(lookup._found) == 1


def test_pipes_are_read_a_pipeful_at_a_time():
    """Twisted reads a child's pipe 8 KiB at a time; ours takes what a pipe holds."""
    assert SessionProcess.processReaderFactory is WidePipeReader
    assert PIPE_READ == 65536
    got = []
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"x" * 60000)
        reader = WidePipeReader.__new__(WidePipeReader)
        reader.fd = read_end
        reader.dataReceived = got.append
        assert reader.doRead() is None
        assert [len(data) for data in got] == [60000]
        os.close(write_end)
        write_end = None
        assert reader.doRead() is CONNECTION_DONE
    finally:
        os.close(read_end)
        if write_end is not None:
            os.close(write_end)
