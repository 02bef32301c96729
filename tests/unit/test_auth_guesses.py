"""The Authenticator against concurrent guesses, on a task.Clock with fake backends:
slots reserved before the check, the daemon-wide check limiter, tokens (rpc/auth_token and
REST Bearer) counted like passwords, and the 400s that are no guess."""

import base64
from types import SimpleNamespace

import pytest
from twisted.internet import defer, task
from zope.interface import implementer

from sysadmd.auth.bans import BanList
from sysadmd.auth.handlers import BANNED, BUSY, FAILED, Authenticator
from sysadmd.auth.limits import CheckLimiter
from sysadmd.auth.tokens import TokenStore
from sysadmd.interfaces import IPasswordBackend
from sysadmd.protocol.envelope import RequestError

HOST = "192.0.2.10"
DELAY = 1.0


@implementer(IPasswordBackend)
class SlowBackend:
    """Accepts password 'right'; each check finishes when the test fires it."""

    name = "slow"

    def __init__(self):
        self.pending = []
        self.asked = []

    def authenticate(self, username, password):
        self.asked.append(username)
        d = defer.Deferred()
        self.pending.append((d, "full" if password == "right" else None))
        return d

    def finish_all(self):
        while self.pending:
            d, result = self.pending.pop(0)
            d.callback(result)

    def role_of(self, username):
        return defer.succeed("full" if username == "alice" else None)


class FakeSession:
    """What the Authenticator uses of a session."""

    def __init__(self, peer=HOST):
        self.peer_host = peer
        self.grant = None
        self.key_fingerprint = None
        self.challenge = None
        self.challenge_binding = None
        self.socket_addresses = None

    def sign_in(self, grant, key_fingerprint=None):
        self.grant = grant
        self.key_fingerprint = key_fingerprint


class Outcome:
    """Where a call of the Authenticator ended: ``code`` (None while pending, 200 for a
    result, else the RequestError's code) and ``result``, of ``method(*args)``."""

    def __init__(self, method, *args):
        self.code = None
        self.result = None
        defer.maybeDeferred(method, *args).addCallbacks(self._ok, self._error)

    def _ok(self, result):
        self.code, self.result = 200, result

    def _error(self, failure):
        failure.trap(RequestError)
        self.code, self.result = failure.value.code, failure.value.details


def codes(outcomes):
    """{code: how many} of ``outcomes``."""
    counted = {}
    for outcome in outcomes:
        counted[outcome.code] = counted.get(outcome.code, 0) + 1
    return counted


class Daemon:
    """An Authenticator wired as the daemon wires it, on a task.Clock."""

    def __init__(self, max_failures=5, ban_loopback=False, concurrent=2, queued=32, keys=None,
                 find_signer=None):
        self.clock = task.Clock()
        self.tokens = TokenStore(self.clock, 900)
        self.bans = BanList(self.clock, max_failures, 600, 3600, ban_loopback)
        self.backend = SlowBackend()
        self.limiter = CheckLimiter(concurrent, queued)
        self.auth = Authenticator(
            self.clock, self.tokens, self.bans, [self.backend], keys, find_signer, DELAY,
            self.limiter,
        )

    def guess(self, password="wrong", peer=HOST, user="admin"):
        return Outcome(self.auth.auth, FakeSession(peer), {"username": user, "password": password})

    def settle(self):
        """Let every check run to its end and the failure delays pass."""
        for _ in range(100):
            self.backend.finish_all()
            self.clock.advance(DELAY)
            if not self.backend.pending and not self.clock.getDelayedCalls():
                return
        raise AssertionError("checks did not settle")


def test_twenty_guesses_at_once_check_only_max_failures():
    """The 6th guess in flight gets 429 without a check; the 5 checked get 401."""
    daemon = Daemon(max_failures=5)
    outcomes = [daemon.guess() for _ in range(20)]
    assert codes(outcomes) == {None: 5, 429: 15}
    assert all(o.result == BANNED for o in outcomes if o.code == 429)
    daemon.settle()
    assert codes(outcomes) == {401: 5, 429: 15}
    assert all(o.result == FAILED for o in outcomes if o.code == 401)
    assert len(daemon.backend.asked) == 5
    assert daemon.bans.is_banned(HOST)
    assert daemon.auth.failures == 5


def test_right_password_is_refused_once_banned():
    """After the ban the right password is not even checked."""
    daemon = Daemon(max_failures=5)
    [daemon.guess() for _ in range(5)]
    daemon.settle()
    asked = len(daemon.backend.asked)
    right = daemon.guess("right")
    assert (right.code, right.result) == (429, BANNED)
    assert len(daemon.backend.asked) == asked


def test_right_password_is_refused_while_every_slot_is_reserved():
    """Five guesses in flight hold every slot: the right password is refused too."""
    daemon = Daemon(max_failures=5)
    wrong = [daemon.guess() for _ in range(5)]
    right = daemon.guess("right")
    assert right.code == 429
    daemon.settle()
    assert codes(wrong) == {401: 5}


def test_a_success_frees_the_slots_its_failures_held():
    """A right password among wrong ones succeeds and clears the count."""
    daemon = Daemon(max_failures=3)
    first = daemon.guess()
    right = daemon.guess("right")
    daemon.settle()
    assert (first.code, right.code) == (401, 200)
    assert daemon.bans.attempts_in_flight == 0
    outcomes = [daemon.guess() for _ in range(3)]
    assert None in codes(outcomes)  # three slots again, not two
    daemon.settle()


def test_checks_run_at_most_max_concurrent_at_once_daemon_wide():
    """Guesses from many addresses are checked two at a time, in arrival order."""
    daemon = Daemon(concurrent=2, queued=10)
    peers = [f"192.0.2.{n}" for n in range(1, 7)]
    outcomes = [daemon.guess(peer=peer, user=f"user{n}") for n, peer in enumerate(peers)]
    assert daemon.backend.asked == ["user0", "user1"]
    assert daemon.limiter.queued == 4
    d, result = daemon.backend.pending.pop(0)
    d.callback(result)
    assert daemon.backend.asked == ["user0", "user1", "user2"]
    daemon.settle()
    assert daemon.backend.asked == [f"user{n}" for n in range(6)]
    assert codes(outcomes) == {401: 6}


def test_a_full_queue_answers_429_and_gives_the_slot_back():
    """Beyond the queue a guess is refused at once, uncounted: it was never checked."""
    daemon = Daemon(max_failures=5, concurrent=1, queued=1)
    first = daemon.guess(peer="192.0.2.1")
    second = daemon.guess(peer="192.0.2.2")
    third = daemon.guess(peer="192.0.2.3")
    assert (first.code, second.code) == (None, None)
    assert (third.code, third.result) == (429, BUSY)
    assert daemon.bans.attempts_in_flight == 2
    daemon.settle()
    assert daemon.bans.reserve("192.0.2.3") is not None
    assert len(daemon.backend.asked) == 2


def test_the_limiter_applies_to_loopback_too():
    """Loopback is never banned by default, but its checks are bounded like anyone's."""
    daemon = Daemon(max_failures=1, concurrent=2, queued=3)
    outcomes = [daemon.guess(peer="127.0.0.1") for _ in range(10)]
    assert codes(outcomes) == {None: 5, 429: 5}
    assert all(o.result == BUSY for o in outcomes if o.code == 429)
    daemon.settle()
    assert codes(outcomes) == {401: 5, 429: 5}
    assert not daemon.bans.is_banned("127.0.0.1")
    right = daemon.guess("right", peer="127.0.0.1")
    daemon.settle()
    assert right.code == 200


def test_with_ban_loopback_loopback_guesses_take_slots():
    """ban_loopback = yes (the security tests): loopback is counted like any address."""
    daemon = Daemon(max_failures=5, ban_loopback=True)
    outcomes = [daemon.guess(peer="127.0.0.1") for _ in range(20)]
    daemon.settle()
    assert codes(outcomes) == {401: 5, 429: 15}
    assert daemon.guess("right", peer="127.0.0.1").code == 429


def test_ipv6_guesses_from_one_network_share_the_slots():
    """Addresses of one /64 are one client for the count."""
    daemon = Daemon(max_failures=5)
    outcomes = [daemon.guess(peer=f"2001:db8:0:1::{n:x}") for n in range(1, 21)]
    daemon.settle()
    assert codes(outcomes) == {401: 5, 429: 15}
    assert daemon.guess("right", peer="2001:db8:0:1::ffff").code == 429
    other = daemon.guess("right", peer="2001:db8:0:2::1")
    daemon.settle()
    assert other.code == 200


def test_a_failure_answers_no_sooner_than_the_delay_after_the_request():
    """The delay counts from the request, so waiting in the queue is not added to it."""
    daemon = Daemon(concurrent=1)
    first = daemon.guess(peer="192.0.2.1")
    second = daemon.guess(peer="192.0.2.2")
    daemon.clock.advance(0.4)
    daemon.backend.pending.pop(0)[0].callback(None)
    daemon.clock.advance(0.5)
    assert first.code is None
    daemon.clock.advance(0.1)
    assert first.code == 401
    daemon.backend.pending.pop(0)[0].callback(None)  # 1.0 s after the second request
    assert second.code == 401


@pytest.mark.parametrize(
    "args", [None, [], "x", {"username": "admin"}, {"username": 1, "password": "p"}]
)
def test_a_malformed_login_is_no_guess(args):
    """400, and its slot is given back: malformed requests never ban."""
    daemon = Daemon(max_failures=1)
    for _ in range(5):
        outcome = Outcome(daemon.auth.auth, FakeSession(), args)
        assert outcome.code == 400
    assert daemon.bans.attempts_in_flight == 0
    assert not daemon.bans.is_banned(HOST)
    assert daemon.backend.asked == []


def test_an_empty_or_oversized_password_is_a_wrong_guess_without_a_check():
    """Counted and delayed like any wrong password, but no backend is asked."""
    daemon = Daemon(max_failures=2)
    outcomes = [daemon.guess(""), daemon.guess("x" * 5000)]
    daemon.settle()
    assert codes(outcomes) == {401: 2}
    assert daemon.backend.asked == []
    assert daemon.bans.is_banned(HOST)


def test_a_backend_error_is_a_failed_login():
    """A broken backend answers None: counted, 401."""

    @implementer(IPasswordBackend)
    class Broken:
        name = "broken"

        def authenticate(self, username, password):
            return defer.fail(RuntimeError("boom"))

        def role_of(self, username):
            return defer.succeed(None)

    daemon = Daemon(max_failures=1)
    daemon.auth._backends = [Broken()]
    outcome = daemon.guess("right")
    daemon.clock.advance(DELAY)
    assert outcome.code == 401
    assert daemon.bans.is_banned(HOST)
    assert daemon.limiter.running == 0


# Tokens: rpc/auth_token and REST Bearer share check_token.


def test_wrong_tokens_count_toward_the_ban_and_wait_the_failure_delay():
    """check_token: a wrong token is a failed login; the 6th is refused with 429."""
    daemon = Daemon(max_failures=5)
    outcomes = [Outcome(daemon.auth.check_token, FakeSession(), "0" * 64) for _ in range(8)]
    assert codes(outcomes) == {None: 5, 429: 3}
    daemon.clock.advance(DELAY - 0.01)
    assert codes(outcomes) == {None: 5, 429: 3}
    daemon.clock.advance(0.01)
    assert codes(outcomes) == {401: 5, 429: 3}
    assert all(o.result == FAILED for o in outcomes if o.code == 401)
    assert daemon.bans.is_banned(HOST)


def test_token_and_password_failures_add_up():
    """One count for every kind of guess."""
    daemon = Daemon(max_failures=3)
    Outcome(daemon.auth.check_token, FakeSession(), "nope")
    daemon.guess()
    Outcome(daemon.auth.auth_token, FakeSession(), {"token": "nope"})
    daemon.settle()
    assert daemon.bans.is_banned(HOST)
    assert daemon.guess("right").code == 429


def test_a_live_token_gives_its_grant_without_clearing_the_count():
    """A token proves an earlier login, not a password: the failures stay counted, so
    a token cannot be used to reset the count between guesses."""
    daemon = Daemon(max_failures=3)
    grant = daemon.tokens.issue("viewer", "limited")
    daemon.guess()
    daemon.guess()
    daemon.settle()
    outcome = Outcome(daemon.auth.check_token, FakeSession(), grant.token)
    assert (outcome.code, outcome.result) == (200, grant)
    assert daemon.bans.attempts_in_flight == 0
    last = daemon.guess()
    daemon.settle()
    assert last.code == 401
    assert daemon.bans.is_banned(HOST)


def test_a_live_token_from_a_banned_address_is_refused():
    """During a ban tokens get 429 like passwords (REST Bearer included)."""
    daemon = Daemon(max_failures=1)
    grant = daemon.tokens.issue("admin", "full")
    daemon.guess()
    daemon.settle()
    outcome = Outcome(daemon.auth.check_token, FakeSession(), grant.token)
    assert outcome.code == 429


def test_auth_token_signs_the_session_in():
    """rpc/auth_token answers [token, lifetime] and attaches the grant."""
    daemon = Daemon()
    grant = daemon.tokens.issue("admin", "full")
    session = FakeSession()
    outcome = Outcome(daemon.auth.auth_token, session, {"token": grant.token})
    assert outcome.result == [grant.token, 900]
    assert session.grant is grant


@pytest.mark.parametrize("args", [None, {}, {"token": 5}, ["x"]])
def test_a_malformed_auth_token_is_no_guess(args):
    """400, slot released."""
    daemon = Daemon(max_failures=1)
    for _ in range(3):
        assert Outcome(daemon.auth.auth_token, FakeSession(), args).code == 400
    assert daemon.bans.attempts_in_flight == 0
    assert not daemon.bans.is_banned(HOST)


# rpc/auth_ssl stage 2


class Binding:
    """A relayed client's challenge binding."""

    def text(self, test_string):
        return f"bound:{test_string}"

    def describe(self):
        return {"server_fingerprint": "SHA256:server"}


def _signer_daemon(max_failures=5):
    signer = SimpleNamespace(user="alice", fingerprint="SHA256:alice")
    signed = []

    def find_signer(keys, text, signature):
        signed.append(text)
        return signer if signature == b"good" else None

    keys = SimpleNamespace(load=lambda: ["key"])
    return Daemon(max_failures=max_failures, keys=keys, find_signer=find_signer), signed


def _answer(daemon, session, signature):
    Outcome(daemon.auth.auth_ssl, session, {})
    return Outcome(
        daemon.auth.auth_ssl, session, {"encrypted_string": base64.b64encode(signature).decode()}
    )


def test_a_signed_challenge_signs_in_and_clears_the_count():
    """A good signature succeeds; the binding's text is what was signed."""
    daemon, signed = _signer_daemon(max_failures=3)
    daemon.guess()
    daemon.settle()
    session = FakeSession()
    session.challenge_binding = Binding()
    stage1 = Outcome(daemon.auth.auth_ssl, session, {})
    assert stage1.result["server_fingerprint"] == "SHA256:server"
    test_string = stage1.result["test_string"]
    outcome = Outcome(daemon.auth.auth_ssl, session, {"encrypted_string": "Z29vZA=="})
    assert outcome.code == 200
    assert signed == [f"bound:{test_string}"]
    assert session.key_fingerprint == "SHA256:alice"
    assert daemon.bans.attempts_in_flight == 0
    outcomes = [daemon.guess() for _ in range(3)]
    assert codes(outcomes) == {None: 3}  # the earlier failure was forgotten
    daemon.settle()


def test_wrong_signatures_count_and_a_banned_address_gets_no_challenge():
    """Stage 2 failures ban; then stage 1 and 2 both get 429."""
    daemon, _ = _signer_daemon(max_failures=2)
    outcomes = [_answer(daemon, FakeSession(), b"bad") for _ in range(2)]
    daemon.settle()
    assert codes(outcomes) == {401: 2}
    assert Outcome(daemon.auth.auth_ssl, FakeSession(), {}).code == 429
    assert _answer(daemon, FakeSession(), b"good").code == 429


def test_a_malformed_stage_two_is_no_guess_and_keeps_the_challenge():
    """400, slot released, and the challenge is still usable."""
    daemon, _ = _signer_daemon(max_failures=1)
    session = FakeSession()
    Outcome(daemon.auth.auth_ssl, session, {})
    for args in ({"encrypted_string": 5}, {"other": "x"}, ["x"]):
        assert Outcome(daemon.auth.auth_ssl, session, args).code == 400
    assert daemon.bans.attempts_in_flight == 0
    assert Outcome(daemon.auth.auth_ssl, session, {"encrypted_string": "Z29vZA=="}).code == 200
