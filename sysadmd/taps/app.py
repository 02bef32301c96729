"""What both programs (``twistd sysadmd`` and ``twistd sysadm-bridge``) share: the
command-line options, the top service that orders start and stop, and how a
configuration error ends the program."""

import os
import resource
import signal
import sys

from twisted.python import usage

import sysadmd
from sysadmd.config import ConfigError
from sysadmd.util.log import Logger
from sysadmd.util.services import OrderedService

log = Logger()


class Options(usage.Options):
    """Command-line options of ``twistd sysadmd``."""

    synopsis = "[--config PATH] [--listen ENDPOINT ...] [--set SECTION.KEY=VALUE ...]"
    optParameters = [
        [
            "config",
            "c",
            None,
            "Configuration file (default: /usr/local/etc/sysadmd.ini, else /etc/sysadmd.ini, "
            "else built-in defaults).",
        ],
    ]

    def __init__(self):
        super().__init__()
        self["listen"] = []
        self["set"] = []

    def opt_listen(self, endpoint):
        """Listen on ENDPOINT instead of [server] listen (repeatable)."""
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def opt_set(self, assignment):
        """Override one configuration key, e.g. --set server.state_dir=/tmp/x (repeatable)."""
        self["set"].append(assignment)


def check_state_dir(config, errors):
    """Create ``[server] state_dir`` (mode 0700: it holds the jobs' commands and output,
    keys and users) when missing, and narrow an existing one we own to 0700; add a
    ConfigError when it cannot be created or written."""
    path = config.state_dir
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as e:
        errors.append(ConfigError(config.source, "server", "state_dir", f"cannot create {path}: {e.strerror}"))
        return
    if not os.access(path, os.W_OK | os.X_OK):
        errors.append(ConfigError(config.source, "server", "state_dir", f"{path} is not writable"))
        return
    _make_private(path)


def _make_private(path):
    # makedirs leaves an existing directory as it was; one made by an older version
    # (0750) or by hand is narrowed, unless someone else owns it (then it is theirs).
    info = os.stat(path)
    if info.st_uid != os.geteuid() or info.st_mode & 0o077 == 0:
        return
    try:
        os.chmod(path, info.st_mode & 0o700)
    except OSError as e:
        log.warn("cannot narrow {path} to mode 0700: {error}", path=path, error=e.strerror)
        return
    log.info(
        "state directory {path} narrowed from mode {old:04o} to {new:04o}",
        path=path, old=info.st_mode & 0o777, new=info.st_mode & 0o700,
    )


def connection_cap(config, limits=None):
    """How many client connections the daemon may hold: the soft descriptor limit
    (RLIMIT_NOFILE, after :func:`raise_open_file_limit`) minus ``[server]
    reserved_descriptors``, which stay for jobs, event sources, the database, logs,
    bridge links and the few connections kept back for ``GET /health``. None when the
    limit is infinite. ``limits`` (tests) replaces ``getrlimit``'s (soft, hard).
    Raises :class:`ConfigError` when the reserve leaves fewer than 16 connections."""
    soft, _ = limits if limits is not None else resource.getrlimit(resource.RLIMIT_NOFILE)
    reserved = config["server"]["reserved_descriptors"]
    if soft == resource.RLIM_INFINITY:
        log.info("no descriptor limit: client connections are not capped")
        return None
    cap = soft - reserved
    if cap < 16:
        raise ConfigError(
            config.source, "server", "reserved_descriptors",
            f"{reserved} leaves {max(cap, 0)} of the {soft} file descriptors this process "
            "may open for client connections; lower it or raise the limit (ulimit -n)",
        )
    log.info(
        "client connections capped at {cap} ({soft} file descriptors, {reserved} reserved)",
        cap=cap, soft=soft, reserved=reserved,
    )
    return cap


class DaemonService(OrderedService):
    """The top service: a bind failure at start becomes one line on stderr and exit 1,
    and SIGTERM is a clean shutdown with exit status 0. ``program`` names it in the log
    and on stderr (the bridge is another program built the same way)."""

    def __init__(self, reactor, source, program="sysadmd"):
        super().__init__()
        self._reactor = reactor
        self.source = source
        self.program = program
        self.stopping = False

    def startService(self):
        """Start children; take over SIGTERM once the reactor runs."""
        super().startService()
        self._reactor.callWhenRunning(self._handle_sigterm)

    def _handle_sigterm(self):
        # twistd re-raises SIGTERM at exit (status -15); service managers expect 0 from
        # an orderly stop, so SIGTERM here just stops the reactor.
        daemon_pid = os.getpid()

        def stop(signum, frame):
            if os.getpid() != daemon_pid:
                # A child between fork and exec (a dispatcher job) inherits this handler:
                # it must die of SIGTERM as the job would, not swallow it.
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            if self.stopping:
                # A second SIGTERM (make, timeout and service managers may send one more)
                # must not stop a reactor that is already stopping.
                self.log.info("received SIGTERM again; already shutting down")
                return
            self.stopping = True
            self.log.info("received SIGTERM, shutting down")
            self._reactor.callFromThread(self._reactor.stop)

        signal.signal(signal.SIGTERM, stop)
        # Only now: from this line on, SIGTERM is an orderly stop with status 0.
        self.log.info("{program} {version} ready", program=self.program, version=sysadmd.__version__)

    def privilegedStartService(self):
        """Bind listening ports, reporting failure as a configuration error."""
        try:
            super().privilegedStartService()
        except ConfigError as e:
            exit_with([e], self.program)


def exit_with(errors, program="sysadmd"):
    # twistd has replaced sys.stderr with its log by now; the user reads the real one.
    stream = sys.__stderr__
    for error in errors:
        stream.write(f"{program}: {error}\n")
    stream.flush()
    raise SystemExit(1)


def raise_open_file_limit():
    """Every client connection is a file descriptor: raise the soft RLIMIT_NOFILE to the
    hard limit (no privilege needed). Returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft, hard
    return resource.getrlimit(resource.RLIMIT_NOFILE)
