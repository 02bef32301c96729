"""``events/subscribe`` and ``events/unsubscribe``.

In the ``original`` dialect (:mod:`sysadmd.protocol.dialect`) they answer as the original
server did: unknown names are skipped and the rest (un)subscribed, the reply names only
the last known one (``{"subscribe": "system-state"}``, ``{}`` when none was known), and
subscribing again resends the source's cached last event.
"""

from twisted.internet import defer

from sysadmd.auth import policy
from sysadmd.events import resume
from sysadmd.protocol.dialect import ORIGINAL
from sysadmd.protocol.envelope import RequestError
from sysadmd.protocol.reply import Reply
from sysadmd.util.log import Logger

log = Logger()


def _original_reply(key, names):
    return {key: names[-1]} if names else {}


def _check_streams(session, follows):
    for stream, _ in follows:
        if not policy.allows(session.access, stream.access):
            raise RequestError(403, f"Following {stream.name} needs {stream.access} access.")


def _first_error(failure):
    # gatherResults wraps the first failure; the client is told what it was.
    failure.trap(defer.FirstError)
    return failure.value.subFailure


def register(router, hub):
    """Add the events namespace's calls to ``router``."""

    def subscribe(session, args):
        original = session.dialect == ORIGINAL
        if original:
            args = hub.known(args)
            if not args:
                return {}
        resumes = None
        follows = []
        if not original:
            args, follows = hub.split_streams(args)
            if args or not follows:
                args, resumes = resume.parse(args)
        _check_streams(session, follows)
        # Nothing changes before every part of the request was found valid.
        d = defer.gatherResults([stream.follow(session.outbound, item) for stream, item in follows],
                                consumeErrors=True)
        d.addErrback(_first_error)
        d.addErrback(_undo, session, follows)
        d.addCallback(_subscribed, session, args, original, resumes, follows)
        return d

    def _subscribed(starts, session, args, original, resumes, follows):
        names, replay = [], None
        if args:
            try:
                names, replay = hub.subscribe(session.outbound, args, resend=original, resumes=resumes)
            except RequestError:
                _undo(None, session, follows)
                raise
        names = names + [stream.name for stream, _ in follows]
        log.info(
            "{user} from {peer} subscribed to {sources}",
            user=session.user,
            peer=session.peer_host,
            sources=names,
        )

        def after():
            if replay is not None:
                replay()
            for start in starts:
                start()

        result = _original_reply("subscribe", names) if original else {"subscribe": names}
        return Reply(result, after=after)

    def _undo(failure, session, follows):
        for stream, item in follows:
            stream.unfollow(session.outbound, item)
        return failure

    def unsubscribe(session, args):
        original = session.dialect == ORIGINAL
        if original:
            args = hub.known(args)
            if not args:
                return {}
        follows = []
        if not original:
            args, follows = hub.split_streams(args)
        _check_streams(session, follows)
        names = hub.unsubscribe(session.outbound, args) if args or not follows else []
        for stream, item in follows:
            stream.unfollow(session.outbound, item)
        names = names + [stream.name for stream, _ in follows]
        log.info(
            "{user} from {peer} unsubscribed from {sources}",
            user=session.user,
            peer=session.peer_host,
            sources=names,
        )
        return _original_reply("unsubscribe", names) if original else {"unsubscribe": names}

    router.register("events", "subscribe", subscribe, policy.LIMITED)
    router.register("events", "unsubscribe", unsubscribe, policy.LIMITED)
