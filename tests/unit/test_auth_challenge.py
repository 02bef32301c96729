"""``rpc/auth_ssl`` stage 1: the test string the original Qt client can sign safely."""

import string

from tests.unit.test_auth_guesses import Daemon, FakeSession

URL_SAFE = set(string.ascii_letters + string.digits + "-_")


def test_the_test_string_is_192_random_printable_characters():
    """192 characters: the Qt client's buffer (twice the test string's length) holds a
    2048-bit key's 256-byte RSA block from 128 characters on, and PKCS#1 v1.5 signs at
    most 245 bytes with such a key. URL-safe base64 of random bytes, new every time."""
    daemon = Daemon()
    seen = set()
    for _ in range(20):
        session = FakeSession()
        test_string = daemon.auth.auth_ssl(session, "")["test_string"]
        assert len(test_string) == 192
        assert set(test_string) <= URL_SAFE
        assert session.challenge[0] == test_string
        seen.add(test_string)
    assert len(seen) == 20
