"""One child process, started and stopped the same way by every part of sysadmd.

:class:`ChildProcess` is the primitive the dispatcher's jobs and the event sources'
commands (``sysadmd.util.commands``) are built on:

- an argv list (never a shell string), an explicit environment and working directory;
- stdin is ``/dev/null``, one descriptor opened once for the daemon's life (no pipe to
  make and close per child); stdout and stderr are pipes, handed to ``on_output(fd,
  data)`` as they arrive;
- the child leads a new session, so it and everything it starts form one process group,
  and every signal goes to that group (``os.killpg``): stopping a command stops what it
  left running in the background too;
- :meth:`ChildProcess.stop`: SIGTERM, then SIGKILL after ``kill_grace`` seconds (as
  ``twisted.runner.procmon`` does); an optional ``timeout`` calls it;
- a pipe grace: once the child has exited, its pipes (held open by something it left
  running) are closed after ``pipe_grace`` seconds, so nobody waits on them forever;
  what they hold then is read first (a stalled reactor may not have read it yet);
- ``ended`` fires with an :class:`Exit` once the process has exited and its pipes are
  closed; after a stop, what is left of its group then gets SIGKILL.

:class:`ExecutableLookup` finds the program to run, like ``execvp`` would, remembering
names found on PATH for a second.
"""

import errno
import fcntl
import functools
import os
import shutil
import signal
from typing import NamedTuple, Optional

from twisted.internet import defer, error
from twisted.internet import process as _twisted_process
from twisted.internet.main import CONNECTION_DONE, CONNECTION_LOST
from twisted.internet.posixbase import PosixReactorBase
from twisted.internet.protocol import ProcessProtocol

from sysadmd.util.timers import cancel_call

KILL_GRACE = 5.0

# After a child has exited, how long its output pipes may stay open (held by a process it
# left in the background) before we close them, so nothing hangs on them.
PIPE_GRACE = 2.0

_SIGNALS = {"HUP": signal.SIGHUP, "INT": signal.SIGINT, "KILL": signal.SIGKILL,
            "STOP": signal.SIGSTOP, "TERM": signal.SIGTERM}


class Exit(NamedTuple):
    """How a child ended: its exit status, or the signal that killed it."""

    code: Optional[int]
    signal: Optional[int]

    @classmethod
    def from_reason(cls, reason):
        """From ``processEnded``'s reason (``ProcessDone`` or ``ProcessTerminated``)."""
        value = reason.value
        if isinstance(value, error.ProcessTerminated):
            return cls(value.exitCode, value.signal)
        return cls(0, None)

    @property
    def return_code(self):
        """The exit status, or -N for a process killed by signal N (-1 when unknown)."""
        if self.signal is not None:
            return -self.signal
        return self.code if self.code is not None else -1


@functools.cache
def stdin_null():
    """The read-only /dev/null every child gets as stdin, opened once: no pipe to make,
    watch and close per child (close-on-exec here; the child's copy is not)."""
    return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)


def find_executable(argv0, env, cwd="/"):
    """Find the program like ``execvp`` would: a name with a slash relative to ``cwd``,
    else on ``env``'s PATH. Returns ``(path, None)`` or ``(None, reason)``."""
    if "/" in argv0:
        path = os.path.join(cwd, argv0)
        if not os.path.exists(path):
            return None, f"{argv0}: no such file"
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            return None, f"{argv0}: not an executable file"
        return path, None
    found = shutil.which(argv0, path=env.get("PATH", ""))
    if found is None:
        return None, f"{argv0}: command not found (PATH={env.get('PATH', '')})"
    return found, None


class ExecutableLookup:
    """:func:`find_executable`, with bare names found on PATH remembered for ``ttl``
    seconds of ``clock``: a queue running the same program looks it up once, not once
    per job. What was not found is looked up again every time (a program just installed
    is found at once); a program removed meanwhile fails to start with its reason."""

    MAX_ENTRIES = 256

    def __init__(self, clock, ttl=1.0):
        self._clock = clock
        self._ttl = ttl
        self._found = {}

    def __call__(self, argv0, env, cwd="/"):
        """``(path, None)`` or ``(None, reason)``, like :func:`find_executable`."""
        if "/" in argv0:
            return find_executable(argv0, env, cwd)
        key = (argv0, env.get("PATH", ""))
        now = self._clock.seconds()
        hit = self._found.get(key)
        if hit is not None and hit[1] > now:
            return hit[0], None
        path, reason = find_executable(argv0, env, cwd)
        if path is not None:
            if len(self._found) >= self.MAX_ENTRIES:
                self._found = {k: v for k, v in self._found.items() if v[1] > now}
            self._found[key] = (path, now + self._ttl)
        return path, reason


# Bytes read from a child's pipe at once: a pipe holds 64 KiB, Twisted reads 8 KiB, so a
# command writing fast cost eight reads (and eight trips through every output consumer:
# the job's file, its log, its followers) per pipeful.
PIPE_READ = 65536


class WidePipeReader(_twisted_process.ProcessReader):
    """Twisted's reader of a child's pipe, reading up to :data:`PIPE_READ` bytes at once."""

    def doRead(self):
        """The pipe is readable: hand what it holds on (a closed pipe ends the reader)."""
        try:
            data = os.read(self.fd, PIPE_READ)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EINTR):
                return None
            return CONNECTION_LOST
        if not data:
            return CONNECTION_DONE
        self.dataReceived(data)
        return None

    def drain(self, limit=16 * PIPE_READ):
        """Hand on what the pipe holds now, up to ``limit`` bytes (something left
        running may keep writing), without waiting for more."""
        while limit > 0 and self.connected and not self.disconnecting:
            try:
                data = os.read(self.fd, min(PIPE_READ, limit))
            except OSError:
                return
            if not data:
                return
            limit -= len(data)
            self.dataReceived(data)


class SessionProcess(_twisted_process.Process):
    """Twisted's process, started as the leader of a new session (hence of a new
    process group), whose signals go to that whole group.

    ``reactor.spawnProcess`` has no way to ask for a new session, and calling
    ``os.setpgid`` from the parent after the spawn is too late: ``posix_spawn`` returns
    once the child has exec'd, when ``setpgid`` on it fails (EACCES), and a child that
    forked meanwhile would be left in the daemon's group. So the child makes the session
    itself, before its exec: ``posix_spawnp(setsid=True)`` where Twisted would use
    posix_spawn, ``os.setsid()`` in the child where it forks (where the parent also sets
    the child's group, so a signal sent right after the fork finds it). Both hooks are
    Twisted's (private) methods: ``tests/unit/test_process.py`` checks they still exist,
    ``tests/integration/test_process.py`` that both paths give the child its own group.
    """

    processReaderFactory = WidePipeReader

    def __init__(self, *args, **kwargs):
        self._pgid = None
        super().__init__(*args, **kwargs)

    def _trySpawnInsteadOfFork(self, path, uid, gid, executable, args, environment, kwargs):
        # Twisted's conditions and arguments, plus setsid.
        if (uid is not None or gid is not None
                or (path is not None and os.path.abspath(path) != os.path.abspath("."))
                or getattr(self._reactor, "_neverUseSpawn", False)):
            return False
        fd_state = []
        for fd in _twisted_process._listOpenFDs():
            try:
                fd_state.append((fd, fcntl.fcntl(fd, fcntl.F_GETFD, fcntl.FD_CLOEXEC)))
            except OSError:
                pass
        ignored = [n for n in range(1, signal.NSIG) if signal.getsignal(n) == signal.SIG_IGN]
        self.pid = self._pgid = os.posix_spawnp(
            executable,
            args,
            os.environ if environment is None else environment,
            file_actions=_twisted_process._getFileActions(
                fd_state, kwargs.get("fdmap"),
                doClose=_twisted_process._PS_CLOSE, doDup2=_twisted_process._PS_DUP2,
            ),
            setsigdef=ignored,
            setsid=True,
        )
        self.status = -1
        return True

    def _execChild(self, path, uid, gid, executable, args, environment):
        # The fork path (a working directory other than the daemon's), in the child. The
        # parent makes the child a group leader too (see _fork); if it came first, the
        # child cannot start a session (EPERM), but its process group, which is what
        # signals go to, is its own either way.
        try:
            os.setsid()
        except OSError:
            pass
        super()._execChild(path, uid, gid, executable, args, environment)

    def _fork(self, *args, **kwargs):
        super()._fork(*args, **kwargs)
        if self._pgid is None:
            # Forked, and we are the parent: the child may not have reached its setsid
            # yet, and a signal to its group would find none. As shells do, the parent
            # sets the child's group as well (EACCES once it has exec'd, EPERM once it
            # leads a session: by then it has its group).
            try:
                os.setpgid(self.pid, self.pid)
            except OSError:
                pass
            self._pgid = self.pid

    def signalProcess(self, signalID):
        """Send ``signalID`` ("TERM", "KILL"... or a number) to the child's process
        group. This still works after the child itself was reaped while processes it
        started remain; ``ProcessExitedAlready`` once none of the group is left."""
        signalID = _SIGNALS.get(signalID, signalID)
        if self._pgid is None:
            raise error.ProcessExitedAlready()
        try:
            os.killpg(self._pgid, signalID)
        except ProcessLookupError:
            raise error.ProcessExitedAlready() from None


def spawn_in_session(reactor, protocol, executable, argv, env, path, child_fds):
    """Start ``argv`` as the leader of a new session (see :class:`SessionProcess`);
    returns the process transport. A reactor that is not a POSIX one (a test's fake)
    gets its own ``spawnProcess`` call, with the same arguments."""
    if isinstance(reactor, PosixReactorBase):
        return SessionProcess(reactor, executable, argv, env, path, protocol, None, None, child_fds)
    return reactor.spawnProcess(protocol, executable, argv, env=env, path=path, childFDs=child_fds)


class ChildProcess(ProcessProtocol):
    """One child process (see the module docstring).

    ``on_output(fd, data)`` gets stdout (1) and stderr (2) as they arrive. ``timeout``
    (seconds; None or 0 for none) calls :meth:`stop` and sets ``timed_out``, then calls
    ``on_timeout()``; ``on_kill()`` is called when a stop escalates to SIGKILL. ``ended``
    fires with an :class:`Exit`, once.
    """

    def __init__(self, reactor, on_output, kill_grace=KILL_GRACE, pipe_grace=PIPE_GRACE,
                 timeout=None, on_timeout=None, on_kill=None):
        self._reactor = reactor
        self._on_output = on_output
        self._kill_grace = kill_grace
        self._pipe_grace = pipe_grace
        self._timeout = timeout
        self._on_timeout = on_timeout
        self._on_kill = on_kill
        self._timeout_call = None
        self._kill_call = None
        self._grace_call = None
        self.pid = None
        self.exited = False
        self.stopping = False
        self.timed_out = False
        self.ended = defer.Deferred()

    def start(self, executable, argv, env, cwd):
        """Spawn the child (once); raises ``OSError`` when it cannot be started."""
        spawn_in_session(self._reactor, self, executable, argv, env, cwd,
                         {0: stdin_null(), 1: "r", 2: "r"})
        if self._timeout and not self.ended.called:
            self._timeout_call = self._reactor.callLater(self._timeout, self._timed_out)

    def connectionMade(self):
        """Remember the child's pid (its process group's id too)."""
        self.pid = getattr(self.transport, "pid", None)

    def childDataReceived(self, childFD, data):
        """Output from the child."""
        self._on_output(childFD, data)

    def stop(self):
        """SIGTERM to the child's process group now, SIGKILL after ``kill_grace``
        seconds (which also closes the pipes, whoever holds them). ``ended`` fires once
        the child has exited and its pipes are closed; whatever of its group is still
        there then gets SIGKILL at once."""
        if self.stopping or self.ended.called:
            return
        self.stopping = True
        self._timeout_call = cancel_call(self._timeout_call)
        self._grace_call = cancel_call(self._grace_call)
        self._signal("TERM")
        self._kill_call = self._reactor.callLater(self._kill_grace, self._kill)

    def _timed_out(self):
        self._timeout_call = None
        self.timed_out = True
        self.stop()
        if self._on_timeout is not None:
            self._on_timeout()

    def _kill(self):
        self._kill_call = None
        if self._on_kill is not None:
            self._on_kill()
        self._signal("KILL")
        if self.transport is not None:
            # Something outside the group (it made its own session) may hold our pipes.
            self._close_pipes()

    def _signal(self, name):
        """Signal the group; False when none of it is left."""
        try:
            self.transport.signalProcess(name)
        except (error.ProcessExitedAlready, OSError):
            return False
        return True

    def processExited(self, reason):
        """The child is gone; its pipes get ``pipe_grace`` seconds (while stopping, the
        pending SIGKILL closes them if they are still open then)."""
        self.exited = True
        if not self.stopping:
            self._grace_call = self._reactor.callLater(self._pipe_grace, self._close_pipes)

    def _close_pipes(self):
        self._grace_call = None
        # A reactor busy for longer than the grace runs this before it polls again: what
        # the child wrote before it exited may still be in the pipes, unread.
        for reader in list(getattr(self.transport, "pipes", {}).values()):
            drain = getattr(reader, "drain", None)
            if drain is not None:
                drain()
        self.transport.loseConnection()

    def processEnded(self, reason):
        """The child has exited and its pipes are closed."""
        self._timeout_call = cancel_call(self._timeout_call)
        self._grace_call = cancel_call(self._grace_call)
        if self._kill_call is not None:
            # Stopped, and ended before the SIGKILL was due: whatever is left of its group
            # (something that ignored SIGTERM and does not hold our pipes) gets it now
            # rather than outliving the job unseen. Usually nothing is left (ESRCH).
            self._kill_call = cancel_call(self._kill_call)
            self._signal("KILL")
        self.ended.callback(Exit.from_reason(reason))
