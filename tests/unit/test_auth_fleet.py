"""``rpc/auth_fleet`` in memory: the Authenticator on a task.Clock with real key files
(fleet keys and the ordinary keys), real signatures and a fake backend that knows alice
(full) and bob (limited)."""

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from twisted.internet import defer, task
from twisted.logger import formatEvent
from zope.interface import implementer

from sysadmd.auth.bans import BanList
from sysadmd.auth.fleet import RELAYED
from sysadmd.auth.handlers import BANNED, FAILED, Authenticator
from sysadmd.auth.keys_file import KeysFile
from sysadmd.auth.signatures import find_signer, sign_challenge
from sysadmd.auth.tokens import TokenStore
from sysadmd.interfaces import IPasswordBackend
from sysadmd.protocol import fleetauth, keysign
from sysadmd.protocol.keydigests import fingerprint
from tests.unit.test_auth_guesses import HOST, FakeSession, Outcome

DELAY = 1.0
ROLES = {"alice": "full", "bob": "limited"}


@implementer(IPasswordBackend)
class RolesBackend:
    """Knows the users of ROLES; no password is ever right (fleet sign-ins ask no password)."""

    name = "roles"

    def __init__(self):
        self.asked = []

    def authenticate(self, username, password):
        return defer.succeed(None)

    def role_of(self, username):
        self.asked.append(username)
        return defer.succeed(ROLES.get(username))


def openssh(key):
    """The OpenSSH public key line of a private key."""
    return key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )


class Daemon:
    """An Authenticator with a fleet key (label ``fleet-m1``) and, in the ordinary keys
    file, another key of alice's."""

    def __init__(self, tmp_path, max_failures=5):
        self.clock = task.Clock()
        self.tokens = TokenStore(self.clock, 900)
        self.bans = BanList(self.clock, max_failures, 600, 3600, False)
        self.backend = RolesBackend()
        self.fleet_key = ed25519.Ed25519PrivateKey.generate()
        self.user_key = ed25519.Ed25519PrivateKey.generate()
        self.fleet_keys = KeysFile(str(tmp_path / "fleet_keys"))
        self.fleet_keys.add("fleet-m1", openssh(self.fleet_key))
        self.keys = KeysFile(str(tmp_path / "keys"))
        self.keys.add("alice", openssh(self.user_key))
        self.auth = Authenticator(
            self.clock, self.tokens, self.bans, [self.backend], self.keys, find_signer, DELAY,
            fleet_keys=self.fleet_keys,
        )

    def stage1(self, session):
        reply = self.auth.auth_fleet(session, {})
        assert set(reply) == {"test_string"}
        return reply["test_string"]

    def stage2(self, session, args):
        outcome = Outcome(self.auth.auth_fleet, session, args)
        self.clock.advance(DELAY)  # a failure answers after the failure delay
        return outcome

    def sign_in(self, user=None, access=None, key=None, session=None, signed_user=None,
                signed_access=None):
        """Both stages; the signature may cover another user or access than sent."""
        session = session or FakeSession()
        test_string = self.stage1(session)
        signed_access = signed_access or access or "limited"
        signature = fleetauth.sign(
            key or self.fleet_key, test_string,
            user if signed_user is None else signed_user, signed_access,
        )
        args = {"signature": signature}
        if user is not None:
            args["user"] = user
        if access is not None:
            args["access"] = access
        return session, self.stage2(session, args)


def granted(outcome, session, user, access):
    """Assert a successful sign-in as ``user`` with ``access``."""
    assert outcome.code == 200, outcome.result
    token, ttl = outcome.result
    assert ttl == 900 and len(token) == 64
    assert (session.grant.user, session.grant.access, session.grant.token) == (user, access, token)


def refused(outcome):
    """Assert the one 401 every failed guess gets."""
    assert (outcome.code, outcome.result) == (401, FAILED)


@pytest.fixture
def daemon(tmp_path):
    return Daemon(tmp_path)


def test_the_signed_text_is_scheme_test_string_user_access():
    """The exact text both ends sign and check."""
    assert fleetauth.signed_text("T", "alice", "full") == "sysadm-fleet-v1\nT\nalice\nfull"
    assert fleetauth.signed_text("T", None, "limited") == "sysadm-fleet-v1\nT\n\nlimited"


@pytest.mark.parametrize("make", [
    ed25519.Ed25519PrivateKey.generate, lambda: ec.generate_private_key(ec.SECP384R1()),
])
def test_sign_is_keysigns_signature_of_the_utf8_text(make):
    """fleetauth.sign is protocol.keysign over the UTF-8 text, in base64."""
    key = make()
    signature = base64.b64decode(fleetauth.sign(key, "T", "zoë", "full"))
    text = "sysadm-fleet-v1\nT\nzoë\nfull".encode("utf-8")
    assert keysign.verify(key.public_key(), text, signature)


@pytest.mark.parametrize("user,asked,access", [
    ("alice", None, "limited"), ("alice", "limited", "limited"), ("alice", "full", "full"),
    ("bob", "limited", "limited"),
])
def test_signs_in_as_the_local_user_with_the_access_asked(daemon, user, asked, access):
    """A fleet key acts as a user the backends know, with the access asked (limited by
    default)."""
    session, outcome = daemon.sign_in(user, asked)
    granted(outcome, session, user, access)
    assert session.key_fingerprint == fingerprint(daemon.fleet_key.public_key())
    assert daemon.backend.asked == [user]


def test_a_limited_user_never_gets_full_access_through_the_fleet(daemon):
    """full asked for bob, a limited user: limited granted."""
    session, outcome = daemon.sign_in("bob", "full")
    granted(outcome, session, "bob", "limited")


@pytest.mark.parametrize("asked", [None, "limited", "full"])
def test_without_a_user_the_session_is_the_keys_own_and_limited(daemon, asked):
    """No user: fleet:<label>, limited whatever was asked, and no backend is asked."""
    session, outcome = daemon.sign_in(None, asked)
    granted(outcome, session, "fleet:fleet-m1", "limited")
    assert daemon.backend.asked == []


def test_an_empty_user_is_no_user(daemon):
    """"user": "" is signed as the absent user is, and means the same."""
    session = FakeSession()
    test_string = daemon.stage1(session)
    signature = fleetauth.sign(daemon.fleet_key, test_string, None, "limited")
    outcome = daemon.stage2(session, {"signature": signature, "user": ""})
    granted(outcome, session, "fleet:fleet-m1", "limited")


def test_an_unknown_user_is_the_same_401(daemon):
    session, outcome = daemon.sign_in("mallory", "full")
    refused(outcome)
    assert session.grant is None
    assert daemon.auth.failures == 1


def test_a_key_of_the_ordinary_keys_file_is_refused(daemon):
    """alice's own key (keys_file) signs the fleet text correctly: still 401."""
    session, outcome = daemon.sign_in("alice", "full", key=daemon.user_key)
    refused(outcome)


def test_a_fleet_key_cannot_sign_in_with_auth_ssl(daemon):
    """The fleet key is not in keys_file: rpc/auth_ssl refuses it."""
    session = FakeSession()
    test_string = daemon.auth.auth_ssl(session, {})["test_string"]
    encrypted = base64.b64encode(sign_challenge(daemon.fleet_key, test_string)).decode()
    outcome = Outcome(daemon.auth.auth_ssl, session, {"encrypted_string": encrypted})
    daemon.clock.advance(DELAY)
    refused(outcome)


@pytest.mark.parametrize("signature", [
    base64.b64encode(b"\0" * 64).decode(), "", "not base64 at all!", "QUJD",
])
def test_a_wrong_signature_is_refused(daemon, signature):
    session = FakeSession()
    daemon.stage1(session)
    refused(daemon.stage2(session, {"signature": signature, "user": "alice"}))


def test_a_signature_of_the_bare_test_string_is_refused(daemon):
    """What rpc/auth_ssl signs (the test string alone) is not the fleet text."""
    session = FakeSession()
    test_string = daemon.stage1(session)
    encrypted = base64.b64encode(sign_challenge(daemon.fleet_key, test_string)).decode()
    refused(daemon.stage2(session, {"signature": encrypted}))


@pytest.mark.parametrize("sent,signed", [
    ({"user": "alice"}, {"signed_user": "bob"}),
    ({"user": "alice", "access": "full"}, {"signed_access": "limited"}),
    ({"user": None}, {"signed_user": "alice"}),
    ({"user": "alice"}, {"signed_user": ""}),
])
def test_changing_the_user_or_access_after_signing_is_refused(daemon, sent, signed):
    session, outcome = daemon.sign_in(sent.get("user"), sent.get("access"), **signed)
    refused(outcome)


def test_a_challenge_answers_once(daemon):
    """Replaying a good stage 2 (same session, same challenge) is refused."""
    session = FakeSession()
    test_string = daemon.stage1(session)
    args = {"signature": fleetauth.sign(daemon.fleet_key, test_string, "alice", "full"),
            "user": "alice", "access": "full"}
    granted(daemon.stage2(session, args), session, "alice", "full")
    refused(daemon.stage2(session, args))
    refused(daemon.stage2(FakeSession(), args))


def test_without_stage_one_or_after_30_seconds_it_is_refused(daemon):
    session = FakeSession()
    signature = fleetauth.sign(daemon.fleet_key, "guessed", "alice", "limited")
    refused(daemon.stage2(session, {"signature": signature, "user": "alice"}))
    test_string = daemon.stage1(session)
    daemon.clock.advance(30)
    signature = fleetauth.sign(daemon.fleet_key, test_string, "alice", "limited")
    refused(daemon.stage2(session, {"signature": signature, "user": "alice"}))


@pytest.mark.parametrize("args", [
    "x", ["signature"], {"user": "alice"}, {"signature": 5}, {"signature": "AA==", "user": 5},
    {"signature": "AA==", "user": "a\nb"}, {"signature": "AA==", "user": "a" * 257},
    {"signature": "AA==", "access": "root"}, {"signature": "AA==", "access": ["full"]},
])
def test_malformed_stage_two_is_400_and_no_guess(daemon, args):
    """400, no failure slot, no failure counted, and the challenge is still usable."""
    session = FakeSession()
    test_string = daemon.stage1(session)
    outcome = daemon.stage2(session, args)
    assert outcome.code == 400
    assert daemon.auth.failures == 0 and daemon.bans.attempts_in_flight == 0
    signature = fleetauth.sign(daemon.fleet_key, test_string, "alice", "limited")
    granted(daemon.stage2(session, {"signature": signature, "user": "alice"}), session, "alice", "limited")


def test_failures_count_and_ban_like_any_login(daemon):
    """Five failures ban the address: stage 1 and even a right stage 2 then get 429."""
    for _ in range(5):
        refused(daemon.sign_in("mallory")[1])
    assert daemon.bans.is_banned(HOST) and daemon.auth.failures == 5
    with pytest.raises(Exception) as raised:
        daemon.auth.auth_fleet(FakeSession(), {})
    assert (raised.value.code, raised.value.details) == (429, BANNED)
    session = FakeSession()
    session.challenge = ("t", daemon.clock.seconds() + 30)
    signature = fleetauth.sign(daemon.fleet_key, "t", "alice", "limited")
    outcome = daemon.stage2(session, {"signature": signature, "user": "alice"})
    assert (outcome.code, outcome.result) == (429, BANNED)


def test_a_success_clears_the_failure_count(daemon):
    for _ in range(4):
        refused(daemon.sign_in("mallory")[1])
    granted(*reversed(daemon.sign_in("alice")), "alice", "limited")
    for _ in range(4):
        refused(daemon.sign_in("mallory")[1])
    assert not daemon.bans.is_banned(HOST)


def test_a_failure_answers_no_sooner_than_the_failure_delay(daemon):
    session = FakeSession()
    daemon.stage1(session)
    outcome = Outcome(daemon.auth.auth_fleet, session, {"signature": "AAAA", "user": "alice"})
    assert outcome.code is None
    daemon.clock.advance(DELAY)
    refused(outcome)


def test_relayed_sessions_are_refused_without_a_guess(daemon):
    """Through a bridge (a bound challenge) it is 403 at either stage, uncounted."""
    session = FakeSession()
    session.challenge_binding = object()
    for args in ({}, {"signature": "AAAA"}):
        with pytest.raises(Exception) as raised:
            daemon.auth.auth_fleet(session, args)
        assert (raised.value.code, raised.value.details) == (403, RELAYED)
    assert session.challenge is None and daemon.bans.attempts_in_flight == 0


def test_without_a_fleet_keys_file_nothing_signs_in(tmp_path):
    daemon = Daemon(tmp_path)
    daemon.auth.fleet.keys = None
    refused(daemon.sign_in("alice")[1])
    daemon.auth.fleet.keys = KeysFile(str(tmp_path / "missing"))
    refused(daemon.sign_in("alice")[1])


def test_the_log_names_user_peer_key_and_access_and_no_secret(daemon, log_events):
    session = FakeSession()
    test_string = daemon.stage1(session)
    signature = fleetauth.sign(daemon.fleet_key, test_string, "bob", "full")
    outcome = daemon.stage2(session, {"signature": signature, "user": "bob", "access": "full"})
    refused(daemon.sign_in("mallory")[1])
    lines = [formatEvent(event) for event in log_events]
    text = "\n".join(lines) + repr(log_events)
    key = fingerprint(daemon.fleet_key.public_key())
    assert f"bob authenticated from {HOST} by fleet key {key} with limited access" in lines
    assert f"failed fleet key authentication from {HOST}" in lines
    assert test_string not in text and signature not in text
    assert outcome.result[0] not in text
