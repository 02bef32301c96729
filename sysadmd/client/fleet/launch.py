"""Running a ``sysadm fleet`` command: settings, one NATS connection, the exit status.

Why plain ``asyncio.run`` and not Twisted's asyncio reactor: the fleet commands use
nothing of the client that needs a reactor (not the WebSocket link, not its sessions;
only the pure renderers and the defaults file), and nats-py is asyncio. Running the
reactor would only add a second event-loop layer, and the rule that it must be installed
before anything imports ``twisted.internet.reactor``.
"""

import asyncio
import logging
import os
import signal
import sys

from sysadmd.client.errors import ClientError
from sysadmd.client.fleet.settings import settings

PROG = "sysadm"
MISSING_NATS = "the fleet commands need nats-py: pip install 'sysadmd[fleet]'"
INTERRUPTED = 130
#: Seconds a command has, after Ctrl-C, to close its connection before the process ends
#: anyway: Ctrl-C always ends it, whatever nats-py is waiting for.
INTERRUPT_GRACE = 3.0


class StdoutClosed(ClientError):
    """Nobody reads the output any more (``sysadm fleet watch | head``)."""

    def __init__(self):
        super().__init__("stdout was closed", exit_code=0)


class Output:
    """stdout for results, stderr for ``sysadm: ...`` lines. ``colour`` when stdout is
    a terminal and ``NO_COLOR`` is unset."""

    def __init__(self, stdout=None, stderr=None, environ=None):
        self.stdout = sys.stdout if stdout is None else stdout
        self.stderr = sys.stderr if stderr is None else stderr
        environ = os.environ if environ is None else environ
        try:
            tty = self.stdout.isatty()
        except (AttributeError, ValueError):
            tty = False
        self.colour = tty and not environ.get("NO_COLOR")

    def line(self, text):
        """One line (or several) to stdout."""
        try:
            self.stdout.write(text + "\n")
            self.stdout.flush()
        except BrokenPipeError:
            try:
                # Else the interpreter complains when it flushes stdout at exit.
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.stdout.fileno())
            except (AttributeError, OSError, ValueError):
                pass
            raise StdoutClosed() from None

    def error(self, text):
        """A ``sysadm: ...`` line to stderr."""
        try:
            self.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass
        self.stderr.write(f"{PROG}: {text}\n")
        self.stderr.flush()


async def execute(config, options, out):
    """Connect, run the command, close; the exit status (a ClientError is one line)."""
    from nats import errors as nats_errors

    from sysadmd.client.fleet import commands, run
    from sysadmd.client.fleet.connection import FleetConnection, api_failure

    handlers = {"setup": commands.setup, "hosts": commands.hosts, "state": commands.state,
                "watch": commands.watch, "run": run.run}
    # Both follow events for long: they ride out a NATS restart, and say so.
    lasting = options.fleet_command in ("watch", "run")
    connection = FleetConnection(config, note=out.error if lasting else None)
    try:
        await connection.connect(keep_trying=lasting)
        return await handlers[options.fleet_command](connection, options, out)
    except StdoutClosed:
        return 0
    except ClientError as e:
        out.error(str(e))
        return e.exit_code
    except nats_errors.Error as e:  # one nats-py failure not foreseen above: still one line
        out.error(str(api_failure(e)))
        return 1
    finally:
        await connection.close()


def launch(options, environ=None, out=None):
    """Run the parsed ``sysadm fleet`` command; its exit status (130 after Ctrl-C)."""
    out = Output(environ=environ) if out is None else out
    try:
        import nats  # noqa: F401 (only to know it is there)
    except ImportError:
        out.error(MISSING_NATS)
        return 1
    try:
        config = settings(options, environ)
    except ClientError as e:
        out.error(str(e))
        return e.exit_code
    # Failures are ours to tell, in one line: not asyncio's or nats-py's log records
    # (asyncio warns on every TLS connection nats-py closes, for one).
    for name in ("asyncio", "nats"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    try:
        return asyncio.run(interruptible(execute(config, options, out)))
    except KeyboardInterrupt:
        return INTERRUPTED


async def interruptible(command, grace=INTERRUPT_GRACE, exit_now=None):
    """Run ``command`` (a coroutine); Ctrl-C cancels it (its ``finally`` blocks close the
    connection) and the status is 130. Should it not end within ``grace`` seconds (a
    library that swallowed the cancellation, a close that waits on a dead server), or at
    a second Ctrl-C, ``exit_now(130)`` ends the process."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(command)
    exit_now = _exit_now if exit_now is None else exit_now
    interrupted = []

    def on_interrupt():
        if interrupted:
            exit_now(INTERRUPTED)
            return
        interrupted.append(loop.call_later(grace, exit_now, INTERRUPTED))
        task.cancel()

    # An ignored SIGINT (a background job of a non-interactive shell) stays ignored.
    handled = signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    if handled:
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
    try:
        return await task
    except asyncio.CancelledError:
        if not interrupted:
            raise
        return INTERRUPTED
    finally:
        if handled:
            loop.remove_signal_handler(signal.SIGINT)
        for call in interrupted:
            call.cancel()


def _exit_now(status):
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)
