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
