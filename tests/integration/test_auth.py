"""Password and token authentication, access levels and PAM, against the real daemon.

The helpers at the top (``config``, ``error_code``, ``expect_error``) are shared by the
other ``test_auth*`` modules and ``test_tls``.
"""

import grp
import os
import pwd
import re
import secrets
import subprocess
import time

import pytest

from tests.integration.harness import BASE_CONFIG, TWISTD, Client

FAILED = "Authentication failed."
TOKEN = re.compile(r"\A[0-9a-f]{64}\Z")


def config(base=BASE_CONFIG, **sections):
    """``base`` with keys set in its sections: ``config(auth={"token_ttl": 2})``.

    A key already in the section is replaced (a duplicate key is a config error); new
    sections are appended."""
    pending = {name: dict(keys) for name, keys in sections.items()}
    lines, section = [], None

    def flush():
        for key, value in pending.pop(section, {}).items():
            lines.append(f"{key} = {value}")

    for line in base.splitlines():
        header = re.match(r"\[(.+)\]\s*$", line)
        if header:
            flush()
            section = header.group(1)
        elif section in pending and "=" in line:
            key = line.split("=", 1)[0].strip()
            if key in pending[section]:
                line = f"{key} = {pending[section].pop(key)}"
        lines.append(line)
    flush()
    for name in list(pending):
        lines.append(f"[{name}]")
        section = name
        flush()
    return "\n".join(lines) + "\n"


def error_code(frame):
    """The code of an error frame (asserting that it is one)."""
    assert frame["namespace"] == "error" and frame["name"] == "error", frame
    return frame["args"]["code"]


def expect_error(frame, code):
    """Assert ``frame`` is an error with ``code``; return its details (the message
    specific to this failure)."""
    assert error_code(frame) == code, frame
    return frame["args"]["details"]


def granted(reply):
    """Assert ``reply`` is a successful login; return the token."""
    assert reply["namespace"] == "rpc" and reply["name"] == "response", reply
    token, lifetime = reply["args"]
    assert TOKEN.match(token), token
    assert lifetime == 900
    return token


def dispatcher(client, action, **args):
    return client.call("rpc", "dispatcher", dict(args, action=action))


def assert_full_access(client):
    """A call only full users may make gets past the policy (the dispatcher's handler then
    refuses its negative timeout, so nothing runs)."""
    reply = dispatcher(client, "run", timeout=-1, **{"sysadmd-test": "true"})
    assert reply["namespace"] != "error" or reply["args"]["code"] not in (401, 403), reply


def assert_limited_access(client, marker):
    """run and kill get 403, nothing is run, and the connection stays usable."""
    expect_error(dispatcher(client, "run", **{"sysadmd-test": f"touch {marker}"}), 403)
    expect_error(dispatcher(client, "kill", job_id="sysadmd-test"), 403)
    assert client.call("rpc", "query")["name"] == "response"
    time.sleep(0.5)
    assert not os.path.exists(marker)


# Password login


def test_password_login_returns_a_64_hex_token_and_900_s(daemon, client):
    reply = client.login("admin", "admin-secret-pw")
    granted(reply)
    assert client.call("rpc", "query")["name"] == "response"


def test_every_login_gets_a_fresh_token(daemon):
    first, second = Client(daemon.url), Client(daemon.url)
    try:
        assert granted(first.login("admin", "admin-secret-pw")) != granted(
            second.login("admin", "admin-secret-pw"))
    finally:
        first.close()
        second.close()


def test_wrong_password_and_unknown_user_get_the_same_401(client):
    wrong = client.login("admin", "not-the-password")
    unknown = client.login("nobody-here", "admin-secret-pw")
    assert expect_error(wrong, 401) == FAILED
    assert wrong["args"] == unknown["args"]
    expect_error(client.call("rpc", "query"), 401)


def test_one_users_password_does_not_open_another_account(client):
    expect_error(client.login("admin", "viewer-secret-pw"), 401)


# Tokens


def test_auth_token_reuses_the_session_on_a_second_connection(daemon, admin):
    token = granted(admin.login("admin", "admin-secret-pw"))
    other = Client(daemon.url)
    try:
        expect_error(other.call("rpc", "query"), 401)
        assert granted(other.call("rpc", "auth_token", {"token": token})) == token
        assert other.call("rpc", "query")["name"] == "response"
        # still full access: a full-only call is not refused by the policy
        assert_full_access(other)
    finally:
        other.close()
    assert admin.call("rpc", "query")["name"] == "response"


def test_bogus_token_is_401(client):
    for token in ("0" * 64, secrets.token_hex(32), "", "x"):
        assert expect_error(client.call("rpc", "auth_token", {"token": token}), 401) == FAILED
    expect_error(client.call("rpc", "query"), 401)


def test_auth_clear_signs_out_and_revokes_the_token(daemon, client):
    token = granted(client.login("admin", "admin-secret-pw"))
    assert client.call("rpc", "query")["name"] == "response"
    reply = client.call("rpc", "auth_clear")
    assert reply["name"] == "response" and reply["args"] == {}, reply
    expect_error(client.call("rpc", "query"), 401)
    expect_error(client.call("events", "subscribe", ["ticker"]), 401)
    other = Client(daemon.url)
    try:
        expect_error(other.call("rpc", "auth_token", {"token": token}), 401)
    finally:
        other.close()
    # the connection itself is fine: it can sign in again
    granted(client.login("admin", "admin-secret-pw"))


def test_auth_clear_ends_every_session_sharing_the_token(daemon, admin):
    token = granted(admin.login("admin", "admin-secret-pw"))
    other = Client(daemon.url)
    try:
        granted(other.call("rpc", "auth_token", {"token": token}))
        assert admin.call("rpc", "auth_clear")["args"] == {}
        expect_error(other.call("rpc", "query"), 401)
    finally:
        other.close()


def test_auth_clear_ends_the_subscriptions_of_sessions_sharing_the_token(daemon, admin):
    token = granted(admin.login("admin", "admin-secret-pw"))
    other = Client(daemon.url)
    try:
        granted(other.call("rpc", "auth_token", {"token": token}))
        assert other.call("events", "subscribe", ["ticker"])["name"] == "response"
        other.next_event("ticker")
        assert admin.call("rpc", "auth_clear")["args"] == {}
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:  # events already on their way may arrive
            try:
                frame = other.next_event(timeout=0.5)
            except TimeoutError:
                break
        else:
            pytest.fail(f"still receiving events after the token was revoked: {frame}")
    finally:
        other.close()


def test_token_is_extended_by_requests(make_daemon):
    d = make_daemon(config(auth={"token_ttl": 2}), start=False)
    d.add_user("admin", "admin-secret-pw")
    d.start()
    c = Client(d.url)
    try:
        assert c.login("admin", "admin-secret-pw")["args"][1] == 2
        deadline = time.monotonic() + 4.5
        while time.monotonic() < deadline:
            time.sleep(0.6)
            assert c.call("rpc", "query")["name"] == "response"
    finally:
        c.close()


def test_expired_token_is_401_and_its_subscriptions_end(make_daemon):
    d = make_daemon(config(auth={"token_ttl": 2}), start=False)
    d.add_user("admin", "admin-secret-pw")
    d.start()
    c = Client(d.url)
    try:
        token = c.login("admin", "admin-secret-pw")["args"][0]
        assert c.call("events", "subscribe", ["ticker"])["name"] == "response"
        started = time.monotonic()
        ticks = 0
        while True:  # idle: only read, until the daemon says the session ended
            frame = c.next_event(timeout=6)
            if frame["namespace"] == "events" and frame["name"] == "ticker":
                ticks += 1
                continue
            break
        assert expect_error(frame, 401) and frame["id"] is None, frame
        assert 1.5 < time.monotonic() - started < 4
        assert ticks >= 3  # the subscription was working until then
        with pytest.raises(TimeoutError):
            c.next_event(timeout=1.2)  # no ticker events any more
        expect_error(c.call("rpc", "query"), 401)
        expect_error(c.call("events", "subscribe", ["ticker"]), 401)
        other = Client(d.url)
        try:
            expect_error(other.call("rpc", "auth_token", {"token": token}), 401)
        finally:
            other.close()
    finally:
        c.close()


# Access levels


def test_limited_user_gets_403_on_run_and_kill_and_stays_connected(daemon, admin, tmp_path):
    viewer = Client(daemon.url)
    marker = tmp_path / "ran"
    try:
        granted(viewer.login("viewer", "viewer-secret-pw"))
        for _ in range(2):
            assert_limited_access(viewer, marker)
        assert viewer.call("rpc", "identify")["name"] == "response"
        assert viewer.call("events", "subscribe", ["ticker"])["name"] == "response"
        assert viewer.next_event("ticker")["namespace"] == "events"
        listing = dispatcher(viewer, "list")  # a read action passes the policy
        assert listing["namespace"] != "error" or listing["args"]["code"] not in (401, 403)
    finally:
        viewer.close()
    assert_full_access(admin)  # the same calls are not refused to a full user


# PAM


def _run(*argv, **kwargs):
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, **kwargs)


def _group_exists(name):
    return subprocess.run(["getent", "group", name], capture_output=True).returncode == 0


@pytest.fixture
def system_user(request):
    """``make(groups)``: a real account with a random name and password; removed after."""
    if os.geteuid() != 0:
        pytest.skip("creating system accounts (useradd, chpasswd) needs root; CI runs as root")
    path = os.environ.get("PATH", "").split(os.pathsep)
    lacking = [c for c in ("useradd", "chpasswd", "userdel", "groupadd", "groupdel")
               if not any(os.access(os.path.join(d, c), os.X_OK) for d in path)]
    if lacking:
        pytest.skip(f"{', '.join(lacking)} not found on PATH "
                    "(apt-get install passwd; make test installs it)")
    created_groups, users = [], []

    def make(groups=()):
        for group in groups:
            if not _group_exists(group):
                _run("groupadd", group)
                created_groups.append(group)
        name = "sysadmdt" + secrets.token_hex(4)
        password = "pam-" + secrets.token_urlsafe(16)
        argv = ["useradd", "-m", "-s", "/bin/sh"]
        if groups:
            argv += ["-G", ",".join(groups)]
        _run(*argv, name)
        users.append(name)
        _run("chpasswd", input=f"{name}:{password}\n")
        return name, password

    yield make
    for name in users:
        subprocess.run(["userdel", "-r", name], capture_output=True)
    for group in created_groups:
        subprocess.run(["groupdel", group], capture_output=True)


PAM_CONFIG = config(auth={"backends": "pam"})


def test_pam_login_of_a_wheel_member_gets_full_access(make_daemon, system_user):
    name, password = system_user(["wheel"])
    d = make_daemon(PAM_CONFIG)
    c = Client(d.url)
    try:
        expect_error(c.login(name, password + "x"), 401)
        granted(c.login(name, password))
        assert c.call("rpc", "query")["name"] == "response"
        assert_full_access(c)
    finally:
        c.close()
    d.wait_for_log(rf"{name} authenticated from 127\.0\.0\.1 by password with full access")


def test_pam_operator_member_gets_limited_access(make_daemon, system_user, tmp_path):
    name, password = system_user(["operator"])
    d = make_daemon(PAM_CONFIG)
    c = Client(d.url)
    try:
        granted(c.login(name, password))
        assert_limited_access(c, tmp_path / "ran")
    finally:
        c.close()


def test_pam_user_in_no_configured_group_is_refused(make_daemon, system_user):
    name, password = system_user()
    d = make_daemon(PAM_CONFIG)
    c = Client(d.url)
    try:
        assert expect_error(c.login(name, password), 401) == FAILED
        expect_error(c.call("rpc", "query"), 401)
    finally:
        c.close()
    d.stop()
    # the same account and password do work once its own group is a configured one
    own_group = grp.getgrgid(pwd.getpwnam(name).pw_gid).gr_name
    d.config_path.write_text(
        config(PAM_CONFIG, auth={"full_groups": own_group}).format(state_dir=d.state_dir))
    d.start()
    c = Client(d.url)
    try:
        granted(c.login(name, password))
    finally:
        c.close()


@pytest.mark.parametrize("service", ["su", "su-l"])
def test_pam_service_su_refuses_to_start(make_daemon, service):
    d = make_daemon(config(auth={"backends": "pam", "pam_service": service}), start=False)
    try:
        result = subprocess.run(
            [TWISTD, "-n", "--pidfile=", "sysadmd", "--config", str(d.config_path)],
            capture_output=True, text=True, cwd=str(d.tmp_path), env=d.env, timeout=20,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the daemon started with pam_service = {service}:\n{e.stdout}")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "[auth] pam_service" in lines[0] and "Traceback" not in result.stderr
    assert "sysadmd listening" not in result.stdout
