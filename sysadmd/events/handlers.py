"""``events/subscribe`` and ``events/unsubscribe``."""

from sysadmd.server.router import Reply


def register(router, hub):
    """Add the events namespace's calls to ``router``."""

    def subscribe(session, args):
        names, replay = hub.subscribe(session.outbound, args)
        return Reply({"subscribe": names}, after=replay)

    def unsubscribe(session, args):
        return {"unsubscribe": hub.unsubscribe(session.outbound, args)}

    router.register("events", "subscribe", subscribe)
    router.register("events", "unsubscribe", unsubscribe)
