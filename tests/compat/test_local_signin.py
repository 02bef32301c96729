"""Local sign-in, as the Qt tray does it: real accounts made with ``useradd`` run a client
as themselves, which connects to 127.0.0.1 with ``Origin: sysadm-client`` and sends the
Qt client's exact ``auth`` with an empty password. The daemon finds the socket's owner in
the kernel's socket table: the right user is signed in with the right access, and every
other case is the ordinary 401."""

import atexit
import functools
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

import websockets

from tests.integration.harness import BASE_CONFIG
from tests.integration.test_auth import system_user  # noqa: F401 (a fixture)

IDENTIFY = '{"args":"","id":"sysadm_client_identify","name":"identify","namespace":"rpc"}'
# QJsonDocument writes keys in sorted order, compact: this is the Qt client's frame.
AUTH = '{"args":{"password":"","username":%s},"id":"sysadm-client-auth-auto","name":"auth","namespace":"rpc"}'
QUERY = '{"args":"","id":"sysadm_client_ping","name":"query","namespace":"rpc"}'

# Run as the account: prints every frame it receives, one JSON text a line.
WS_CLIENT = r"""
import sys
from websockets.sync.client import connect
url, identify, auth, query = sys.argv[1:5]
with connect(url, origin="sysadm-client", open_timeout=10) as ws:
    for frame in (identify, auth):
        ws.send(frame)
        print(ws.recv(timeout=20), flush=True)
    ws.send(query)
    print(ws.recv(timeout=20), flush=True)
"""

# Run as the account: REST with an empty password, Basic and rpc/auth's body; prints the
# two statuses.
REST_CLIENT = r"""
import base64, json, sys, urllib.error, urllib.request
base, user = sys.argv[1:3]
def post(path, body, headers):
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(),
        headers=dict(headers, **{"Content-Type": "application/json"}), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=20) as answer:
            return answer.status
    except urllib.error.HTTPError as e:
        return e.code
basic = "Basic " + base64.b64encode((user + ":").encode()).decode()
print(post("/rpc/query", {}, {"Authorization": basic}))
print(post("/rpc/auth", {"username": user, "password": ""}, {}))
"""


@functools.lru_cache(maxsize=None)
def _readable_packages():
    """A copy of the ``websockets`` package in a directory every account can read: the
    checkout (and its venv) may sit where other users cannot enter, e.g. a clone in a
    0700 temporary directory."""
    directory = tempfile.mkdtemp(prefix="sysadmd-compat-")
    atexit.register(shutil.rmtree, directory, True)
    shutil.copytree(os.path.dirname(websockets.__file__), os.path.join(directory, "websockets"))
    for root, dirs, files in os.walk(directory):
        os.chmod(root, 0o755)
        for file in files:
            os.chmod(os.path.join(root, file), 0o644)
    return directory


def _python_for(name):
    """``(argv0, env)`` of a Python the account ``name`` can run with ``websockets``: the
    venv's own when the account can reach it, else the system's python3.X of the same
    version with a readable copy of ``websockets`` on PYTHONPATH (the venv's interpreter
    may live in a home directory others cannot enter)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base_env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": "/"}
    tried = []
    for python, env in (
        (sys.executable, base_env),
        (f"/usr/bin/{version}", dict(base_env, PYTHONPATH=_readable_packages())),
        (f"/usr/local/bin/{version}", dict(base_env, PYTHONPATH=_readable_packages())),
    ):
        if not os.path.exists(python):
            continue
        try:
            probe = _run_as(name, [python, "-c", "import websockets.sync.client"], env, check=False)
        except PermissionError:
            tried.append(f"{python}: not executable by {name}")
            continue
        if probe.returncode == 0:
            return python, env
        tried.append(f"{python}: {probe.stderr.strip()[-200:]}")
    raise AssertionError(f"no Python with websockets that user {name} can run: {tried}")


def _run_as(name, argv, env, check=True):
    """Run ``argv`` as the account ``name``: its uid, primary group and groups."""
    entry = pwd.getpwnam(name)
    result = subprocess.run(
        argv, user=entry.pw_uid, group=entry.pw_gid,
        extra_groups=os.getgrouplist(name, entry.pw_gid), env=env, cwd="/",
        capture_output=True, text=True, timeout=90,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def qt_local_signin(name, url, username=None):
    """The Qt tray's sign-in, run as ``name``, asking for ``username`` (default its own
    name); returns the identify, auth and query replies."""
    python, env = _python_for(name)
    frames = (IDENTIFY, AUTH % json.dumps(username or name), QUERY)
    result = _run_as(name, [python, "-c", WS_CLIENT, url, *frames], env)
    return [json.loads(line) for line in result.stdout.splitlines()]


def refused(reply):
    """The auth reply is the ordinary 401 (a string code in the original dialect)."""
    assert reply["namespace"] == "error" and reply["id"] == "sysadm-client-auth-auto", reply
    assert str(reply["args"]["code"]) == "401", reply
    return True


def signed_in(replies, access):
    """The auth reply is ``[token, lifetime]`` and rpc/query shows ``access``."""
    identify, auth, query = replies
    assert identify["args"]["type"] == "server", identify
    assert auth["name"] == "response" and auth["id"] == "sysadm-client-auth-auto", auth
    assert isinstance(auth["args"], list) and len(auth["args"]) >= 2, auth
    assert isinstance(auth["args"][0], str) and auth["args"][0]
    dispatcher = query["args"]["rpc/dispatcher"]
    assert dispatcher == ("read/write" if access == "full" else "read"), query
    return True


def test_a_wheel_member_signs_in_as_themselves_with_full_access(make_daemon, system_user):
    name, _ = system_user(["wheel"])
    d = make_daemon()
    assert signed_in(qt_local_signin(name, d.url), "full")
    d.wait_for_log(rf"{name} authenticated from 127\.0\.0\.1 by local socket owner with full access")


def test_an_operator_member_gets_limited_access(make_daemon, system_user):
    name, _ = system_user(["operator"])
    d = make_daemon()
    assert signed_in(qt_local_signin(name, d.url), "limited")
    d.wait_for_log(rf"{name} authenticated from 127\.0\.0\.1 by local socket owner with limited access")


def test_asking_for_another_users_name_is_refused(make_daemon, system_user):
    """The socket is the caller's: neither root nor another member of wheel."""
    name, _ = system_user(["wheel"])
    other, _ = system_user(["wheel"])
    d = make_daemon()
    for wanted in ("root", other):
        _, auth, query = qt_local_signin(name, d.url, wanted)
        assert refused(auth)
        assert str(query["args"]["code"]) == "401", query
    d.wait_for_log(r"failed local authentication from 127\.0\.0\.1")


def test_a_user_in_no_group_is_refused(make_daemon, system_user):
    name, _ = system_user()
    d = make_daemon()
    assert refused(qt_local_signin(name, d.url)[1])


def test_local_login_no_refuses_an_empty_password(make_daemon, system_user):
    name, _ = system_user(["wheel"])
    d = make_daemon(BASE_CONFIG.replace("[auth]\n", "[auth]\nlocal_login = no\n"))
    assert refused(qt_local_signin(name, d.url)[1])
    d.wait_for_log(r"failed password authentication from 127\.0\.0\.1")


def test_rest_never_signs_in_by_socket_owner(make_daemon, system_user):
    """REST Basic and rpc/auth with an empty password, from the wheel member's own
    loopback connection: 401 both."""
    name, _ = system_user(["wheel"])
    d = make_daemon()
    python, env = _python_for(name)
    base = d.url.replace("ws://", "http://").rstrip("/")
    result = _run_as(name, [python, "-c", REST_CLIENT, base, name], env)
    assert result.stdout.split() == ["401", "401"]
