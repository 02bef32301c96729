"""``sysadm.<host>.rpc``: requests from the fleet, answered by the local daemon as the
local user the sender maps to.

Who sent a request is what nats-server says, not what the request says: a request that
crossed into the machines' account through the service import with ``share: true``
carries the sender's NATS user in ``Nats-Request-Info``, set by the server (see
etc/nats-server-fleet.conf; no machine may publish requests itself). ``[fleet] users``
maps that NATS user to a local user and role; the request goes to the daemon on a
session signed in as that user with that role (``rpc/auth_fleet``: the daemon grants no
more than the user has there), so the daemon's own access rules, limits and logs apply.
Everything else is refused with an error frame: unmapped users 403, sign-in and event
calls 400 (events come from the stream), more than ``max_inflight`` at once 429.
"""

import asyncio
import json

from twisted.internet import defer

from sysadmd.client.errors import CallTimeout, ClientError, ErrorReply
from sysadmd.fleet.daemonlink import FleetSignInRefused
from sysadmd.protocol import envelope
from sysadmd.protocol import fleet as wire
from sysadmd.util.log import Logger


def _encode(frame):
    return json.dumps(frame, separators=(",", ":")).encode("utf-8")


class RequestServer:
    """Answers ``sysadm.<host>.rpc`` (see the module docstring). ``sessions`` is a
    :class:`~sysadmd.fleet.daemonlink.UserSessions`; ``users`` maps NATS users to
    ``(local user, role)``."""

    log = Logger()

    def __init__(self, host, nats, sessions, users, max_inflight=64):
        self._host = host
        self._nats = nats
        self._sessions = sessions
        self._users = dict(users)
        self._max_inflight = max_inflight
        self._inflight = 0
        self._subscribed = False
        self.answered = 0
        self.refused = 0

    def start(self):
        """Subscribe once NATS is up (nats-py subscribes again after a reconnect)."""
        self._nats.add_listener(self)

    def nats_up(self):
        """Subscribe to this machine's request subject, the first time NATS is up."""
        if self._subscribed:
            return
        self._subscribed = True
        d = self._nats.subscribe(wire.rpc_subject(self._host), self._message)
        d.addErrback(self._subscribe_failed)

    def _subscribe_failed(self, failure):
        self._subscribed = False
        self.log.failure("cannot subscribe to {subject}", failure, subject=wire.rpc_subject(self._host))

    def nats_down(self):
        """Nothing to do: nats-py restores the subscription."""

    async def _message(self, msg):
        if not msg.reply:
            return
        reply = await self.answer(msg.headers, msg.data).asFuture(asyncio.get_running_loop())
        try:
            await msg.respond(_encode(reply))
        except Exception as e:
            self.log.warn("cannot send a reply: {reason}", reason=str(e) or type(e).__name__)

    @defer.inlineCallbacks
    def answer(self, headers, data):
        """The reply frame to one request (``data``: its bytes), sent by whom ``headers``
        say; never fails."""
        try:
            request = envelope.decode_request(data)
        except envelope.BadRequest as e:
            return envelope.error(e.request_id, 400, e.details)
        refusal = self._refusal(headers, request)
        if refusal is not None:
            self.refused += 1
            return refusal
        nats_user = wire.requester(headers)[1]
        local, role = self._users[nats_user]
        self._inflight += 1
        try:
            result = yield self._forward(request, local, role)
        except ErrorReply as e:
            return _daemon_error(request.id, e)
        except FleetSignInRefused:
            self.log.warn(
                "the daemon refused local user {local} for NATS user {nats_user}",
                local=local,
                nats_user=nats_user,
            )
            return envelope.error(request.id, 403, f"The daemon on {self._host} refused local user {local!r}.")
        except CallTimeout:
            return envelope.error(request.id, 503, f"The daemon on {self._host} did not answer in time.")
        except ClientError as e:
            self.log.warn("cannot reach the daemon: {reason}", reason=str(e))
            return envelope.error(request.id, 503, f"The daemon on {self._host} cannot be reached.")
        finally:
            self._inflight -= 1
        self.answered += 1
        self.log.info(
            "{namespace}/{name}{action} for NATS user {nats_user} as {local} ({role})",
            namespace=request.namespace,
            name=request.name,
            action=_action(request.args),
            nats_user=nats_user,
            local=local,
            role=role,
        )
        return envelope.response(request, result)

    def _refusal(self, headers, request):
        who = wire.requester(headers)
        if who is None:
            self.log.warn("refused a request without the sender's NATS identity")
            return envelope.error(
                request.id, 403, "No sender identity: requests come through the fleet account's service import."
            )
        account, nats_user = who
        if nats_user not in self._users:
            self.log.warn(
                "refused {namespace}/{name} from NATS user {nats_user} (account {account}): not in [fleet] users",
                namespace=request.namespace,
                name=request.name,
                nats_user=nats_user,
                account=account,
            )
            return envelope.error(request.id, 403, f"NATS user {nats_user!r} may not use {self._host}.")
        if request.namespace == "events" or (request.namespace == "rpc" and request.name.startswith("auth")):
            return envelope.error(
                request.id,
                400,
                f"{request.namespace}/{request.name} is not forwarded: the fleet signs in for you, "
                "and events come from the stream SYSADM_EVENTS.",
            )
        if self._inflight >= self._max_inflight:
            return envelope.error(request.id, 429, f"Too many requests in progress on {self._host}.")
        return None

    @defer.inlineCallbacks
    def _forward(self, request, local, role):
        for attempt in (1, 2):
            link = yield self._sessions.get(local, role)
            try:
                result = yield link.session.call(request.namespace, request.name, request.args)
            except ClientError as e:
                # A session that closed since it was opened (idle, restarted daemon): once more.
                if attempt == 1 and not isinstance(e, (ErrorReply, CallTimeout)):
                    continue
                raise
            return result


def _daemon_error(request_id, error):
    code = error.code if error.code in envelope.REASONS else 500
    return envelope.error(request_id, code, error.details or error.reason)


def _action(args):
    action = args.get("action") if isinstance(args, dict) else None
    return f" {action}" if isinstance(action, str) else ""
