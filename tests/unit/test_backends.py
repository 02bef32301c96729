"""The users and pam password backends and the system-group rule."""

import grp
import pwd

import pytest
import pytest_twisted
from argon2 import PasswordHasher
from twisted.internet import reactor as global_reactor
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from sysadmd.auth.backends import PamBackend, UsersBackend
from sysadmd.auth.groups import role_for_system_user
from sysadmd.auth.users_file import UsersFile
from sysadmd.interfaces import IPasswordBackend


class SyncThreadPool:
    """Runs 'threaded' calls at once, so Deferreds fire before the call returns."""

    def callInThreadWithCallback(self, on_result, function, *args, **kwargs):
        try:
            result = function(*args, **kwargs)
        except BaseException:
            on_result(False, Failure())
        else:
            on_result(True, result)


class SyncReactor:
    """Just enough reactor for deferToThreadPool, without threads."""

    def __init__(self):
        self.pool = SyncThreadPool()

    def getThreadPool(self):
        return self.pool

    def callFromThread(self, function, *args, **kwargs):
        function(*args, **kwargs)


def result_of(d):
    """The result of a Deferred that has already fired (fails the test otherwise)."""
    results = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    assert not isinstance(results[0], Failure), results[0]
    return results[0]


@pytest.fixture
def users_file(tmp_path):
    users = UsersFile(
        str(tmp_path / "users"), hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )
    users.add("alice", "full", "right")
    users.add("bob", "limited", "bobpw")
    return users


class FakePam:
    """Stands in for pam.pam(): records calls, accepts one user/password pair."""

    calls = []

    def __init__(self, accept=("root", "rootpw"), error=None):
        self.accept = accept
        self.error = error

    def authenticate(self, username, password, service="login"):
        self.calls.append((username, service))
        if self.error is not None:
            raise self.error
        return (username, password) == self.accept


def fake_pam_factory(**kwargs):
    FakePam.calls = []
    return lambda: FakePam(**kwargs)


def test_backends_provide_interface(users_file):
    """Both backends fully provide IPasswordBackend, with their ini names."""
    users = UsersBackend(SyncReactor(), users_file)
    pam_backend = PamBackend(SyncReactor(), "login", ["wheel"], ["operator"])
    assert verifyObject(IPasswordBackend, users)
    assert verifyObject(IPasswordBackend, pam_backend)
    assert (users.name, pam_backend.name) == ("users", "pam")


def test_users_backend_right_wrong_unknown(users_file):
    """Right password -> role; wrong password and unknown user -> None."""
    backend = UsersBackend(SyncReactor(), users_file)
    assert result_of(backend.authenticate("alice", "right")) == "full"
    assert result_of(backend.authenticate("bob", "bobpw")) == "limited"
    assert result_of(backend.authenticate("alice", "wrong")) is None
    assert result_of(backend.authenticate("nobody", "right")) is None


def test_users_backend_role_of(users_file):
    """role_of answers from the file without a password."""
    backend = UsersBackend(SyncReactor(), users_file)
    assert result_of(backend.role_of("bob")) == "limited"
    assert result_of(backend.role_of("nobody")) is None


def test_users_backend_broken_file_logs_and_answers_none(tmp_path):
    """A damaged users file is logged (no password in the log) and refuses everyone."""
    path = tmp_path / "users"
    path.write_text("garbage line\n")
    backend = UsersBackend(SyncReactor(), UsersFile(str(path)))
    with capturedLogs() as events:
        assert result_of(backend.authenticate("alice", "s3cret-pw")) is None
    assert len(events) == 1
    assert events[0]["log_level"].name == "error"
    assert events[0]["path"] == str(path)
    assert "line 1" in events[0]["error"]
    assert "s3cret-pw" not in repr(events)


@pytest_twisted.inlineCallbacks
def test_users_backend_with_real_reactor_thread_pool(users_file):
    """With a real reactor the check runs in its thread pool and fires in the reactor."""
    backend = UsersBackend(global_reactor, users_file)
    role = yield backend.authenticate("alice", "right")
    assert role == "full"
    role = yield backend.authenticate("alice", "nope")
    assert role is None


@pytest.mark.parametrize("service", ["su", "su-l", ""])
def test_pam_backend_refuses_unsafe_service(service):
    """'su' lets root in with any password, so it cannot be the check's service."""
    with pytest.raises(ValueError):
        PamBackend(SyncReactor(), service, ["wheel"], [])


def test_pam_backend_success_then_group_rule():
    """A PAM success for root gives 'full'; the configured service is used."""
    backend = PamBackend(
        SyncReactor(), "system", [], [], pam_factory=fake_pam_factory(accept=("root", "pw"))
    )
    assert result_of(backend.authenticate("root", "pw")) == "full"
    assert FakePam.calls == [("root", "system")]


def test_pam_backend_failure_gives_none():
    """A PAM failure gives None."""
    backend = PamBackend(
        SyncReactor(), "login", [], [], pam_factory=fake_pam_factory(accept=("root", "pw"))
    )
    assert result_of(backend.authenticate("root", "bad")) is None


def test_pam_backend_user_without_group_gets_nothing():
    """A correct password is not enough: the user must be in a configured group."""
    user = _ordinary_user()
    backend = PamBackend(
        SyncReactor(), "login", ["no-such-group-xyz"], [],
        pam_factory=fake_pam_factory(accept=(user.pw_name, "pw")),
    )
    assert result_of(backend.authenticate(user.pw_name, "pw")) is None


def test_pam_backend_refuses_non_strings_without_calling_pam():
    """Non-string or NUL-containing credentials never reach PAM."""
    backend = PamBackend(SyncReactor(), "login", [], [], pam_factory=fake_pam_factory())
    for username, password in ((None, "pw"), ("root", None), ("root", "p\0w"), ("ro\0ot", "x")):
        assert result_of(backend.authenticate(username, password)) is None
    assert FakePam.calls == []


def test_pam_backend_error_logs_and_gives_none():
    """An exception from PAM is logged (without the password) and answers None."""
    backend = PamBackend(
        SyncReactor(), "login", [], [],
        pam_factory=fake_pam_factory(error=RuntimeError("pam exploded")),
    )
    with capturedLogs() as events:
        assert result_of(backend.authenticate("root", "s3cret-pw")) is None
    assert [event["error"] for event in events] == ["pam exploded"]
    assert "s3cret-pw" not in repr(events)


def test_pam_backend_role_of_uses_groups():
    """role_of applies the group rule without PAM."""
    backend = PamBackend(SyncReactor(), "login", [], [], pam_factory=fake_pam_factory())
    assert result_of(backend.role_of("root")) == "full"
    assert result_of(backend.role_of("no-such-user-xyz")) is None
    assert FakePam.calls == []


def _ordinary_user():
    """A non-root account whose primary group has a name on this host."""
    for entry in pwd.getpwall():
        if entry.pw_uid == 0:
            continue
        try:
            grp.getgrgid(entry.pw_gid)
        except KeyError:
            continue
        return entry
    pytest.skip("no non-root account with a named primary group on this host (as root: "
                "useradd --system --user-group sysadmd-test; make test creates it)")


def test_root_is_always_full():
    """uid 0 gets 'full' whatever the groups say."""
    assert role_for_system_user("root", [], []) == "full"


def test_unknown_or_invalid_user_gets_none():
    """Names without an account (or impossible ones) get None."""
    assert role_for_system_user("no-such-user-xyz", ["wheel"], ["operator"]) is None
    assert role_for_system_user("bad\0name", ["wheel"], []) is None


def test_primary_group_counts_for_membership():
    """The primary group grants access: full first, then limited, else None."""
    user = _ordinary_user()
    group = grp.getgrgid(user.pw_gid).gr_name
    assert role_for_system_user(user.pw_name, [group], []) == "full"
    assert role_for_system_user(user.pw_name, ["no-such-group-xyz"], [group]) == "limited"
    assert role_for_system_user(user.pw_name, [group], [group]) == "full"
    assert role_for_system_user(user.pw_name, ["no-such-group-xyz"], []) is None
