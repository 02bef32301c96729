"""Failed-login counting and bans per source address."""

from collections import defaultdict, deque

from sysadmd.util.net import is_loopback


class BanList:
    """``max_failures`` failures within ``window`` seconds ban an address for
    ``ban_seconds``. Loopback is exempt unless ``ban_loopback``."""

    PRUNE_AT = 10000

    def __init__(self, clock, max_failures, window, ban_seconds, ban_loopback=False):
        self._clock = clock
        self.max_failures = max_failures
        self.window = window
        self.ban_seconds = ban_seconds
        self.ban_loopback = ban_loopback
        self._failures = defaultdict(deque)
        self._banned_until = {}

    def _exempt(self, host):
        return not self.ban_loopback and is_loopback(host)

    def is_banned(self, host):
        """Whether ``host`` is banned now."""
        until = self._banned_until.get(host)
        if until is None:
            return False
        if until <= self._clock.seconds():
            del self._banned_until[host]
            return False
        return True

    def record_failure(self, host):
        """Count a failed login; returns True when it starts a ban."""
        if self._exempt(host):
            return False
        now = self._clock.seconds()
        if len(self._failures) >= self.PRUNE_AT:
            self._prune(now)
        failures = self._failures[host]
        failures.append(now)
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if len(failures) >= self.max_failures:
            del self._failures[host]
            self._banned_until[host] = now + self.ban_seconds
            return True
        return False

    def _prune(self, now):
        # Forget addresses whose failures all left the window, so many distinct
        # addresses cannot grow this table without bound.
        for host in [h for h, f in self._failures.items() if not f or f[-1] <= now - self.window]:
            del self._failures[host]
        for host in [h for h, until in self._banned_until.items() if until <= now]:
            del self._banned_until[host]

    def record_success(self, host):
        """A successful login clears the address's failure count."""
        self._failures.pop(host, None)

    @property
    def banned_count(self):
        """How many addresses are banned now (for metrics)."""
        now = self._clock.seconds()
        return sum(1 for until in self._banned_until.values() if until > now)
