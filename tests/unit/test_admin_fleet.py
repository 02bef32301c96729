"""``sysadmd-admin fleet init``, run in-process: the files it writes and their modes, what
it prints, and what it refuses."""

import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from sysadmd.admin import cli
from sysadmd.admin.fleet import machine_user_entry
from sysadmd.auth.keys_file import KeysFile, fingerprint
from sysadmd.client.auth import load_private_key
from sysadmd.protocol.fleet import parse_credentials


@pytest.fixture
def paths(tmp_path):
    """``(dir, fleet keys file)`` under ``tmp_path``; the directory does not exist yet."""
    return tmp_path / "db" / "fleet", tmp_path / "db" / "fleet_keys"


def init(paths, *extra, host="m1"):
    directory, keys_file = paths
    return cli.main(["fleet", "init", "--host", host, "--dir", str(directory),
                     "--fleet-keys-file", str(keys_file), *extra])


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_writes_the_key_and_credentials_private_and_registers_the_key(paths, capsys):
    directory, keys_file = paths
    assert init(paths) == 0
    assert mode(directory) == 0o700
    for path in (directory / "key", directory / "nats-credentials", keys_file):
        assert mode(path) == 0o600, path
    key = load_private_key(str(directory / "key"))
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    [registered] = KeysFile(str(keys_file)).list()
    assert registered.user == "fleet-m1"
    assert registered.fingerprint == fingerprint(key.public_key())
    assert registered.comment == "sysadm-fleet@m1"
    user, password = parse_credentials((directory / "nats-credentials").read_text())
    assert user == "m1" and len(password) >= 43
    captured = capsys.readouterr()
    assert password not in captured.err and registered.fingerprint in captured.err


def test_prints_the_nats_user_entry_and_the_fleet_lines(paths, capsys):
    directory, _ = paths
    assert init(paths, "--nats-url", "tls://nats.example.org:4222") == 0
    out = capsys.readouterr().out
    _, password = parse_credentials((directory / "nats-credentials").read_text())
    assert machine_user_entry("m1", password) in out
    assert out.endswith(
        "[fleet]\nhost = m1\nservers = tls://nats.example.org:4222\n"
        f"credentials = {directory}/nats-credentials\nkey = {directory}/key\n"
    )


def test_the_entry_is_the_template_shape():
    assert machine_user_entry("web-1", "PW") == (
        '{user: "web-1", password: "PW", permissions: {\n'
        '    publish: {allow: ["sysadm.web-1.events.>", "sysadm.web-1.presence", '
        '"$JS.API.DIRECT.GET.SYSADM_EVENTS.sysadm.web-1.events.>"]}\n'
        '    subscribe: {allow: ["sysadm.web-1.rpc", "_INBOX_web-1.>"]}\n'
        "    allow_responses: true\n"
        "}}\n"
    )


def test_the_default_nats_url_is_local(paths, capsys):
    assert init(paths) == 0
    assert "servers = nats://127.0.0.1:4222\n" in capsys.readouterr().out


@pytest.mark.parametrize("existing", ["key", "nats-credentials"])
def test_refuses_to_overwrite_without_force(paths, capsys, existing):
    directory, keys_file = paths
    directory.mkdir(parents=True)
    (directory / existing).write_text("keep me")
    assert init(paths) == 1
    err = capsys.readouterr().err
    assert err.startswith("sysadmd-admin: error: ") and "--force" in err and err.count("\n") == 1
    assert (directory / existing).read_text() == "keep me"
    assert not keys_file.exists()
    assert sorted(os.listdir(directory)) == [existing]


def test_refuses_a_second_key_for_the_host_then_force_replaces_everything(paths, capsys):
    directory, keys_file = paths
    assert init(paths) == 0
    first_key = (directory / "key").read_bytes()
    first_credentials = (directory / "nats-credentials").read_text()
    os.unlink(directory / "key")
    os.unlink(directory / "nats-credentials")
    assert init(paths) == 1
    assert "already has a fleet-m1 key" in capsys.readouterr().err
    assert not (directory / "key").exists()
    assert init(paths, "--force") == 0
    assert init(paths, "--force") == 0
    assert (directory / "key").read_bytes() != first_key
    assert (directory / "nats-credentials").read_text() != first_credentials
    [registered] = KeysFile(str(keys_file)).list()
    key = load_private_key(str(directory / "key"))
    assert registered.fingerprint == fingerprint(key.public_key())


def test_other_machines_keys_stay(paths):
    directory, keys_file = paths
    assert init(paths, host="m1") == 0
    other = (directory.parent / "other", keys_file)
    assert init(other, host="m2") == 0
    assert init(paths, "--force", host="m1") == 0
    assert [k.user for k in KeysFile(str(keys_file)).list()] == ["fleet-m2", "fleet-m1"]


@pytest.mark.parametrize("host", ["", "a.b", "a b", "sysadm.*", "a>", "x" * 65, "é"])
def test_bad_host_names_are_refused(paths, capsys, host):
    directory, keys_file = paths
    assert init(paths, host=host) == 1
    assert "fleet host name" in capsys.readouterr().err
    assert not directory.exists() and not keys_file.exists()


def test_a_host_name_too_long_for_a_key_label_is_refused(paths, capsys):
    """fleet-NAME must be a user name of the keys file (at most 64 characters)."""
    assert init(paths, host="x" * 60) == 1
    assert "invalid user name" in capsys.readouterr().err


@pytest.mark.parametrize("url", ["http://x", "", "nats://a http://b"])
def test_bad_nats_urls_are_refused(paths, capsys, url):
    assert init(paths, "--nats-url", url) == 1
    assert "--nats-url" in capsys.readouterr().err
    assert not paths[0].exists()


def test_a_damaged_fleet_keys_file_is_reported_not_rewritten(paths, capsys):
    directory, keys_file = paths
    keys_file.parent.mkdir(parents=True)
    keys_file.write_text("not a key line\n")
    assert init(paths, "--force") == 1
    assert "line 1" in capsys.readouterr().err
    assert keys_file.read_text() == "not a key line\n"
    assert not directory.exists()
