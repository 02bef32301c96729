"""Questions about network addresses."""

import ipaddress


def is_loopback(host):
    """Whether ``host`` (an address string) is a loopback address."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    # ::ffff:127.0.0.1 is how local clients look on a dual-stack listener; Python
    # before 3.13 does not call it loopback.
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)
