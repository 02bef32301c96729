"""Bridge configuration on both sides: the daemon's [bridge] section and its key, and the
bridge's own sections; errors name the file, section and key."""

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from sysadmd.auth.signatures import sign_challenge, verify_challenge
from sysadmd.bridge import schema as bridge_schema
from sysadmd.bridge.keys import BridgeKeyError, load_private_key
from sysadmd.bridge.links import prepare_links
from sysadmd.bridge.urls import parse_connections
from sysadmd.config import ConfigErrors, load_config
from sysadmd.taps.sections import load_daemon_config


def errors_of(text, sections=None):
    load = load_daemon_config if sections is None else lambda **kw: load_config(sections, **kw)
    with pytest.raises(ConfigErrors) as caught:
        load(text=text, source="test.ini")
    return [str(e) for e in caught.value.errors]


def test_connections_parse_nicks_and_urls():
    """NICK=URL entries, default port 12149, order kept."""
    bridges = parse_connections("b=wss://bridge.example.org a=ws://10.0.0.5:99/relay")
    assert list(bridges) == ["b", "a"]
    assert (bridges["b"].secure, bridges["b"].host, bridges["b"].port) == (True, "bridge.example.org", 12149)
    assert (bridges["a"].secure, bridges["a"].port, bridges["a"].path) == (False, 99, "/relay")


@pytest.mark.parametrize("value, fragment", [
    ("wss://x", "is not NICK=URL"),
    ("a=http://x", "must start with ws:// or wss://"),
    ("a=ws://x a=ws://y", "listed twice"),
    ("-a=ws://x", "bridge nick"),
    ("a=ws://x:notaport", "not a valid URL"),
    ("a=ws://user:pw@x", "host[:port][/path] only"),
])
def test_bad_connections_name_the_file_section_and_key(value, fragment):
    """Each mistake is reported as test.ini: [bridge] connections: ..."""
    [error] = errors_of(f"[bridge]\nconnections = {value}\n")
    assert error.startswith("test.ini: [bridge] connections: ") and fragment in error, error


def test_bridge_sections_are_its_own():
    """The bridge knows [server], [auth] and [relay] only; the daemon's other sections and
    [source:...] are unknown there, and vice versa for [relay]."""
    sections = bridge_schema.SECTIONS
    [error] = errors_of("[dispatcher]\ncwd = /\n", sections=sections)
    assert error == "test.ini: [dispatcher]: unknown section (known: server, auth, relay)"
    [error] = errors_of("[source:ticker]\n", sections=sections)
    assert "unknown section" in error and "source:NAME" not in error
    [error] = errors_of("[relay]\nbuffer_bytes = 1\n", sections=sections)
    assert error.startswith("test.ini: [relay] buffer_bytes: ")
    [error] = errors_of("[relay]\n")
    assert error.startswith("test.ini: [relay]: unknown section")


def test_bridge_accepts_every_daemon_server_and_auth_key():
    """A daemon's [server] and [auth] keys are all valid in the bridge's file; the ones it
    does not use say so in their documentation. The bridge adds [auth] server_keys_file."""
    from sysadmd.taps import sections as daemon_schema

    own = {"server": set(), "auth": {"server_keys_file"}}
    for section in ("server", "auth"):
        assert set(bridge_schema.SECTIONS[section]) == set(daemon_schema.SECTIONS[section]) | own[section]
    assert "Unused by the bridge" in bridge_schema.AUTH["backends"].doc
    assert "Unused by the bridge" not in bridge_schema.AUTH["keys_file"].doc
    config = load_config(bridge_schema.SECTIONS, text="[auth]\nbackends = users\npam_service = other\n")
    assert config["server"]["listen"] == ["tcp:12149:interface=127.0.0.1"]
    assert config.path("auth", "server_keys_file", "server_keys") == "/var/db/sysadm-bridge/server_keys"


def _write_key(path, key, fmt=serialization.PrivateFormat.PKCS8, password=None):
    encryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, fmt, encryption))


def test_bridge_keys_load_in_pem_and_openssh_formats(tmp_path):
    """PKCS#8, traditional and OpenSSH private keys are read."""
    for name, key, fmt in [
        ("pkcs8", ed25519.Ed25519PrivateKey.generate(), serialization.PrivateFormat.PKCS8),
        ("openssh", ec.generate_private_key(ec.SECP384R1()), serialization.PrivateFormat.OpenSSH),
        ("traditional", ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.TraditionalOpenSSL),
    ]:
        _write_key(tmp_path / name, key, fmt)
        assert load_private_key(str(tmp_path / name)).public_key() == key.public_key()


def test_unusable_bridge_keys_are_refused(tmp_path):
    """Encrypted keys, short RSA keys and missing files give BridgeKeyError."""
    _write_key(tmp_path / "enc", ed25519.Ed25519PrivateKey.generate(), password=b"secret")
    _write_key(tmp_path / "rsa", rsa.generate_private_key(65537, 1024))
    for name, fragment in [("enc", "unencrypted"), ("rsa", "too short"), ("missing", "cannot read")]:
        with pytest.raises(BridgeKeyError) as caught:
            load_private_key(str(tmp_path / name))
        assert fragment in str(caught.value)


@pytest.mark.parametrize("key", [
    ed25519.Ed25519PrivateKey.generate(),
    ec.generate_private_key(ec.SECP521R1()),
    rsa.generate_private_key(65537, 2048),
])
def test_sign_challenge_is_what_auth_ssl_verifies(key):
    """The daemon's signature of a test string passes the bridge's check, and only for
    that string and that key."""
    signature = sign_challenge(key, "abc")
    assert verify_challenge(key.public_key(), "abc", signature)
    assert not verify_challenge(key.public_key(), "abd", signature)
    assert not verify_challenge(ed25519.Ed25519PrivateKey.generate().public_key(), "abc", signature)


def test_prepare_links_generates_the_key_only_when_a_bridge_is_configured(tmp_path):
    """No bridge, no key; with a bridge the default key is generated in the state dir."""
    state = tmp_path / "state"
    errors = []
    plan = prepare_links(load_daemon_config(text=f"[server]\nstate_dir = {state}\n"), errors)
    assert plan.bridges == [] and plan.key is None and not (state / "bridge_key").exists()
    config = load_daemon_config(text=f"[server]\nstate_dir = {state}\n[bridge]\nconnections = a=ws://127.0.0.1:1\n")
    plan = prepare_links(config, errors)
    assert errors == [] and plan.key is not None and (state / "bridge_key").exists()
    assert plan.fingerprint.startswith("SHA256:")


def test_prepare_links_reports_a_bad_key_and_ca_file(tmp_path):
    """Problems with [bridge] key and ca_file are configuration errors naming them."""
    (tmp_path / "bad").write_text("nope")
    config = load_daemon_config(
        text="[bridge]\nconnections = a=wss://x\nkey = bad\n", source="t.ini"
    )
    config.base_dir = str(tmp_path)
    errors = []
    prepare_links(config, errors)
    assert [str(e).split(":")[0:2] for e in errors] == [["t.ini", " [bridge] key"]]
    config = load_daemon_config(
        text=f"[server]\nstate_dir = {tmp_path}\n[bridge]\nconnections = a=wss://x\nca_file = {tmp_path}/none.pem\n",
        source="t.ini",
    )
    errors = []
    prepare_links(config, errors)
    assert len(errors) == 1 and str(errors[0]).startswith("t.ini: [bridge] ca_file: cannot use")


def test_the_bridge_reads_both_key_files_and_names_a_damaged_one(tmp_path):
    """build_bridge_auth loads [auth] keys_file and server_keys_file (default
    <state_dir>/server_keys); a damaged one is a config error naming its key, and the
    returned authenticator gives the server role only for the server keys file."""
    from twisted.internet import task

    from sysadmd.auth.keys_file import fingerprint
    from sysadmd.bridge.auth import BridgeSignIn, build_bridge_auth

    config = load_config(bridge_schema.SECTIONS, text=f"[server]\nstate_dir = {tmp_path}\n", source="b.ini")
    server_key = ed25519.Ed25519PrivateKey.generate()
    line = server_key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    (tmp_path / "server_keys").write_text(f"web1 {line}\n")
    errors = []
    _, _, authenticator = build_bridge_auth(task.Clock(), config, errors)
    assert errors == [] and isinstance(authenticator, BridgeSignIn)
    assert authenticator.keys.role_of(fingerprint(server_key.public_key())) == "server"
    assert [k.user for k in authenticator.keys.load()] == ["web1"]
    (tmp_path / "server_keys").write_text("web1 not-a-key\n")
    errors = []
    build_bridge_auth(task.Clock(), config, errors)
    [error] = [str(e) for e in errors]
    assert error.startswith("b.ini: [auth] server_keys_file: ") and "server_keys, line 1" in error
