"""Session tokens: unguessable, in memory, extended on use, expiring on an injected clock."""

import re

from twisted.internet import task

from sysadmd.auth.tokens import TokenStore

TTL = 900


def _store():
    clock = task.Clock()
    return clock, TokenStore(clock, TTL)


def test_issued_token_is_64_lowercase_hex_chars():
    """A token is 256 random bits written as 64 hex digits."""
    _clock, store = _store()
    grant = store.issue("alice", "full")
    assert re.fullmatch(r"[0-9a-f]{64}", grant.token)
    assert (grant.user, grant.access) == ("alice", "full")


def test_issued_tokens_are_distinct():
    """Every issue gives a new token, and each looks up its own grant."""
    _clock, store = _store()
    grants = [store.issue("alice", "limited") for _ in range(200)]
    assert len({g.token for g in grants}) == 200
    assert all(store.lookup(g.token) is g for g in grants)


def test_token_is_not_in_grant_repr():
    """Logging a grant does not leak its token."""
    _clock, store = _store()
    grant = store.issue("alice", "full")
    assert grant.token not in repr(grant)


def test_token_expires_after_ttl_without_use():
    """An unused token is valid until ttl seconds after issue, then gone."""
    clock, store = _store()
    grant = store.issue("alice", "full")
    clock.advance(TTL - 0.5)
    assert store.is_valid(grant)
    clock.advance(0.5)
    assert not store.is_valid(grant)
    assert store.lookup(grant.token) is None


def test_lookup_extends_the_token():
    """Each use pushes expiry to ttl seconds after that use."""
    clock, store = _store()
    grant = store.issue("alice", "full")
    for _ in range(5):
        clock.advance(TTL - 1)
        assert store.lookup(grant.token) is grant
    assert grant.expires == clock.seconds() + TTL
    clock.advance(TTL)
    assert store.lookup(grant.token) is None


def test_is_valid_does_not_extend():
    """Checking validity is not a use."""
    clock, store = _store()
    grant = store.issue("alice", "full")
    clock.advance(TTL - 1)
    assert store.is_valid(grant)
    clock.advance(1)
    assert not store.is_valid(grant)


def test_expired_token_stays_dead_even_if_looked_up_again():
    """An expired token is forgotten; touching it cannot revive it."""
    clock, store = _store()
    grant = store.issue("alice", "full")
    clock.advance(TTL)
    assert store.lookup(grant.token) is None
    assert not store.touch(grant)
    assert store.lookup(grant.token) is None


def test_revoke_signs_the_token_out():
    """A revoked token no longer looks up; revoking again is harmless."""
    _clock, store = _store()
    grant = store.issue("alice", "full")
    other = store.issue("bob", "limited")
    store.revoke(grant)
    store.revoke(grant)
    assert store.lookup(grant.token) is None
    assert not store.is_valid(grant)
    assert store.lookup(other.token) is other


def test_lookup_of_unknown_token_is_none():
    """A token never issued (or a near miss) finds nothing."""
    _clock, store = _store()
    grant = store.issue("alice", "full")
    near = grant.token[:-1] + ("0" if grant.token[-1] != "0" else "1")
    assert store.lookup(near) is None
    assert store.lookup(grant.token.upper()) is None
    assert store.lookup("") is None
    assert store.lookup("\ud800") is None


def test_lookup_of_non_string_is_none():
    """Clients send JSON: a number, null, list or bytes is never a token."""
    _clock, store = _store()
    grant = store.issue("alice", "full")
    for value in (None, 0, 1.5, [grant.token], {"token": grant.token}, grant.token.encode()):
        assert store.lookup(value) is None


def test_issue_forgets_expired_grants():
    """Expired grants do not pile up in memory: issuing sweeps them."""
    clock, store = _store()
    for _ in range(10):
        store.issue("alice", "full")
    clock.advance(TTL)
    store.issue("bob", "full")
    assert len(store._grants) == 1
