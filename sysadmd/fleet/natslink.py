"""The agent's NATS connection (nats-py), in Twisted's terms.

:class:`NatsLink` connects and stays connected: nats-py retries every second until a
server answers (NATS may start after the agent) and reconnects after a loss; a first
attempt that fails outright (a TLS or credentials mistake) is tried again after 1, 2, 4
... 30 s. It tells its
listeners when NATS is up (``nats_up()``) and down (``nats_down()``), and offers the few
operations the agent needs, each a Deferred: a JetStream publish acknowledged by the
stream, a direct get of a subject's last message (where to resume), a core publish, a
subscription. The machine's own inbox prefix (``_INBOX_<host>``) keeps replies to it
away from the other machines, whose permissions allow only their own.
"""

import ssl

from twisted.application.internet import backoffPolicy
from twisted.internet import defer, task

from sysadmd.fleet.aio import deferred
from sysadmd.protocol import fleet as wire
from sysadmd.util.log import Logger

NOT_FOUND = "404"


def tls_context(section):
    """An SSL context for NATS from ``[fleet] tls_*``, or None when none is set."""
    if not (section["tls_ca"] or section["tls_cert"]):
        return None
    context = ssl.create_default_context(cafile=section["tls_ca"] or None)
    if section["tls_cert"]:
        context.load_cert_chain(section["tls_cert"], section["tls_key"])
    return context


class NatsLink:
    """One machine's NATS connection (see the module docstring)."""

    log = Logger()

    def __init__(self, reactor, servers, user, password, host, tls=None, publish_timeout=5.0):
        self._reactor = reactor
        self._servers = list(servers)
        self._user = user
        self._password = password
        self._host = host
        self._tls = tls
        self._publish_timeout = publish_timeout
        self._listeners = []
        self._retry = backoffPolicy(initialDelay=1.0, maxDelay=30.0, factor=2.0)
        self._stopping = False
        self._connecting = None
        self._last_error = None
        self.nc = None
        self.js = None
        self.up = False

    def add_listener(self, listener):
        """``listener.nats_up()`` / ``nats_down()`` will be called on every change."""
        self._listeners.append(listener)
        if self.up:
            listener.nats_up()

    def _tell(self, up):
        if up == self.up:
            return
        self.up = up
        for listener in list(self._listeners):
            try:
                (listener.nats_up if up else listener.nats_down)()
            except Exception:
                self.log.failure("a NATS listener failed")

    def start(self):
        """Connect in the background (see the module docstring); a Deferred of the first
        connection."""
        self._connecting = self._connect_until_up()
        return self._connecting

    @defer.inlineCallbacks
    def _connect_until_up(self):
        import nats

        failures = 0
        while not self._stopping:
            try:
                self.nc = yield deferred(
                    nats.connect(
                        servers=self._servers,
                        user=self._user,
                        password=self._password,
                        tls=self._tls,
                        inbox_prefix=f"_INBOX_{self._host}".encode("ascii"),
                        allow_reconnect=True,
                        max_reconnect_attempts=-1,
                        reconnect_time_wait=1,
                        connect_timeout=2,
                        name=f"sysadm-fleet {self._host}",
                        error_cb=self._error,
                        disconnected_cb=self._disconnected,
                        reconnected_cb=self._reconnected,
                        closed_cb=self._closed,
                    )
                )
            except Exception as e:
                failures += 1
                delay = self._retry(failures)
                self.log.warn(
                    "cannot connect to NATS {servers}: {reason}; retrying in {delay:.0f} s",
                    servers=" ".join(self._servers),
                    reason=str(e) or type(e).__name__,
                    delay=delay,
                )
                yield task.deferLater(self._reactor, delay, lambda: None)
                continue
            self.js = self.nc.jetstream(timeout=self._publish_timeout)
            self.log.info(
                "connected to NATS {url} as {user}",
                url=str(self.nc.connected_url.netloc if self.nc.connected_url else ""),
                user=self._user,
            )
            self._tell(True)
            return

    async def _error(self, error):
        # nats-py reports every failed reconnection (one a second): say each new reason once.
        reason = str(error) or type(error).__name__
        if reason != self._last_error:
            self._last_error = reason
            self.log.warn("NATS: {reason}", reason=reason)

    async def _disconnected(self):
        if not self._stopping:
            self.log.warn("disconnected from NATS; reconnecting")
        self._tell(False)
        self._drop_unsent()

    def _drop_unsent(self):
        # nats-py keeps what it had not written yet and sends it once reconnected: behind
        # whatever the lost connection did not deliver, so the stream would get a hole.
        # The publisher sends those events again, in order, from what the stream holds.
        # (nats-py has no option for this; these are its buffer's two fields.)
        nc = self.nc
        if nc is not None and getattr(nc, "_pending", None):
            nc._pending = []
            nc._pending_data_size = 0

    async def _reconnected(self):
        self._last_error = None
        self.log.info("reconnected to NATS {url}", url=str(self.nc.connected_url.netloc))
        self._tell(True)

    async def _closed(self):
        self._tell(False)

    def publish_event(self, subject, payload, headers):
        """Publish to JetStream; a Deferred of the stream's acknowledgement."""
        return deferred(self.js.publish(subject, payload, headers=headers))

    @defer.inlineCallbacks
    def last_headers(self, subject):
        """The headers of the last message stored on ``subject`` in SYSADM_EVENTS (a
        direct get, which this machine's permissions allow for its own subjects only),
        or None when there is none."""
        api = f"$JS.API.DIRECT.GET.{wire.EVENTS_STREAM}.{subject}"
        reply = yield deferred(self.nc.request(api, b"", timeout=self._publish_timeout))
        headers = reply.headers or {}
        status = headers.get("Status")
        if status == NOT_FOUND:
            return None
        if status:
            raise RuntimeError(f"direct get of {subject}: {status} {headers.get('Description', '')}")
        return headers

    def publish(self, subject, payload):
        """A core NATS publish (no acknowledgement)."""
        return deferred(self.nc.publish(subject, payload))

    def subscribe(self, subject, handler):
        """Subscribe ``handler(msg)`` (a coroutine function) to ``subject``."""
        return deferred(self.nc.subscribe(subject, cb=handler))

    def flush(self, timeout=2.0):
        """Wait until everything published reached the server."""
        return deferred(self.nc.flush(timeout=timeout))

    @defer.inlineCallbacks
    def stop(self):
        """Stop connecting, drain and close the connection; fires when it is closed."""
        self._stopping = True
        if self._connecting is not None and not self._connecting.called:
            self._connecting.cancel()
        nc = self.nc
        if nc is not None and not nc.is_closed:
            try:
                yield deferred(nc.drain())
            except Exception as e:
                self.log.warn("closing the NATS connection: {reason}", reason=str(e) or type(e).__name__)
                if not nc.is_closed:
                    yield deferred(nc.close())
        self._tell(False)
