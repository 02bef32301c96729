"""Signed test strings of rpc/auth_ssl, for every key type and both RSA forms."""

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from sysadmd.auth.keys_file import RegisteredKey, fingerprint
from sysadmd.auth.signatures import find_signer, verify_challenge
from tests.original_rsa import rsa_private_encrypt

TEST_STRING = "c2b1e0d4-ab12 t\u00e9st \u2713"


@pytest.fixture(scope="module")
def private_keys():
    """One private key of each supported kind (RSA generation is slow: made once)."""
    return {
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "p521": ec.generate_private_key(ec.SECP521R1()),
        "rsa": rsa.generate_private_key(65537, 2048),
    }


_EC_HASHES = {"p256": hashes.SHA256, "p384": hashes.SHA384, "p521": hashes.SHA512}


def sign(kind, private_key, text):
    """Sign ``text`` the way a modern client does for ``kind``."""
    data = text.encode("utf-8")
    if kind == "ed25519":
        return private_key.sign(data)
    if kind in _EC_HASHES:
        return private_key.sign(data, ec.ECDSA(_EC_HASHES[kind]()))
    return private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())


KINDS = ["ed25519", "p256", "p384", "p521", "rsa"]


@pytest.mark.parametrize("kind", KINDS)
def test_valid_signature_accepted(private_keys, kind):
    """A signature of the UTF-8 test string by the key verifies."""
    private_key = private_keys[kind]
    signature = sign(kind, private_key, TEST_STRING)
    assert verify_challenge(private_key.public_key(), TEST_STRING, signature) is True


@pytest.mark.parametrize("kind", KINDS)
def test_signature_of_other_string_refused(private_keys, kind):
    """A valid signature of a different string does not verify."""
    private_key = private_keys[kind]
    signature = sign(kind, private_key, "another string")
    assert verify_challenge(private_key.public_key(), TEST_STRING, signature) is False


@pytest.mark.parametrize("kind", KINDS)
def test_signature_by_other_key_refused(private_keys, kind):
    """A signature by another key of the same kind does not verify."""
    signature = sign(kind, private_keys[kind], TEST_STRING)
    other = {
        "ed25519": lambda: ed25519.Ed25519PrivateKey.generate(),
        "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
        "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
        "p521": lambda: ec.generate_private_key(ec.SECP521R1()),
        "rsa": lambda: rsa.generate_private_key(65537, 2048),
    }[kind]()
    assert verify_challenge(other.public_key(), TEST_STRING, signature) is False


def test_ecdsa_with_wrong_hash_refused(private_keys):
    """P-384 expects SHA-384: a SHA-256 signature is refused."""
    private_key = private_keys["p384"]
    signature = private_key.sign(TEST_STRING.encode(), ec.ECDSA(hashes.SHA256()))
    assert verify_challenge(private_key.public_key(), TEST_STRING, signature) is False


def test_rsa_original_sysadm_form_accepted(private_keys):
    """The original clients' RSA_private_encrypt of the raw string verifies."""
    private_key = private_keys["rsa"]
    signature = rsa_private_encrypt(private_key, TEST_STRING.encode("utf-8"))
    assert verify_challenge(private_key.public_key(), TEST_STRING, signature) is True


def test_rsa_original_form_of_other_string_refused(private_keys):
    """RSA_private_encrypt of another (even prefix) string is refused."""
    private_key = private_keys["rsa"]
    for data in (b"another string", TEST_STRING.encode()[:-1], TEST_STRING.encode() + b"x"):
        signature = rsa_private_encrypt(private_key, data)
        assert verify_challenge(private_key.public_key(), TEST_STRING, signature) is False


def test_rsa_pss_is_not_an_accepted_form(private_keys):
    """Only PKCS#1 v1.5 is accepted for RSA; a PSS signature is refused."""
    private_key = private_keys["rsa"]
    signature = private_key.sign(
        TEST_STRING.encode(),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )
    assert verify_challenge(private_key.public_key(), TEST_STRING, signature) is False


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "test_string, signature",
    [
        (TEST_STRING, b""),
        (TEST_STRING, b"\x00" * 64),
        (TEST_STRING, b"\xff" * 256),
        (TEST_STRING, b"\xff" * 1000),
        (TEST_STRING, "not bytes"),
        (TEST_STRING, None),
        (None, b"\x00" * 64),
        (b"bytes test string", b"\x00" * 64),
        ("\ud800 lone surrogate", b"\x00" * 64),
    ],
)
def test_garbage_gives_false(private_keys, kind, test_string, signature):
    """Malformed input never raises: it is simply not a valid signature."""
    public_key = private_keys[kind].public_key()
    assert verify_challenge(public_key, test_string, signature) is False


def test_unsupported_key_object_gives_false():
    """Something that is not a supported public key verifies nothing."""
    assert verify_challenge(object(), TEST_STRING, b"\x00" * 64) is False
    assert verify_challenge(None, TEST_STRING, b"\x00" * 64) is False


@settings(max_examples=60, deadline=None)
@given(signature=st.binary(max_size=600), test_string=st.text(max_size=40))
def test_random_signatures_never_raise(private_keys, signature, test_string):
    """Random bytes never raise and (overwhelmingly) never verify, for every key type."""
    for private_key in private_keys.values():
        assert verify_challenge(private_key.public_key(), test_string, signature) is False


def _registered(user, private_key):
    public_key = private_key.public_key()
    return RegisteredKey(user, public_key, fingerprint(public_key), "")


def test_find_signer_returns_matching_key(private_keys):
    """find_signer picks the registered key that made the signature."""
    registered = [_registered(kind, private_keys[kind]) for kind in KINDS]
    for kind in KINDS:
        signature = sign(kind, private_keys[kind], TEST_STRING)
        assert find_signer(registered, TEST_STRING, signature).user == kind
    original = rsa_private_encrypt(private_keys["rsa"], TEST_STRING.encode())
    assert find_signer(registered, TEST_STRING, original).user == "rsa"


def test_find_signer_none_when_nothing_verifies(private_keys):
    """No registered key verifying gives None, as does an empty key list."""
    registered = [_registered("ed", private_keys["ed25519"])]
    signature = sign("p256", private_keys["p256"], TEST_STRING)
    assert find_signer(registered, TEST_STRING, signature) is None
    assert find_signer([], TEST_STRING, signature) is None
