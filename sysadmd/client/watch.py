"""``sysadm watch``: follow event sources, across dropped connections, without losing or
repeating events.

The first connection must work (otherwise the command fails at once, with the reason).
After that a dropped connection is announced on stderr and retried after 1, 2, 4 ... up
to ``backoff_cap`` seconds; each new connection signs in again (with the token first)
and subscribes to the same sources, and says so. A refused sign-in ends the command,
and so does an encrypted tunnel through a bridge that breaks or is refused (each new
connection through a bridge makes a new handshake).

While connected, a cheap request (``rpc/query``) every ``keepalive`` seconds keeps the
token and the connection alive (the daemon closes silent connections and expires unused
tokens) and detects a dead peer: with no reply in time, the connection is dropped and
re-established. When the daemon nevertheless ends the session (an error frame with
``"id": null``), the watcher signs in and subscribes again on the same connection.

Resuming (:mod:`sysadmd.client.resume`): the daemon numbers each source's events (``seq``
within an ``epoch``). The watcher remembers the last event it showed of each source, and
every subscription after the first (new connection or new sign-in) asks for what came
after it (``{"name", "since", "epoch"}``), so nothing is lost across a reconnect; an event
not newer than the last one shown is not shown again. ``since`` (``--since``) gives
starting positions for the first subscription. A ``gap`` frame (the daemon no longer has
the missed events, its log was reset, or this client read too slowly and events were
dropped) is announced by one line on stderr, like reconnects; after an ``overflow`` the
dropped events are fetched again by re-subscribing from the last one shown, when the
daemon still keeps them. ``heads`` frames are not shown: when a source's events up to the
head told by the previous heads frame have not all arrived (and no gap said why), a line
says so and the source is re-subscribed from the last event shown.

The connection half (connect, sign in, keep alive, reconnect, sign in again) is
:class:`Resubscriber`, which :class:`Watcher` and ``run --follow``/``log -f``
(:class:`sysadmd.client.output.OutputFollow`) share; each says what it subscribes to.
"""

from twisted.application.internet import backoffPolicy
from twisted.internet import defer, task
from twisted.logger import Logger

from sysadmd.client.auth import AuthFailed, authenticate
from sysadmd.client.errors import (
    CallTimeout,
    ClientError,
    ConnectionClosed,
    ErrorReply,
    TunnelBroken,
    TunnelRefused,
)
from sysadmd.client.render import source_name
from sysadmd.client.resume import Positions

#: What ``watch`` follows when no source is named.
BUILT_IN_SOURCES = ("dispatcher", "life-preserver", "system-state")
KEEPALIVE = 60.0
BACKOFF_CAP = 30.0


class Resubscriber:
    """Keeps a subscription alive across dropped connections: connects with
    ``open_link()``, signs in with ``credentials``, subscribes, pings every ``keepalive``
    seconds, and reconnects after 1, 2, 4 ... ``backoff_cap`` seconds when the connection
    drops (announced on ``out``). Subclasses say what to subscribe to and what to do with
    the events:

    - ``_subscribe(session)``: subscribe (again, from where the last one got to); may
      return a Deferred;
    - ``_event(frame)``: one event frame;
    - ``_resubscribed()``: the end of the line announcing a reconnect (what was
      subscribed again);
    - ``_fatal``: the errors that end :meth:`run` even after the first connection
      (a refused sign-in always does, and a refused or broken encrypted tunnel).

    :meth:`run` fires with the status given to :meth:`finish` (0 after :meth:`stop`).
    """

    _log = Logger()
    _fatal = ()

    def __init__(self, clock, open_link, credentials, out, keepalive=KEEPALIVE, backoff_cap=BACKOFF_CAP):
        self._clock = clock
        self._open_link = open_link
        self._credentials = credentials
        self._out = out
        self._keepalive = keepalive
        # Called with the failed reconnections so far: 1, 2, 4 ... backoff_cap seconds. No
        # jitter, so the delays announced on stderr stay round.
        self._retry_delay = backoffPolicy(
            initialDelay=1.0, maxDelay=backoff_cap, factor=2.0, jitter=lambda: 0.0
        )
        self._stopping = False
        self._status = 0
        self._link = None
        self._session = None
        self._loop = None

    @defer.inlineCallbacks
    def run(self):
        """Follow until a sign-in is refused or a ``_fatal`` error happens (a failure), or
        :meth:`stop` or :meth:`finish` is called (then fires with the status)."""
        link = yield self._connect()
        while True:
            description = yield link.closed
            self._stop_keepalive()
            if self._stopping:
                return self._status
            if link.broken is not None:
                # A bridge that tampers is not retried: the command ends (never in plaintext).
                raise link.broken
            failures = 0
            delay = self._retry_delay(failures)
            self._out.error(f"connection to {link.url} lost ({description}); reconnecting in {delay:g} s")
            while True:
                yield task.deferLater(self._clock, delay, lambda: None)
                if self._stopping:
                    return self._status
                try:
                    link = yield self._connect()
                except (AuthFailed, TunnelRefused, TunnelBroken) + tuple(self._fatal):
                    raise
                except ClientError as e:
                    failures += 1
                    delay = self._retry_delay(failures)
                    self._out.error(f"reconnecting failed: {e}; retrying in {delay:g} s")
                    continue
                self._out.error(f"reconnected to {link.url}; {self._resubscribed()}")
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
        if self._stopping:
            # Finished while subscribing (the last event came with the reply).
            yield link.close()
            return link
        self._start_keepalive(link)
        return link

    @defer.inlineCallbacks
    def _start_session(self, link):
        session = link.session
        self._session = session
        session.on_event = self._event
        session.on_unsolicited_error = lambda args: self._session_ended(link, args)
        yield authenticate(session, self._credentials)
        yield self._subscribe(session)

    def _subscribe(self, session):
        raise NotImplementedError

    def _event(self, frame):
        raise NotImplementedError

    def _resubscribed(self):
        raise NotImplementedError

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

    def finish(self, status):
        """Stop (see :meth:`stop`); :meth:`run` fires with ``status``."""
        if not self._stopping:
            self._status = status
        return self.stop()


class Watcher(Resubscriber):
    """Follows ``sources`` through links made by ``open_link()``; ``show(frame)`` gets
    every event frame to show (and the gap frames too with ``raw_gaps``). ``explicit``
    says the user named the sources: then a source the daemon does not know is an error,
    otherwise it is skipped with a warning. ``since`` maps sources to ``(seq, epoch or
    None)``: start after that event."""

    def __init__(self, clock, open_link, credentials, sources, explicit, show, out,
                 keepalive=KEEPALIVE, backoff_cap=BACKOFF_CAP, since=None, raw_gaps=False):
        super().__init__(clock, open_link, credentials, out, keepalive, backoff_cap)
        self._sources = list(sources)
        self._explicit = explicit
        self._show = show
        self._raw_gaps = raw_gaps
        self.positions = Positions(since)
        self._warned = set()
        self._resumed = ""
        self.subscribed = []

    def _resubscribed(self):
        return f"subscribed to {self._resumed}"

    @defer.inlineCallbacks
    def _subscribe(self, session):
        """Subscribe to the sources, each after its last event shown."""
        where = {source: self.positions.describe([source]) for source in self._sources}
        if self._explicit:
            reply = yield self._call_subscribe(session, self._sources)
            subscribed = _subscribed(reply, self._sources)
        else:
            subscribed = yield self._subscribe_each(session)
        self._resumed = ", ".join(where.get(source, source) for source in subscribed)
        self.subscribed = subscribed

    @defer.inlineCallbacks
    def _subscribe_each(self, session):
        subscribed = []
        for source in self._sources:
            try:
                reply = yield self._call_subscribe(session, [source])
            except ErrorReply as e:
                # A refused position is not a missing source: no reason to skip it.
                if e.code != 400 or self.positions.subscription(source) != source:
                    raise
                if source not in self._warned:
                    self._warned.add(source)
                    self._out.error(f"not watching {source}: {e.details or e.reason}")
                continue
            subscribed += _subscribed(reply, [source])
        if not subscribed:
            raise ClientError("the daemon offers none of the sources " + ", ".join(self._sources))
        return subscribed

    def _call_subscribe(self, session, sources):
        """``events/subscribe`` for ``sources``, each after its last event shown. Until
        the reply, the events of a source resumed this way are held back: the daemon
        sends them again after it (they may come before it when the source is still
        subscribed: after a new sign-in on the same connection, or when fetching)."""
        items = [self.positions.subscription(source) for source in sources]
        self.positions.hold(sources)

        def release(result):
            self.positions.release(sources)
            return result

        return session.call("events", "subscribe", items).addBoth(release)

    def _event(self, frame):
        name, args = frame.get("name"), frame.get("args")
        if name == "heads" and isinstance(args, dict):
            for source, line in self.positions.behind(args):
                self._out.error(line)
                self._fetch(source)
            return
        if name == "gap" and isinstance(args, dict) and "source" in args:
            line, fetch = self.positions.gap(args)
            if line is None:
                return
            self._out.error(line)
            if self._raw_gaps:
                self._show(frame)
            if fetch:
                self._fetch(args["source"])
            return
        if self.positions.accept(frame, source_name(name)):
            self._show(frame)

    def _fetch(self, source):
        """Re-subscribe ``source`` from its last event shown, on the current session;
        its events are held back until the reply (they come again after it)."""
        if self._session is None:
            return

        def failed(failure):
            if not failure.check(ConnectionClosed):
                # A later heads frame shows what is still missing, and this is tried again.
                self._out.error(f"{source}: fetching the missed events failed: {failure.getErrorMessage()}")

        self._call_subscribe(self._session, [source]).addErrback(failed)


def _subscribed(reply, asked):
    names = reply.get("subscribe") if isinstance(reply, dict) else None
    return [str(name) for name in names] if isinstance(names, list) else list(asked)
