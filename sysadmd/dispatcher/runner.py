"""Running one job: its commands one after another as child processes.

Each command is split like a POSIX shell would (``shlex``) and spawned without a shell,
with an explicit minimal environment. The chain stops at the first non-zero return code. A
command that cannot start gets -1 and the reason in its log; one killed by signal N gets
-N. Stopping (a kill, a timeout or the daemon's shutdown) sends SIGTERM, then SIGKILL after
the grace period, as ``twisted.runner.procmon`` does.
"""

import functools
import os
import pwd
import shutil

from twisted.internet import defer, error
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger

from sysadmd.util.commands import DEFAULT_PATH

# After a command has exited, how long its output pipes may stay open (held by a process
# it left in the background) before we close them, so a job never hangs on them.
PIPE_GRACE = 2.0

log = Logger()


def build_environment(passthrough=(), environ=None):
    """The environment of every command: PATH (a fixed system default), LANG and HOME
    (the daemon's, with fallbacks), plus each name of ``passthrough`` the daemon has
    (which may override those three)."""
    environ = os.environ if environ is None else environ
    env = {
        "PATH": DEFAULT_PATH,
        "LANG": environ.get("LANG") or "C.UTF-8",
        "HOME": environ.get("HOME") or _home(),
    }
    for name in passthrough:
        if name in environ:
            env[name] = environ[name]
    return env


def _home():
    try:
        return pwd.getpwuid(os.geteuid()).pw_dir or "/"
    except KeyError:
        return "/"


@functools.cache
def stdin_null():
    """The read-only /dev/null every command gets as stdin, opened once: no pipe to
    make, watch and close per command (close-on-exec here; the child's copy is not)."""
    return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)


def return_code(reason):
    """The return code from ``processEnded``'s reason: the exit status, or -N for a
    process killed by signal N."""
    value = reason.value
    if isinstance(value, error.ProcessTerminated):
        if value.signal is not None:
            return -value.signal
        return value.exitCode if value.exitCode is not None else -1
    return 0


def resolve(argv0, env, cwd):
    """Find the executable like execvp would; returns ``(path, None)`` or ``(None, reason)``."""
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
    """:func:`resolve`, with bare command names found on PATH remembered for ``ttl``
    seconds: a queue running the same program looks it up once, not once per job.
    What was not found is looked up again every time (a program just installed is found
    at once); a program removed meanwhile fails to start with its reason, as ever."""

    MAX_ENTRIES = 256

    def __init__(self, clock, ttl=1.0):
        self._clock = clock
        self._ttl = ttl
        self._found = {}

    def __call__(self, argv0, env, cwd):
        """``(path, None)`` or ``(None, reason)``, like :func:`resolve`."""
        if "/" in argv0:
            return resolve(argv0, env, cwd)
        key = (argv0, env.get("PATH", ""))
        now = self._clock.seconds()
        hit = self._found.get(key)
        if hit is not None and hit[1] > now:
            return hit[0], None
        path, reason = resolve(argv0, env, cwd)
        if path is not None:
            if len(self._found) >= self.MAX_ENTRIES:
                self._found = {k: v for k, v in self._found.items() if v[1] > now}
            self._found[key] = (path, now + self._ttl)
        return path, reason


class CommandProtocol(ProcessProtocol):
    """One command's process (stdin is /dev/null): stdout and stderr handed to
    ``on_output`` as they arrive. ``ended`` fires with the return code."""

    def __init__(self, reactor, on_output, pipe_grace=PIPE_GRACE):
        self._reactor = reactor
        self._on_output = on_output
        self._pipe_grace = pipe_grace
        self._grace_call = None
        self.ended = defer.Deferred()

    def outReceived(self, data):
        """stdout and stderr go to the same log, in arrival order."""
        self._on_output(data)

    errReceived = outReceived

    def processExited(self, reason):
        """The process is gone; give its pipes a moment, then close them."""
        self._grace_call = self._reactor.callLater(self._pipe_grace, self._close_pipes)

    def _close_pipes(self):
        self._grace_call = None
        self.transport.loseConnection()

    def processEnded(self, reason):
        """The process has exited and its pipes are closed."""
        if self._grace_call is not None and self._grace_call.active():
            self._grace_call.cancel()
        self._grace_call = None
        self.ended.callback(return_code(reason))

    def signal(self, name):
        """Send signal ``name`` ("TERM", "KILL") unless the process is already gone."""
        try:
            self.transport.signalProcess(name)
        except (error.ProcessExitedAlready, OSError):
            pass


class JobRun:
    """Runs ``job``'s commands in order and reports to ``listener``:

    - ``command_started(job, index)`` before each command;
    - ``command_output(job, index)`` after output was appended to ``job.logs[index]``;
    - ``command_finished(job, index, return_code)`` after each command;
    - ``job_finished(job)`` once, when nothing of the job runs any more.

    ``done`` fires with the job after ``job_finished``. ``timeout`` (seconds, 0 or None for
    none) covers the whole job. ``lookup`` finds executables (:func:`resolve` by default;
    the dispatcher shares one :class:`ExecutableLookup` between its jobs).
    """

    def __init__(self, reactor, job, env, cwd, kill_grace, log_cap, listener, timeout=None,
                 lookup=resolve):
        self._reactor = reactor
        self._lookup = lookup
        self.job = job
        self._env = env
        self._cwd = cwd
        self._kill_grace = kill_grace
        self._log_cap = log_cap
        self._listener = listener
        self._timeout = timeout
        self._timeout_call = None
        self._kill_call = None
        self._process = None
        self.stopping = False
        self.done = defer.Deferred()

    def start(self):
        """Start the first command (and the job's timeout)."""
        if self._timeout:
            self._timeout_call = self._reactor.callLater(self._timeout, self._timed_out)
        self._run(0)

    def _run(self, index):
        job = self.job
        if self.stopping or index >= len(job.commands):
            self._finish()
            return
        job.current = index
        self._listener.command_started(job, index)
        command = job.commands[index]

        def output(data):
            job.log_for(index, self._log_cap).feed(data)
            self._listener.command_output(job, index)

        process = CommandProtocol(self._reactor, output)
        reason = self._spawn(process, index)
        if reason is not None:
            log.warn(
                "job {job_id}: command {command!r} could not start: {reason}",
                job_id=job.job_id,
                command=command,
                reason=reason,
            )
            job.log_for(index, self._log_cap).add_text(f"sysadmd: cannot start: {reason}\n")
            self._ended(index, -1)
            return
        self._process = process
        process.ended.addCallback(lambda rc: self._ended(index, rc))

    def _spawn(self, process, index):
        """Spawn command ``index``; returns None, or why it could not start."""
        try:
            argv = self.job.argv(index)
        except ValueError as e:
            return f"cannot split the command: {e}"
        if not argv:
            return "empty command"
        if not os.path.isdir(self._cwd):
            return f"working directory {self._cwd} does not exist"
        executable, reason = self._lookup(argv[0], self._env, self._cwd)
        if reason is not None:
            return reason
        try:
            self._reactor.spawnProcess(
                process,
                executable,
                argv,
                env=dict(self._env),
                path=self._cwd,
                childFDs={0: stdin_null(), 1: "r", 2: "r"},
            )
        except OSError as e:
            return f"{argv[0]}: {e.strerror or e}"
        return None

    def _ended(self, index, rc):
        self._process = None
        self._cancel_kill()
        job = self.job
        if index in job.logs:
            job.logs[index].close()
        self._listener.command_finished(job, index, rc)
        if rc != 0:
            self._finish()
        else:
            self._run(index + 1)

    def _timed_out(self):
        self._timeout_call = None
        log.warn(
            "job {job_id} timed out after {timeout} s; stopping it",
            job_id=self.job.job_id,
            timeout=self._timeout,
        )
        self.job.timed_out = True
        self.kill()

    def kill(self):
        """Stop the job: no further command starts; the running one gets SIGTERM, then
        SIGKILL after the grace period. The job finishes when the process has exited."""
        if self.stopping:
            return
        self.stopping = True
        if self._process is not None:
            process = self._process
            process.signal("TERM")
            self._kill_call = self._reactor.callLater(self._kill_grace, self._force, process)

    def _force(self, process):
        self._kill_call = None
        log.warn("job {job_id} ignored SIGTERM; sending SIGKILL", job_id=self.job.job_id)
        process.signal("KILL")

    def _cancel_kill(self):
        if self._kill_call is not None and self._kill_call.active():
            self._kill_call.cancel()
        self._kill_call = None

    def _finish(self):
        if self._timeout_call is not None and self._timeout_call.active():
            self._timeout_call.cancel()
        self._timeout_call = None
        self.job.current = None
        self._listener.job_finished(self.job)
        self.done.callback(self.job)
