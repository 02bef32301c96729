"""Between Twisted and nats-py: the agent runs on Twisted's asyncio reactor, so both
share one asyncio loop, and a coroutine becomes a Deferred with :func:`deferred`."""

import asyncio

from twisted.internet import defer


class WrongReactor(Exception):
    """sysadm-fleet was started on a reactor that is not Twisted's asyncio reactor."""


def install_asyncio_reactor():
    """Install Twisted's asyncio reactor unless a reactor is installed already (twistd
    installs one only with ``--reactor``); raise :class:`WrongReactor` when the one
    installed is another kind."""
    import sys

    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet import asyncioreactor

        asyncioreactor.install()
    from twisted.internet import reactor

    check_reactor(reactor)
    return reactor


def check_reactor(reactor):
    """Raise :class:`WrongReactor` unless ``reactor`` runs on an asyncio loop."""
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        raise WrongReactor(
            f"sysadm-fleet needs Twisted's asyncio reactor (nats-py is asyncio), not "
            f"{type(reactor).__module__}: run twistd --reactor asyncio sysadm-fleet"
        )


def deferred(coroutine):
    """Run ``coroutine`` on the reactor's asyncio loop; a Deferred of its result."""
    return defer.Deferred.fromFuture(asyncio.ensure_future(coroutine))
