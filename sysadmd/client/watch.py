"""``sysadm watch``: follow event sources, across dropped connections.

The first connection must work (otherwise the command fails at once, with the reason).
After that a dropped connection is announced on stderr and retried after 1, 2, 4 ... up
to ``backoff_cap`` seconds; each new connection signs in again (with the token first)
and subscribes to the same sources, and says so. A refused sign-in ends the command.

While connected, a cheap request (``rpc/query``) every ``keepalive`` seconds keeps the
token and the connection alive (the daemon closes silent connections and expires unused
tokens) and detects a dead peer: with no reply in time, the connection is dropped and
re-established. When the daemon nevertheless ends the session (an error frame with
``"id": null``), the watcher signs in and subscribes again on the same connection.
"""

from twisted.application.internet import backoffPolicy
from twisted.internet import defer, task
from twisted.logger import Logger

from sysadmd.client.auth import AuthFailed, authenticate
from sysadmd.client.errors import CallTimeout, ClientError, ErrorReply

#: What ``watch`` follows when no source is named.
BUILT_IN_SOURCES = ("dispatcher", "life-preserver", "system-state")
KEEPALIVE = 60.0
BACKOFF_CAP = 30.0


class Watcher:
    """Follows ``sources`` through links made by ``open_link()``; ``show(frame)`` gets
    every event frame. ``explicit`` says the user named the sources: then a source the
    daemon does not know is an error, otherwise it is skipped with a warning."""

    _log = Logger()

    def __init__(self, clock, open_link, credentials, sources, explicit, show, out,
                 keepalive=KEEPALIVE, backoff_cap=BACKOFF_CAP):
        self._clock = clock
        self._open_link = open_link
        self._credentials = credentials
        self._sources = list(sources)
        self._explicit = explicit
        self._show = show
        self._out = out
        self._keepalive = keepalive
        # Called with the failed reconnections so far: 1, 2, 4 ... backoff_cap seconds. No
        # jitter, so the delays announced on stderr stay round.
        self._retry_delay = backoffPolicy(
            initialDelay=1.0, maxDelay=backoff_cap, factor=2.0, jitter=lambda: 0.0
        )
        self._warned = set()
        self._stopping = False
        self._link = None
        self._loop = None
        self.subscribed = []

    @defer.inlineCallbacks
    def run(self):
        """Watch until a sign-in is refused (a failure) or :meth:`stop` is called (then
        fires with 0)."""
        link = yield self._connect()
        while True:
            description = yield link.closed
            self._stop_keepalive()
            if self._stopping:
                return 0
            failures = 0
            delay = self._retry_delay(failures)
            self._out.error(f"connection to {link.url} lost ({description}); reconnecting in {delay:g} s")
            while True:
                yield task.deferLater(self._clock, delay, lambda: None)
                if self._stopping:
                    return 0
                try:
                    link = yield self._connect()
                except AuthFailed:
                    raise
                except ClientError as e:
                    failures += 1
                    delay = self._retry_delay(failures)
                    self._out.error(f"reconnecting failed: {e}; retrying in {delay:g} s")
                    continue
                self._out.error(f"reconnected to {link.url}; subscribed to {', '.join(self.subscribed)}")
                break

    @defer.inlineCallbacks
    def _connect(self):
        link = yield self._open_link()
        try:
            yield self._start_session(link)
        except Exception:
            yield link.close()
            raise
        self._link = link
        self._start_keepalive(link)
        return link

    @defer.inlineCallbacks
    def _start_session(self, link):
        session = link.session
        session.on_event = self._show
        session.on_unsolicited_error = lambda args: self._session_ended(link, args)
        yield authenticate(session, self._credentials)
        self.subscribed = yield self._subscribe(session)

    @defer.inlineCallbacks
    def _subscribe(self, session):
        if self._explicit:
            reply = yield session.call("events", "subscribe", self._sources)
            return _subscribed(reply, self._sources)
        subscribed = []
        for source in self._sources:
            try:
                reply = yield session.call("events", "subscribe", [source])
            except ErrorReply as e:
                if e.code != 400:
                    raise
                if source not in self._warned:
                    self._warned.add(source)
                    self._out.error(f"not watching {source}: {e.details or e.reason}")
                continue
            subscribed += _subscribed(reply, [source])
        if not subscribed:
            raise ClientError("the daemon offers none of the sources " + ", ".join(self._sources))
        return subscribed

    def _session_ended(self, link, args):
        details = args.get("details") if isinstance(args, dict) else None
        self._out.error(f"the daemon ended the session ({details or args}); signing in again")
        d = self._start_session(link)

        def failed(failure):
            self._out.error(f"signing in again failed: {failure.getErrorMessage()}")
            link.close()

        d.addErrback(failed)

    def _start_keepalive(self, link):
        if not self._keepalive:
            return
        self._loop = task.LoopingCall(self._ping, link)
        self._loop.clock = self._clock
        self._loop.start(self._keepalive, now=False)

    def _stop_keepalive(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def _ping(self, link):
        d = link.session.call("rpc", "query", {}, timeout=self._keepalive)

        def failed(failure):
            if failure.check(CallTimeout):
                self._log.info("no reply to the keepalive; dropping the connection")
                link.close()
            # Other failures (connection lost, session ended) are handled elsewhere.

        d.addErrback(failed)

    def stop(self):
        """Stop pinging and close the current link (no reconnecting after that)."""
        self._stopping = True
        self._stop_keepalive()
        if self._link is not None:
            return self._link.close()
        return defer.succeed(None)


def _subscribed(reply, asked):
    names = reply.get("subscribe") if isinstance(reply, dict) else None
    return [str(name) for name in names] if isinstance(names, list) else list(asked)
