"""Key registration as the Qt client does it: signed in by password, it sends
``rpc/settings register_ssl_cert`` with the base64 of its public key PEM (id
``sysadm-auto-cert-register``), then signs in with that key; its key page lists and
revokes keys; bridges ask ``list_ssl_checksums``."""

import base64
import hashlib
import json
import shutil
import subprocess

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.compat.test_key_signin import (
    client_key,
    granted,
    public_pem,
    qt_client,
    qt_key_signin,
    refused,
)

REGISTER_ID = "sysadm-auto-cert-register"


def qt_password_client(url, user, password):
    """A Qt client signed in by password (the Qt client's exact ``auth`` frame)."""
    client = qt_client(url)
    client.send(json.dumps({"args": {"password": password, "username": user},
                            "id": "sysadm-client-auth-auto", "name": "auth", "namespace": "rpc"},
                           separators=(",", ":"), sort_keys=True))
    granted(client.reply("sysadm-client-auth-auto"))
    return client


def register(client, key, nickname="sysadm-client", email="me@example.org"):
    """``sysadm_client::registerCustomCert``: ``pub_key`` is ``toPem().toBase64()``."""
    args = {"action": "register_ssl_cert", "email": email, "nickname": nickname,
            "pub_key": base64.b64encode(public_pem(key)).decode("ascii")}
    client.send(json.dumps({"args": args, "id": REGISTER_ID, "name": "settings",
                            "namespace": "rpc"}, separators=(",", ":"), sort_keys=True))
    return client.reply(REGISTER_ID)


def settings(client, request_id, **args):
    """An ``rpc/settings`` request as the Qt key page sends it."""
    return client.call("rpc", "settings", args, request_id=request_id)


def test_register_list_sign_in_revoke(daemon):
    """The whole life of a key: registered by the Qt client for its user, listed, used to
    sign in with that user's access, revoked from the key page, then refused."""
    owner = qt_password_client(daemon.url, "viewer", "viewer-secret-pw")
    try:
        reply = register(owner, client_key(), nickname="Laptop", email="viewer@example.org")
        assert reply["name"] == "response", reply
        listed = settings(owner, "client_ssl_page_list", action="list_ssl_certs")
        [name] = listed["args"]["viewer"]
        assert name == base64.b64encode(public_pem(client_key())).decode()
        info = listed["args"]["viewer"][name]
        # The key page shows the text and takes "Nickname:" from it.
        assert info.split("Nickname:")[1].split("\n")[0].strip() == "Laptop"
        assert "Email: viewer@example.org" in info
    finally:
        owner.close()

    by_key = qt_client(daemon.url)
    try:
        granted(qt_key_signin(by_key, client_key())[1])
        query = by_key.call("rpc", "query", "", request_id="sysadm_client_ping")
        assert query["args"]["rpc/dispatcher"] == "read"
        revoked = settings(by_key, "client_ssl_page_revoke", action="revoke_ssl_cert",
                           user="viewer", pub_key=name)
        assert revoked["name"] == "response", revoked
        assert settings(by_key, "client_ssl_page_list", action="list_ssl_certs")["args"] == {}
    finally:
        by_key.close()

    again = qt_client(daemon.url)
    try:
        assert refused(qt_key_signin(again, client_key())[1])
    finally:
        again.close()
    daemon.wait_for_log(r"viewer registered key SHA256:\S+ from 127\.0\.0\.1")
    daemon.wait_for_log(r"viewer revoked key SHA256:\S+ of viewer from 127\.0\.0\.1")


def test_a_limited_user_cannot_revoke_another_users_key(daemon):
    """403, and the key still signs its owner in."""
    admin = qt_password_client(daemon.url, "admin", "admin-secret-pw")
    viewer = qt_password_client(daemon.url, "viewer", "viewer-secret-pw")
    try:
        assert register(admin, client_key())["name"] == "response"
        name = base64.b64encode(public_pem(client_key())).decode()
        denied = settings(viewer, "client_ssl_page_revoke", action="revoke_ssl_cert",
                          user="admin", pub_key=name)
        assert denied["name"] == "error" and str(denied["args"]["code"]) == "403", denied
        assert str(settings(viewer, "list", action="list_ssl_certs", user="admin")["args"]["code"]) == "403"
        # Registering the admin's key for oneself is refused too (a key names one user).
        taken = register(viewer, client_key())
        assert taken["name"] == "error" and "admin" not in json.dumps(taken), taken
        assert list(settings(admin, "list", action="list_ssl_certs")["args"]) == ["admin"]
        assert list(settings(admin, "list", action="list_ssl_certs", user="viewer")["args"]) == []
    finally:
        admin.close()
        viewer.close()
    by_key = qt_client(daemon.url)
    try:
        granted(qt_key_signin(by_key, client_key())[1])
    finally:
        by_key.close()


def _openssl_public_pem(key, tmp_path):
    """The public PEM as OpenSSL's ``PEM_write_bio_PUBKEY`` writes it (what Qt's
    ``QSslKey::toPem()`` calls), from the openssl command; None without it."""
    if shutil.which("openssl") is None:
        return None
    path = tmp_path / "client.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return subprocess.run(["openssl", "pkey", "-in", str(path), "-pubout"],
                          check=True, capture_output=True).stdout


def test_list_ssl_checksums_has_md5_and_sha256_keys(daemon, tmp_path):
    """What a bridge asks (id ``bridge_request_list_keys``): every accepted key by
    ``SHA256:`` fingerprint and by base64(md5(public key PEM)), the PEM being
    SubjectPublicKeyInfo with its final newline, computed here independently."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    admin = qt_password_client(daemon.url, "admin", "admin-secret-pw")
    try:
        register(admin, client_key())
        register(admin, other)
        answer = settings(admin, "bridge_request_list_keys", action="list_ssl_checksums")
    finally:
        admin.close()
    assert answer["name"] == "response", answer
    assert set(answer["args"]) == {"md5_keys", "sha256_keys"}
    expected = []
    for key in (client_key(), other):
        pem = public_pem(key)
        assert pem.startswith(b"-----BEGIN PUBLIC KEY-----\n")
        assert pem.endswith(b"\n-----END PUBLIC KEY-----\n")
        assert _openssl_public_pem(key, tmp_path) in (None, pem)
        expected.append(base64.b64encode(hashlib.md5(pem).digest()).decode("ascii"))
    assert answer["args"]["md5_keys"] == expected
    assert len(answer["args"]["sha256_keys"]) == 2
    assert all(k.startswith("SHA256:") for k in answer["args"]["sha256_keys"])
