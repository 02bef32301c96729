"""The Qt client's key sign-in, replayed exactly: ``auth_ssl`` with ``"args": ""`` gives a
192-character ``test_string``; the client answers with
``base64(RSA_private_encrypt(test_string, RSA_PKCS1_PADDING))`` made with its 2048-bit key,
and gets ``[token, lifetime]``."""

import base64
import json
import os
import shutil
import subprocess

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.integration.harness import ADMIN, Client
from tests.original_rsa import rsa_private_encrypt

ORIGIN = "sysadm-client"
AUTH_ID = "sysadm-client-auth-auto"
IDENTIFY = '{"args":"","id":"sysadm_client_identify","name":"identify","namespace":"rpc"}'
# The Qt client's frames (QJsonDocument: sorted keys, compact).
STAGE_1 = '{"args":"","id":"sysadm-client-auth-auto","name":"auth_ssl","namespace":"rpc"}'
STAGE_2 = '{"args":{"encrypted_string":%s},"id":"sysadm-client-auth-auto","name":"auth_ssl","namespace":"rpc"}'

_KEY = None


def client_key():
    """The client's 2048-bit RSA key (the Qt client generates one of that size)."""
    global _KEY
    if _KEY is None:
        _KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _KEY


def public_pem(key):
    """``QSslKey::toPem()`` of the public key: SubjectPublicKeyInfo PEM, final newline."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def openssl_private_encrypt(key, data, tmp_path):
    """The same with the openssl command (``rsautl -sign`` is ``RSA_private_encrypt``
    with PKCS#1 padding; OpenSSL 3's ``pkeyutl`` refuses input longer than a digest);
    None without openssl."""
    if shutil.which("openssl") is None:
        return None
    key_path, data_path = tmp_path / "client.key", tmp_path / "challenge"
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    data_path.write_bytes(data)
    return subprocess.run(
        ["openssl", "rsautl", "-sign", "-inkey", str(key_path), "-in", str(data_path)],
        check=True, capture_output=True,
    ).stdout


def qt_client(url):
    """A client connected as Qt connects (``Origin: sysadm-client``), identified."""
    client = Client(url, origin=ORIGIN)
    client.send(IDENTIFY)
    assert client.reply("sysadm_client_identify")["args"]["type"] == "server"
    return client


def qt_key_signin(client, key, tmp_path=None):
    """Both stages exactly as the Qt client sends them; returns ``(test_string, reply)``."""
    client.send(STAGE_1)
    stage_1 = client.reply(AUTH_ID)
    assert stage_1["name"] == "response", stage_1
    test_string = stage_1["args"]["test_string"]
    # The client writes the RSA block into malloc(2 * test_string.length()).
    assert len(test_string) == 192 and 2 * len(test_string) >= key.key_size // 8
    assert test_string.isprintable() and test_string.isascii()
    data = test_string.encode("latin-1")  # str.toLatin1()
    signed = rsa_private_encrypt(key, data)
    if tmp_path is not None:
        by_openssl = openssl_private_encrypt(key, data, tmp_path)
        assert by_openssl in (None, signed)  # PKCS#1 v1.5 type 1 is deterministic
    client.send(STAGE_2 % json.dumps(base64.b64encode(signed).decode("ascii")))
    return test_string, client.reply(AUTH_ID)


def granted(reply):
    """``[token, lifetime]``: what the Qt client reads (an array of at least 2 items)."""
    assert reply["name"] == "response" and reply["id"] == AUTH_ID, reply
    assert isinstance(reply["args"], list) and len(reply["args"]) >= 2, reply
    assert isinstance(reply["args"][0], str) and reply["args"][0]
    return reply["args"][0]


def refused(reply):
    """``name == "error"`` on the same id: the Qt client closes."""
    assert reply["name"] == "error" and reply["id"] == AUTH_ID, reply
    assert str(reply["args"]["code"]) == "401", reply
    return True


def add_key(daemon, user, key):
    """Register ``key`` for ``user`` with the real ``sysadmd-admin``, from its PEM."""
    path = os.path.join(daemon.tmp_path, f"{user}-client.pem")
    with open(path, "wb") as handle:
        handle.write(public_pem(key))
    subprocess.run([ADMIN, "key", "add", "--user", user, "--keys-file",
                    os.path.join(daemon.state_dir, "keys"), path],
                   check=True, capture_output=True)


def test_the_qt_key_path_signs_in(daemon, tmp_path):
    """A registered 2048-bit key signs the 192-character test string the original way."""
    add_key(daemon, "viewer", client_key())
    client = qt_client(daemon.url)
    try:
        _, reply = qt_key_signin(client, client_key(), tmp_path)
        granted(reply)
        query = client.call("rpc", "query", "", request_id="sysadm_client_ping")
        assert query["args"]["rpc/dispatcher"] == "read", query
    finally:
        client.close()
    daemon.wait_for_log(r"viewer authenticated from 127\.0\.0\.1 by key SHA256:\S+ with limited access")


def test_an_unregistered_key_is_refused(daemon):
    client = qt_client(daemon.url)
    try:
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        assert refused(qt_key_signin(client, other)[1])
    finally:
        client.close()


def test_each_test_string_is_new_and_used_once(daemon):
    """Answering an old test string again is refused."""
    add_key(daemon, "admin", client_key())
    client = qt_client(daemon.url)
    try:
        test_string, reply = qt_key_signin(client, client_key())
        granted(reply)
        replay = base64.b64encode(rsa_private_encrypt(client_key(), test_string.encode())).decode()
        client.send(STAGE_2 % json.dumps(replay))
        assert refused(client.reply(AUTH_ID))
        client.send(STAGE_1)
        assert client.reply(AUTH_ID)["args"]["test_string"] != test_string
    finally:
        client.close()

