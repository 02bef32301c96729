"""REST: ``POST /<namespace>/<name>`` with the JSON body as ``args``.

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
from twisted.logger import Logger
from twisted.web import pages, resource, server

from sysadmd.channel.session import Session
from sysadmd.protocol import envelope


class _NoOutbound:
    """REST sessions have no channel for events."""

    def send_frame(self, frame):
        """Dropped: a REST request gets only its own answer."""

    def send_event(self, event):
        """Dropped: a REST request gets only its own answer."""


class RestGateway:
    """Turns HTTP requests into router calls, with the daemon's auth and policy."""

    log = Logger()

    def __init__(self, reactor, router, hub, tokens, authenticator, max_body_bytes):
        self._reactor = reactor
        self._router = router
        self._hub = hub
        self._tokens = tokens
        self._authenticator = authenticator
        self.max_body_bytes = max_body_bytes

    @defer.inlineCallbacks
    def call(self, request, namespace, name):
        """Answer one REST request: a Deferred firing with (status, body dict)."""
        peer = getattr(request.getClientAddress(), "host", "unix")
        session = Session(peer, _NoOutbound(), self._tokens, self._hub, self._reactor)
        basic = False
        try:
            args = self._body(request)
            if namespace == "events":
                raise envelope.RequestError(
                    400, "Events are pushed over the WebSocket; REST cannot subscribe."
                )
            basic = yield self._authenticate(request, session)
            frame, _ = yield self._router.handle(
                session, envelope.Request(namespace, name, None, args)
            )
        except envelope.RequestError as e:
            frame = envelope.error(None, e.code, e.details)
        finally:
            if basic and session.grant is not None:
                self._tokens.revoke(session.grant)
            session.close()
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
        """Sign ``session`` in from the Authorization header; True for Basic."""
        header = request.getHeader("authorization")
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            grant = self._tokens.lookup(value.strip())
            if grant is None:
                raise envelope.RequestError(401, "The token is not valid (expired or revoked).")
            session.grant = grant
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
        """Run the call and write its JSON answer."""
        d = self._gateway.call(request, self._namespace, self._name)
        finished = []
        request.notifyFinish().addBoth(finished.append)

        def write(outcome):
            if finished:
                return  # the client went away
            status, body = outcome
            request.setResponseCode(status)
            request.setHeader("content-type", "application/json")
            if status == 401:
                request.setHeader("www-authenticate", 'Basic realm="sysadmd"')
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
