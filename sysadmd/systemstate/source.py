"""The running ``system-state`` source: poll, compare, publish.

Every ``interval`` seconds (the first poll at start, so a new subscriber soon sees the
state) it runs ``hostname`` and ``zpool list`` as child processes, builds the event with
:func:`sysadmd.systemstate.rules.build_state`, and publishes it when it differs from the
last event. A heartbeat timer publishes the current state when nothing was published for
``heartbeat`` seconds. The hub caches the last event for new subscribers.

Commands never block: each has ``command_timeout``; a failing or hung one is killed,
logged with backoff, and the poll goes on with what is known (the last pools seen, or the
host name from the kernel). When the machine has no ZFS, ``zpools`` is ``{}`` and the log
says why, once.

The ``updates`` field comes from an :class:`sysadmd.systemstate.checker.UpdateChecker`
that checks in the background on its own timer (``updates_interval``) with the same
commands' machinery and timeout: a poll takes the field as it is, and a check that
changes it publishes the last polled state with the new field at once.
"""

import socket

from twisted.internet import defer
from zope.interface import implementer

from sysadmd.interfaces import IEventSource
from sysadmd.systemstate.backends import choose
from sysadmd.systemstate.checker import UpdateChecker
from sysadmd.systemstate.rules import Thresholds, build_state
from sysadmd.systemstate.zpool import ZpoolParseError, parse_zpool_list
from sysadmd.util.commands import (
    CommandError,
    CommandNotFound,
    RepeatedFailure,
    spawn_command,
)
from sysadmd.util.log import Logger
from sysadmd.util.polling import InFlight, start_polling, stop_polling
from sysadmd.util.timers import cancel_call

#: stderr of a zpool that exists but has no ZFS behind it (OpenZFS without its kernel
#: module, zfs-fuse without its daemon, FreeBSD without zfs.ko).
NO_ZFS_MARKERS = (
    "modules are not loaded",
    "/dev/zfs",
    "failed to initialize zfs library",
    "zfs-fuse daemon is running",
)


@implementer(IEventSource)
class SystemStateSource:
    """Publishes ``system_state`` events (see the module docstring)."""

    name = "system-state"
    frame_name = "system_state"
    replay_last = True
    config_section = "source:system-state"

    log = Logger()

    def __init__(self, reactor, interval=60.0, heartbeat=900.0, thresholds=Thresholds(),
                 zpool_command="zpool", hostname_command="hostname", command_timeout=30.0,
                 updates_backend=None, updates_interval=3600.0):
        self._reactor = reactor
        self._interval = interval
        self._heartbeat = heartbeat
        self._thresholds = thresholds
        self._zpool_command = zpool_command
        self._hostname_command = hostname_command
        self._timeout = command_timeout
        self._publish = None
        self._running = False
        self._loop = None
        self._heartbeat_call = None
        self._polling = InFlight()
        self._force = False
        self._commands = set()
        self._last_hostname = None
        self._last_pools = {}
        self._last_state = None
        self._last_inputs = None  # (hostname, pools, hostname_changed) of the last poll
        self._no_zfs_reason = None
        self._updates = None
        if updates_backend is not None:
            self._updates = UpdateChecker(reactor, updates_backend, self._run,
                                          updates_interval, self.name)
        self._zpool_failures = RepeatedFailure(self.log, self.name, "zpool list")
        self._hostname_failures = RepeatedFailure(self.log, self.name, "hostname")

    @classmethod
    def from_context(cls, context):
        """Build from a :class:`sysadmd.events.context.SourceContext`."""
        config = context.config
        backend, why = choose(config["updates"], config["updates_command"],
                              config["updates_refresh"], cls.name)
        if backend is None:
            cls.log.info("{source}: no update checks ({why})", source=cls.name, why=why)
        else:
            cls.log.info("{source}: checking for updates with {backend} every {interval:g} s "
                         "({why})", source=cls.name, backend=backend.name, why=why,
                         interval=config["updates_interval"])
        return cls(
            context.reactor,
            interval=config["interval"],
            heartbeat=config["heartbeat"],
            thresholds=Thresholds(config["capacity_warning"], config["capacity_critical"]),
            zpool_command=config["zpool_command"],
            hostname_command=config["hostname_command"],
            command_timeout=config["command_timeout"],
            updates_backend=backend,
            updates_interval=config["updates_interval"],
        )

    @property
    def last_state(self):
        """The last published event args (None before the first)."""
        return self._last_state

    @property
    def updates(self):
        """The :class:`~sysadmd.systemstate.checker.UpdateChecker` (None: checks off)."""
        return self._updates

    def start(self, publish):
        """Poll now and then every ``interval``, and check for updates now and then every
        ``updates_interval``; fires at once (polls and checks run on their own)."""
        self._publish = publish
        self._running = True
        self._loop = start_polling(self._reactor, self._interval, self.poll)
        if self._updates is not None:
            # Never waits for the first poll: a check ending before it has its news
            # carried by that poll (see _updates_changed).
            self._updates.start(self._updates_changed)
        return defer.succeed(None)

    def stop(self):
        """Stop polling and checking, kill running commands (an update check's too);
        fires once they have exited."""
        self._running = False
        self._loop = stop_polling(self._loop)
        if self._updates is not None:
            self._updates.stop()
        self._heartbeat_call = cancel_call(self._heartbeat_call)
        ended = []
        for command in list(self._commands):
            command.result.cancel()
            ended.append(command.ended)
        return defer.DeferredList(ended).addCallback(lambda _: None)

    def poll(self, force=False):
        """Collect the state and publish it when it changed (or ``force``).

        Returns a Deferred that never fails. A poll asked for while one runs joins it.
        """
        self._force = self._force or force
        if self._polling.busy:
            return None
        d = defer.gatherResults([self._hostname(), self._pools()], consumeErrors=True)
        d.addCallback(lambda results: self._collected(*results))
        d.addErrback(lambda f: self.log.failure("{source}: poll failed", f, source=self.name))
        return self._polling.track(d)

    def when_idle(self):
        """A Deferred that fires once no poll is running (at once when none is)."""
        return self._polling.when_idle()

    def _run(self, argv):
        command = spawn_command(self._reactor, argv, self._timeout)
        if not command.finished:
            self._commands.add(command)
            command.ended.addBoth(lambda _: self._commands.discard(command))
        return command.result

    def _hostname(self):
        d = self._run([self._hostname_command])

        def ran(result):
            name = result.stdout.strip()
            if result.exit_code != 0 or not name:
                raise CommandError(
                    [self._hostname_command],
                    f"exit code {result.exit_code}: {result.first_error_line() or 'no output'}",
                )
            self._hostname_failures.succeeded()
            return name

        def failed(failure):
            failure.trap(CommandError, defer.CancelledError)
            self._hostname_failures.failed(failure.value)
            return socket.gethostname()

        return d.addCallback(ran).addErrback(failed)

    def _pools(self):
        d = self._run([self._zpool_command, "list"])

        def ran(result):
            problem = result.first_error_line()
            if result.exit_code != 0:
                if any(marker in problem.lower() for marker in NO_ZFS_MARKERS):
                    return self._no_zfs(f"{self._zpool_command} says: {problem}")
                raise CommandError(
                    [self._zpool_command, "list"], f"exit code {result.exit_code}: {problem}"
                )
            pools = parse_zpool_list(result.stdout)
            self._zpool_failures.succeeded()
            self._zfs_found()
            self._last_pools = pools
            return pools

        def failed(failure):
            if failure.check(CommandNotFound):
                return self._no_zfs(
                    f"no zpool command ({self._zpool_command!r} not found or not executable)"
                )
            failure.trap(CommandError, ZpoolParseError, defer.CancelledError)
            self._zpool_failures.failed(failure.value)
            # The pools did not vanish because zpool failed: keep reporting what we knew.
            return self._last_pools

        return d.addCallback(ran).addErrback(failed)

    def _no_zfs(self, reason):
        if self._no_zfs_reason is None:
            self.log.info("{source}: no ZFS on this machine, reporting no pools: {reason}",
                          source=self.name, reason=reason)
        self._no_zfs_reason = reason
        self._last_pools = {}
        return {}

    def _zfs_found(self):
        if self._no_zfs_reason is not None:
            self.log.info("{source}: ZFS is available now", source=self.name)
        self._no_zfs_reason = None

    def _collected(self, hostname, pools):
        force, self._force = self._force, False
        changed = self._last_hostname is not None and hostname != self._last_hostname
        if changed:
            self.log.info("{source}: hostname changed from {old} to {new}",
                          source=self.name, old=self._last_hostname, new=hostname)
        self._last_hostname = hostname
        self._last_inputs = (hostname, pools, changed)
        state = self._state()
        if self._running and (force or state != self._last_state):
            self._emit(state)

    def _state(self):
        hostname, pools, changed = self._last_inputs
        updates = self._updates.current if self._updates is not None else None
        return build_state(hostname, pools, changed, self._thresholds, updates)

    def _updates_changed(self):
        # A check ended with news: publish now rather than at the next poll. Before the
        # first poll there is nothing to publish; that poll will carry the news.
        if self._running and self._last_inputs is not None:
            state = self._state()
            if state != self._last_state:
                self._emit(state)

    def _emit(self, state):
        self._last_state = state
        self._publish(state)
        cancel_call(self._heartbeat_call)
        self._heartbeat_call = self._reactor.callLater(self._heartbeat, self._beat)

    def _beat(self):
        self._heartbeat_call = None
        self.poll(force=True)
