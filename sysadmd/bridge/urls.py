"""``[bridge] connections``: the bridges a daemon connects out to, as ``NICK=URL`` entries.

    connections = office=wss://bridge.example.org:12149 lab=ws://10.0.0.5

A URL is ``ws://`` or ``wss://`` with a host and an optional port (default 12149) and
path. Nicks name the bridges in logs and in ``sysadmd-admin bridge``.
"""

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORT = 12149
_NICK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class BridgeAddress:
    """One configured bridge."""

    nick: str
    url: str
    secure: bool
    host: str
    port: int
    path: str


def check_nick(nick):
    """Return ``nick`` if it is a valid bridge nick, else raise ValueError."""
    if not _NICK.match(nick):
        raise ValueError(
            f"bridge nick {nick!r} must be letters, digits, '.', '_' or '-' "
            "(at most 64, starting with a letter or digit)"
        )
    return nick


def parse_url(nick, url):
    """A :class:`BridgeAddress` for ``url``; raises ValueError naming the problem."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"bridge {nick}: {url!r} is not a valid URL ({e})") from None
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"bridge {nick}: {url!r} must start with ws:// or wss://")
    if not parts.hostname:
        raise ValueError(f"bridge {nick}: {url!r} has no host")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"bridge {nick}: {url!r} must be ws[s]://host[:port][/path] only")
    return BridgeAddress(
        nick=nick,
        url=url,
        secure=parts.scheme == "wss",
        host=parts.hostname,
        port=port or DEFAULT_PORT,
        path=parts.path or "/",
    )


def parse_connections(text):
    """Parse ``[bridge] connections`` into ``{nick: BridgeAddress}`` (in file order)."""
    bridges = {}
    for entry in text.split():
        nick, sep, url = entry.partition("=")
        if not sep or not url:
            raise ValueError(f"{entry!r} is not NICK=URL, e.g. office=wss://bridge.example.org:12149")
        check_nick(nick)
        if nick in bridges:
            raise ValueError(f"bridge nick {nick!r} is listed twice")
        bridges[nick] = parse_url(nick, url)
    return bridges


def format_connections(bridges):
    """The ``connections`` value for ``bridges`` (an iterable of :class:`BridgeAddress`)."""
    return " ".join(f"{b.nick}={b.url}" for b in bridges)
