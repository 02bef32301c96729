"""Failed-login counting and bans per source address."""

import ipaddress
from collections import defaultdict, deque


def is_loopback(host):
    """Whether ``host`` (an address string) is a loopback address."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class BanList:
    """``max_failures`` failures within ``window`` seconds ban an address for
    ``ban_seconds``. Loopback is exempt unless ``ban_loopback``."""

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
        failures = self._failures[host]
        failures.append(now)
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if len(failures) >= self.max_failures:
            del self._failures[host]
            self._banned_until[host] = now + self.ban_seconds
            return True
        return False

    def record_success(self, host):
        """A successful login clears the address's failure count."""
        self._failures.pop(host, None)

    @property
    def banned_count(self):
        """How many addresses are banned now (for metrics)."""
        now = self._clock.seconds()
        return sum(1 for until in self._banned_until.values() if until > now)
