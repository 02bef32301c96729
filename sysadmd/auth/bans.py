"""Failed-login counting and bans per source address.

A guess takes a slot before it is checked (:meth:`BanList.reserve`), and an attempt in
flight counts as a failure until it succeeds: however many guesses arrive at once, no more
than ``max_failures`` are ever checked in one window, and the next is refused before any
work is done. Addresses are counted under their :func:`~sysadmd.util.net.ban_key` (an
IPv6 client under its network), so a host cannot start over from a fresh address.
"""

from collections import defaultdict, deque

from sysadmd.util.net import ban_key, is_loopback


class Attempt:
    """One reserved slot of an address: settle it exactly once with :meth:`failed`,
    :meth:`succeeded` or :meth:`release` (later calls do nothing)."""

    def __init__(self, bans, key, counted):
        self._bans = bans
        self.key = key
        self._counted = counted
        self._open = True

    def _settle(self):
        was_open, self._open = self._open, False
        if was_open and self._counted:
            self._bans._end_attempt(self.key)
        return was_open and self._counted

    def failed(self):
        """The guess was wrong: it stays counted. True when it starts a ban."""
        return self._bans._add_failure(self.key) if self._settle() else False

    def succeeded(self):
        """A login succeeded: the address's failures are forgotten."""
        if self._settle():
            self._bans._failures.pop(self.key, None)

    def release(self):
        """Not a guess after all (a malformed request, a refused check): uncounted."""
        self._settle()


class BanList:
    """``max_failures`` failures within ``window`` seconds ban an address for
    ``ban_seconds``. Loopback is exempt unless ``ban_loopback``; IPv6 addresses are
    counted by their ``/ipv6_prefix`` network."""

    PRUNE_AT = 10000

    def __init__(
        self, clock, max_failures, window, ban_seconds, ban_loopback=False, ipv6_prefix=64
    ):
        self._clock = clock
        self.max_failures = max_failures
        self.window = window
        self.ban_seconds = ban_seconds
        self.ban_loopback = ban_loopback
        self.ipv6_prefix = ipv6_prefix
        self._failures = defaultdict(deque)
        self._in_flight = defaultdict(int)
        self._banned_until = {}

    def key(self, host):
        """What failures from ``host`` are counted under (see :func:`ban_key`)."""
        return ban_key(host, self.ipv6_prefix)

    def _exempt(self, host):
        return not self.ban_loopback and is_loopback(host)

    def is_banned(self, host):
        """Whether ``host`` is banned now."""
        key = self.key(host)
        until = self._banned_until.get(key)
        if until is None:
            return False
        if until <= self._clock.seconds():
            del self._banned_until[key]
            return False
        return True

    def reserve(self, host):
        """Take a failure slot for a guess from ``host`` before checking it.

        Returns an :class:`Attempt`, or None when ``host`` is banned or its failures in
        the window plus its attempts in flight already reach ``max_failures``.
        """
        if self.is_banned(host):
            return None
        if self._exempt(host):
            return Attempt(self, host, counted=False)
        key = self.key(host)
        failures = self._recent(key, self._clock.seconds())
        if len(failures) + self._in_flight.get(key, 0) >= self.max_failures:
            return None
        self._in_flight[key] += 1
        return Attempt(self, key, counted=True)

    def record_failure(self, host):
        """Count a failed login that took no slot; returns True when it starts a ban."""
        if self._exempt(host):
            return False
        return self._add_failure(self.key(host))

    def record_success(self, host):
        """A successful login clears the address's failure count."""
        self._failures.pop(self.key(host), None)

    def _recent(self, key, now):
        failures = self._failures.get(key)
        if failures is None:
            return ()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def _add_failure(self, key):
        now = self._clock.seconds()
        if len(self._failures) >= self.PRUNE_AT:
            self._prune(now)
        failures = self._failures[key]
        failures.append(now)
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if len(failures) >= self.max_failures:
            del self._failures[key]
            self._banned_until[key] = now + self.ban_seconds
            return True
        return False

    def _end_attempt(self, key):
        self._in_flight[key] -= 1
        if self._in_flight[key] <= 0:
            del self._in_flight[key]

    def _prune(self, now):
        # Forget addresses whose failures all left the window, so many distinct
        # addresses cannot grow this table without bound.
        for key in [k for k, f in self._failures.items() if not f or f[-1] <= now - self.window]:
            del self._failures[key]
        for key in [k for k, until in self._banned_until.items() if until <= now]:
            del self._banned_until[key]

    @property
    def banned_count(self):
        """How many addresses are banned now (for metrics)."""
        now = self._clock.seconds()
        return sum(1 for until in self._banned_until.values() if until > now)

    @property
    def attempts_in_flight(self):
        """How many counted guesses are being checked now (for metrics and tests)."""
        return sum(self._in_flight.values())
