"""Questions about network addresses."""

import ipaddress


def ip_address(host):
    """The address in ``host`` (a string as a transport reports it), without an IPv6 zone
    id and with ``::ffff:a.b.c.d`` (how IPv4 clients look on a dual-stack listener) as the
    IPv4 address it is; None when ``host`` is not an IP address."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def is_loopback(host):
    """Whether ``host`` (an address string) is a loopback address."""
    address = ip_address(host)
    # Python before 3.13 does not call ::ffff:127.0.0.1 loopback; ip_address unmaps it.
    return address is not None and address.is_loopback


def ban_key(host, ipv6_prefix=64):
    """The key failed logins from ``host`` are counted and banned under.

    An IPv4 address (``::ffff:a.b.c.d`` included) is itself; an IPv6 address is its
    ``/ipv6_prefix`` network (e.g. ``2001:db8:1:2::/64``), because one host usually holds a
    whole /64 and could otherwise try from a fresh address each time; anything that is not
    an IP address (``unix``, a relayed client's ``bridge:<nick>:<fingerprint>``) is kept as
    it is.
    """
    address = ip_address(host)
    if address is None:
        return host
    if address.version == 4:
        return str(address)
    return str(ipaddress.ip_network((address, ipv6_prefix), strict=False))
