"""Signing bytes with the key kinds sysadmd accepts, one way per kind.

Ed25519 signs the bytes; ECDSA (P-256/384/521) signs them, DER, with the hash that fits
the curve; RSA with PKCS#1 v1.5 and SHA-256. ``rpc/auth_ssl`` (``sysadmd.auth.signatures``
and the client) uses these and accepts, besides, the original clients' raw-RSA form; the
tunnel's offer (``sysadmd.protocol.tunnel``) accepts nothing else.
"""

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

CURVE_HASHES = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


def sign(private_key, data):
    """``private_key``'s signature of ``data`` (bytes); ValueError for another kind of key."""
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return private_key.sign(data)
    if isinstance(private_key, ec.EllipticCurvePrivateKey) and private_key.curve.name in CURVE_HASHES:
        return private_key.sign(data, ec.ECDSA(CURVE_HASHES[private_key.curve.name]()))
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    raise ValueError("only Ed25519, ECDSA P-256/384/521 and RSA keys can sign")


def verify(public_key, data, signature):
    """True when ``signature`` is ``public_key``'s signature of ``data``; never raises."""
    try:
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, data)
            return True
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            hash_class = CURVE_HASHES.get(public_key.curve.name)
            if hash_class is None:
                return False
            public_key.verify(signature, data, ec.ECDSA(hash_class()))
            return True
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            return True
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return False
