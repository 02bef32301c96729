"""sysadmd.util.process with real child processes: each leads its own session, and
stopping it stops its whole process group."""

import os

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.internet import reactor as global_reactor
from twisted.internet.interfaces import IProcessTransport
from zope.interface.verify import verifyObject

from sysadmd.util.process import ChildProcess, Exit, SessionProcess, stdin_null
from tests.integration.procscan import alive_with, kill_all, unique_sleep


def within(d, seconds=10):
    """``d``, failing the test if it has not fired after ``seconds`` of real time."""
    return d.addTimeout(seconds, global_reactor)


@defer.inlineCallbacks
def gone(marker, seconds=2):
    """Wait up to ``seconds`` for every process carrying ``marker`` to be gone."""
    for _ in range(int(seconds * 10)):
        if not alive_with(marker):
            break
        yield pause(0.1)
    assert alive_with(marker) == {}


def pause(seconds):
    return task.deferLater(global_reactor, seconds, lambda: None)


class Spied(SessionProcess):
    """Records whether Twisted could use posix_spawn (else it forked)."""

    def _trySpawnInsteadOfFork(self, *args):
        self.used_posix_spawn = super()._trySpawnInsteadOfFork(*args)
        return self.used_posix_spawn


@pytest.mark.parametrize("same_cwd", [True, False], ids=["posix_spawn", "fork"])
@pytest_twisted.inlineCallbacks
def test_a_child_leads_its_own_session_whichever_way_twisted_starts_it(same_cwd, tmp_path):
    """In the daemon's directory Twisted uses posix_spawn, elsewhere it forks: either
    way the child leads its own process group as soon as the spawn returns (and, with
    posix_spawn, its own session; after a fork it may have lost the race to start one)."""
    child = ChildProcess(global_reactor, lambda fd, data: None, kill_grace=5)
    cwd = os.getcwd() if same_cwd else str(tmp_path)
    transport = Spied(global_reactor, "/bin/sh", ["sh", "-c", "exec sleep 30"], {"PATH": "/bin:/usr/bin"},
                      cwd, child, None, None, {0: stdin_null(), 1: "r", 2: "r"})
    try:
        assert verifyObject(IProcessTransport, transport)
        assert transport.used_posix_spawn is same_cwd
        pid = transport.pid
        assert child.pid == pid
        assert os.getpgid(pid) == pid and os.getpgid(pid) != os.getpgid(0)
        if same_cwd:
            assert os.getsid(pid) == pid
        # A forked child still runs Python until its exec: a SIGTERM then would go to the
        # handler it inherited, so let it reach sleep first.
        yield pause(0.3)
    finally:
        child.stop()
        exit = yield within(child.ended)
    assert exit == Exit(None, 15)


@pytest.mark.parametrize("same_cwd", [True, False], ids=["posix_spawn", "fork"])
@pytest_twisted.inlineCallbacks
def test_stop_leaves_nothing_of_the_group_running(same_cwd, tmp_path):
    """sh -c 'sleep & sleep', stopped: the shell and both sleeps are gone once ended
    fires."""
    marker = unique_sleep()
    child = ChildProcess(global_reactor, lambda fd, data: None, kill_grace=5)
    child.start("/bin/sh", ["sh", "-c", f"sleep {marker} & sleep {marker}"], {"PATH": "/bin:/usr/bin"},
                os.getcwd() if same_cwd else str(tmp_path))
    try:
        for _ in range(50):
            if len(alive_with(marker)) == 2:
                break
            yield pause(0.1)
        sleeps = alive_with(marker)
        assert len(sleeps) == 2 and set(sleeps.values()) == {child.pid}, "both in the child's group"
        child.stop()
        yield within(child.ended)
        yield gone(marker)
    finally:
        kill_all(marker)


@pytest_twisted.inlineCallbacks
def test_a_group_member_ignoring_term_gets_kill_after_the_grace():
    """A background process that ignores SIGTERM and keeps the pipes open is killed
    with the group's SIGKILL at the grace."""
    marker = unique_sleep()
    child = ChildProcess(global_reactor, lambda fd, data: None, kill_grace=1)
    child.start("/bin/sh", ["sh", "-c", f"(trap '' TERM; sleep {marker}) & sleep {marker}"],
                {"PATH": "/bin:/usr/bin"}, os.getcwd())
    try:
        for _ in range(50):
            if len(alive_with(marker)) == 2:
                break
            yield pause(0.1)
        child.stop()
        yield pause(0.5)
        assert len(alive_with(marker)) == 1, "the TERM-ignoring sleep is still there"
        assert not child.ended.called, "it holds the pipes"
        yield within(child.ended)
        yield gone(marker)
    finally:
        kill_all(marker)



@pytest.mark.parametrize("size", [10, 65536], ids=["a-line", "a-pipeful"])
@pytest_twisted.inlineCallbacks
def test_output_still_in_the_pipes_when_the_grace_runs_out_is_kept(size):
    """The pipe grace is for pipes held open by something left running, not for output
    the reactor has not read yet. A reactor too busy to poll for longer than the grace
    after the child exited (here: the pipes taken out of its poll, as a stall would
    leave them unread) closes them only after reading what they hold."""
    received = {1: bytearray(), 2: bytearray()}
    child = ChildProcess(global_reactor, lambda fd, data: received[fd].extend(data),
                         kill_grace=5, pipe_grace=0.2)
    child.start("/bin/sh", ["sh", "-c", f"head -c {size} /dev/zero; head -c {size} /dev/zero >&2"],
                {"PATH": "/bin:/usr/bin"}, os.getcwd())
    for fd in (1, 2):
        child.transport.pipes[fd].stopReading()
    exit = yield within(child.ended)
    assert child.exited
    assert exit == Exit(0, None)
    assert (len(received[1]), len(received[2])) == (size, size)
