"""Checking the signed test string of ``rpc/auth_ssl``.

The server sends a random test string; the client proves it holds a registered key by
signing it. Ed25519 signs the UTF-8 bytes; ECDSA signs them (DER) with the hash that fits
the curve; RSA may use a PKCS#1 v1.5 SHA-256 signature, or the form the original SysAdm
clients send: the raw test string "encrypted" with the private key (OpenSSL's
``RSA_private_encrypt`` with PKCS#1 padding), which the server recovers and compares.
"""

import hmac

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sysadmd.protocol.keysign import sign, verify


def verify_challenge(public_key, test_string, signature):
    """Return True when ``signature`` (bytes) is ``public_key``'s signature of
    ``test_string`` (str) in one of the accepted forms; False otherwise, never raising."""
    if not isinstance(test_string, str) or not isinstance(signature, (bytes, bytearray)):
        return False
    try:
        data = test_string.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no key signed that
        return False
    signature = bytes(signature)
    if verify(public_key, data, signature):
        return True
    if isinstance(public_key, rsa.RSAPublicKey):
        return _original_rsa(public_key, data, signature)
    return False


def _original_rsa(public_key, data, signature):
    # The original clients' RSA_private_encrypt: the padded block holds the raw string.
    try:
        recovered = public_key.recover_data_from_signature(signature, padding.PKCS1v15(), None)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return hmac.compare_digest(recovered, data)


def find_signer(keys, test_string, signature):
    """Return the first :class:`~sysadmd.auth.keys_file.RegisteredKey` of ``keys`` whose
    key verifies ``signature`` of ``test_string``, or None."""
    for key in keys:
        if verify_challenge(key.public_key, test_string, signature):
            return key
    return None


def sign_challenge(private_key, test_string):
    """Sign ``test_string`` (str) with ``private_key`` in the form :func:`verify_challenge`
    checks first (:func:`sysadmd.protocol.keysign.sign`). Returns the signature bytes
    (``rpc/auth_ssl`` sends their base64); ValueError for a key of another kind."""
    return sign(private_key, test_string.encode("utf-8"))
