"""Which ``Host`` a request may name: the defence against DNS rebinding.

A page on ``http://evil.example`` whose name an attacker re-points at 127.0.0.1 talks to
the daemon with ``Host: evil.example`` and an Origin that matches it. Checking the Host
against the names the daemon is really reached by closes that door.

Names in an allow list are compared without case, without a trailing dot and without a
port; IP literals are compared as addresses (``[::1]`` and ``::1`` are one). ``*`` allows
every host; an IP wildcard (``0.0.0.0`` or ``::``, a listener on every address) allows
every IP literal.
"""

import ipaddress
import socket

__all__ = ["HostRule", "default_allowed_hosts", "host_of", "split_endpoint"]

_WILDCARDS = (ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("::"))


def split_endpoint(description):
    """The ``:``-separated fields of a Twisted endpoint string, ``\\`` escapes removed
    (IPv6 interfaces are written ``interface=\\:\\:1``)."""
    fields, current, chars = [], [], iter(description)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
    fields.append("".join(current))
    return fields


def _address(text):
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def host_of(header):
    """The host named by a ``Host`` header value (str), lower case, without port,
    brackets or trailing dot; None when it is not a well-formed host."""
    text = header.strip().lower()
    if not text or any(c in text for c in "@/\\?# \t"):
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1:] and not text[end + 1:].startswith(":")):
            return None
        host = text[1:end]
        return host if _address(host) is not None else None
    if text.count(":") > 1:
        return text if _address(text) is not None else None  # a bare IPv6 literal
    host, _, port = text.partition(":")
    if port and not port.isdigit():
        return None
    host = host.rstrip(".")
    return host or None


def _listen_hosts(description):
    fields = split_endpoint(description)
    kind = fields[0]
    if kind not in ("tcp", "tcp6", "ssl", "tls"):
        return []  # unix sockets: clients name them "localhost"
    interfaces = [f.split("=", 1)[1] for f in fields[1:] if f.startswith("interface=")]
    if not interfaces:
        return ["::" if kind == "tcp6" else "0.0.0.0"]
    return interfaces


def default_allowed_hosts(listen, hostname=None):
    """The default of ``[server] allowed_hosts``: the listen addresses (a listener on
    every address allows every IP literal), ``localhost``, and this machine's host name
    with and without its domain. ``hostname`` (tests) replaces ``socket.gethostname()``."""
    hosts = ["localhost"]
    for description in listen:
        hosts.extend(_listen_hosts(description))
    name = (hostname if hostname is not None else socket.gethostname()).lower().rstrip(".")
    if name:
        hosts.extend([name, name.split(".", 1)[0]])
    return list(dict.fromkeys(hosts))


class HostRule:
    """Answers whether a ``Host`` header names this daemon (see the module docstring)."""

    def __init__(self, allowed):
        self.any = "*" in allowed
        self._names = set()
        self._addresses = set()
        self._any_address = False
        for entry in allowed:
            address = _address(entry.strip("[]"))
            if address in _WILDCARDS:
                self._any_address = True
            elif address is not None:
                self._addresses.add(address)
            elif entry != "*":
                self._names.add(entry.lower().rstrip("."))

    def allows(self, header):
        """Whether the ``Host`` header value ``header`` (None: absent) is allowed.

        A request without Host (HTTP/1.0 tools) is not a browser's, so it is allowed."""
        if header is None or self.any:
            return True
        host = host_of(header)
        if host is None:
            return False
        address = _address(host)
        if address is not None:
            return self._any_address or address in self._addresses
        return host in self._names
