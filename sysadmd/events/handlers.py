"""``events/subscribe`` and ``events/unsubscribe``.

In the ``original`` dialect (:mod:`sysadmd.protocol.dialect`) they answer as the original
server did: unknown names are skipped and the rest (un)subscribed, the reply names only
the last known one (``{"subscribe": "system-state"}``, ``{}`` when none was known), and
subscribing again resends the source's cached last event.
"""

from sysadmd.auth import policy
from sysadmd.events import resume
from sysadmd.protocol.dialect import ORIGINAL
from sysadmd.protocol.reply import Reply
from sysadmd.util.log import Logger

log = Logger()


def _original_reply(key, names):
    return {key: names[-1]} if names else {}


def register(router, hub):
    """Add the events namespace's calls to ``router``."""

    def subscribe(session, args):
        original = session.dialect == ORIGINAL
        if original:
            args = hub.known(args)
            if not args:
                return {}
        resumes = None
        if not original:
            args, resumes = resume.parse(args)
        names, replay = hub.subscribe(session.outbound, args, resend=original, resumes=resumes)
        log.info(
            "{user} from {peer} subscribed to {sources}",
            user=session.user,
            peer=session.peer_host,
            sources=names,
        )
        result = _original_reply("subscribe", names) if original else {"subscribe": names}
        return Reply(result, after=replay)

    def unsubscribe(session, args):
        original = session.dialect == ORIGINAL
        if original:
            args = hub.known(args)
            if not args:
                return {}
        names = hub.unsubscribe(session.outbound, args)
        log.info(
            "{user} from {peer} unsubscribed from {sources}",
            user=session.user,
            peer=session.peer_host,
            sources=names,
        )
        return _original_reply("unsubscribe", names) if original else {"unsubscribe": names}

    router.register("events", "subscribe", subscribe, policy.LIMITED)
    router.register("events", "unsubscribe", unsubscribe, policy.LIMITED)
