"""REST: ``POST /<namespace>/<name>`` with the JSON body as ``args``.

The body must be sent as ``Content-Type: application/json``, and browsers' requests must
pass the WebSocket's Host and Origin rules (see :mod:`sysadmd.web.channel`).
Authentication per request: ``Authorization: Bearer <token>`` (a token from rpc/auth), or
``Authorization: Basic ...`` (checked exactly like rpc/auth, counting toward bans; the
token it creates is revoked when the request ends). The answer is ``{"args": ...}`` with
the HTTP status of the outcome (200, or the error's code: 400/401/403/404/409/429/500).
Events need the WebSocket: the events namespace answers 400.
"""

import base64
import binascii
import json

from twisted.internet import defer
from twisted.web import pages, resource, server
from zope.interface import implementer

from sysadmd.channel.channel import Channel
from sysadmd.interfaces import IChannelTransport
from sysadmd.protocol import envelope
from sysadmd.util.log import Logger
from sysadmd.web.channel import is_json


@implementer(IChannelTransport)
class RestTransport:
    """The transport of one REST request's channel: the request gets only its own answer
    (returned by the router), so nothing else is ever written and there is nothing to
    pause or close."""

    can_pause_reading = False

    def __init__(self, peer):
        self.peer_host = peer

    def prepare(self, payload):
        """Nothing is framed: see :meth:`write`."""
        return payload

    def frame_event(self, event):
        """Never sent: REST cannot subscribe."""
        return event.payload

    def write(self, prepared):
        """Dropped: notices (a token revoked elsewhere) have no one to reach here."""

    def set_message_limit(self, limit):
        """The site bounds the body (``max_body_bytes``) before the channel sees it."""

    def pause_reading(self):
        """Never called (``can_pause_reading`` is false)."""

    def resume_reading(self):
        """Never called (``can_pause_reading`` is false)."""

    def end(self, ending):
        """Nothing to end: the channel lives for one request and has no timers."""

    def socket_addresses(self):
        """None: REST requests never sign in as their socket's owner."""
        return None


class RestGateway:
    """Turns HTTP requests into router calls, with the daemon's auth and policy."""

    log = Logger()

    def __init__(self, parts, authenticator, max_body_bytes):
        self._parts = parts
        self._authenticator = authenticator
        self.max_body_bytes = max_body_bytes

    @defer.inlineCallbacks
    def call(self, request, namespace, name):
        """Answer one REST request: a Deferred firing with (status, body dict)."""
        peer = getattr(request.getClientAddress(), "host", "unix")
        # The same rules as a WebSocket request; no timers: it lives for one request.
        channel = Channel(RestTransport(peer), self._parts)
        session = channel.session
        basic = False
        try:
            args = self._body(request)
            if namespace == "events":
                raise envelope.RequestError(
                    400, "Events are pushed over the WebSocket; REST cannot subscribe."
                )
            basic = yield self._authenticate(request, session)
            frame, _ = yield channel.handle(envelope.Request(namespace, name, None, args))
        except envelope.RequestError as e:
            frame = envelope.error(None, e.code, e.details)
        finally:
            if basic and session.grant is not None:
                self._parts.tokens.revoke(session.grant)
            channel.close()
        status = 200 if frame["namespace"] != "error" else frame["args"]["code"]
        return status, {"args": frame["args"]}

    def _body(self, request):
        raw = request.content.read() if request.content is not None else b""
        if not raw.strip():
            return {}
        try:
            return envelope.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise envelope.RequestError(400, "The body is not valid UTF-8 JSON.") from None

    @defer.inlineCallbacks
    def _authenticate(self, request, session):
        """Sign ``session`` in from the Authorization header; True for Basic.

        Basic is rpc/auth and Bearer rpc/auth_token's check
        (:meth:`~sysadmd.auth.handlers.Authenticator.check_token`): the same failure
        slot, ban count, failure delay and 401/429 answers as a WebSocket login.
        """
        header = request.getHeader("authorization")
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            # No timers: the session lives for this one request.
            session.grant = yield self._authenticator.check_token(session, value.strip())
            return False
        if scheme == "basic":
            try:
                user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
            except (binascii.Error, ValueError):
                raise envelope.RequestError(400, "Malformed Basic credentials.") from None
            if not sep:
                raise envelope.RequestError(400, "Malformed Basic credentials.")
            yield self._authenticator.auth(session, {"username": user, "password": password})
            return True
        raise envelope.RequestError(400, "Use Authorization: Basic or Bearer.")


class RestCall(resource.Resource):
    """``/<namespace>/<name>``: POST only."""

    isLeaf = True

    def __init__(self, gateway, namespace, name):
        super().__init__()
        self._gateway = gateway
        self._namespace = namespace
        self._name = name

    def render_POST(self, request):
        """Run the call and write its JSON answer (415 at once for a body that is not
        declared JSON: see :func:`sysadmd.web.channel.is_json`)."""
        if not is_json(request.getHeader(b"content-type")):
            request.setResponseCode(415)
            request.setHeader(b"content-type", b"application/json")
            details = "The body must be sent as Content-Type: application/json."
            return json.dumps({"args": {"code": 415, "details": details}}).encode("utf-8")
        d = self._gateway.call(request, self._namespace, self._name)
        finished = []
        request.notifyFinish().addBoth(finished.append)

        def write(outcome):
            if finished:
                return  # the client went away
            status, body = outcome
            request.setResponseCode(status)
            request.setHeader("content-type", "application/json")
            # No WWW-Authenticate on 401: it would make a browser prompt for a password
            # and then send it with every request, cross-site ones included.
            request.write(json.dumps(body).encode("utf-8"))
            request.finish()

        def failed(failure):
            self._gateway.log.failure("REST call failed", failure)
            if not finished:
                request.setResponseCode(500)
                request.finish()

        d.addCallback(write).addErrback(failed)
        return server.NOT_DONE_YET


class RestNamespace(resource.Resource):
    """``/<namespace>/``: the next path segment is the call's name."""

    def __init__(self, gateway, namespace):
        super().__init__()
        self._gateway = gateway
        self._namespace = namespace

    def getChild(self, path, request):
        """Any name: the router decides whether it exists."""
        try:
            name = path.decode("utf-8")
        except UnicodeDecodeError:
            return pages.notFound()
        if not name or request.postpath:
            return pages.notFound()
        return RestCall(self._gateway, self._namespace, name)
