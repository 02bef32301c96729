"""Who owns a TCP socket of this machine, from the kernel's socket table.

Local sign-in (:mod:`sysadmd.auth.local`) asks which user opened the client end of a
loopback connection to the daemon. The kernel knows: Linux lists every TCP socket of the
network namespace in ``/proc/net/tcp`` and ``/proc/net/tcp6`` with the uid that created
it, FreeBSD's ``sockstat`` prints the user of every process holding one. The client end
is the socket whose *local* address is the connection's peer and whose *remote* address
is the daemon's end; both ports are matched, so the daemon's own end (owned by the
daemon's user, often root) is never taken for it.

Only established sockets with an owner count: a socket the client already closed
(orphaned, ``TIME_WAIT``) is listed with uid 0 and inode 0 and must not read as root's.
Everything here blocks (a file read, a command): call it from a thread.
"""

import ipaddress
import os
import pwd
import struct
import subprocess
import sys
from typing import NamedTuple

PROC_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")

# /proc/net/tcp's "st" column for TCP_ESTABLISHED (include/net/tcp_states.h).
_ESTABLISHED = 0x01

SOCKSTAT = "/usr/bin/sockstat"
# sockstat reads the whole table; a few seconds is plenty, and a login must not hang.
SOCKSTAT_TIMEOUT = 5.0
_SOCKSTAT_ENV = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LC_ALL": "C", "LANG": "C"}


class TcpSocket(NamedTuple):
    """One row of a socket table: ``local`` and ``remote`` are ``(ip_address, port)``
    with IPv4-mapped IPv6 addresses unmapped; ``uid`` is None where the row names no
    owner."""

    local: tuple
    remote: tuple
    uid: object
    established: bool = True


def endpoint(host, port):
    """``(ip_address, port)`` for an address string and a port, or None when ``host`` is
    not an IP address. ``::ffff:a.b.c.d`` becomes the IPv4 address it carries, so the two
    views of a connection to a dual-stack listener compare equal."""
    try:
        address = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped if mapped is not None else address, int(port))


def _proc_address(text):
    # "0100007F:D431": the address as the kernel's native-endian 32-bit words in hex,
    # then the port in hex.
    address_hex, port_hex = text.split(":")
    words = [int(address_hex[i:i + 8], 16) for i in range(0, len(address_hex), 8)]
    packed = b"".join(struct.pack("=I", word) for word in words)
    if len(packed) not in (4, 16):
        raise ValueError(f"bad address {text!r}")
    return endpoint(ipaddress.ip_address(packed), int(port_hex, 16))


def parse_proc_net_tcp(text):
    """The rows of a ``/proc/net/tcp`` or ``/proc/net/tcp6`` text as :class:`TcpSocket`.

    A socket without an inode (orphaned or in ``TIME_WAIT``) has no owner (uid None).
    Malformed rows are skipped.
    """
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            local = _proc_address(fields[1])
            remote = _proc_address(fields[2])
            state = int(fields[3], 16)
            uid = int(fields[7])
            inode = int(fields[9])
        except ValueError:
            continue
        yield TcpSocket(local, remote, uid if inode else None, state == _ESTABLISHED)


def _sockstat_address(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        return None
    return endpoint(host.strip("[]"), port)


def _sockstat_uid(user):
    if user.isdigit():
        return int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def parse_sockstat(text):
    """The TCP rows of ``sockstat -46 -c -q -P tcp`` output as :class:`TcpSocket`.

    Columns: USER COMMAND PID FD PROTO LOCAL FOREIGN (the command name may hold spaces,
    so the last three are read from the right). A header line and rows of sockets no
    process holds (user ``?``) are skipped.
    """
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 7 or fields[0] in ("USER", "?"):
            continue
        proto, local, remote = fields[-3:]
        if not proto.startswith("tcp"):
            continue
        local, remote = _sockstat_address(local), _sockstat_address(remote)
        if local is None or remote is None:
            continue
        yield TcpSocket(local, remote, _sockstat_uid(fields[0]))


def _read_proc_tables(paths):
    rows = []
    for path in paths:
        try:
            with open(path, encoding="ascii", errors="replace") as handle:
                rows.extend(parse_proc_net_tcp(handle.read()))
        except FileNotFoundError:
            continue  # no IPv6 in this kernel
    return rows


def _run_sockstat(port):
    result = subprocess.run(
        [SOCKSTAT, "-46", "-c", "-q", "-P", "tcp", "-p", str(port)],
        capture_output=True, text=True, timeout=SOCKSTAT_TIMEOUT, env=_SOCKSTAT_ENV,
        stdin=subprocess.DEVNULL, cwd="/", check=False,
    )
    return list(parse_sockstat(result.stdout))


def matching_owner(rows, client, server):
    """The uid owning the client end of the connection ``client`` -> ``server`` (each
    ``(host, port)``) among ``rows``, or None: unknown, not established, without an owner,
    or listed more than once with different owners."""
    client, server = endpoint(*client), endpoint(*server)
    if client is None or server is None or client == server:
        return None
    owners = {
        row.uid for row in rows
        if row.local == client and row.remote == server and row.established
    }
    if len(owners) != 1:
        return None
    return owners.pop()


def socket_owner(client, server, platform=None, proc_tables=PROC_TABLES):
    """The uid that owns the client end of the TCP connection from ``client`` to
    ``server`` (each ``(host, port)``) on this machine, or None when the kernel's table
    does not show exactly one established, owned socket for it (or this system has no
    table we read). Blocks: call it from a thread."""
    platform = platform or sys.platform
    if platform.startswith("linux"):
        rows = _read_proc_tables(proc_tables)
    elif platform.startswith("freebsd") and os.access(SOCKSTAT, os.X_OK):
        try:
            rows = _run_sockstat(server[1])
        except (OSError, subprocess.SubprocessError):
            return None
    else:
        return None
    return matching_owner(rows, client, server)
