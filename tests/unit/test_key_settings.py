"""``rpc/settings``: signed-in users register, list and revoke their own keys (full users
anyone's); ``list_ssl_checksums`` names every key by SHA-256 fingerprint and by
base64(md5(PEM)), what the original clients and bridges compute."""

import base64
import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from twisted.internet import defer

from sysadmd.auth.keys_file import KeysFile, fingerprint
from sysadmd.auth.settings import ACCESS, KeySettings, key_text, split_comment
from sysadmd.channel.router import Router
from sysadmd.protocol.envelope import RequestError

SPKI = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
SSH = (serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(65537, 2048)


@pytest.fixture
def keys(tmp_path):
    return KeysFile(str(tmp_path / "keys"))


@pytest.fixture
def settings(keys):
    return KeySettings(keys)


def session(user, access="limited"):
    return SimpleNamespace(user=user, access=access, peer_host="127.0.0.1")


def call(settings, who, **args):
    """The handler's result, or ``(code, details)`` of its RequestError."""
    try:
        return settings.settings(who, args)
    except RequestError as e:
        return e.code, e.details


def pem(private_key):
    return private_key.public_key().public_bytes(*SPKI)


def qt_pub_key(private_key):
    """What the Qt client sends: ``QSslKey::toPem().toBase64()``."""
    return base64.b64encode(pem(private_key)).decode("ascii")


def test_every_action_needs_a_signed_in_user():
    """Registered with limited access per action; who may touch which keys is the
    handler's check."""
    router = Router()
    KeySettings(None).register(router)
    assert router.access_table() == {("rpc", "settings"): ACCESS}
    assert set(ACCESS.values()) == {"limited"}


def test_register_the_qt_clients_base64_pem_then_list_it(settings, keys, rsa_key):
    """The key is stored for the signed-in user with its nickname and email; the list is
    the original's ``{user: {base64 PEM: text}}``."""
    alice = session("alice")
    reply = call(settings, alice, action="register_ssl_cert", pub_key=qt_pub_key(rsa_key),
                 nickname="Alice's laptop", email="alice@example.org")
    wanted = fingerprint(rsa_key.public_key())
    assert reply == {"user": "alice", "fingerprint": wanted}
    [key] = keys.load()
    assert (key.user, key.fingerprint, key.comment) == (
        "alice", wanted, "Alice's laptop <alice@example.org>")
    listed = call(settings, alice, action="list_ssl_certs")
    assert list(listed) == ["alice"]
    assert list(listed["alice"]) == [qt_pub_key(rsa_key)]
    text = listed["alice"][qt_pub_key(rsa_key)]
    assert text.startswith("Nickname: Alice's laptop\nEmail: alice@example.org\n")
    assert f"Fingerprint: {wanted}" in text and "Type: ssh-rsa" in text


def test_pem_and_openssh_forms_are_accepted(settings, keys, rsa_key):
    """A PEM key and an OpenSSH line (whose comment is kept without a nickname)."""
    alice = session("alice")
    assert call(settings, alice, action="register_ssl_cert", pub_key=pem(rsa_key).decode())["user"] == "alice"
    ed = ed25519.Ed25519PrivateKey.generate()
    line = ed.public_key().public_bytes(*SSH).decode() + " alice@desk"
    assert call(settings, alice, action="register_ssl_cert", pub_key=line)["user"] == "alice"
    assert [k.comment for k in keys.load()] == ["", "alice@desk"]


def test_registering_again_changes_nothing_and_another_users_key_is_refused(settings, keys, rsa_key):
    """The same key twice for its user is fine; for someone else it is a conflict that
    does not name the owner."""
    call(settings, session("alice"), action="register_ssl_cert", pub_key=qt_pub_key(rsa_key))
    before = Path(keys.path).read_text()
    assert call(settings, session("alice"), action="register_ssl_cert", pub_key=qt_pub_key(rsa_key))["user"] == "alice"
    assert Path(keys.path).read_text() == before
    code, details = call(settings, session("bob", "full"), action="register_ssl_cert",
                         pub_key=qt_pub_key(rsa_key))
    assert code == 409 and "alice" not in details


@pytest.mark.parametrize("value", [None, "", 5, "not a key", "c3NoLXJzYQ==",
                                   "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"])
def test_what_is_not_a_public_key_is_400(settings, keys, value):
    assert call(settings, session("alice"), action="register_ssl_cert", pub_key=value)[0] == 400
    assert keys.load() == []


def test_a_private_key_is_refused(settings, rsa_key):
    private = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    code, details = call(settings, session("alice"), action="register_ssl_cert", pub_key=private)
    assert code == 400 and "private key" in details


def test_labels_cannot_break_the_keys_file(settings, keys):
    """Newlines, control characters and angle brackets in nickname/email are cleaned."""
    key = ed25519.Ed25519PrivateKey.generate()
    call(settings, session("alice"), action="register_ssl_cert", pub_key=qt_pub_key(key),
         nickname="a\nbob ssh-ed25519 AAAA", email="<x>\x00@y")
    [stored] = keys.load()
    assert stored.user == "alice"
    assert split_comment(stored.comment) == ("a bob ssh-ed25519 AAAA", "x @y")
    assert len(Path(keys.path).read_text().splitlines()) == 1
    assert call(settings, session("alice"), action="register_ssl_cert", pub_key=qt_pub_key(key),
                nickname="n" * 201)[0] == 400


def test_revoke_by_the_listed_name_or_fingerprint(settings, keys, rsa_key):
    """The Qt key page sends back the listed name (and ``user``); a fingerprint works too;
    a key that is not there is 404."""
    alice = session("alice")
    call(settings, alice, action="register_ssl_cert", pub_key=qt_pub_key(rsa_key))
    ed = ed25519.Ed25519PrivateKey.generate()
    call(settings, alice, action="register_ssl_cert", pub_key=qt_pub_key(ed))
    reply = call(settings, alice, action="revoke_ssl_cert", pub_key=qt_pub_key(rsa_key), user="alice")
    assert reply == {"user": "alice", "fingerprint": fingerprint(rsa_key.public_key())}
    ed_fp = fingerprint(ed.public_key())
    assert call(settings, alice, action="revoke_ssl_cert", pub_key=ed_fp)["fingerprint"] == ed_fp
    assert keys.load() == []
    assert call(settings, alice, action="revoke_ssl_cert", pub_key=ed_fp)[0] == 404
    assert call(settings, alice, action="list_ssl_certs") == {}


def test_limited_users_manage_only_their_own_keys(settings, keys, rsa_key):
    """403 for another user's keys, whether the key exists or not; the file is untouched."""
    call(settings, session("alice"), action="register_ssl_cert", pub_key=qt_pub_key(rsa_key))
    mallory = session("mallory")
    for args in ({"action": "revoke_ssl_cert", "pub_key": qt_pub_key(rsa_key), "user": "alice"},
                 {"action": "revoke_ssl_cert", "pub_key": "SHA256:" + "A" * 43, "user": "alice"},
                 {"action": "list_ssl_certs", "user": "alice"}):
        assert call(settings, mallory, **args)[0] == 403
    # Without "user" it is mallory's own key list: alice's key is not hers to revoke.
    assert call(settings, mallory, action="revoke_ssl_cert", pub_key=qt_pub_key(rsa_key))[0] == 404
    assert [k.user for k in keys.load()] == ["alice"]
    assert call(settings, mallory, action="list_ssl_certs") == {}


def test_full_users_list_and_revoke_anyones_keys(settings, keys, rsa_key):
    call(settings, session("alice"), action="register_ssl_cert", pub_key=qt_pub_key(rsa_key))
    admin = session("admin", "full")
    assert list(call(settings, admin, action="list_ssl_certs", user="alice")) == ["alice"]
    assert call(settings, admin, action="list_ssl_certs") == {}
    assert call(settings, admin, action="revoke_ssl_cert", pub_key=qt_pub_key(rsa_key),
                user="alice")["user"] == "alice"
    assert keys.load() == []


def test_checksums_name_every_key_by_sha256_and_md5_of_its_pem(settings, keys, rsa_key):
    """md5_keys[i] is base64(md5(SubjectPublicKeyInfo PEM, final newline included)),
    computed here independently; the file order is kept."""
    ed = ed25519.Ed25519PrivateKey.generate()
    call(settings, session("alice"), action="register_ssl_cert", pub_key=qt_pub_key(rsa_key))
    call(settings, session("bob"), action="register_ssl_cert", pub_key=qt_pub_key(ed))
    answer = call(settings, session("bob"), action="list_ssl_checksums")
    expected_md5 = []
    for private in (rsa_key, ed):
        text = pem(private)
        assert text.startswith(b"-----BEGIN PUBLIC KEY-----\n") and text.endswith(b"-----END PUBLIC KEY-----\n")
        expected_md5.append(base64.b64encode(hashlib.md5(text).digest()).decode())
    assert answer == {
        "sha256_keys": [fingerprint(rsa_key.public_key()), fingerprint(ed.public_key())],
        "md5_keys": expected_md5,
    }


def test_a_damaged_keys_file_accepts_no_key(settings, keys):
    with open(keys.path, "w") as handle:
        handle.write("alice not-a-key\n")
    assert call(settings, session("alice"), action="list_ssl_checksums") == {
        "sha256_keys": [], "md5_keys": []}
    assert call(settings, session("alice"), action="list_ssl_certs")[0] == 500


def test_unknown_or_missing_action_is_404(settings):
    """As before: the known actions are named in the answer."""
    code, details = call(settings, session("alice"), action="nope")
    assert code == 404 and "register_ssl_cert" in details
    with pytest.raises(RequestError) as raised:
        settings.settings(session("alice"), "list_ssl_checksums")
    assert raised.value.code == 404


def test_key_text_accepts_the_three_forms(rsa_key):
    text = pem(rsa_key).decode()
    assert key_text(text) == text.strip()
    assert key_text(base64.b64encode(pem(rsa_key)).decode()) == text
    line = rsa_key.public_key().public_bytes(*SSH).decode()
    assert key_text(line) == line


def test_the_file_work_runs_in_the_reactors_threads(keys, rsa_key):
    """With a reactor, the keys file is read and written in its thread pool."""
    ran = []

    class Pool:
        def callInThreadWithCallback(self, on_result, function, *args, **kwargs):
            ran.append(function.__name__)
            on_result(True, function(*args, **kwargs))

    reactor = SimpleNamespace(getThreadPool=Pool, callFromThread=lambda f, *a, **k: f(*a, **k))
    settings = KeySettings(keys, reactor)
    results = []
    d = settings.settings(session("alice"), {"action": "register_ssl_cert", "pub_key": qt_pub_key(rsa_key)})
    assert isinstance(d, defer.Deferred)
    d.addCallback(results.append)
    assert results == [{"user": "alice", "fingerprint": fingerprint(rsa_key.public_key())}]
    assert ran == ["_add"]
