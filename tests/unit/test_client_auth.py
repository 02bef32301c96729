"""Signing in: signatures the daemon's own checker accepts, key files, the token file,
and the order token -> key -> password."""

import base64
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from twisted.internet import task

from sysadmd.auth.signatures import verify_challenge
from sysadmd.client.auth import (
    AuthFailed,
    Credentials,
    PasswordSource,
    authenticate,
    load_private_key,
    read_token,
    sign_challenge,
    write_token,
)
from sysadmd.client.errors import ClientError
from tests.unit.test_client_fakes import FakePeer, Refuse

TEST_STRING = "Zk3-_t0-48-random-characters-from-the-daemon-éü"
_RSA = []


def rsa_key():
    if not _RSA:
        _RSA.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return _RSA[0]


KEYS = {
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "p521": lambda: ec.generate_private_key(ec.SECP521R1()),
    "rsa": rsa_key,
}


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_signatures_verify_with_the_daemons_checker(kind):
    key = KEYS[kind]()
    signature = base64.b64decode(sign_challenge(key, TEST_STRING))
    assert verify_challenge(key.public_key(), TEST_STRING, signature)
    assert not verify_challenge(key.public_key(), TEST_STRING + "x", signature)
    other = KEYS[kind]() if kind != "rsa" else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert not verify_challenge(other.public_key(), TEST_STRING, signature)


def write_key(tmp_path, key, fmt, passphrase=None):
    encryption = (serialization.BestAvailableEncryption(passphrase.encode())
                  if passphrase else serialization.NoEncryption())
    if fmt == "openssh":
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption)
    else:
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    path = tmp_path / f"key-{fmt}"
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("kind", ["ed25519", "p384", "rsa"])
@pytest.mark.parametrize("fmt", ["openssh", "pem"])
def test_openssh_and_pem_private_keys_load_and_sign(tmp_path, kind, fmt):
    key = KEYS[kind]()
    loaded = load_private_key(write_key(tmp_path, key, fmt))
    signature = base64.b64decode(sign_challenge(loaded, TEST_STRING))
    assert verify_challenge(key.public_key(), TEST_STRING, signature)


def test_an_encrypted_key_needs_its_passphrase(tmp_path):
    key = ed25519.Ed25519PrivateKey.generate()
    path = write_key(tmp_path, key, "pem", passphrase="open sesame")
    with pytest.raises(ClientError, match="is encrypted; give its passphrase in SYSADM_KEY_PASSPHRASE"):
        load_private_key(path)
    assert load_private_key(path, passphrase="open sesame").public_key() == key.public_key()
    assert load_private_key(path, ask_passphrase=lambda: "open sesame").public_key() == key.public_key()
    with pytest.raises(ClientError, match="not a usable private key"):
        load_private_key(path, passphrase="wrong")


def test_unusable_key_files_are_one_line_errors(tmp_path):
    with pytest.raises(ClientError, match="cannot read"):
        load_private_key(str(tmp_path / "missing"))
    junk = tmp_path / "junk"
    junk.write_text("hello\n")
    with pytest.raises(ClientError, match="not a usable private key"):
        load_private_key(str(junk))
    k1 = ec.generate_private_key(ec.SECP256K1())
    with pytest.raises(ClientError, match="curve secp256k1 is not accepted"):
        load_private_key(write_key(tmp_path, k1, "pem"))


def test_token_file_is_private_and_scoped_to_url_and_user(tmp_path):
    path = str(tmp_path / "sub" / "token")
    write_token(path, "ws://a:1", "alice", "t" * 64)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read_token(path, "ws://a:1", "alice") == "t" * 64
    assert read_token(path, "ws://b:1", "alice") is None
    assert read_token(path, "ws://a:1", "bob") is None
    os.chmod(path, 0o644)
    write_token(path, "ws://a:1", "alice", "u" * 64)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read_token(path, "ws://a:1", "alice") == "u" * 64
    assert read_token(str(tmp_path / "none"), "ws://a:1", "alice") is None
    plain = tmp_path / "plain"
    plain.write_text("v" * 64 + "\n")
    assert read_token(str(plain), "anything", "anyone") == "v" * 64


class Passwords:
    def __init__(self, password):
        self.password = password
        self.asked = 0

    def get(self):
        from twisted.internet import defer
        self.asked += 1
        return defer.succeed(self.password)


def daemon(clock, password="right", tokens=("live",), keys=()):
    peer = FakePeer(clock)

    def auth(args):
        if args["password"] != password:
            raise Refuse(401, "Authentication failed.")
        return ["fresh-token", 900]

    def auth_token(args):
        if args["token"] not in tokens:
            raise Refuse(401, "Authentication failed.")
        return [args["token"], 900]

    challenges = []

    def auth_ssl(args):
        if not args:
            challenges.append(TEST_STRING)
            return {"test_string": TEST_STRING}
        signature = base64.b64decode(args["encrypted_string"])
        if any(verify_challenge(k.public_key(), challenges.pop(), signature) for k in keys):
            return ["key-token", 900]
        raise Refuse(401, "Authentication failed.")

    peer.handlers.update({("rpc", "auth"): auth, ("rpc", "auth_token"): auth_token, ("rpc", "auth_ssl"): auth_ssl})
    return peer


def outcome(d):
    box = []
    d.addBoth(box.append)
    return box[0]


def test_password_sign_in_writes_the_token_file(tmp_path):
    peer = daemon(task.Clock())
    path = str(tmp_path / "token")
    credentials = Credentials("admin", Passwords("right"), token_file=path, scope="ws://d")
    assert outcome(authenticate(peer.session, credentials)) == ("fresh-token", 900)
    assert [f["name"] for f in peer.sent] == ["auth"]
    assert peer.sent[0]["args"] == {"username": "admin", "password": "right"}
    assert read_token(path, "ws://d", "admin") == "fresh-token"


def test_a_cached_token_is_used_without_asking_for_the_password(tmp_path):
    peer = daemon(task.Clock(), tokens=("cached",))
    path = str(tmp_path / "token")
    write_token(path, "ws://d", "admin", "cached")
    passwords = Passwords("right")
    credentials = Credentials("admin", passwords, token_file=path, scope="ws://d")
    assert outcome(authenticate(peer.session, credentials)) == ("cached", 900)
    assert [f["name"] for f in peer.sent] == ["auth_token"] and passwords.asked == 0


def test_a_refused_token_falls_back_to_the_password_and_replaces_the_cache(tmp_path):
    peer = daemon(task.Clock(), tokens=())
    path = str(tmp_path / "token")
    write_token(path, "ws://d", "admin", "stale")
    credentials = Credentials("admin", Passwords("right"), token_file=path, scope="ws://d")
    assert outcome(authenticate(peer.session, credentials)) == ("fresh-token", 900)
    assert [f["name"] for f in peer.sent] == ["auth_token", "auth"]
    assert read_token(path, "ws://d", "admin") == "fresh-token"


def test_a_wrong_password_is_an_auth_failure_naming_the_user():
    peer = daemon(task.Clock())
    error = outcome(authenticate(peer.session, Credentials("admin", Passwords("wrong")))).value
    assert isinstance(error, AuthFailed)
    assert str(error) == "authentication failed for user 'admin' (401 Unauthorized)"


def test_key_sign_in_answers_the_challenge():
    key = ed25519.Ed25519PrivateKey.generate()
    peer = daemon(task.Clock(), keys=[key])
    credentials = Credentials("admin", Passwords("unused"), key=key)
    assert outcome(authenticate(peer.session, credentials)) == ("key-token", 900)
    assert [f["args"] for f in peer.sent][0] == {}
    assert set(peer.sent[1]["args"]) == {"encrypted_string"}
    error = outcome(authenticate(daemon(task.Clock()).session, Credentials("a", key=key))).value
    assert isinstance(error, AuthFailed) and "refused the key" in str(error)


def test_the_token_of_this_run_is_tried_first_on_a_new_connection():
    clock = task.Clock()
    credentials = Credentials("admin", Passwords("right"))
    outcome(authenticate(daemon(clock).session, credentials))
    again = daemon(clock, tokens=("fresh-token",))
    assert outcome(authenticate(again.session, credentials)) == ("fresh-token", 900)
    assert [f["name"] for f in again.sent] == ["auth_token"]


class Stdin:
    def __init__(self, tty):
        self.tty = tty

    def isatty(self):
        return self.tty


def test_password_comes_from_the_environment_before_any_prompt():
    source = PasswordSource(task.Clock(), "admin", {"SYSADM_PASSWORD": "from-env"},
                            prompt=lambda p: pytest.fail("prompted"), stdin=Stdin(True))
    assert outcome(source.get()) == "from-env"


def test_without_a_terminal_or_environment_the_password_is_a_clear_error():
    source = PasswordSource(task.Clock(), "admin", {}, stdin=Stdin(False))
    error = outcome(source.get()).value
    assert isinstance(error, ClientError) and "set SYSADM_PASSWORD" in str(error)
