"""Which connections the daemon takes: per address, daemon-wide, and what is kept back.

Every accepted connection is a file descriptor. :class:`Admission` counts them all,
WebSocket and plain HTTP alike, from the moment they are accepted, and decides for each
new one, from its address alone (before any byte is read):

- ``FULL``: served normally;
- ``REFUSE``: its address already holds ``[server] max_connections_per_ip``: it is answered
  503 and closed (a few at a time per address; beyond, dropped);
- ``HEALTH``: the daemon holds its whole connection cap (``max_total``, derived from the
  descriptor limit, see ``sysadmd.taps.app.connection_cap``); one of a few slots kept back
  so that monitoring still gets ``GET /health`` (anything else is answered 503);
- no ticket (``None``): closed at once, which a listening factory does by returning None
  from ``buildProtocol`` (Twisted then closes the socket before the next accept).
"""

from collections import Counter

from sysadmd.util.log import Logger

FULL = "full"
HEALTH = "health"
REFUSE = "refuse"

# Connections kept back for GET /health beyond the cap: a monitor needs one, a few cover
# several monitors and retries; each address may hold only one at a time so an attacker
# spread over a handful of addresses cannot take them all. They come out of
# [server] reserved_descriptors.
HEALTH_SLOTS = 8
# Connections of one over-limit address being answered 503 at once; they live for a
# moment (REFUSAL_GRACE in frontdoor.py). Beyond, the address's new connections are
# closed without an answer, so a flood cannot hold more descriptors this way.
REFUSALS_PER_HOST = 8
TOO_MANY = "too many connections from this address"
AT_CAP = "the daemon is at its connection limit"
# Addresses whose refusals are remembered for rate-limited logging.
_REMEMBERED = 4096


class Ticket:
    """One admitted connection: its address, its ``kind`` and (set by the front door)
    the reactor time it was accepted. :meth:`release` it exactly when it closes
    (calling it again does nothing)."""

    __slots__ = ("host", "kind", "started", "_admission")

    def __init__(self, admission, host, kind):
        self._admission = admission
        self.host = host
        self.kind = kind
        self.started = None

    def release(self):
        """The connection is gone: give its place back."""
        admission, self._admission = self._admission, None
        if admission is not None:
            admission._release(self)


class Admission:
    """Counts connections per address (``max_per_host``) and in all (``max_total``, None
    for no cap); see the module docstring for what :meth:`admit` decides."""

    log = Logger()

    def __init__(self, max_per_host, max_total=None, health_slots=HEALTH_SLOTS,
                 refusals_per_host=REFUSALS_PER_HOST):
        self.max_per_host = max_per_host
        self.max_total = max_total
        self.health_slots = health_slots
        self.refusals_per_host = refusals_per_host
        self._held = Counter()  # FULL and HEALTH tickets per address
        self._refusing = Counter()
        self._health = Counter()
        self._refusals = Counter()  # refusals per address since it last held nothing
        self.regular = 0  # FULL and REFUSE tickets: what counts against max_total
        self.refused = Counter()  # refusals by reason, for metrics

    def admit(self, host):
        """A :class:`Ticket` for a new connection from ``host``, or None: close it now."""
        at_cap = self.max_total is not None and self.regular >= self.max_total
        if self._held[host] >= self.max_per_host:
            if not at_cap and self._refusing[host] < self.refusals_per_host:
                return self._issue(host, REFUSE, TOO_MANY)
            return self._refuse(host, TOO_MANY)
        if not at_cap:
            return self._issue(host, FULL)
        if sum(self._health.values()) < self.health_slots and not self._health[host]:
            return self._issue(host, HEALTH)  # refused later, unless it asks for /health
        return self._refuse(host, AT_CAP)

    def count_from(self, host):
        """Connections ``host`` holds now (FULL and HEALTH)."""
        return self._held.get(host, 0)

    @property
    def total(self):
        """Every connection now, whatever its kind."""
        return self.regular + sum(self._health.values())

    def _issue(self, host, kind, reason=None):
        if kind == REFUSE:
            self._refusing[host] += 1
            self.regular += 1
        else:
            self._held[host] += 1
            if kind == HEALTH:
                self._health[host] += 1
            else:
                self.regular += 1
        if reason is not None:
            self.note_refusal(host, reason)
        return Ticket(self, host, kind)

    def _refuse(self, host, reason):
        self.note_refusal(host, reason)
        return None

    def note_refusal(self, host, reason):
        """Count a refusal of ``host``'s connection (and log the 1st, 2nd, 4th...):
        :meth:`admit` calls it, and so does the front door when a place kept back for
        /health is asked for something else."""
        self.refused[reason] += 1
        if len(self._refusals) >= _REMEMBERED and host not in self._refusals:
            self._refusals.clear()
        self._refusals[host] += 1
        count = self._refusals[host]
        # Log the 1st, 2nd, 4th, 8th... refusal of an address: a flood cannot flood the log.
        if count & (count - 1) == 0:
            self.log.warn(
                "refused {count} connection(s) from {peer}: {reason}",
                count=count, peer=host, reason=reason,
                held=self._held.get(host, 0), limit=self.max_per_host,
            )

    def _release(self, ticket):
        host = ticket.host
        if ticket.kind == REFUSE:
            _decrement(self._refusing, host)
            self.regular -= 1
        else:
            _decrement(self._held, host)
            if ticket.kind == HEALTH:
                _decrement(self._health, host)
            else:
                self.regular -= 1
        if not self._held.get(host) and not self._refusing.get(host):
            self._refusals.pop(host, None)


def _decrement(counter, key):
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
