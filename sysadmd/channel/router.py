"""Route requests to handlers, enforcing each call's access level first.

Deny by default: a call is registered with its level (``sysadmd.auth.policy``) or not at
all. A handler is ``handler(session, args)`` returning a result (any JSON value), a
:class:`Reply`, or a Deferred of either, or raising
:class:`sysadmd.protocol.envelope.RequestError`.
"""

from twisted.internet import defer

from sysadmd.auth import policy
from sysadmd.protocol import envelope
from sysadmd.protocol.reply import Reply
from sysadmd.util.log import Logger


class Router:
    """Maps (namespace, name) to handlers and turns requests into reply frames."""

    log = Logger()

    def __init__(self):
        self._handlers = {}
        self._access = {}
        self.errors_by_code = {}

    def register(self, namespace, name, handler, access):
        """Add a handler with the level it needs (``policy.PUBLIC``, ``LIMITED``, ``FULL``,
        or ``{action: level}``). A missing or unknown level, or the same call twice, is a
        programming error, raised at start."""
        key = (namespace, name)
        if key in self._handlers:
            raise ValueError(f"{namespace}/{name} already has a handler")
        try:
            policy.check_access(access)
        except ValueError as e:
            raise ValueError(f"{namespace}/{name}: {e}") from None
        self._handlers[key] = handler
        self._access[key] = dict(access) if isinstance(access, dict) else access

    def access_table(self):
        """``{(namespace, name): access}`` of every registered call."""
        return dict(self._access)

    def _authorize(self, session, request):
        access = self._access.get((request.namespace, request.name), policy.UNKNOWN_CALL)
        level = policy.required_level(access, request.args)
        if level == policy.PUBLIC:
            return
        if not session.check():
            raise envelope.RequestError(401, "Authenticate first (rpc/auth, rpc/auth_token or rpc/auth_ssl).")
        if not policy.allows(session.access, level):
            raise envelope.RequestError(403, f"User {session.user!r} may not do this.")

    @defer.inlineCallbacks
    def handle(self, session, request):
        """Answer ``request``: a Deferred firing with ``(frame, after)``; never fails."""
        after = None
        try:
            self._authorize(session, request)
            handler = self._handlers.get((request.namespace, request.name))
            if handler is None:
                raise envelope.RequestError(
                    404, f"Unknown call {request.namespace}/{request.name}."
                )
            result = yield defer.maybeDeferred(handler, session, request.args)
            if isinstance(result, Reply):
                result, after = result.result, result.after
            frame = envelope.response(request, result)
        except envelope.RequestError as e:
            frame = self._error(request.id, e.code, e.details)
        except Exception:
            self.log.failure(
                "internal error handling {namespace}/{name} for {peer}",
                namespace=request.namespace,
                name=request.name,
                peer=session.peer_host,
            )
            frame = self._error(request.id, 500, "The server failed to handle this request; the failure is logged.")
        return frame, after

    def _error(self, request_id, code, details):
        self.errors_by_code[code] = self.errors_by_code.get(code, 0) + 1
        return envelope.error(request_id, code, details)

    def bad_request(self, error):
        """The reply to an undecodable frame (:class:`envelope.BadRequest`)."""
        return self._error(error.request_id, error.code, error.details)
