"""What the original SysAdm clients and servers sign with, done by hand in the tests (never
with sysadmd's own signing code): OpenSSL's ``RSA_private_encrypt(..., RSA_PKCS1_PADDING)``,
the raw data in a type-1 padded block (00 01 FF.. 00 data) raised to the private exponent,
with no digest and no DigestInfo. The Qt client's ``SSL_Encode_String`` and an original
server's bridge sign-in send its base64."""


def rsa_private_encrypt(key, data):
    """The raw RSA "private encryption" of ``data`` (bytes) with ``key`` (a
    ``cryptography`` RSA private key); at most 11 bytes shorter than the modulus (245 with
    2048 bits)."""
    numbers = key.private_numbers()
    n, d = numbers.public_numbers.n, numbers.d
    size = (n.bit_length() + 7) // 8
    assert len(data) <= size - 11, f"PKCS#1 v1.5 signs at most {size - 11} bytes with this key"
    block = b"\x00\x01" + b"\xff" * (size - 3 - len(data)) + b"\x00" + data
    return pow(int.from_bytes(block, "big"), d, n).to_bytes(size, "big")
