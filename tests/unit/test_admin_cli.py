"""sysadmd-admin, run in-process: users and keys commands, errors, exit statuses."""

import io
import os
import stat

import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from sysadmd.admin import cli
from sysadmd.auth import users_file as users_file_module
from sysadmd.auth.keys_file import KeysFile, fingerprint
from sysadmd.auth.users_file import UsersFile

PASSWORD = "pa55-w0rd-xyz"


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch):
    """Production hashing costs ~0.1s a hash; the CLI's logic does not depend on it."""
    monkeypatch.setattr(
        users_file_module,
        "PasswordHasher",
        lambda: PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )


@pytest.fixture
def users_path(tmp_path):
    return str(tmp_path / "users")


@pytest.fixture
def keys_path(tmp_path):
    return str(tmp_path / "keys")


def run(monkeypatch, argv, stdin=""):
    """Run main() with ``stdin`` as standard input (text, with a bytes .buffer)."""
    data = stdin.encode() if isinstance(stdin, str) else stdin
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    return cli.main(argv)


def add_user(monkeypatch, path, name, role, password=PASSWORD):
    return run(
        monkeypatch,
        ["user", "add", name, "--role", role, "--users-file", path, "--password-stdin"],
        password + "\n",
    )


def assert_one_error_line(capsys, fragment):
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sysadmd-admin: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in err
    return out, err


def test_user_add_with_password_stdin(monkeypatch, capsys, users_path):
    """The stdin line without its newline becomes the password; the file is 0600."""
    assert add_user(monkeypatch, users_path, "alice", "full") == 0
    assert stat.S_IMODE(os.stat(users_path).st_mode) == 0o600
    users = UsersFile(users_path)
    assert users.verify("alice", PASSWORD) == "full"
    assert users.verify("alice", PASSWORD + "\n") is None
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err


def test_password_stdin_strips_crlf(monkeypatch, users_path):
    """A CR LF line ending is not part of the password."""
    argv = ["user", "add", "bob", "--role", "limited", "--users-file", users_path,
            "--password-stdin"]
    assert run(monkeypatch, argv, "pw\r\n") == 0
    assert UsersFile(users_path).verify("bob", "pw") == "limited"


def test_user_list_output(monkeypatch, capsys, users_path):
    """user list prints 'name role' lines sorted by name."""
    add_user(monkeypatch, users_path, "bob", "limited")
    add_user(monkeypatch, users_path, "alice", "full")
    capsys.readouterr()
    assert run(monkeypatch, ["user", "list", "--users-file", users_path]) == 0
    assert capsys.readouterr().out == "alice full\nbob limited\n"


def test_user_add_prompts_twice(monkeypatch, capsys, users_path):
    """Without --password-stdin the password is typed twice with getpass."""
    answers = iter([PASSWORD, PASSWORD])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    argv = ["user", "add", "carol", "--role", "full", "--users-file", users_path]
    assert run(monkeypatch, argv) == 0
    assert UsersFile(users_path).verify("carol", PASSWORD) == "full"
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err


def test_user_add_prompt_mismatch(monkeypatch, capsys, users_path):
    """Two different typed passwords are an error and add nobody."""
    answers = iter([PASSWORD, PASSWORD + "x"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    argv = ["user", "add", "carol", "--role", "full", "--users-file", users_path]
    assert run(monkeypatch, argv) == 1
    _, err = assert_one_error_line(capsys, "do not match")
    assert PASSWORD not in err
    assert not os.path.exists(users_path)


@pytest.mark.parametrize("stdin", ["", "\n"])
def test_empty_password_refused(monkeypatch, capsys, users_path, stdin):
    """An empty password (or no input at all) is refused."""
    argv = ["user", "add", "dave", "--role", "full", "--users-file", users_path,
            "--password-stdin"]
    assert run(monkeypatch, argv, stdin) == 1
    assert_one_error_line(capsys, "must not be empty")
    assert UsersFile(users_path).list() == []


def test_user_add_existing_is_error(monkeypatch, capsys, users_path):
    """Adding a user twice fails with one error line and exit status 1."""
    add_user(monkeypatch, users_path, "alice", "full")
    assert add_user(monkeypatch, users_path, "alice", "limited", "other") == 1
    assert_one_error_line(capsys, "already exists")
    assert UsersFile(users_path).verify("alice", PASSWORD) == "full"


def test_user_passwd(monkeypatch, users_path):
    """user passwd replaces the password."""
    add_user(monkeypatch, users_path, "alice", "full")
    argv = ["user", "passwd", "alice", "--users-file", users_path, "--password-stdin"]
    assert run(monkeypatch, argv, "newpw\n") == 0
    users = UsersFile(users_path)
    assert users.verify("alice", "newpw") == "full"
    assert users.verify("alice", PASSWORD) is None


def test_user_passwd_unknown_user(monkeypatch, capsys, users_path):
    """passwd for a missing user fails before asking for a password."""
    asked = []
    monkeypatch.setattr("getpass.getpass", lambda prompt="": asked.append(prompt) or "x")
    assert run(monkeypatch, ["user", "passwd", "zed", "--users-file", users_path]) == 1
    assert_one_error_line(capsys, "no user 'zed'")
    assert asked == []


def test_user_remove(monkeypatch, capsys, users_path):
    """user remove deletes the user; removing again is an error."""
    add_user(monkeypatch, users_path, "alice", "full")
    argv = ["user", "remove", "alice", "--users-file", users_path]
    assert run(monkeypatch, argv) == 0
    assert UsersFile(users_path).list() == []
    assert run(monkeypatch, argv) == 1
    assert_one_error_line(capsys, "no user 'alice'")


def test_invalid_name_is_error(monkeypatch, capsys, users_path):
    """A user name outside the allowed characters is one error line."""
    assert add_user(monkeypatch, users_path, "bad:name", "full") == 1
    assert_one_error_line(capsys, "invalid user name")


def test_damaged_users_file_reports_line(monkeypatch, capsys, users_path):
    """A malformed users file is reported with its path and line number."""
    with open(users_path, "w") as handle:
        handle.write("# ok\nnot a valid line\n")
    assert run(monkeypatch, ["user", "list", "--users-file", users_path]) == 1
    assert_one_error_line(capsys, f"{users_path}, line 2")


def test_os_error_is_one_line(monkeypatch, capsys, tmp_path):
    """A path that cannot be written (its parent is a file) is one error line."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert add_user(monkeypatch, str(blocker / "users"), "alice", "full") == 1
    assert_one_error_line(capsys, str(blocker))


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["user"],
        ["user", "add", "alice", "--users-file", "x"],
        ["user", "add", "alice", "--role", "admin", "--users-file", "x"],
        ["user", "list"],
        ["key", "add", "--keys-file", "x", "key.pub"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(monkeypatch, capsys, argv):
    """Missing or wrong arguments are argparse usage errors (exit status 2)."""
    with pytest.raises(SystemExit) as caught:
        run(monkeypatch, argv)
    assert caught.value.code == 2
    assert "usage:" in capsys.readouterr().err


def _public_key_line(comment="laptop"):
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    line = key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return key, line + b" " + comment.encode() + b"\n"


def test_key_add_from_file_prints_fingerprint(monkeypatch, capsys, tmp_path, keys_path):
    """key add registers the key and prints its fingerprint; the file is 0600."""
    key, line = _public_key_line()
    pub = tmp_path / "id.pub"
    pub.write_bytes(line)
    argv = ["key", "add", "--user", "alice", "--keys-file", keys_path, str(pub)]
    assert run(monkeypatch, argv) == 0
    assert capsys.readouterr().out == fingerprint(key) + "\n"
    assert [k.user for k in KeysFile(keys_path).load()] == ["alice"]
    assert stat.S_IMODE(os.stat(keys_path).st_mode) == 0o600


def test_key_add_from_stdin_and_list(monkeypatch, capsys, keys_path):
    """'-' reads the key from stdin; key list prints user fingerprint type comment."""
    key, line = _public_key_line("alice@host")
    argv = ["key", "add", "--user", "alice", "--keys-file", keys_path, "-"]
    assert run(monkeypatch, argv, line) == 0
    capsys.readouterr()
    assert run(monkeypatch, ["key", "list", "--keys-file", keys_path]) == 0
    assert capsys.readouterr().out == f"alice {fingerprint(key)} ssh-ed25519 alice@host\n"


def test_key_add_duplicate_and_garbage(monkeypatch, capsys, keys_path):
    """A duplicate key or a non-key is one error line and exit status 1."""
    _, line = _public_key_line()
    argv = ["key", "add", "--user", "alice", "--keys-file", keys_path, "-"]
    assert run(monkeypatch, argv, line) == 0
    capsys.readouterr()
    assert run(monkeypatch, argv, line) == 1
    assert_one_error_line(capsys, "already registered")
    assert run(monkeypatch, argv, b"not a key\n") == 1
    assert_one_error_line(capsys, "not an OpenSSH public key line nor a PEM public key")


def test_key_add_missing_file(monkeypatch, capsys, tmp_path, keys_path):
    """An unreadable PUBKEY_FILE is one error line naming it."""
    missing = str(tmp_path / "missing.pub")
    argv = ["key", "add", "--user", "alice", "--keys-file", keys_path, missing]
    assert run(monkeypatch, argv) == 1
    assert_one_error_line(capsys, missing)


def test_key_remove(monkeypatch, capsys, keys_path):
    """key remove takes a fingerprint or a user; nothing matching is an error."""
    key_a, line_a = _public_key_line()
    _, line_b = _public_key_line()
    base = ["key", "add", "--keys-file", keys_path, "-"]
    run(monkeypatch, base[:2] + ["--user", "alice"] + base[2:], line_a)
    run(monkeypatch, base[:2] + ["--user", "bob"] + base[2:], line_b)
    capsys.readouterr()
    remove = ["key", "remove", "--keys-file", keys_path]
    assert run(monkeypatch, remove + [fingerprint(key_a)]) == 0
    assert [k.user for k in KeysFile(keys_path).load()] == ["bob"]
    assert run(monkeypatch, remove + ["bob"]) == 0
    assert KeysFile(keys_path).load() == []
    assert run(monkeypatch, remove + ["bob"]) == 1
    assert_one_error_line(capsys, "no key matches 'bob'")
