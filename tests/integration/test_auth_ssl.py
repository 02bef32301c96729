"""``rpc/auth_ssl`` with real keys registered by ``sysadmd-admin key add``, and a check
that no secret of any kind of login reaches the daemon's log."""

import base64
import os
import re
import subprocess
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from tests.integration.harness import ADMIN, Client
from tests.integration.test_auth import (  # noqa: F401 (system_user is a fixture)
    FAILED,
    assert_full_access,
    assert_limited_access,
    config,
    expect_error,
    granted,
    system_user,
)
from tests.original_rsa import rsa_private_encrypt

_RSA_KEY = None


def new_key(kind):
    """A private key: ``ed25519``, ``ecdsa`` (P-256) or ``rsa`` (2048, made once)."""
    global _RSA_KEY
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if _RSA_KEY is None:
        _RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _RSA_KEY


def register(daemon, user, key, pem=False):
    """``sysadmd-admin key add`` the public half of ``key`` for ``user``."""
    public = key.public_key()
    if pem:
        data = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    else:
        data = public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ) + f" {user}@test\n".encode()
    path = os.path.join(daemon.tmp_path, f"key-{user}-{len(os.listdir(daemon.tmp_path))}.pub")
    with open(path, "wb") as handle:
        handle.write(data)
    result = subprocess.run(
        [ADMIN, "key", "add", "--user", user, "--keys-file",
         os.path.join(daemon.state_dir, "keys"), path],
        capture_output=True, text=True, check=True,
    )
    assert result.stdout.startswith("SHA256:"), result.stdout
    return result.stdout.strip()


def sign(key, test_string, form=None):
    """The base64 ``encrypted_string`` answering ``test_string``."""
    data = test_string.encode("utf-8")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(data)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
    elif form == "original":
        signature = rsa_private_encrypt(key, data)
    else:
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def challenge(client):
    """Stage 1: the test string."""
    reply = client.call("rpc", "auth_ssl", {})
    assert reply["name"] == "response", reply
    test_string = reply["args"]["test_string"]
    assert isinstance(test_string, str) and len(test_string) >= 32, reply
    return test_string


def answer(client, encrypted):
    """Stage 2."""
    return client.call("rpc", "auth_ssl", {"encrypted_string": encrypted})


def key_login(client, key, form=None):
    """Both stages; returns ``(test_string, encrypted_string, reply)``."""
    test_string = challenge(client)
    encrypted = sign(key, test_string, form)
    return test_string, encrypted, answer(client, encrypted)


@pytest.fixture
def connect(daemon):
    """``connect()``: new clients of ``daemon``, closed after the test."""
    clients = []

    def make():
        clients.append(Client(daemon.url))
        return clients[-1]

    yield make
    for c in clients:
        c.close()


def test_stage_one_gives_a_fresh_random_test_string(client):
    strings = {challenge(client) for _ in range(5)}
    assert len(strings) == 5
    expect_error(client.call("rpc", "query"), 401)


@pytest.mark.parametrize("kind,form,pem", [
    ("ed25519", None, False),
    ("ecdsa", None, False),
    ("ecdsa", None, True),
    ("rsa", "pkcs1-sha256", False),
    ("rsa", "original", False),
    ("rsa", "original", True),
])
def test_registered_key_logs_in(daemon, client, kind, form, pem):
    key = new_key(kind)
    fingerprint = register(daemon, "admin", key, pem=pem)
    _, _, reply = key_login(client, key, form)
    granted(reply)
    assert client.call("rpc", "query")["name"] == "response"
    assert_full_access(client)  # admin is a full user
    daemon.wait_for_log(r"admin authenticated from 127\.0\.0\.1 by key " + re.escape(fingerprint) +
                        r" with full access")


def test_signature_of_another_test_string_is_refused(daemon, client):
    key = new_key("ed25519")
    register(daemon, "admin", key)
    challenge(client)
    assert expect_error(answer(client, sign(key, "not the test string at all, " * 2)),
                        401) == FAILED
    expect_error(client.call("rpc", "query"), 401)


def test_replayed_answer_is_refused(daemon, connect):
    key = new_key("ecdsa")
    register(daemon, "admin", key)
    first = connect()
    _, encrypted, reply = key_login(first, key)
    granted(reply)
    # the same answer again: on the same connection, without and with a new challenge
    expect_error(answer(first, encrypted), 401)
    challenge(first)
    expect_error(answer(first, encrypted), 401)
    # on another connection, without and with a challenge of its own
    second = connect()
    expect_error(answer(second, encrypted), 401)
    challenge(second)
    expect_error(answer(second, encrypted), 401)
    expect_error(second.call("rpc", "query"), 401)


def test_a_challenge_is_usable_once_even_after_a_wrong_answer(daemon, client):
    key = new_key("ed25519")
    register(daemon, "admin", key)
    test_string = challenge(client)
    expect_error(answer(client, base64.b64encode(b"\0" * 64).decode()), 401)
    expect_error(answer(client, sign(key, test_string)), 401)
    _, _, reply = key_login(client, key)
    granted(reply)


def test_challenge_expires_after_30_s__slow_31_s_wait(make_daemon):
    """SLOW (31 s): a correct answer to a challenge older than 30 s is refused."""
    d = make_daemon(config(auth={"auth_timeout": 90}), start=False)
    d.add_user("admin", "admin-secret-pw")
    d.start()
    key = new_key("ed25519")
    register(d, "admin", key)
    c = Client(d.url)
    try:
        test_string = challenge(c)
        time.sleep(31)
        assert expect_error(answer(c, sign(key, test_string)), 401) == FAILED
        expect_error(c.call("rpc", "query"), 401)
        _, _, reply = key_login(c, key)  # a fresh challenge works with the same key
        granted(reply)
    finally:
        c.close()


def test_key_of_a_user_missing_from_the_users_file_is_refused(daemon, client):
    key = new_key("ed25519")
    register(daemon, "ghost", key)
    _, _, reply = key_login(client, key)
    assert expect_error(reply, 401) == FAILED
    expect_error(client.call("rpc", "query"), 401)


def test_unregistered_key_is_refused(daemon, client):
    register(daemon, "admin", new_key("ed25519"))
    for kind, form in (("ed25519", None), ("ecdsa", None), ("rsa", "original")):
        _, _, reply = key_login(client, new_key(kind), form)
        assert expect_error(reply, 401) == FAILED
    expect_error(client.call("rpc", "query"), 401)


def test_answer_without_a_challenge_is_refused(daemon, client):
    key = new_key("ed25519")
    register(daemon, "admin", key)
    expect_error(answer(client, sign(key, "a" * 48)), 401)


def test_role_of_a_key_comes_from_the_users_file(daemon, client, tmp_path):
    key = new_key("ecdsa")
    register(daemon, "viewer", key)
    _, _, reply = key_login(client, key)
    granted(reply)
    assert client.call("events", "subscribe", ["ticker"])["name"] == "response"
    assert_limited_access(client, tmp_path / "ran")
    daemon.wait_for_log(r"viewer authenticated from 127\.0\.0\.1 by key .* with limited access")


def test_no_secret_reaches_the_log(make_daemon, system_user):
    """Every kind of login, successful and not; then none of the passwords, tokens, test
    strings or answers is anywhere in the daemon's output."""
    pam_user = system_user(["wheel"]) if os.geteuid() == 0 else None
    d = make_daemon(config(auth={"backends": "users pam"}), start=False)
    d.add_user("admin", "admin-secret-pw")
    d.add_user("viewer", "viewer-secret-pw", "limited")
    d.start()
    key = new_key("rsa")
    register(d, "admin", key)
    secrets_seen = ["admin-secret-pw", "viewer-secret-pw", "wrong-secret-pw"]
    c = Client(d.url)
    try:
        secrets_seen.append(granted(c.login("admin", "admin-secret-pw")))
        expect_error(c.login("admin", "wrong-secret-pw"), 401)
        secrets_seen.append(granted(c.login("viewer", "viewer-secret-pw")))
        bogus = "f" * 64
        secrets_seen.append(bogus)
        expect_error(c.call("rpc", "auth_token", {"token": bogus}), 401)
        secrets_seen.append(granted(c.call("rpc", "auth_token", {"token": secrets_seen[-2]})))
        for form in ("original", "pkcs1-sha256"):
            test_string, encrypted, reply = key_login(c, key, form)
            secrets_seen += [test_string, encrypted, granted(reply)]
        test_string = challenge(c)
        wrong = sign(new_key("ed25519"), test_string)
        secrets_seen += [test_string, wrong]
        expect_error(answer(c, wrong), 401)
        expect_error(answer(c, wrong), 401)  # also without a challenge
        if pam_user is not None:
            name, password = pam_user
            secrets_seen.append(password)
            secrets_seen.append(granted(c.login(name, password)))
        last = secrets_seen[-1]
        assert c.call("rpc", "auth_clear")["args"] == {}
        expect_error(c.call("rpc", "auth_token", {"token": last}), 401)
    finally:
        c.close()
    assert d.stop() == 0
    log = d.log_text()
    assert "admin authenticated" in log and "failed password authentication" in log
    if pam_user is not None:
        assert f"{pam_user[0]} authenticated" in log
    for secret in secrets_seen:
        assert secret not in log, f"a secret is in the log: {secret!r}"
