"""Local sign-in (``[auth] local_login``): ``rpc/auth`` with an empty password on a
loopback TCP connection signs in the owner of the client's socket, and is otherwise the
ordinary 401 (a slot taken, the failure delay, the failure counted)."""

import grp
import pwd
from types import SimpleNamespace

from twisted.internet import defer, task
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

from sysadmd.auth.handlers import BUSY, FAILED
from sysadmd.auth.local import LocalLogin, loopback_ends, session_ends
from sysadmd.bridge.clients import RelayedClients
from sysadmd.bridge.relayed import RelayedClient
from sysadmd.channel.channel import ChannelParts
from sysadmd.channel.router import Router
from sysadmd.channel.settings import ConnectionSettings
from sysadmd.web.rest import RestTransport
from tests.unit.test_auth_guesses import DELAY, Daemon, FakeSession, Outcome
from tests.unit.test_protocol import Daemon as ProtocolDaemon
from tests.unit.wsfake import Peer

SERVER = IPv4Address("TCP", "127.0.0.1", 12150)
CLIENT = IPv4Address("TCP", "127.0.0.1", 54321)
ENDS = (("127.0.0.1", 54321), ("127.0.0.1", 12150))


def test_only_loopback_tcp_connections_have_ends():
    """Both ends loopback TCP (IPv4, IPv6, IPv4-mapped); anything else is None."""
    assert loopback_ends((SERVER, CLIENT)) == ENDS
    v6 = (IPv6Address("TCP", "::1", 12150), IPv6Address("TCP", "::1", 50000))
    assert loopback_ends(v6) == (("::1", 50000), ("::1", 12150))
    mapped = (IPv6Address("TCP", "::ffff:127.0.0.1", 12150),
              IPv6Address("TCP", "::ffff:127.0.0.1", 5))
    assert loopback_ends(mapped) is not None
    assert loopback_ends((SERVER, IPv4Address("TCP", "192.0.2.7", 54321))) is None
    assert loopback_ends((IPv4Address("TCP", "192.0.2.1", 12150), CLIENT)) is None
    assert loopback_ends((SERVER, IPv4Address("UDP", "127.0.0.1", 5))) is None
    assert loopback_ends((UNIXAddress(b"/run/s"), UNIXAddress(None))) is None
    assert loopback_ends(None) is None


def test_sessions_without_their_own_socket_have_no_ends():
    """Relayed and REST sessions carry no socket addresses."""
    assert session_ends(SimpleNamespace(socket_addresses=None)) is None
    assert session_ends(SimpleNamespace(socket_addresses=(SERVER, CLIENT))) == ENDS


def _account_in_no_group():
    """A real account and a group it is in (its primary group)."""
    entry = pwd.getpwnam("nobody")
    return entry, grp.getgrgid(entry.pw_gid).gr_name


def test_the_socket_owner_with_access_is_signed_in():
    """root owning the socket signs in as root (full); another uid's socket does not."""
    rule = LocalLogin(None, ["wheel"], ["operator"], owner_of=lambda client, server: 0)
    assert rule.decide(ENDS, "root") == "full"
    other = LocalLogin(None, ["wheel"], ["operator"], owner_of=lambda client, server: 12345)
    assert other.decide(ENDS, "root") is None


def test_the_same_group_rules_as_pam():
    """An owner in a limited group gets limited access, in no group nothing."""
    entry, group = _account_in_no_group()

    def owner(client, server):
        return entry.pw_uid

    assert LocalLogin(None, [], [group], owner_of=owner).decide(ENDS, "nobody") == "limited"
    assert LocalLogin(None, [group], [], owner_of=owner).decide(ENDS, "nobody") == "full"
    assert LocalLogin(None, [], [], owner_of=owner).decide(ENDS, "nobody") is None


def test_unknown_names_and_unknown_owners_are_refused():
    """No such account, a name with a NUL, or no owner found: None."""
    asked = []

    def owner(client, server):
        asked.append((client, server))
        return None

    rule = LocalLogin(None, ["wheel"], ["operator"], owner_of=owner)
    assert rule.decide(ENDS, "root") is None
    assert asked == [ENDS]
    assert rule.decide(ENDS, "no-such-user-xyz") is None
    assert rule.decide(ENDS, "ro\0ot") is None


class InlineReactor:
    """Runs the thread-pool work at once (deferToThreadPool's callbacks included)."""

    def callFromThread(self, function, *args, **kwargs):
        function(*args, **kwargs)


class InlinePool:
    def callInThreadWithCallback(self, on_result, function, *args, **kwargs):
        try:
            on_result(True, function(*args, **kwargs))
        except Exception as e:  # pragma: no cover - not reached by these tests
            on_result(False, e)


def test_the_lookup_runs_in_the_given_pool():
    """check() hands decide() to the pool (the password checks' threads)."""
    rule = LocalLogin(InlineReactor(), ["wheel"], [], threadpool=InlinePool(),
                      owner_of=lambda client, server: 0)
    results = []
    rule.check(ENDS, "root").addCallback(results.append)
    assert results == ["full"]


class FakeLocal:
    """A LocalLogin whose answers the test gives."""

    def __init__(self, access="full"):
        self.access = access
        self.asked = []
        self.pending = []

    def check(self, ends, username):
        self.asked.append((ends, username))
        return defer.succeed(self.access)


def local_daemon(local, **kwargs):
    daemon = Daemon(**kwargs)
    daemon.auth._local = local
    return daemon


def loopback_session(peer="127.0.0.1"):
    session = FakeSession(peer)
    session.socket_addresses = (SERVER, CLIENT)
    return session


def test_an_empty_password_on_loopback_signs_in_by_the_socket_owner():
    """The rule is asked with the connection's ends; the grant names the user."""
    local = FakeLocal("limited")
    daemon = local_daemon(local)
    session = loopback_session()
    outcome = Outcome(daemon.auth.auth, session, {"username": "alice", "password": ""})
    assert outcome.code == 200
    assert local.asked == [(ENDS, "alice")]
    assert (session.grant.user, session.grant.access) == ("alice", "limited")
    assert daemon.backend.asked == []


def test_a_refused_local_sign_in_is_an_ordinary_failure():
    """401 no sooner than the failure delay, the failure counted like a wrong password."""
    daemon = local_daemon(FakeLocal(None), max_failures=2, ban_loopback=True)
    outcome = Outcome(daemon.auth.auth, loopback_session(), {"username": "alice", "password": ""})
    assert outcome.code is None
    daemon.clock.advance(DELAY)
    assert (outcome.code, outcome.result) == (401, FAILED)
    assert daemon.auth.failures == 1
    Outcome(daemon.auth.auth, loopback_session(), {"username": "alice", "password": ""})
    daemon.clock.advance(DELAY)
    assert daemon.bans.is_banned("127.0.0.1")


def test_no_local_sign_in_when_off_or_without_a_socket():
    """local_login = no, a session without socket addresses (relayed, REST), or a
    non-loopback peer: an empty password is the ordinary 401, no lookup."""
    for local, session in (
        (None, loopback_session()),
        (FakeLocal(), FakeSession("127.0.0.1")),
        (FakeLocal(), FakeSession("192.0.2.7")),
    ):
        daemon = local_daemon(local)
        outcome = Outcome(daemon.auth.auth, session, {"username": "alice", "password": ""})
        daemon.clock.advance(DELAY)
        assert (outcome.code, outcome.result) == (401, FAILED)
        assert session.grant is None
        if local is not None:
            assert local.asked == []


def test_a_password_on_loopback_is_checked_as_ever():
    """Only the empty password is a local sign-in."""
    local = FakeLocal()
    daemon = local_daemon(local)
    outcome = Outcome(daemon.auth.auth, loopback_session(), {"username": "admin", "password": "right"})
    daemon.settle()
    assert outcome.code == 200
    assert local.asked == []
    assert daemon.backend.asked == ["admin"]


def test_local_lookups_are_bounded_by_the_check_limiter():
    """Loopback is never banned by default, so the lookups share the daemon-wide bound."""

    class Pending(FakeLocal):
        def check(self, ends, username):
            self.asked.append((ends, username))
            d = defer.Deferred()
            self.pending.append(d)
            return d

    local = Pending()
    daemon = local_daemon(local, max_failures=100, concurrent=1, queued=1)
    outcomes = [
        Outcome(daemon.auth.auth, loopback_session(), {"username": "alice", "password": ""})
        for _ in range(3)
    ]
    assert [o.code for o in outcomes] == [None, None, 429]
    assert outcomes[2].result == BUSY
    while local.pending:
        local.pending.pop(0).callback(None)
    daemon.clock.advance(DELAY)
    assert [o.code for o in outcomes] == [401, 401, 429]


def test_a_failing_lookup_is_a_401_not_an_internal_error():
    """An unreadable socket table refuses the sign-in (and is logged)."""

    class Broken(FakeLocal):
        def check(self, ends, username):
            return defer.fail(OSError("no /proc"))

    daemon = local_daemon(Broken())
    outcome = Outcome(daemon.auth.auth, loopback_session(), {"username": "alice", "password": ""})
    daemon.clock.advance(DELAY)
    assert (outcome.code, outcome.result) == (401, FAILED)


def test_only_a_direct_connections_session_carries_its_socket_addresses():
    """The daemon's WebSocket protocol gives the session (getHost(), getPeer()); REST
    requests and relayed clients have none, so they never sign in locally."""
    peer = Peer(ProtocolDaemon().factory, host="127.0.0.1")
    local, remote = peer.protocol.channel.session.socket_addresses
    assert (remote.host, remote.port) == ("127.0.0.1", 40000)
    assert local == peer.transport.getHost()
    peer.protocol.channel.close()
    assert RestTransport("127.0.0.1").socket_addresses() is None
    parts = ChannelParts(ConnectionSettings(), Router(), None, None, task.Clock())
    relay_daemon = SimpleNamespace(parts=parts)
    clients = RelayedClients("nick", relay_daemon, lambda p: None, lambda p: p)
    relayed = RelayedClient(clients, "c1", relay_daemon, lambda p: None, lambda p: p)
    assert relayed.socket_addresses() is None
    assert session_ends(relayed.session) is None
    relayed.close()
