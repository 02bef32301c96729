"""``events/subscribe`` and ``events/unsubscribe``."""

from sysadmd.auth import policy
from sysadmd.protocol.reply import Reply
from sysadmd.util.log import Logger

log = Logger()


def register(router, hub):
    """Add the events namespace's calls to ``router``."""

    def subscribe(session, args):
        names, replay = hub.subscribe(session.outbound, args)
        log.info(
            "{user} from {peer} subscribed to {sources}",
            user=session.user,
            peer=session.peer_host,
            sources=names,
        )
        return Reply({"subscribe": names}, after=replay)

    def unsubscribe(session, args):
        names = hub.unsubscribe(session.outbound, args)
        log.info(
            "{user} from {peer} unsubscribed from {sources}",
            user=session.user,
            peer=session.peer_host,
            sources=names,
        )
        return {"unsubscribe": names}

    router.register("events", "subscribe", subscribe, policy.LIMITED)
    router.register("events", "unsubscribe", unsubscribe, policy.LIMITED)
