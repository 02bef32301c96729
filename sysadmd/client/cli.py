"""``sysadm``: the command-line client of sysadmd.

::

    sysadm [connection options] COMMAND [command options]

    watch [SOURCE ...] [--since SOURCE=SEQ[@EPOCH]] [--json]
                                  live events (default: dispatcher life-preserver
                                  system-state); reconnects and resumes by itself, says
                                  on stderr what was missed; --since (repeatable) starts
                                  after event SEQ of SOURCE; --json prints the frames
                                  with their seq and epoch (and the gap frames)
    state [--timeout S] [--json]  the system state: host, priority, pools
    run ID CMD [CMD ...] [--queue Q] [--timeout S] [--wait | --follow]
                                  submit a job; --wait streams its output, exits with its
                                  code; --follow prints its output live (its stdout to
                                  stdout, its stderr to stderr), resuming after a dropped
                                  connection, and exits with its code
    jobs [--json]                 pending and running jobs
    kill ID [ID ...]              kill jobs
    log ID [--json]               a job's full log
    log -f ID [--offset N]        follow a job's output live from its start (or byte N)
                                  to its end, like run --follow; exits with its code
    history [--limit N] [--json]  recently finished jobs
    identify [--json]             what the daemon is (no sign-in needed)

Connection options may come before or after the command; their defaults come from
``~/.config/sysadm/client.ini`` (see ``sysadmd.client.config``). Failures are one line on
stderr and exit status 1 (2 for usage errors); ``run --wait``, ``run --follow`` and
``log -f`` exit with the job's code (128+N when killed by signal N).
"""

import argparse
import getpass
import json
import os
import sys

from twisted.internet import defer, task
from twisted.logger import Logger

from sysadmd.client import commands, fleet
from sysadmd.client.auth import PASSPHRASE_ENV, Credentials, PasswordSource, load_private_key
from sysadmd.client.binding import parse_server_fingerprint
from sysadmd.client.config import load_defaults
from sysadmd.client.connection import tls_for
from sysadmd.client.errors import ClientError
from sysadmd.client.output import OutputFollow
from sysadmd.client.render import event_line
from sysadmd.client.resume import parse_since
from sysadmd.client.tls import parse_fingerprint
from sysadmd.client.watch import BUILT_IN_SOURCES, Watcher

DEFAULT_URL = "ws://127.0.0.1:12150"
PROG = "sysadm"

log = Logger()


class Output:
    """stdout for results, stderr for notes and errors. ``colour`` is on when stdout is a
    terminal and ``NO_COLOR`` is unset. A closed stdout (``sysadm watch | head``) calls
    ``on_broken`` instead of raising."""

    def __init__(self, stdout=None, stderr=None, colour=None, environ=None):
        self.stdout = sys.stdout if stdout is None else stdout
        self.stderr = sys.stderr if stderr is None else stderr
        environ = os.environ if environ is None else environ
        if colour is None:
            colour = _isatty(self.stdout) and not environ.get("NO_COLOR")
        self.colour = colour
        self.on_broken = None

    def write(self, text):
        """Write ``text`` to stdout as it is, and flush."""
        try:
            self.stdout.write(text)
            self.stdout.flush()
        except BrokenPipeError:
            if self.on_broken is not None:
                self.on_broken()

    def write_err(self, text):
        """Write ``text`` to stderr as it is (a job's stderr), and flush; stdout first, so
        what was written to both comes out in order."""
        try:
            self.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass
        try:
            self.stderr.write(text)
            self.stderr.flush()
        except BrokenPipeError:
            pass

    def line(self, text):
        """One line (or several) to stdout."""
        self.write(text + "\n")

    def note(self, text):
        """A status line to stderr, as it is."""
        try:
            self.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def error(self, text):
        """A ``sysadm: ...`` line to stderr."""
        self.note(f"{PROG}: {text}")


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _positive(text):
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def _seconds(text):
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds (0 = no limit)")
    return int(value) if value.is_integer() else value


def _limit(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number of at least 1")
    return value


def _offset(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a byte offset (0 or more)")
    return value


def _since(text):
    try:
        return parse_since(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def starting_positions(since, sources):
    """``{source: (seq, epoch)}`` from the parsed ``--since`` values; a usage error
    (exit status 2) for a source given twice or not watched."""
    start = {}
    for source, seq, epoch in since or ():
        if source in start:
            raise ClientError(f"--since: {source} is given twice", exit_code=2)
        if source not in sources:
            raise ClientError(f"--since: {source} is not watched (watching {', '.join(sources)})", exit_code=2)
        start[source] = (seq, epoch)
    return start


def _connection_options(parser, suppress):
    default = {"default": argparse.SUPPRESS} if suppress else {}
    group = parser.add_argument_group("connection")
    group.add_argument("--url", help=f"the daemon's WebSocket URL (default {DEFAULT_URL})", **default)
    group.add_argument("--user", help="user to sign in as (default: your login name)", **default)
    group.add_argument("--token-file", metavar="PATH", help="cache the session token here (mode 0600) and reuse it", **default)
    group.add_argument("--key", metavar="PATH", help="sign in with this private key (OpenSSH or PEM) by rpc/auth_ssl", **default)
    group.add_argument("--fingerprint", metavar="SHA256:...", help="accept only the TLS certificate with this SHA-256 fingerprint", **default)
    group.add_argument("--bridge", metavar="URL", help="go through the bridge at URL (needs --server and --key)", **default)
    group.add_argument("--server", metavar="SHA256:...", help="the server behind the bridge: the fingerprint of its bridge key (sysadmd-admin bridge export-key prints it)", **default)
    group.add_argument("--config", metavar="PATH", help="defaults file (default ~/.config/sysadm/client.ini)", **default)


def build_parser():
    """The argument parser (connection options before or after the command)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Command-line client of sysadmd, the SysAdm event service.",
        epilog="The password comes from SYSADM_PASSWORD or a prompt; an encrypted key's "
               f"passphrase from {PASSPHRASE_ENV} or a prompt.",
    )
    _connection_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _connection_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name, help_text):
        return sub.add_parser(name, parents=[common], help=help_text, description=help_text)

    p = command("watch", "Follow events live, one line each.")
    p.add_argument("sources", nargs="*", metavar="SOURCE", help="event sources (default: " + " ".join(BUILT_IN_SOURCES) + ")")
    p.add_argument("--since", action="append", type=_since, default=[], metavar="SOURCE=SEQ[@EPOCH]",
                   help="start after event SEQ of SOURCE (0: every event the daemon keeps) of "
                        "its log EPOCH (default: the current one); repeatable")
    p.add_argument("--json", action="store_true",
                   help="print each event frame (with its seq and epoch) and each gap frame as one JSON line")
    p = command("state", "Show the system state: host, priority, ZFS pools.")
    p.add_argument("--timeout", type=_positive, default=commands.STATE_TIMEOUT, metavar="S",
                   help=f"seconds to wait for the state (default {commands.STATE_TIMEOUT:g})")
    p.add_argument("--json", action="store_true", help="print the event's args as JSON")
    p = command("run", "Run a job of one or more commands (each CMD one quoted string).")
    p.add_argument("job_id", metavar="ID")
    p.add_argument("commands", nargs="+", metavar="CMD")
    p.add_argument("--queue", metavar="Q", help="dispatcher queue (default no_queue)")
    p.add_argument("--timeout", type=_seconds, metavar="S", help="seconds before the job is stopped (0 = none)")
    waiting = p.add_mutually_exclusive_group()
    waiting.add_argument("--wait", action="store_true", help="stream the output and exit with the job's return code")
    waiting.add_argument("--follow", action="store_true",
                         help="print the output live (stdout and stderr apart), across dropped connections, "
                              "and exit with the job's return code")
    p = command("jobs", "List pending and running jobs.")
    p.add_argument("--json", action="store_true")
    p = command("kill", "Kill pending or running jobs.")
    p.add_argument("job_ids", nargs="+", metavar="ID")
    p = command("log", "Show a job's full log, or follow its output with -f.")
    p.add_argument("job_id", metavar="ID")
    p.add_argument("--json", action="store_true")
    p.add_argument("-f", "--follow", action="store_true",
                   help="print the output live (pending, running or finished job) until the job ends; "
                        "exit with its return code")
    p.add_argument("--offset", type=_offset, metavar="N", help="with -f: start at byte N of the output")
    p = command("history", "Show recently finished jobs, newest first.")
    p.add_argument("--limit", type=_limit, metavar="N", help="at most N jobs (the daemon's default: 50)")
    p.add_argument("--json", action="store_true")
    p = command("identify", "Show what the daemon is (type, host name, version).")
    p.add_argument("--json", action="store_true")
    fleet.add_parser(sub)
    return parser


COMMANDS = {
    "state": commands.state,
    "run": commands.run,
    "jobs": commands.jobs,
    "kill": commands.kill,
    "log": commands.log,
    "history": commands.history,
    "identify": commands.identify,
}


def settings(options, environ=None):
    """Fill connection options from the defaults file; check they fit together."""
    defaults = load_defaults(getattr(options, "config", None), environ)
    for key in ("url", "user", "token_file", "key", "fingerprint", "bridge", "server"):
        if getattr(options, key, None) is None:
            setattr(options, key, defaults.get(key))
    options.url = options.url or DEFAULT_URL
    if not options.user:
        try:
            options.user = getpass.getuser()
        except (KeyError, OSError):
            raise ClientError("--user is needed (the login name is unknown)") from None
    if bool(options.bridge) != bool(options.server):
        raise ClientError("--bridge and --server go together")
    if options.bridge and not options.key:
        raise ClientError("--bridge needs --key: a bridge accepts key sign-in only")
    if options.bridge:
        # A host name is a label anyone can claim: the server is chosen by its key.
        options.server = parse_server_fingerprint(options.server)
    options.digest = parse_fingerprint(options.fingerprint) if options.fingerprint else None
    return options


def prepare(reactor, options, environ=None, prompt=getpass.getpass):
    """``(target, credentials)`` for ``options`` (after :func:`settings`). Loads the key
    (asking for a passphrase before the reactor runs)."""
    environ = os.environ if environ is None else environ
    key = None
    if options.key:
        key = load_private_key(
            options.key, environ.get(PASSPHRASE_ENV),
            (lambda: prompt(f"Passphrase for {options.key}: ")) if _isatty(sys.stdin) else None,
        )
    tls = tls_for(options.bridge or options.url, options.digest)
    target = commands.Target(options.url, tls, options.bridge, options.server, key)
    credentials = Credentials(
        options.user, PasswordSource(reactor, options.user, environ, prompt), key,
        options.token_file, target.label,
    )
    return target, credentials


def check_follow_options(options):
    """Usage errors (exit status 2) in the options of ``log``: ``--offset`` needs ``-f``,
    ``--json`` does not go with it."""
    if options.command != "log":
        return
    if options.offset is not None and not options.follow:
        raise ClientError("log: --offset goes with -f", exit_code=2)
    if options.follow and options.json:
        raise ClientError("log: -f prints the output as it is; --json does not go with it", exit_code=2)


def follows_output(options):
    """Whether the command is ``run --follow`` or ``log -f``."""
    return options.command in ("run", "log") and getattr(options, "follow", False)


def output_follow(reactor, open_link, credentials, options, out):
    """The :class:`OutputFollow` of ``run --follow`` (which submits the job on the first
    connection) or ``log -f``."""
    if options.command == "run":
        request = dict(commands.run_request(options), action="run")
        return OutputFollow(reactor, open_link, credentials, options.job_id, out,
                            start=lambda session: session.call("rpc", "dispatcher", request))
    return OutputFollow(reactor, open_link, credentials, options.job_id, out, offset=options.offset or 0)


def _show_events(options, out):
    if options.json:
        return lambda frame: out.line(json.dumps(frame, separators=(",", ":"), ensure_ascii=False))
    return lambda frame: out.line(event_line(frame, colour=out.colour))


@defer.inlineCallbacks
def run(reactor, options, out, environ=None):
    """Run the parsed command; fires with the exit status (never fails for a
    :class:`ClientError`: it is printed as one line)."""
    try:
        if options.command == "watch":
            sources = options.sources or list(BUILT_IN_SOURCES)
            start = starting_positions(options.since, sources)
        check_follow_options(options)
        settings(options, environ)
        target, credentials = prepare(reactor, options, environ)
        if options.command == "watch":
            watcher = Watcher(reactor, lambda: commands.open_link(reactor, target), credentials,
                              sources, bool(options.sources), _show_events(options, out), out,
                              since=start, raw_gaps=options.json)
            reactor.addSystemEventTrigger("before", "shutdown", watcher.stop)
            status = yield watcher.run()
        elif follows_output(options):
            follow = output_follow(reactor, lambda: commands.open_link(reactor, target), credentials, options, out)
            reactor.addSystemEventTrigger("before", "shutdown", follow.stop)
            status = yield follow.run()
        else:
            status = yield commands.run_command(
                reactor, target, credentials, COMMANDS[options.command], options, out,
                sign_in=options.command != "identify",
            )
    except ClientError as e:
        out.error(str(e))
        return e.exit_code
    return status


def _react_main(reactor, options, out):
    d = run(reactor, options, out)

    def done(status):
        raise SystemExit(status)

    return d.addCallback(done)


def main(argv=None):
    """The ``sysadm`` console script."""
    options = build_parser().parse_args(argv)
    if options.command == "fleet":
        raise SystemExit(fleet.main(options))  # asyncio: no reactor (sysadmd.client.fleet.launch)
    out = Output()

    def broken():
        # Nobody reads any more: stop quietly, without the interpreter complaining later.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        from twisted.internet import reactor

        if reactor.running:
            reactor.stop()

    out.on_broken = broken
    task.react(_react_main, (options, out))
