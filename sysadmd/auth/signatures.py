"""Checking the signed test string of ``rpc/auth_ssl``.

The server sends a random test string; the client proves it holds a registered key by
signing it. Ed25519 signs the UTF-8 bytes; ECDSA signs them (DER) with the hash that fits
the curve; RSA may use a PKCS#1 v1.5 SHA-256 signature, or the form the original SysAdm
clients send: the raw test string "encrypted" with the private key (OpenSSL's
``RSA_private_encrypt`` with PKCS#1 padding), which the server recovers and compares.
"""

import hmac

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

_CURVE_HASHES = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


def verify_challenge(public_key, test_string, signature):
    """Return True when ``signature`` (bytes) is ``public_key``'s signature of
    ``test_string`` (str) in one of the accepted forms; False otherwise, never raising."""
    if not isinstance(test_string, str) or not isinstance(signature, (bytes, bytearray)):
        return False
    try:
        data = test_string.encode("utf-8")
        signature = bytes(signature)
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, data)
            return True
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            hash_class = _CURVE_HASHES.get(public_key.curve.name)
            if hash_class is None:
                return False
            public_key.verify(signature, data, ec.ECDSA(hash_class()))
            return True
        if isinstance(public_key, rsa.RSAPublicKey):
            return _verify_rsa(public_key, data, signature)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return False


def _verify_rsa(public_key, data, signature):
    try:
        public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        return True
    except InvalidSignature:
        pass
    # The original clients' RSA_private_encrypt: the padded block holds the raw string.
    recovered = public_key.recover_data_from_signature(signature, padding.PKCS1v15(), None)
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
    checks first: Ed25519, ECDSA with the curve's hash, or RSA PKCS#1 v1.5 with SHA-256.
    Returns the signature bytes (``rpc/auth_ssl`` sends their base64)."""
    data = test_string.encode("utf-8")
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return private_key.sign(data)
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        hash_class = _CURVE_HASHES.get(private_key.curve.name)
        if hash_class is None:
            raise ValueError(f"unsupported ECDSA curve {private_key.curve.name}")
        return private_key.sign(data, ec.ECDSA(hash_class()))
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    raise ValueError("unsupported key type (use Ed25519, ECDSA or RSA)")
