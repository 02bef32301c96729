"""The keys file: accepted key formats and types, fingerprints, edits."""

import base64
import os
import shutil
import stat
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from sysadmd.auth.keys_file import KeysFile, KeysFileError, fingerprint, parse_public_key

SSH = (serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
SPKI = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
PKCS1 = (serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)


@pytest.fixture(scope="module")
def private_keys():
    """One private key of each supported kind (RSA generation is slow: made once)."""
    return {
        "ssh-ed25519": ed25519.Ed25519PrivateKey.generate(),
        "ecdsa-sha2-nistp256": ec.generate_private_key(ec.SECP256R1()),
        "ecdsa-sha2-nistp384": ec.generate_private_key(ec.SECP384R1()),
        "ssh-rsa": rsa.generate_private_key(65537, 2048),
    }


@pytest.fixture
def keys(tmp_path):
    return KeysFile(str(tmp_path / "keys"))


def _openssh(private_key, comment=""):
    line = private_key.public_key().public_bytes(*SSH)
    return line + (b" " + comment.encode() if comment else b"")


def _same_key(a, b):
    return a.public_bytes(*SSH) == b.public_bytes(*SSH)


KINDS = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ssh-rsa"]


@pytest.mark.parametrize("kind", KINDS)
def test_add_openssh_line(keys, private_keys, kind):
    """An OpenSSH line is stored with its comment and loads back as the same key."""
    private_key = private_keys[kind]
    added = keys.add("alice", _openssh(private_key, "alice@laptop") + b"\n")
    (loaded,) = keys.load()
    assert loaded == added
    assert loaded.user == "alice"
    assert loaded.key_type == kind
    assert loaded.comment == "alice@laptop"
    assert _same_key(loaded.public_key, private_key.public_key())
    assert loaded.fingerprint == fingerprint(private_key.public_key())
    with open(keys.path) as handle:
        assert handle.read() == f"alice {_openssh(private_key).decode()} alice@laptop\n"
    assert stat.S_IMODE(os.stat(keys.path).st_mode) == 0o600


@pytest.mark.parametrize(
    "kind, pem_format",
    [("ssh-ed25519", SPKI), ("ecdsa-sha2-nistp384", SPKI), ("ssh-rsa", SPKI),
     ("ssh-rsa", PKCS1)],
    ids=["ed25519-spki", "p384-spki", "rsa-spki", "rsa-pkcs1"],
)
def test_add_pem_is_stored_as_openssh(keys, private_keys, kind, pem_format):
    """PEM keys (SubjectPublicKeyInfo or PKCS#1) are converted to OpenSSH form."""
    private_key = private_keys[kind]
    keys.add("bob", private_key.public_key().public_bytes(*pem_format))
    with open(keys.path) as handle:
        assert handle.read() == f"bob {_openssh(private_key).decode()}\n"
    (loaded,) = keys.load()
    assert loaded.comment == ""
    assert _same_key(loaded.public_key, private_key.public_key())


def test_duplicate_key_refused_in_any_form_for_any_user(keys, private_keys):
    """A key already registered (even as PEM, even for another user) is refused."""
    private_key = private_keys["ssh-rsa"]
    keys.add("alice", _openssh(private_key))
    with pytest.raises(KeysFileError, match="already registered for user 'alice'"):
        keys.add("bob", private_key.public_key().public_bytes(*PKCS1))
    assert len(keys.load()) == 1


def _unsupported_inputs():
    rsa_1024 = rsa.generate_private_key(65537, 1024).public_key()
    dsa_key = dsa.generate_private_key(1024).public_key()
    return {
        "rsa-1024-openssh": rsa_1024.public_bytes(*SSH),
        "rsa-1024-pem": rsa_1024.public_bytes(*SPKI),
        # cryptography deprecates writing DSA in OpenSSH form; the type alone is refused.
        "dsa-openssh": b"ssh-dss AAAAB3NzaC1kc3MAAACBAP8=",
        "dsa-pem": dsa_key.public_bytes(*SPKI),
        "p224-pem": ec.generate_private_key(ec.SECP224R1()).public_key().public_bytes(*SPKI),
        "ed448-pem": ed448.Ed448PrivateKey.generate().public_key().public_bytes(*SPKI),
        "certificate-type": b"ssh-ed25519-cert-v01@openssh.com AAAA",
        "bad-base64": b"ssh-ed25519 not*base64",
        "wrong-type-for-blob": b"ssh-rsa " + _openssh(
            ed25519.Ed25519PrivateKey.generate()).split()[1],
        "not-a-key": b"hello",
        "empty": b"",
        "bad-pem": b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        "binary": b"\xff\xfe\x00",
    }


UNSUPPORTED = _unsupported_inputs()


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported_or_malformed_keys_refused(keys, name):
    """Weak or unknown key types and garbage are refused without touching the file."""
    with pytest.raises(KeysFileError):
        keys.add("alice", UNSUPPORTED[name])
    assert not os.path.exists(keys.path)


def test_private_key_refused_with_hint(private_keys):
    """A private key given by mistake is refused with a hint to use the public one."""
    pem = private_keys["ssh-ed25519"].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="private key"):
        parse_public_key(pem)


def test_two_keys_in_one_input_refused(private_keys):
    """One add registers one key: a file with two is ambiguous."""
    data = _openssh(private_keys["ssh-ed25519"]) + b"\n" + _openssh(private_keys["ssh-rsa"])
    with pytest.raises(ValueError, match="exactly one"):
        parse_public_key(data)


def test_invalid_username_refused(keys, private_keys):
    """The user name follows the same rule as the users file."""
    with pytest.raises(KeysFileError, match="invalid user name"):
        keys.add("bad name", _openssh(private_keys["ssh-ed25519"]))


def test_fingerprint_format(private_keys):
    """SHA256: then unpadded base64 of the SHA-256 of the OpenSSH wire blob."""
    public_key = private_keys["ssh-ed25519"].public_key()
    value = fingerprint(public_key)
    assert value.startswith("SHA256:")
    assert len(value) == len("SHA256:") + 43
    assert "=" not in value
    other = fingerprint(ed25519.Ed25519PrivateKey.generate().public_key())
    assert other != value


@pytest.mark.parametrize("kind", KINDS)
def test_fingerprint_matches_ssh_keygen(tmp_path, private_keys, kind):
    """The fingerprint is the one ``ssh-keygen -lf`` prints."""
    ssh_keygen = shutil.which("ssh-keygen")
    if ssh_keygen is None:
        pytest.skip("ssh-keygen is not installed: cannot compare with OpenSSH's output "
                    "(apt-get install openssh-client; make test installs it)")
    public_key = private_keys[kind].public_key()
    pub = tmp_path / "key.pub"
    pub.write_bytes(public_key.public_bytes(*SSH) + b" test\n")
    output = subprocess.run(
        [ssh_keygen, "-E", "sha256", "-lf", str(pub)],
        check=True, capture_output=True, text=True,
    ).stdout
    assert output.split()[1] == fingerprint(public_key)


def test_remove_by_fingerprint_and_by_user(keys, private_keys):
    """remove() takes a fingerprint or a user name and returns the count removed."""
    a1 = keys.add("alice", _openssh(private_keys["ssh-ed25519"]))
    keys.add("alice", _openssh(private_keys["ecdsa-sha2-nistp256"]))
    bob = keys.add("bob", _openssh(private_keys["ssh-rsa"]))
    assert keys.remove(a1.fingerprint) == 1
    assert keys.remove("SHA256:" + base64.b64encode(b"x" * 32).decode().rstrip("=")) == 0
    assert keys.remove("carol") == 0
    assert [key.user for key in keys.list()] == ["alice", "bob"]
    assert keys.remove("alice") == 1
    assert keys.list() == [bob]


def test_comments_kept_on_rewrite(keys, private_keys):
    """Hand-written comments in the keys file survive add and remove."""
    with open(keys.path, "w") as handle:
        handle.write("# laptops\n")
    keys.add("alice", _openssh(private_keys["ssh-ed25519"]))
    keys.remove("alice")
    with open(keys.path) as handle:
        assert handle.read() == "# laptops\n"


@pytest.mark.parametrize(
    "bad_line",
    ["alice", "alice ssh-ed25519 AAAA", "bad:name ssh-ed25519 AAAA", "alice ssh-dss AAAA"],
)
def test_malformed_line_names_file_and_line(keys, bad_line):
    """A damaged keys file is reported with its path and the line number."""
    with open(keys.path, "w") as handle:
        handle.write("\n# comment\n" + bad_line + "\n")
    with pytest.raises(KeysFileError) as caught:
        keys.load()
    assert str(caught.value).startswith(f"{keys.path}, line 3: ")


def test_missing_file_has_no_keys(keys):
    """A keys file that does not exist yet is empty."""
    assert keys.load() == []
    assert keys.list() == []


def test_changes_by_another_writer_are_seen(keys, private_keys):
    """A second instance (sysadmd-admin) editing the file is seen by the first."""
    assert keys.load() == []
    KeysFile(keys.path).add("alice", _openssh(private_keys["ssh-ed25519"]))
    assert [key.user for key in keys.load()] == ["alice"]


def test_a_given_comment_replaces_the_keys_own(keys, private_keys):
    """add(comment=...) writes one clean line of comment, whatever the key carried."""
    key = keys.add("alice", _openssh(private_keys["ssh-ed25519"], "old@host"), "Alice\n laptop\t<a@x>")
    assert key.comment == "Alice laptop <a@x>"
    [loaded] = keys.load()
    assert loaded.comment == "Alice laptop <a@x>"
    kept = keys.add("bob", _openssh(private_keys["ssh-rsa"], "bob@host"))
    assert kept.comment == "bob@host"


def test_remove_a_fingerprint_only_of_its_user(keys, private_keys):
    """remove(fingerprint, user=...) leaves another user's key alone."""
    key = keys.add("alice", _openssh(private_keys["ssh-ed25519"]))
    assert keys.remove(key.fingerprint, user="bob") == 0
    assert [k.user for k in keys.load()] == ["alice"]
    assert keys.remove(key.fingerprint, user="alice") == 1
    assert keys.load() == []
