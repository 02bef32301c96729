"""The users file: parsing, verification, and edits by sysadmd-admin."""

import os
import stat

import pytest
from argon2 import PasswordHasher, Type

from sysadmd.auth.users_file import UsersFile, UsersFileError, validate_username


def cheap_hasher():
    """Argon2id at the lowest cost, so the tests stay fast."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


class SpyHasher(PasswordHasher):
    """Records which hashes verify() was asked to check."""

    def __init__(self):
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.verified = []

    def verify(self, hash, password):
        self.verified.append(hash)
        return super().verify(hash, password)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "users")


@pytest.fixture
def users(path):
    return UsersFile(path, hasher=cheap_hasher())


def test_missing_file_has_no_users(users):
    """A users file that does not exist yet is empty, not an error."""
    assert users.load() == {}
    assert users.list() == []
    assert users.verify("alice", "pw") is None


def test_add_and_verify(users):
    """The right password gives the role; a wrong one or an unknown user gives None."""
    users.add("alice", "full", "correct horse")
    users.add("bob", "limited", "battery staple")
    assert users.verify("alice", "correct horse") == "full"
    assert users.verify("bob", "battery staple") == "limited"
    assert users.verify("alice", "battery staple") is None
    assert users.verify("carol", "correct horse") is None
    assert users.list() == [("alice", "full"), ("bob", "limited")]
    assert users.role_of("bob") == "limited"
    assert users.role_of("carol") is None


def test_file_format_and_mode(users, path):
    """Lines are name:role:argon2id-hash and the file is readable by its owner only."""
    users.add("alice", "full", "correct-horse")
    with open(path) as handle:
        text = handle.read()
    assert "correct-horse" not in text
    (line,) = text.splitlines()
    name, role, hashed = line.split(":", 2)
    assert (name, role) == ("alice", "full")
    assert hashed.startswith("$argon2id$")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_default_hasher_is_argon2id_with_library_defaults(path):
    """Without a hasher argument, production hashes use argon2-cffi's Argon2id defaults."""
    UsersFile(path).add("alice", "full", "pw")
    hashed = UsersFile(path).load()["alice"][1]
    defaults = PasswordHasher()
    assert defaults.type is Type.ID
    assert hashed.startswith(
        f"$argon2id$v=19$m={defaults.memory_cost},t={defaults.time_cost},"
        f"p={defaults.parallelism}$"
    )


def test_unknown_user_costs_one_verification_with_same_parameters(path):
    """An unknown name is checked against a dummy hash made like a real one."""
    hasher = SpyHasher()
    users = UsersFile(path, hasher=hasher)
    users.add("alice", "full", "pw")
    assert users.verify("alice", "wrong") is None
    assert users.verify("nobody", "wrong") is None
    assert users.verify("nobody2", "wrong") is None
    real, dummy, dummy_again = hasher.verified
    assert dummy == dummy_again
    assert dummy != real
    assert dummy.rsplit("$", 2)[0] == real.rsplit("$", 2)[0]


def test_non_string_credentials_are_refused(users):
    """Values that are not strings (from a bad JSON request) never authenticate."""
    users.add("alice", "full", "pw")
    assert users.verify("alice", None) is None
    assert users.verify("alice", b"pw") is None
    assert users.verify(None, "pw") is None


def test_comments_and_blank_lines_are_kept(users, path):
    """Hand-written comments survive add, passwd and remove."""
    with open(path, "w") as handle:
        handle.write("# operators\n\n")
    users.add("alice", "full", "pw")
    users.add("bob", "limited", "pw")
    users.set_password("alice", "new")
    users.remove("bob")
    with open(path) as handle:
        lines = handle.read().splitlines()
    assert lines[:2] == ["# operators", ""]
    assert [line.split(":")[0] for line in lines[2:]] == ["alice"]


def test_set_password_keeps_role(users):
    """After passwd the old password fails, the new works, the role is unchanged."""
    users.add("bob", "limited", "old")
    users.set_password("bob", "new")
    assert users.verify("bob", "old") is None
    assert users.verify("bob", "new") == "limited"


def test_remove(users):
    """A removed user can no longer log in."""
    users.add("alice", "full", "pw")
    users.remove("alice")
    assert users.verify("alice", "pw") is None
    assert users.list() == []


@pytest.mark.parametrize(
    "change",
    [
        lambda users: users.add("alice", "full", "again"),
        lambda users: users.set_password("zed", "pw"),
        lambda users: users.remove("zed"),
        lambda users: users.add("carol", "admin", "pw"),
        lambda users: users.add("carol", "full", ""),
        lambda users: users.add("bad name", "full", "pw"),
    ],
    ids=["duplicate", "passwd-unknown", "remove-unknown", "bad-role", "empty-password",
         "bad-name"],
)
def test_refused_changes_leave_file_alone(users, path, change):
    """Impossible changes raise UsersFileError and do not touch the file."""
    users.add("alice", "full", "pw")
    with open(path) as handle:
        before = handle.read()
    with pytest.raises(UsersFileError):
        change(users)
    with open(path) as handle:
        assert handle.read() == before


@pytest.mark.parametrize(
    "name", ["", "a b", "x" * 65, "a:b", "\u00e4", "alice\n", "a/b", None]
)
def test_invalid_usernames(name):
    """Names outside [A-Za-z0-9_.-]{1,64} are rejected."""
    with pytest.raises(ValueError):
        validate_username(name)


def test_valid_usernames():
    """Letters, digits, '_', '.', '-' up to 64 characters are accepted."""
    for name in ("a", "Alice_B.c-9", "x" * 64):
        assert validate_username(name) == name


@pytest.mark.parametrize(
    "bad_line, reason",
    [
        ("alice", "expected name:role:argon2id-hash"),
        ("alice:root:$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA", "unknown role"),
        ("alice:full:plaintext", "not an Argon2id hash"),
        ("alice:full:$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g", "not an Argon2id"),
        ("al ice:full:$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA", "invalid user name"),
    ],
)
def test_malformed_line_names_file_and_line(users, path, bad_line, reason):
    """A malformed entry is reported with the file's path and its line number."""
    users.add("bob", "full", "pw")
    with open(path, "a") as handle:
        handle.write("# comment\n" + bad_line + "\n")
    with pytest.raises(UsersFileError) as caught:
        UsersFile(path, hasher=cheap_hasher()).load()
    message = str(caught.value)
    assert message.startswith(f"{path}, line 3: ")
    assert reason in message


def test_duplicate_user_in_file_is_an_error(users, path):
    """The same name twice in the file is reported with both lines."""
    users.add("bob", "full", "pw")
    with open(path) as handle:
        line = handle.read()
    with open(path, "a") as handle:
        handle.write(line)
    with pytest.raises(UsersFileError, match=r"line 2: user 'bob' already defined on line 1"):
        users.load()


def test_changes_by_another_writer_are_seen(path):
    """The daemon's instance sees what sysadmd-admin's instance wrote, without restart."""
    daemon = UsersFile(path, hasher=cheap_hasher())
    admin = UsersFile(path, hasher=cheap_hasher())
    assert daemon.verify("alice", "pw") is None
    admin.add("alice", "full", "pw")
    assert daemon.verify("alice", "pw") == "full"
    admin.set_password("alice", "other")
    assert daemon.verify("alice", "pw") is None
    assert daemon.verify("alice", "other") == "full"
    admin.remove("alice")
    assert daemon.role_of("alice") is None
