"""``sysadmd-admin bridge``, run in-process: editing [bridge] connections in place and
exporting the bridge key."""

import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization

from sysadmd.admin import cli
from sysadmd.auth.keys_file import fingerprint, parse_openssh_line
from sysadmd.bridge.keys import load_private_key
from sysadmd.taps.sections import load_daemon_config

SAMPLE = """\
# Site configuration, kept by hand.
[server]
state_dir = state

[bridge]
# Bridges to connect out to.
#connections =
#key =

[dispatcher]
# keep me
cwd = /
"""


@pytest.fixture
def config_path(tmp_path):
    path = tmp_path / "sysadmd.ini"
    path.write_text(SAMPLE)
    os.chmod(path, 0o640)
    return path


def admin(*argv):
    return cli.main(list(argv))


def bridges(path):
    return {nick: b.url for nick, b in load_daemon_config(str(path))["bridge"]["connections"].items()}


def test_add_list_remove_edit_the_file_in_place(config_path, capsys):
    """Entries are added and removed; comments, other sections and the mode stay."""
    assert admin("bridge", "add", "office", "wss://bridge.example.org:12149", "--config", str(config_path)) == 0
    assert admin("bridge", "add", "lab", "ws://10.0.0.5", "--config", str(config_path)) == 0
    assert bridges(config_path) == {"office": "wss://bridge.example.org:12149", "lab": "ws://10.0.0.5"}
    capsys.readouterr()
    assert admin("bridge", "list", "--config", str(config_path)) == 0
    assert capsys.readouterr().out.splitlines() == [
        "office wss://bridge.example.org:12149", "lab ws://10.0.0.5",
    ]
    assert admin("bridge", "remove", "office", "--config", str(config_path)) == 0
    assert bridges(config_path) == {"lab": "ws://10.0.0.5"}
    text = config_path.read_text()
    for kept in ("# Site configuration, kept by hand.", "# Bridges to connect out to.", "# keep me", "#key ="):
        assert kept in text
    assert stat.S_IMODE(os.stat(config_path).st_mode) == 0o640


def test_a_file_without_bridge_section_gets_one(tmp_path):
    """add appends [bridge] when the file has none."""
    path = tmp_path / "plain.ini"
    path.write_text("[server]\nstate_dir = s\n")
    assert admin("bridge", "add", "b1", "ws://127.0.0.1:1", "--config", str(path)) == 0
    assert bridges(path) == {"b1": "ws://127.0.0.1:1"}
    assert path.read_text().startswith("[server]\nstate_dir = s\n")


def test_mistakes_are_one_line_and_change_nothing(config_path, capsys):
    """Duplicate nick, bad nick, bad URL, unknown nick: exit 1, file untouched."""
    admin("bridge", "add", "lab", "ws://10.0.0.5", "--config", str(config_path))
    before = config_path.read_text()
    capsys.readouterr()
    for argv, fragment in [
        (("add", "lab", "ws://other"), "already configured"),
        (("add", "b@d", "ws://x"), "bridge nick"),
        (("add", "web", "http://x"), "ws:// or wss://"),
        (("add", "web", "wss://"), "no host"),
        (("remove", "nope"), "no bridge 'nope'"),
    ]:
        assert admin("bridge", *argv, "--config", str(config_path)) == 1
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and fragment in err, err
    assert config_path.read_text() == before


def test_export_key_generates_once_and_prints_the_public_half(config_path, capsys):
    """The key is made at <state_dir>/bridge_key (0600) on first use, then reused; the
    output is an OpenSSH public line of it."""
    assert admin("bridge", "export-key", "--config", str(config_path)) == 0
    out, err = capsys.readouterr()
    key_path = config_path.parent / "state" / "bridge_key"
    assert "generated" in err and stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    public, _ = parse_openssh_line(out.strip())
    key = load_private_key(str(key_path))
    assert fingerprint(public) == fingerprint(key.public_key())
    assert admin("bridge", "export-key", "--config", str(config_path), "--comment", "web1") == 0
    out2, err2 = capsys.readouterr()
    # The fingerprint (what clients pass as sysadm --server) always goes to stderr.
    assert err.endswith(f"fingerprint {fingerprint(public)}\n")
    assert err2 == f"fingerprint {fingerprint(public)}\n"
    assert out2.split()[:2] == out.split()[:2] and out2.split()[2] == "web1"


def test_export_key_uses_the_configured_key(tmp_path, capsys):
    """[bridge] key names an existing key (here an OpenSSH-format one, relative path)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "mykey").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ))
    path = tmp_path / "c.ini"
    path.write_text("[server]\nstate_dir = s\n[bridge]\nkey = mykey\n")
    assert admin("bridge", "export-key", "--config", str(path)) == 0
    public, _ = parse_openssh_line(capsys.readouterr().out.strip())
    assert fingerprint(public) == fingerprint(key.public_key())


def test_export_key_reports_an_unusable_key(tmp_path, capsys):
    """A key file that is not a private key is one error line."""
    (tmp_path / "bad").write_text("hello")
    path = tmp_path / "c.ini"
    path.write_text("[server]\nstate_dir = s\n[bridge]\nkey = bad\n")
    assert admin("bridge", "export-key", "--config", str(path)) == 1
    assert "not an unencrypted private key" in capsys.readouterr().err
