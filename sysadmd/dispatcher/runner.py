"""Running one job: its commands one after another as child processes.

Each command is split like a POSIX shell would (``shlex``) and run as a
:class:`sysadmd.util.process.ChildProcess`: no shell, an explicit minimal environment,
/dev/null as stdin, its own process group. The chain stops at the first non-zero return
code. A command that cannot start gets -1 and the reason in its log; one killed by signal N
gets -N. Stopping (a kill, a timeout or the daemon's shutdown) sends SIGTERM to the running
command's process group, then SIGKILL after the grace period.
"""

import os
import pwd

from twisted.internet import defer

from sysadmd.dispatcher.output import STDERR
from sysadmd.interfaces import IJobObserver
from sysadmd.util.commands import DEFAULT_PATH
from sysadmd.util.log import Logger
from sysadmd.util.process import ChildProcess, find_executable
from sysadmd.util.timers import cancel_call

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


class JobRun:
    """Runs ``job``'s commands in order and reports to ``observer``, an
    :class:`~sysadmd.interfaces.IJobObserver`: ``command_started``, ``command_output``
    (after output was appended to ``job.logs[index]``) and ``command_finished`` for each
    command, then ``job_finished`` once, when nothing of the job runs any more.

    ``done`` fires with the job after ``job_finished``. ``timeout`` (seconds, 0 or None for
    none) covers the whole job. ``lookup`` finds executables (``find_executable`` by
    default; the dispatcher shares one ``ExecutableLookup`` between its jobs). ``output``,
    the job's :class:`~sysadmd.dispatcher.output.OutputFile` when it has one, gets every
    byte first, tagged with its command and stream.
    """

    def __init__(self, reactor, job, env, cwd, kill_grace, log_cap, observer, timeout=None,
                 lookup=find_executable, output=None):
        self._reactor = reactor
        self._lookup = lookup
        self.job = job
        self._env = env
        self._cwd = cwd
        self._kill_grace = kill_grace
        self._log_cap = log_cap
        # Adapting checks it declares the interface (a TypeError otherwise).
        self._observer = IJobObserver(observer)
        self._timeout = timeout
        self._timeout_call = None
        self._output = output
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
        self._observer.command_started(job, index)
        observer = self._observer
        cap = self._log_cap
        file = self._output

        def output(fd, data):
            # The file first: it is the truth. stdout and stderr share the log, in
            # arrival order; a log exists only once there is output.
            if file is not None:
                file.append(index, fd, data)
            job.log_for(index, cap).feed(data)
            observer.command_output(job, index)

        process = ChildProcess(self._reactor, output, self._kill_grace, on_kill=self._ignored_term)
        reason = self._spawn(process, index)
        if reason is not None:
            log.warn(
                "job {job_id}: command {command!r} could not start: {reason}",
                job_id=job.job_id,
                command=job.commands[index],
                reason=reason,
            )
            text = f"sysadmd: cannot start: {reason}\n"
            if self._output is not None:
                self._output.append(index, STDERR, text.encode("utf-8"))
            job.log_for(index, self._log_cap).add_text(text)
            self._ended(index, -1)
            return
        self._process = process
        process.ended.addCallback(lambda exit: self._ended(index, exit.return_code))

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
            process.start(executable, argv, dict(self._env), self._cwd)
        except OSError as e:
            return f"{argv[0]}: {e.strerror or e}"
        return None

    def _ended(self, index, rc):
        self._process = None
        job = self.job
        if index in job.logs:
            job.logs[index].close()
        self._observer.command_finished(job, index, rc)
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
        """Stop the job: no further command starts; the running one's process group gets
        SIGTERM, then SIGKILL after the grace period. The job finishes when the process
        has ended."""
        if self.stopping:
            return
        self.stopping = True
        if self._process is not None:
            self._process.stop()

    def _ignored_term(self):
        log.warn("job {job_id} ignored SIGTERM; sending SIGKILL", job_id=self.job.job_id)

    def _finish(self):
        self._timeout_call = cancel_call(self._timeout_call)
        self.job.current = None
        self._observer.job_finished(self.job)
        self.done.callback(self.job)
