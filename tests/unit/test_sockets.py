"""The socket-table lookup behind local sign-in: parsing Linux's ``/proc/net/tcp{,6}`` and
FreeBSD's ``sockstat``, and picking the client's end of a connection (never the daemon's,
never an orphaned socket listed as root's)."""

import ipaddress
import os
import socket
import struct
import sys

import pytest

from sysadmd.util.sockets import (
    matching_owner,
    parse_proc_net_tcp,
    parse_sockstat,
    socket_owner,
)

HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
    "timeout inode\n"
)
HEADER6 = (
    "  sl  local_address                         remote_address                        st "
    "tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
)


def proc_hex(host, port):
    """An address as the kernel prints it in /proc/net/tcp: native-endian 32-bit words."""
    packed = ipaddress.ip_address(host).packed
    words = struct.unpack(f"={len(packed) // 4}I", packed)
    return "".join(f"{word:08X}" for word in words) + f":{port:04X}"


def row(number, local, remote, state, uid, inode):
    """One /proc/net/tcp row."""
    return (
        f"{number:4d}: {proc_hex(*local)} {proc_hex(*remote)} {state:02X} "
        f"00000000:00000000 00:00000000 00000000 {uid:5d}        0 {inode} 1 "
        "0000000000000000 20 4 30 10 -1\n"
    )


SERVER = ("127.0.0.1", 12150)
CLIENT = ("127.0.0.1", 54321)

TCP = HEADER + "".join([
    row(0, ("0.0.0.0", 12150), ("0.0.0.0", 0), 0x0A, 0, 1001),  # the listener
    row(1, SERVER, CLIENT, 0x01, 0, 1002),  # the daemon's end (root)
    row(2, CLIENT, SERVER, 0x01, 1000, 1003),  # the client's end (uid 1000)
    row(3, ("127.0.0.1", 40000), SERVER, 0x06, 0, 0),  # TIME_WAIT: uid 0, no inode
    row(4, ("127.0.0.1", 40001), SERVER, 0x04, 0, 0),  # FIN_WAIT1, orphaned
])


def test_rows_of_proc_net_tcp():
    """Addresses and ports decoded, the owner read, an orphaned socket owned by nobody."""
    rows = list(parse_proc_net_tcp(TCP))
    assert len(rows) == 5
    listener, server, client, time_wait, orphan = rows
    assert client.local == (ipaddress.ip_address("127.0.0.1"), 54321)
    assert client.remote == (ipaddress.ip_address("127.0.0.1"), 12150)
    assert (client.uid, client.established) == (1000, True)
    assert (server.uid, listener.established) == (0, False)
    assert time_wait.uid is None and orphan.uid is None


@pytest.mark.skipif(sys.byteorder != "little", reason="a literal x86/arm64 sample")
def test_a_literal_little_endian_sample():
    """Exactly as a little-endian kernel prints 127.0.0.1:54321 -> 127.0.0.1:12150."""
    text = HEADER + (
        "   3: 0100007F:D431 0100007F:2F76 01 00000000:00000000 00:00000000 00000000  "
        "1000        0 77123 1 0000000000000000 20 4 30 10 -1\n"
    )
    [client] = parse_proc_net_tcp(text)
    assert client.local == (ipaddress.ip_address("127.0.0.1"), 54321)
    assert client.remote == (ipaddress.ip_address("127.0.0.1"), 12150)
    assert client.uid == 1000


def test_the_client_end_is_found_never_the_daemons():
    """Both ends are in the table; the one whose local address is the peer is the client's."""
    rows = list(parse_proc_net_tcp(TCP))
    assert matching_owner(rows, CLIENT, SERVER) == 1000
    # Asked the other way round it would be the daemon's own end: never asked so, but
    # the two ports differ, so a confusion cannot name root for the client.
    assert matching_owner(rows, SERVER, CLIENT) == 0


def test_a_closed_clients_orphaned_socket_is_nobodys():
    """TIME_WAIT and orphaned sockets are listed with uid 0: they must not read as root."""
    rows = list(parse_proc_net_tcp(TCP))
    assert matching_owner(rows, ("127.0.0.1", 40000), SERVER) is None
    assert matching_owner(rows, ("127.0.0.1", 40001), SERVER) is None


def test_unknown_ambiguous_and_self_connections_have_no_owner():
    """No row, two owners for one connection, or a socket connected to itself: None."""
    rows = list(parse_proc_net_tcp(TCP))
    assert matching_owner(rows, ("127.0.0.1", 1), SERVER) is None
    doubled = rows + list(parse_proc_net_tcp(HEADER + row(9, CLIENT, SERVER, 0x01, 1001, 1009)))
    assert matching_owner(doubled, CLIENT, SERVER) is None
    assert matching_owner(rows, SERVER, SERVER) is None
    assert matching_owner(rows, ("unix", 0), SERVER) is None


def test_ipv6_and_ipv4_mapped_peers():
    """tcp6 rows of ::1 are found; a dual-stack daemon sees an IPv4 client as
    ::ffff:127.0.0.1, which matches the client's IPv4 row."""
    tcp6 = HEADER6 + row(0, ("::1", 50000), ("::1", 12150), 0x01, 1002, 2001) + row(
        1, ("::ffff:127.0.0.1", 12150), ("::ffff:127.0.0.1", 54321), 0x01, 0, 2002
    )
    rows = list(parse_proc_net_tcp(tcp6)) + list(parse_proc_net_tcp(TCP))
    assert matching_owner(rows, ("::1", 50000), ("::1", 12150)) == 1002
    assert matching_owner(rows, ("::ffff:127.0.0.1", 54321), ("::ffff:127.0.0.1", 12150)) == 1000


def test_malformed_rows_are_skipped():
    """A damaged line does not stop the others from being read."""
    text = TCP + "  99: nonsense\n 100: XYZ:1 0100007F:2F76 01 0 0 0 5 0 6\n"
    assert len(list(parse_proc_net_tcp(text))) == 5


def test_socket_owner_reads_both_tables(tmp_path):
    """On Linux both files are read; a missing tcp6 (no IPv6) is no error."""
    (tmp_path / "tcp").write_text(TCP)
    tables = (str(tmp_path / "tcp"), str(tmp_path / "tcp6"))
    assert socket_owner(CLIENT, SERVER, platform="linux", proc_tables=tables) == 1000
    assert socket_owner(CLIENT, SERVER, platform="sunos5", proc_tables=tables) is None


SOCKSTAT = """\
USER     COMMAND    PID   FD  PROTO  LOCAL ADDRESS         FOREIGN ADDRESS
root     python3.11 812   12  tcp4   127.0.0.1:12150       127.0.0.1:54321
root     python3.11 812   13  tcp6   ::1:12150             ::1:50000
root     sysadm cl  901   5   tcp4   127.0.0.1:54322       127.0.0.1:12150
1001     sysadm-cli 900   7   tcp4   127.0.0.1:54321       127.0.0.1:12150
1002     sysadm-cli 902   7   tcp6   ::1:50000             ::1:12150
?        ?          ?     ?   tcp4   127.0.0.1:40000       127.0.0.1:12150
"""


def test_rows_of_sockstat():
    """Names and numeric uids, IPv6 addresses with their port after the last colon, a
    command name with a blank, and no row for sockets no process holds."""
    rows = list(parse_sockstat(SOCKSTAT))
    assert len(rows) == 5
    assert matching_owner(rows, ("127.0.0.1", 54321), ("127.0.0.1", 12150)) == 1001
    assert matching_owner(rows, ("::1", 50000), ("::1", 12150)) == 1002
    assert matching_owner(rows, ("127.0.0.1", 54322), ("127.0.0.1", 12150)) == 0
    assert matching_owner(rows, ("127.0.0.1", 40000), ("127.0.0.1", 12150)) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/net/tcp")
def test_a_real_loopback_connection_is_owned_by_this_process_user():
    """The kernel's own table names the uid of a socket this test opens."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    try:
        assert socket_owner(client.getsockname(), server.getsockname()) == os.geteuid()
    finally:
        for s in (accepted, client, server):
            s.close()
