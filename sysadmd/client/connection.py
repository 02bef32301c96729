"""The WebSocket connection to a daemon (or a bridge), with Autobahn's client protocol.

:func:`connect` opens one connection and fires once the WebSocket handshake is done, or
fails with a :class:`ClientError` that says why in one line (refused, no such host, TLS
certificate mismatch, handshake refused with an HTTP status...). A :class:`Connection`
sends text frames and hands those it receives to its ``receiver``; its ``closed``
Deferred fires (never fails) with a one-line description when it ends.

:class:`DirectLink` is the simplest link: one :class:`RpcSession` on the connection. A
link has ``session`` (the channel to the daemon), ``closed``, ``close()`` and ``broken``
(the :class:`sysadmd.client.errors.TunnelBroken` that ended it, which ends the command;
never set on a direct link); the bridge link (``sysadmd.client.bridge``) has the same
shape.
"""

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.util import parse_url
from OpenSSL import SSL
from twisted.internet import defer, error
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import Logger

from sysadmd.client.calls import RpcSession
from sysadmd.client.errors import ClientError, ConnectionClosed
from sysadmd.client.tls import PinnedCertificate, format_fingerprint

CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 2.0


class ClientProtocol(WebSocketClientProtocol):
    """Reports open, messages and close to the :class:`Connection` made by the factory."""

    _log = Logger()
    lost_reason = None

    def onOpen(self):
        """The handshake is done: the connection can send."""
        self.factory.connection.opened(self)

    def onMessage(self, payload, isBinary):
        """Hand every frame's text to the connection."""
        self.factory.connection.text_received(payload.decode("utf-8", "replace"))

    def connectionLost(self, reason):
        """Remember why, for the error line."""
        self.lost_reason = reason
        super().connectionLost(reason)

    def onClose(self, wasClean, code, reason):
        """Tell the connection it has ended."""
        self.factory.connection.ended(self, wasClean, code, reason)


class Connection:
    """One WebSocket connection to ``url`` (see the module docstring)."""

    _log = Logger()

    def __init__(self, reactor, url, tls=None):
        self._reactor = reactor
        self.url = url
        self.tls = tls
        self.protocol = None
        self.receiver = None
        self.ready = defer.Deferred()
        self.closed = defer.Deferred()
        self._ended = False

    def opened(self, protocol):
        """The protocol is open: fire ``ready``."""
        self.protocol = protocol
        self.ready.callback(self)

    def text_received(self, text):
        """Pass a frame's text to ``receiver``."""
        if self.receiver is not None:
            self.receiver(text)

    def ended(self, protocol, was_clean, code, reason):
        """The connection closed (once): fire ``closed`` or fail ``ready``."""
        if self._ended:
            return
        self._ended = True
        description = self._describe_end(protocol, was_clean, code, reason)
        if not self.ready.called:
            self.ready.errback(ClientError(f"cannot connect to {self.url}: {description}"))
        self.closed.callback(description)

    def _describe_end(self, protocol, was_clean, code, reason):
        tls = self.tls
        if isinstance(tls, PinnedCertificate) and tls.mismatch:
            return (
                f"the certificate's fingerprint is {format_fingerprint(tls.seen)}, "
                f"not the pinned {format_fingerprint(tls.digest)}"
            )
        lost = protocol.lost_reason
        if lost is not None and lost.check(SSL.Error):
            return f"TLS failed ({_ssl_reason(lost.value)})" + (
                "; for a self-signed certificate, pin it with --fingerprint SHA256:..."
                if "certificate verify failed" in _ssl_reason(lost.value) else ""
            )
        if not was_clean and getattr(protocol, "wasNotCleanReason", None):
            return protocol.wasNotCleanReason
        if code in (None, 1006):
            return "the connection was dropped"
        return f"closed by the peer (code {code}{': ' + reason if reason else ''})"

    def send_text(self, text):
        """Send one text frame (dropped when the connection is not open)."""
        if self.protocol is not None and self.protocol.state == self.protocol.STATE_OPEN:
            self.protocol.sendMessage(text.encode("utf-8"), isBinary=False)

    def close(self, timeout=CLOSE_TIMEOUT):
        """Close with code 1000; a Deferred firing once the connection is gone (after at
        most ``timeout`` seconds, when the transport is aborted)."""
        protocol = self.protocol
        if self.closed.called or protocol is None:
            return defer.succeed(None)
        if protocol.state == protocol.STATE_OPEN:
            protocol.sendClose(1000)
        timer = self._reactor.callLater(timeout, _abort, protocol)
        done = defer.Deferred()

        def finished(result):
            if timer.active():
                timer.cancel()
            done.callback(None)
            return result

        self.closed.addBoth(finished)
        return done


def _abort(protocol):
    if protocol.transport is not None:
        protocol.transport.abortConnection()


def _ssl_reason(value):
    parts = []
    for item in value.args[0] if value.args and isinstance(value.args[0], list) else []:
        if isinstance(item, tuple) and item:
            parts.append(str(item[-1]))
    return ", ".join(parts) or str(value) or "handshake failed"


def _connect_error(url, failure):
    reason = failure.value
    if failure.check(error.ConnectionRefusedError):
        text = "connection refused (is sysadmd running and listening there?)"
    elif failure.check(error.DNSLookupError):
        text = "no such host"
    elif failure.check(error.TimeoutError, defer.CancelledError):
        text = "timed out"
    elif failure.check(error.ConnectError):
        text = reason.osError if getattr(reason, "osError", None) else str(reason)
        text = str(text).strip() or type(reason).__name__
    else:
        return failure
    raise ClientError(f"cannot connect to {url}: {text}")


def parse_ws_url(url):
    """``(secure, host, port)`` of a ws:// or wss:// URL; ClientError when it is not one."""
    try:
        secure, host, port, _, _, _ = parse_url(url)
    except Exception as e:
        raise ClientError(f"{url!r} is not a WebSocket URL (ws://HOST:PORT or wss://...): {e}") from None
    return secure, host, port


def tls_for(url, fingerprint_digest):
    """The TLS connection creator for ``url``: a pin when a digest is given, else the
    system's CAs and the host name; None for ws://. ClientError for a pin on ws://."""
    secure, host, _ = parse_ws_url(url)
    if not secure:
        if fingerprint_digest is not None:
            raise ClientError(f"--fingerprint needs a wss:// URL, not {url}")
        return None
    if fingerprint_digest is not None:
        return PinnedCertificate(host, fingerprint_digest)
    return optionsForClientTLS(host)


def connect(reactor, url, tls=None, timeout=CONNECT_TIMEOUT):
    """Open a WebSocket connection to ``url``; a Deferred firing with the open
    :class:`Connection`, or failing with :class:`ClientError`."""
    secure, host, port = parse_ws_url(url)
    connection = Connection(reactor, url, tls)
    factory = WebSocketClientFactory(url, reactor=reactor)
    factory.protocol = ClientProtocol
    factory.connection = connection
    factory.setProtocolOptions(openHandshakeTimeout=timeout, closeHandshakeTimeout=CLOSE_TIMEOUT)
    endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout)
    if secure:
        endpoint = wrapClientTLS(tls if tls is not None else optionsForClientTLS(host), endpoint)
    d = endpoint.connect(factory)
    d.addErrback(lambda failure: _connect_error(url, failure))
    d.addCallback(lambda protocol: connection.ready)
    return d


class DirectLink:
    """A session straight to the daemon over one connection."""

    broken = None

    def __init__(self, clock, connection, timeout=None):
        self.connection = connection
        self.url = connection.url
        kwargs = {} if timeout is None else {"timeout": timeout}
        self.session = RpcSession(clock, connection.send_text, **kwargs)
        connection.receiver = self.session.text_received
        self.closed = defer.Deferred()
        connection.closed.addCallback(self._ended)

    def _ended(self, description):
        self.session.connection_lost(ConnectionClosed(f"connection to {self.url} lost: {description}"))
        self.closed.callback(description)

    def close(self):
        """Close the connection; fires when it is gone."""
        return self.connection.close()


def open_direct(reactor, url, tls=None, timeout=CONNECT_TIMEOUT, call_timeout=None):
    """Connect to ``url``; a Deferred firing with a :class:`DirectLink` whose calls time
    out after ``call_timeout`` seconds (the session's default when None)."""
    d = connect(reactor, url, tls, timeout)
    return d.addCallback(lambda connection: DirectLink(reactor, connection, call_timeout))
