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
        """Start producing events; call ``publish(args_dict)`` for each one (a
        :class:`sysadmd.protocol.dialect.WithOriginal` when the original dialect's args
        differ, e.g. a life-preserver message prefixed with its log line's date).

        Returns a Deferred that fires once started. A failure (or an exception) is logged
        with the source's name and the start is retried with backoff. ``publish`` never
        raises: an event that cannot be encoded is logged and dropped.
        """

    def stop():
        """Stop producing events and release everything; returns a Deferred."""


class IEventSnapshot(Interface):
    """Optional, beside :class:`IEventSource`, for a source whose state is more than its
    last event (the dispatcher's live jobs): what a client that missed events is sent
    after the ``gap`` event, when the source keeps no last event."""

    def snapshot():
        """A list of event args (each as ``publish`` would take) describing the current
        state; they are sent without ``seq``."""


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


class IEventSink(Interface):
    """One subscriber of the event hub (:class:`sysadmd.events.hub.EventHub`)."""

    def send_event(event):
        """Deliver a published :class:`sysadmd.events.hub.Event`. Must not block or raise:
        a sink that cannot keep up queues, drops (counting on ``event.channel.dropped``)
        or disconnects on its own."""


class IOutgoingQueue(IEventSink):
    """A client's ordered outgoing messages, bounded for a peer that stops reading
    (:class:`sysadmd.channel.outbound.Outbound`). Registered with its transport as a push
    producer."""

    paused = Attribute("True while the transport cannot take more (frames wait here).")
    closed = Attribute("True once closed: everything sent afterwards is discarded.")
    queued_bytes = Attribute(
        "Bytes of frames waiting here: a stream that reads at its client's pace "
        "(:class:`IEventStream`) sends more only when nothing waits."
    )

    def send_frame(frame):
        """Send a reply or notice (an envelope dict); never dropped."""

    def send_payload(payload):
        """Send an encoded frame of the spec dialect (UTF-8 JSON bytes); never dropped."""

    def send_prepared(prepared):
        """Send an already framed message; never dropped."""

    def send_bounded(prepared):
        """Send an already framed message that waits within the queue's limit like an
        event: past it, it is dropped or the peer is disconnected, per the policy."""

    def close():
        """Forget waiting messages and accept no more."""

    def when_drained(callback):
        """Call ``callback()`` once, the next time the transport takes more and nothing
        waits in the queue (never, if it closes first)."""


class IEventStream(Interface):
    """A subscription with parameters, beside the hub's event sources: each subscriber
    names what it follows and from where, e.g. ``{"name": "job-output", "job_id": "x",
    "offset": 0}`` (:mod:`sysadmd.dispatcher.follow`). Registered on the hub under
    ``name``; ``events/subscribe`` and ``events/unsubscribe`` hand it the objects with
    that name."""

    name = Attribute("The name subscribers give, e.g. 'job-output'.")
    access = Attribute("The access level (sysadmd.auth.policy) a subscriber needs.")

    def follow(sink, item):
        """Start following what ``item`` (the subscription object) names, sending to
        ``sink`` (an :class:`IOutgoingQueue`). Returns a Deferred that fires with a
        callable to call right after the subscribe reply (it starts the flow), or fails
        with a RequestError (nothing is followed)."""

    def unfollow(sink, item):
        """Stop what ``item`` names (the bare name: everything ``sink`` follows here)."""

    def drop(sink):
        """``sink`` is gone or signed out: stop all it follows."""


class ISessionListener(Interface):
    """Told when a :class:`sysadmd.channel.session.Session` signs in or out."""

    def signed_in(session):
        """The session authenticated (pre-authentication limits can be lifted)."""

    def signed_out(session):
        """The session is unauthenticated again."""


class IChannelTransport(Interface):
    """What carries one client's messages for a :class:`sysadmd.channel.channel.Channel`:
    a direct WebSocket connection, a bridge link relaying one client, one REST request.
    It only moves bytes; the channel owns every rule of the connection."""

    peer_host = Attribute(
        "The client's address as logs, bans and ``session.peer_host`` name it, e.g. "
        "'192.0.2.7' or 'bridge:NICK:CLIENT_ID'."
    )
    can_pause_reading = Attribute(
        "True when the transport can stop reading the client (a socket): past "
        "max_inflight_requests requests wait. False (a relayed client) answers 503."
    )

    def prepare(payload):
        """Frame ``payload`` (UTF-8 JSON bytes) for :meth:`write`."""

    def frame_event(event):
        """The framed message of a published :class:`sysadmd.events.hub.Event` (the
        hub's shared frame where the transport can send it as it is)."""

    def write(prepared):
        """Send one framed message now."""

    def set_message_limit(limit):
        """The largest message the client may send from now on; a transport that can
        enforce it while reading (WebSocket: close 1009) does."""

    def pause_reading():
        """Stop reading the client (only called when ``can_pause_reading``)."""

    def resume_reading():
        """Read the client again."""

    def end(ending):
        """End the client's connection or session for ``ending`` (a
        :class:`sysadmd.channel.channel.Ending`: a close code and reason for a WebSocket,
        an error notice for a client that cannot be disconnected from here)."""

    def socket_addresses():
        """``(local, peer)``: the Twisted addresses (``getHost()``, ``getPeer()``) of the
        client's own connection to this process, or None when there is none of its own
        (a client relayed by a bridge, a REST request). Local sign-in (``[auth]
        local_login``) looks the client's socket up by them; a None never signs in so."""


class IJobObserver(Interface):
    """Told how one dispatcher job's run goes (:class:`sysadmd.dispatcher.runner.JobRun`),
    in this order, on the reactor thread: for each command ``command_started``, any number
    of ``command_output``, ``command_finished``; then ``job_finished`` once. A command that
    cannot start is reported as started and finished (return code -1).

    An implementer must return at once and must not raise: the run calls on with its next
    command right after, and an exception would break its chain. It may start other work
    (the next job of a queue) from any of them, ``job_finished`` included.
    """

    def command_started(job, index):
        """Command ``index`` of ``job`` (a :class:`sysadmd.dispatcher.job.Job`) starts;
        ``job.current`` is ``index``. What the previous command left (its log and return
        code) is final now."""

    def command_output(job, index):
        """Output of command ``index`` was appended to ``job.logs[index]``."""

    def command_finished(job, index, return_code):
        """Command ``index`` ended: ``return_code`` is its exit status, -N for a death by
        signal N, -1 when it could not start. ``job.logs[index]`` (if any) is complete."""

    def job_finished(job):
        """Nothing of ``job`` runs any more (its chain ended, failed, was killed or timed
        out: ``job.killed``, ``job.timed_out`` say which flags apply). Called once."""
