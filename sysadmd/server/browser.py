"""The rules a request from a browser must pass, on the WebSocket handshake and on every
plain HTTP request alike (one place, so the two cannot drift apart):

- its ``Host`` must name this daemon (``[server] allowed_hosts``; see
  :mod:`sysadmd.util.hosts`), else DNS rebinding would make any page same-origin;
- its ``Origin``, when it sends one, must be listed in ``[server] allowed_origins`` (``*``:
  any) or, with that list empty, be the very host and port the browser connected to.
  Requests without Origin come from tools, not from pages, and pass; so do those whose
  Origin is not a URL (no ``scheme://``, not ``null``), such as the original SysAdm
  client's ``sysadm-client``: a browser only ever sends a URL origin or ``null``, so such
  a value cannot carry a page's request across sites.
"""

import re
from urllib.parse import urlsplit

from sysadmd.util.hosts import HostRule

_DEFAULT_PORTS = {"https": 443, "wss": 443, "http": 80, "ws": 80}


def is_application_origin(origin):
    """True for an Origin value no browser sends: not a URL (``scheme://...``) and not
    ``null``, e.g. ``sysadm-client``."""
    value = origin.strip()
    return "://" not in value and value.lower() != "null"


_ORIGIN_LINE = re.compile(rb"\r\norigin[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)


def hide_application_origin(data):
    """``(data, origin)``: a WebSocket handshake's bytes ``data`` with its one Origin
    header removed and that header's value, when the headers are complete and that value
    is not a URL (:func:`is_application_origin`); else ``(data, None)`` unchanged.

    Autobahn parses every Origin as a URL and fails ``sysadm-client`` with 400 before we
    see it; without the header it lets the handshake through to our own rules."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data, None
    lines = list(_ORIGIN_LINE.finditer(data, 0, end + 2))
    if len(lines) != 1:
        # none, or several (which Autobahn refuses, and so do we)
        return data, None
    line = lines[0]
    origin = line.group(1).decode("iso-8859-1").strip()
    if not origin or not is_application_origin(origin):
        return data, None
    return data[: line.start()] + data[line.end():], origin


def _origin_host(origin):
    parts = urlsplit(origin)
    return (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(parts.scheme)


def _host_header(host, secure):
    parts = urlsplit("//" + (host or ""))
    return (parts.hostname or "").lower(), parts.port or (443 if secure else 80)


class BrowserRules:
    """``allowed_hosts`` and ``allowed_origins`` as configured (lists of words)."""

    def __init__(self, allowed_hosts, allowed_origins):
        self._hosts = HostRule(allowed_hosts)
        self._origins = [o.rstrip("/") for o in allowed_origins]

    @classmethod
    def from_settings(cls, settings):
        """The rules of a :class:`sysadmd.channel.settings.ConnectionSettings`."""
        return cls(settings.allowed_hosts, settings.allowed_origins)

    def host_allowed(self, host):
        """Whether the ``Host`` header value ``host`` (None: absent) names this daemon."""
        return self._hosts.allows(host)

    def origin_allowed(self, origin, host, secure):
        """Whether a page from ``origin`` may talk to us, reached as ``host`` (the Host
        header) over TLS or not (``secure``)."""
        allowed = self._origins
        if "*" in allowed or origin.rstrip("/") in allowed:
            return True
        if allowed:
            return False
        # Default: the page must come from the host and port the browser connected to.
        return _origin_host(origin) == _host_header(host, secure)

    def refusal(self, host, origin, secure):
        """None when a request with these headers (str or None) may go on, else the
        reason to answer it 403 with."""
        if not self.host_allowed(host):
            return "Host not allowed"
        if origin and not is_application_origin(origin) and not self.origin_allowed(
            origin, host or "", secure
        ):
            return "Origin not allowed"
        return None
