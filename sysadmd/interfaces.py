"""Every interface sysadmd's parts meet at. Implementations are checked with
``zope.interface.verify.verifyObject`` when they are loaded and in the tests."""

from zope.interface import Attribute, Interface


class IEventSourceFactory(Interface):
    """A discoverable event source: what ``twisted.plugin.getPlugins`` finds.

    Put a module-level object providing this and ``twisted.plugin.IPlugin`` in a module of
    the ``sysadmd.plugins`` package, or in any ``sysadmd/plugins/`` directory on
    ``sys.path`` (without an ``__init__.py``). It is stateless; ``build`` makes the running
    source.
    """

    name = Attribute(
        "The subscription name clients use, e.g. 'system-state'; also the NAME of its "
        "[source:NAME] ini section."
    )
    options = Attribute(
        "A dict of ini key -> sysadmd.config.options.Option accepted in [source:NAME]."
    )

    def build(context):
        """Return a new provider of :class:`IEventSource`.

        ``context`` is a :class:`sysadmd.events.context.SourceContext`: the reactor, this
        source's parsed config section, the state directory and the daemon's shared parts.
        """


class IEventSource(Interface):
    """A running event source. It publishes JSON-able dicts; the hub does the rest."""

    name = Attribute("The subscription name, e.g. 'system-state'.")
    frame_name = Attribute("The event frame's name, e.g. 'system_state'.")
    replay_last = Attribute("True when a new subscriber should get the last event at once.")
    config_section = Attribute("The name of the ini section holding its keys: 'source:NAME'.")

    def start(publish):
        """Start producing events; call ``publish(args_dict)`` for each one.

        Returns a Deferred that fires once started. A failure (or an exception) is logged
        with the source's name and the start is retried with backoff. ``publish`` never
        raises: an event that cannot be encoded is logged and dropped.
        """

    def stop():
        """Stop producing events and release everything; returns a Deferred."""


class IPasswordBackend(Interface):
    """Checks a username and password (``[auth] backends``)."""

    name = Attribute("The backend's name in [auth] backends, e.g. 'pam'.")

    def authenticate(username, password):
        """Return a Deferred firing with an access level ('full' or 'limited') when the
        password is right and the user is allowed, else None. Must not reveal through
        errors or timing whether the user exists."""

    def role_of(username):
        """Return a Deferred firing with the user's access level, or None when this
        backend does not know the user or grants nothing (used by rpc/auth_ssl)."""
