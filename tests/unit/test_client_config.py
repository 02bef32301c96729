"""Defaults from ~/.config/sysadm/client.ini, and how they meet the command line."""

import os

import pytest

from sysadmd.client.cli import build_parser, settings
from sysadmd.client.config import default_path, load_defaults, parse_defaults
from sysadmd.client.errors import ClientError
from sysadmd.client.tls import parse_fingerprint

FP = "SHA256:" + ":".join(["AB"] * 32)


def test_the_file_lives_under_the_xdg_config_home_or_dot_config():
    assert default_path({"HOME": "/home/a"}) == "/home/a/.config/sysadm/client.ini"
    assert default_path({"HOME": "/home/a", "XDG_CONFIG_HOME": "/cfg"}) == "/cfg/sysadm/client.ini"


def test_client_section_values_with_paths_expanded():
    values = parse_defaults(
        "[client]\nurl = wss://nas1:12150\nuser = alice\ntoken_file = ~/t\nkey = ~/.ssh/id\n"
        f"fingerprint = {FP}\nbridge =\n", "client.ini")
    assert values == {"url": "wss://nas1:12150", "user": "alice", "token_file": os.path.expanduser("~/t"),
                      "key": os.path.expanduser("~/.ssh/id"), "fingerprint": FP}


@pytest.mark.parametrize("text, message", [
    ("[client]\npasword = x\n", "client.ini: [client] pasword: unknown key"),
    ("[server]\nurl = x\n", "client.ini: unknown section [server]"),
    ("url = x\n", "client.ini: "),
])
def test_mistakes_name_the_file_section_and_key(text, message):
    with pytest.raises(ClientError) as info:
        parse_defaults(text, "client.ini")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_a_missing_default_file_is_fine_but_a_named_one_must_exist(tmp_path):
    assert load_defaults(environ={"XDG_CONFIG_HOME": str(tmp_path)}) == {}
    with pytest.raises(ClientError, match="does not exist"):
        load_defaults(str(tmp_path / "nope.ini"))


def parse(argv, tmp_path, text=None):
    if text is not None:
        (tmp_path / "sysadm").mkdir(exist_ok=True)
        (tmp_path / "sysadm" / "client.ini").write_text(text)
    return settings(build_parser().parse_args(argv), {"XDG_CONFIG_HOME": str(tmp_path)})


def test_the_file_supplies_defaults_and_the_command_line_wins(tmp_path):
    text = f"[client]\nurl = wss://nas1:12150\nuser = alice\nfingerprint = {FP}\n"
    options = parse(["jobs"], tmp_path, text)
    assert (options.url, options.user, options.digest) == ("wss://nas1:12150", "alice", parse_fingerprint(FP))
    options = parse(["--user", "bob", "jobs", "--url", "ws://other:1"], tmp_path)
    assert (options.url, options.user) == ("ws://other:1", "bob")


def test_built_in_defaults_without_a_file(tmp_path):
    options = parse(["identify"], tmp_path)
    assert options.url == "ws://127.0.0.1:12150" and options.user and options.digest is None


def test_bridge_needs_server_and_key(tmp_path):
    with pytest.raises(ClientError, match="--bridge and --server go together"):
        parse(["--bridge", "ws://b:12149", "jobs"], tmp_path)
    server = "SHA256:" + "s1" * 21 + "x"
    with pytest.raises(ClientError, match="--bridge needs --key"):
        parse(["--bridge", "ws://b:12149", "--server", server, "jobs"], tmp_path)
    options = parse(["--bridge", "ws://b:12149", "--server", server, "--key", "/k", "jobs"], tmp_path)
    assert (options.bridge, options.server, options.key) == ("ws://b:12149", server, "/k")


def test_the_server_behind_a_bridge_is_a_key_fingerprint_not_a_host_name(tmp_path):
    """--server (or [client] server) must be SHA256:...; a host name is refused with what
    to pass and where to get it."""
    for argv, text in (
        (["--bridge", "ws://b:12149", "--server", "vm", "--key", "/k", "jobs"], None),
        (["--key", "/k", "jobs"], "[client]\nbridge = ws://b:12149\nserver = nas1\n"),
    ):
        with pytest.raises(ClientError) as caught:
            parse(argv, tmp_path, text)
        message = str(caught.value)
        assert "is not a key fingerprint" in message and "SHA256:" in message
        assert "sysadmd-admin bridge export-key" in message


def test_subcommand_arguments():
    parser = build_parser()
    options = parser.parse_args(["run", "j1", "echo hi", "sleep 1", "--queue", "pkg_queue", "--timeout", "30", "--wait"])
    assert (options.job_id, options.commands, options.queue, options.timeout, options.wait) == (
        "j1", ["echo hi", "sleep 1"], "pkg_queue", 30, True)
    assert parser.parse_args(["run", "j", "true"]).timeout is None
    assert parser.parse_args(["watch"]).sources == []
    assert parser.parse_args(["watch", "ticker", "--json"]).json is True
    assert parser.parse_args(["kill", "a", "b"]).job_ids == ["a", "b"]
    assert parser.parse_args(["history", "--limit", "5"]).limit == 5
    assert parser.parse_args(["state"]).timeout == 15
    for bad in (["history", "--limit", "0"], ["state", "--timeout", "0"], ["run", "j"], ["frobnicate"], []):
        with pytest.raises(SystemExit) as info:
            parser.parse_args(bad)
        assert info.value.code == 2


def test_a_fleet_section_is_left_to_sysadm_fleet():
    """[fleet] (sysadm fleet's NATS defaults) does not break the other commands."""
    values = parse_defaults("[client]\nuser = alice\n\n[fleet]\nnats = nats://n1:4222\nuser = ops\n", "client.ini")
    assert values == {"user": "alice"}
