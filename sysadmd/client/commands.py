"""The subcommands other than ``watch``, and what they share: reaching the daemon
(directly or through a bridge) and signing in.

Every command is ``command(reactor, link, options, out)`` returning a Deferred that fires
with the exit status; :func:`run_command` opens the link, signs in when the command needs
it, runs the command and closes the link whatever happens.
"""

import json
from dataclasses import dataclass
from typing import Any, Optional

from twisted.internet import defer

from sysadmd.client import render
from sysadmd.client.auth import authenticate, sign_in_with_key
from sysadmd.client.bridge import BridgeLink
from sysadmd.client.connection import CONNECT_TIMEOUT, DirectLink, connect
from sysadmd.client.errors import ClientError, ConnectionClosed
from sysadmd.client.follow import JobFollower, end_status

STATE_TIMEOUT = 15.0


@dataclass
class Target:
    """Where the daemon is: ``url`` (with ``tls``, a connection creator or None), or a
    bridge at ``bridge_url`` relaying to the server whose bridge key has the fingerprint
    ``server_id`` (the bridge signs us in with ``bridge_key``)."""

    url: str
    tls: Any = None
    bridge_url: Optional[str] = None
    server_id: Optional[str] = None
    bridge_key: Any = None
    timeout: float = CONNECT_TIMEOUT

    @property
    def label(self):
        """The address shown in messages (and the scope of cached tokens)."""
        if self.bridge_url:
            return f"{self.bridge_url}#{self.server_id}"
        return self.url


@defer.inlineCallbacks
def open_link(reactor, target):
    """Connect (and, through a bridge, sign in to it and wait for the server); fires with
    a link (``session``, ``closed``, ``close()``)."""
    if not target.bridge_url:
        connection = yield connect(reactor, target.url, target.tls, target.timeout)
        return DirectLink(reactor, connection)
    connection = yield connect(reactor, target.bridge_url, target.tls, target.timeout)
    link = BridgeLink(
        reactor, connection, target.server_id,
        lambda session: sign_in_with_key(session, target.bridge_key, "the bridge"),
        server_wait=target.timeout,
    )
    try:
        yield link.start()
    except Exception:
        yield link.close()
        raise
    return link


@defer.inlineCallbacks
def run_command(reactor, target, credentials, command, options, out, sign_in=True):
    """Open the link, sign in (unless ``sign_in`` is false), run ``command``, close."""
    link = yield open_link(reactor, target)
    try:
        if sign_in:
            yield authenticate(link.session, credentials)
        status = yield command(reactor, link, options, out)
    finally:
        yield link.close()
    return status


def _until_closed(link, waiting, what):
    """Fail ``waiting`` when the link closes first (with the broken tunnel's own error
    when that is why)."""

    def closed(description):
        if not waiting.called:
            waiting.errback(link.broken or ConnectionClosed(f"connection to {link.url} lost {what}: {description}"))
        return description

    link.closed.addCallback(closed)


def _print(out, options, reply, as_text):
    """Print ``reply`` as JSON with ``--json``, else as ``as_text(reply)``; exit status 0."""
    if options.json:
        out.line(json.dumps(reply, indent=2, sort_keys=True, ensure_ascii=False))
    else:
        out.line(as_text(reply))
    return 0


@defer.inlineCallbacks
def identify(reactor, link, options, out):
    """``rpc/identify``: what the peer is (works without signing in)."""
    reply = yield link.session.call("rpc", "identify", {})
    return _print(out, options, reply, render.identify_text)


@defer.inlineCallbacks
def state(reactor, link, options, out):
    """Subscribe to ``system-state`` and print the event the daemon replays to new
    subscribers (or the first one it publishes)."""
    received = defer.Deferred()
    session = link.session

    def on_event(frame):
        if frame.get("name") == "system_state" and isinstance(frame.get("args"), dict) and not received.called:
            received.callback(frame["args"])

    session.on_event = on_event
    _until_closed(link, received, "while waiting for the system state")
    yield session.call("events", "subscribe", ["system-state"])

    def too_late(_, timeout):
        raise ClientError(
            f"no system state from {link.url} within {timeout:g} s (the system-state source "
            "publishes after its first poll; is it in [events] sources?)"
        )

    args = yield received.addTimeout(options.timeout, reactor, too_late)
    return _print(out, options, args, lambda a: render.state_text(a, out.colour))


def _dispatcher(link, action, **args):
    return link.session.call("rpc", "dispatcher", dict(args, action=action))


def run_request(options):
    """The args of ``rpc/dispatcher`` ``run`` (without the action) for the ``run``
    command's options."""
    request = {options.job_id: options.commands if len(options.commands) > 1 else options.commands[0]}
    if options.queue is not None:
        request["queue"] = options.queue
    if options.timeout is not None:
        request["timeout"] = options.timeout
    return request


@defer.inlineCallbacks
def run(reactor, link, options, out):
    """Submit a job; with ``--wait`` stream its output and end with its return code
    (``--follow`` is :mod:`sysadmd.client.output`'s)."""
    request = run_request(options)
    if not options.wait:
        reply = yield _dispatcher(link, "run", **request)
        out.line("started: " + ", ".join(map(str, (reply or {}).get("started", [options.job_id]))))
        return 0
    follower = JobFollower(options.job_id, out.write, out.note)
    finished = defer.Deferred()

    def on_event(frame):
        if frame.get("name") == "dispatcher" and follower.event(frame.get("args")) and not finished.called:
            finished.callback(None)

    link.session.on_event = on_event
    _until_closed(link, finished, f"while job {options.job_id} was running (see: sysadm log {options.job_id})")
    # Subscribe first, so no event of the new job can be missed.
    yield link.session.call("events", "subscribe", ["dispatcher"])
    yield _dispatcher(link, "run", **request)
    yield finished
    return end_status(options.job_id, follower.return_code, follower.flags, out.error)


@defer.inlineCallbacks
def jobs(reactor, link, options, out):
    """The pending and running jobs."""
    reply = yield _dispatcher(link, "list")
    return _print(out, options, reply, render.jobs_text)


@defer.inlineCallbacks
def kill(reactor, link, options, out):
    """Kill jobs; exit 1 when one of them was not pending or running."""
    reply = yield _dispatcher(link, "kill", job_id=list(options.job_ids))
    killed = ((reply or {}).get("killed") or {}).get("jobs") or []
    if killed:
        out.line("killed: " + ", ".join(map(str, killed)))
    missing = [job_id for job_id in options.job_ids if job_id not in killed]
    if missing:
        out.error("no pending or running job: " + ", ".join(missing))
        return 1
    return 0


@defer.inlineCallbacks
def log(reactor, link, options, out):
    """A job's full log, running or from history."""
    details = yield _dispatcher(link, "log", job_id=options.job_id)
    return _print(out, options, details, lambda d: render.log_text(d if isinstance(d, dict) else {}))


@defer.inlineCallbacks
def history(reactor, link, options, out):
    """Recently finished jobs, newest first."""
    args = {} if options.limit is None else {"limit": options.limit}
    reply = yield _dispatcher(link, "history", **args)
    return _print(out, options, reply, render.history_text)
