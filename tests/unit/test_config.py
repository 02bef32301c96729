"""ini configuration: defaults, typed values, errors that say where, overrides, paths."""

import os

import pytest

from sysadmd.auth.options import _backends
from sysadmd.config import ConfigError, ConfigErrors, find_default_config
from sysadmd.config.options import Option, boolean, choice, integer, number, string, words
from sysadmd.server.options import _endpoints
from sysadmd.taps import sections as schema
from sysadmd.taps.sections import load_daemon_config

TICKER_OPTIONS = {
    "interval": Option("0.2", number(0.001), "Seconds between ticks."),
    "burst": Option("1", integer(1), "Events per tick."),
}


def _errors(**kwargs):
    with pytest.raises(ConfigErrors) as info:
        load_daemon_config(**kwargs)
    return info.value.errors


def _only_error(**kwargs):
    errors = _errors(**kwargs)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


# Defaults


ALL_KEYS = [(section, key) for section, options in schema.SECTIONS.items() for key in options]


@pytest.mark.parametrize("section, key", ALL_KEYS, ids=[f"{s}.{k}" for s, k in ALL_KEYS])
def test_every_schema_default_is_what_an_empty_file_gives(section, key):
    """With no file content each key holds its documented default, parsed."""
    config = load_daemon_config(text="")
    assert config[section][key] == schema.SECTIONS[section][key].default_value()


@pytest.mark.parametrize("section, key", ALL_KEYS, ids=[f"{s}.{k}" for s, k in ALL_KEYS])
def test_every_schema_default_parses_and_has_a_doc(section, key):
    """A default that its own parser rejects would make every daemon fail to start."""
    option = schema.SECTIONS[section][key]
    option.default_value()
    assert option.doc.strip()


def test_empty_config_has_every_section_and_no_extra_keys():
    """Every known section is present with exactly its schema's keys."""
    config = load_daemon_config(text="")
    for section, options in schema.SECTIONS.items():
        assert section in config
        assert set(config[section]) == set(options)
    assert config.source == "<string>"


def test_no_path_no_text_gives_defaults():
    """load_daemon_config() alone is the built-in configuration."""
    config = load_daemon_config()
    assert config.source == "<defaults>"
    assert config["server"]["listen"] == ["tcp:12150:interface=127.0.0.1"]


def test_values_from_text_are_parsed_and_keys_are_case_insensitive():
    """File values replace defaults, typed; ini keys are case-insensitive."""
    config = load_daemon_config(
        text="[server]\nIdle_Timeout = 5.5\nlisten = tcp:1\n  tcp:2\n"
        "[auth]\nban_loopback = YES\nmax_failures = 7\n[events]\nslow_subscriber = disconnect\n"
    )
    assert config["server"]["idle_timeout"] == 5.5
    assert config["server"]["listen"] == ["tcp:1", "tcp:2"]
    assert config["auth"]["ban_loopback"] is True
    assert config["auth"]["max_failures"] == 7
    assert config["events"]["slow_subscriber"] == "disconnect"


# Parsers


@pytest.mark.parametrize(
    "parse, text, value",
    [
        (integer(), " 42 ", 42),
        (integer(1, 10), "10", 10),
        (number(), "2.5", 2.5),
        (number(0), "0", 0.0),
        (boolean, "On", True),
        (boolean, "0", False),
        (boolean, " no ", False),
        (choice("drop", "disconnect"), " drop ", "drop"),
        (words, "  a  b\nc ", ["a", "b", "c"]),
        (words, "", []),
        (string, "  x y  ", "x y"),
        (_backends, "users pam", ["users", "pam"]),
        (_endpoints, "tcp:1 unix:/x", ["tcp:1", "unix:/x"]),
    ],
)
def test_parsers_accept_valid_text(parse, text, value):
    """Each parser turns good text into its value."""
    assert parse(text) == value


@pytest.mark.parametrize(
    "parse, text, message",
    [
        (integer(), "1.5", "'1.5' is not a whole number"),
        (integer(), "", "'' is not a whole number"),
        (integer(5), "4", "4 is below the minimum of 5"),
        (integer(None, 9), "10", "10 is above the maximum of 9"),
        (number(), "abc", "'abc' is not a number"),
        (number(), "nan", "'nan' is not a finite number"),
        (number(), "inf", "'inf' is not a finite number"),
        (number(), "-1e400", "'-1e400' is not a finite number"),
        (number(1), "0.5", "0.5 is below the minimum of 1"),
        (boolean, "maybe", "'maybe' is not yes or no"),
        (choice("drop", "disconnect"), "close", "'close' is not one of: drop, disconnect"),
        (_backends, "", "at least one backend is needed (pam, users)"),
        (_backends, "pam ldap", "unknown backend 'ldap' (known: pam, users)"),
        (_endpoints, "  ", "at least one endpoint is needed"),
    ],
)
def test_parser_errors_are_short_sentences(parse, text, message):
    """Each parser's ValueError says what is wrong with the value."""
    with pytest.raises(ValueError) as info:
        parse(text)
    assert str(info.value).startswith(message)


def test_bad_value_error_names_source_section_and_key():
    """A bad value is reported as '<source>: [section] key: problem'."""
    error = _only_error(text="[server]\nidle_timeout = soon\n")
    assert (error.source, error.section, error.key) == ("<string>", "server", "idle_timeout")
    assert str(error) == "<string>: [server] idle_timeout: 'soon' is not a number"


def test_unknown_key_error_names_it_and_lists_known_keys():
    """A misspelt key is an error naming the section, the key and the keys it could be."""
    error = _only_error(text="[server]\nidle_timout = 5\n")
    assert (error.section, error.key) == ("server", "idle_timout")
    assert "unknown key" in error.message
    assert "idle_timeout" in error.message


def test_unknown_key_in_section_without_keys_says_none():
    """A section that takes no keys says so."""
    error = _only_error(text="[source:quiet]\nx = 1\n", source_options={"quiet": {}})
    assert (error.section, error.key) == ("source:quiet", "x")
    assert "(known keys: none)" in error.message


def test_unknown_section_error_names_it():
    """An unknown section is an error naming it and the known ones."""
    error = _only_error(text="[sever]\nlisten = tcp:1\n")
    assert (error.section, error.key) == ("sever", None)
    assert "unknown section" in error.message
    assert "server" in error.message
    assert str(error).startswith("<string>: [sever]: unknown section")


def test_source_section_for_installed_source_is_validated_and_parsed():
    """``[source:NAME]`` keys are checked against that source's own options."""
    config = load_daemon_config(text="[source:ticker]\nburst = 3\n", source_options={"ticker": TICKER_OPTIONS})
    assert config.source_section("ticker") == {"interval": 0.2, "burst": 3}


def test_source_section_defaults_when_absent():
    """An installed source without a section gets its defaults."""
    config = load_daemon_config(text="", source_options={"ticker": TICKER_OPTIONS})
    assert config.source_section("ticker") == {"interval": 0.2, "burst": 1}
    assert config.source_section("not-installed") == {}


def test_source_section_bad_value_and_unknown_key_name_the_section():
    """Errors in a source's section name ``source:NAME`` and the key."""
    errors = _errors(
        text="[source:ticker]\nburst = 0\nspeed = 1\n", source_options={"ticker": TICKER_OPTIONS}
    )
    found = {(e.section, e.key) for e in errors}
    assert found == {("source:ticker", "burst"), ("source:ticker", "speed")}


def test_source_section_for_uninstalled_source_is_an_error():
    """``[source:NAME]`` for a source that is not installed says so."""
    error = _only_error(text="[source:ghost]\nx = 1\n", source_options={"ticker": TICKER_OPTIONS})
    assert error.section == "source:ghost"
    assert "no event source of that name is installed" in error.message


# Overrides


def test_override_sets_a_value():
    """``--set server.idle_timeout=5`` wins over the file."""
    config = load_daemon_config(text="[server]\nidle_timeout = 9\n", overrides=["server.idle_timeout=5"])
    assert config["server"]["idle_timeout"] == 5.0


def test_override_value_may_contain_equals_dots_and_spaces():
    """Only the first '=' splits; the value keeps the rest."""
    config = load_daemon_config(
        overrides=["server.listen=tcp:1:interface=127.0.0.1 tcp:2", "server.state_dir=/tmp/a.b"]
    )
    assert config["server"]["listen"] == ["tcp:1:interface=127.0.0.1", "tcp:2"]
    assert config["server"]["state_dir"] == "/tmp/a.b"


def test_override_of_source_section_and_key_case():
    """Source sections can be overridden; keys are case-insensitive like in files."""
    config = load_daemon_config(overrides=["source:ticker.BURST=4"], source_options={"ticker": TICKER_OPTIONS})
    assert config.source_section("ticker")["burst"] == 4


@pytest.mark.parametrize("item", ["server.idle_timeout", "idle_timeout=5", ".idle_timeout=5", "server.=5", "=5", ""])
def test_malformed_override_is_an_error_from_set(item):
    """An override that is not SECTION.KEY=VALUE is reported as coming from --set."""
    error = _only_error(overrides=[item])
    assert error.source == "--set"
    assert repr(item) in error.message
    assert "SECTION.KEY=VALUE" in error.message


def test_override_to_unknown_key_or_bad_value_is_an_error():
    """Overrides are validated like file values."""
    errors = _errors(overrides=["server.nope=1", "server.idle_timeout=x", "nosection.key=1"])
    assert {(e.section, e.key) for e in errors} == {
        ("server", "nope"),
        ("server", "idle_timeout"),
        ("nosection", None),
    }


# Errors


def test_duplicate_key_is_an_error_with_line():
    """A key set twice in one section names the key and the line."""
    error = _only_error(text="[server]\nidle_timeout = 1\nidle_timeout = 2\n")
    assert (error.section, error.key) == ("server", "idle_timeout")
    assert "twice" in error.message and "line 3" in error.message


def test_duplicate_section_is_an_error():
    """A section written twice is an error naming it."""
    error = _only_error(text="[server]\n[auth]\n[server]\n")
    assert error.section == "server"
    assert "twice" in error.message


@pytest.mark.parametrize("text", ["idle_timeout = 1\n", "[server]\njust a line\n", "[server\n"])
def test_malformed_ini_is_one_readable_error(text):
    """Text that is not ini gives one line, not a traceback."""
    error = _only_error(text=text)
    assert "is not a valid ini file" in error.message
    assert "\n" not in str(error)


def test_all_errors_are_collected_in_one_config_errors():
    """Every problem in a file and its overrides is reported together."""
    errors = _errors(
        text=(
            "[server]\nidle_timeout = x\nmax_message_bytes = 1\nbogus = 1\n"
            "[auth]\nbackends = ldap\n[events]\nslow_subscriber = ignore\n[weird]\n"
        ),
        overrides=["oops"],
    )
    where = {(e.source, e.section, e.key) for e in errors}
    assert where == {
        ("--set", None, None),
        ("<string>", "server", "idle_timeout"),
        ("<string>", "server", "max_message_bytes"),
        ("<string>", "server", "bogus"),
        ("<string>", "auth", "backends"),
        ("<string>", "events", "slow_subscriber"),
        ("<string>", "weird", None),
    }


def test_config_errors_str_is_one_line_per_error():
    """ConfigErrors prints each error on its own line."""
    errors = ConfigErrors(
        [ConfigError("f.ini", "server", "a", "bad"), ConfigError("f.ini", None, None, "worse")]
    )
    assert str(errors) == "f.ini: [server] a: bad\nf.ini: worse"


def test_file_errors_name_the_file_path(tmp_path):
    """Errors from a file carry its path as the source."""
    path = tmp_path / "sysadmd.ini"
    path.write_text("[server]\nidle_timeout = x\n")
    error = _only_error(path=str(path))
    assert error.source == str(path)
    assert str(error).startswith(f"{path}: [server] idle_timeout")


def test_missing_file_is_one_error(tmp_path):
    """A file that cannot be read is reported, not raised as OSError."""
    path = tmp_path / "missing.ini"
    error = _only_error(path=str(path))
    assert error.source == str(path)
    assert "cannot read" in error.message


def test_non_utf8_file_is_one_error(tmp_path):
    """Bytes that are not UTF-8 are reported as such."""
    path = tmp_path / "latin1.ini"
    path.write_bytes(b"[server]\nstate_dir = /tmp/caf\xe9\n")
    error = _only_error(path=str(path))
    assert "UTF-8" in error.message


def test_explicit_source_label_is_used():
    """``source=`` labels errors from text (e.g. the file name a test pretends)."""
    error = _only_error(text="[x]\n", source="pretend.ini")
    assert error.source == "pretend.ini"


# Paths


def test_paths_are_relative_to_the_file_directory(tmp_path):
    """Relative paths and state_dir resolve against the config file's directory."""
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    path = conf_dir / "sysadmd.ini"
    path.write_text("[server]\nstate_dir = state\n[auth]\nusers_file = ../users.txt\nkeys_file = /abs/keys\n")
    config = load_daemon_config(path=str(path))
    assert config.state_dir == str(conf_dir / "state")
    assert config.path("auth", "users_file") == str(tmp_path / "users.txt")
    assert config.path("auth", "keys_file", "keys") == "/abs/keys"


def test_empty_path_means_state_dir_default(tmp_path):
    """An empty path key is ``<state_dir>/<default_name>``, or None without a default."""
    path = tmp_path / "sysadmd.ini"
    path.write_text(f"[server]\nstate_dir = {tmp_path / 'db'}\n")
    config = load_daemon_config(path=str(path))
    assert config.path("auth", "users_file", "users") == str(tmp_path / "db" / "users")
    assert config.path("auth", "users_file") is None


def test_paths_from_text_are_relative_to_cwd(tmp_path, monkeypatch):
    """Without a file, relative paths resolve against the working directory."""
    monkeypatch.chdir(tmp_path)
    config = load_daemon_config(text="[server]\nstate_dir = ./db/../state\n[auth]\nkeys_file = k\n")
    assert config.state_dir == str(tmp_path / "state")
    assert config.path("auth", "keys_file") == str(tmp_path / "k")


def test_paths_expand_home(tmp_path, monkeypatch):
    """``~`` means the home directory."""
    monkeypatch.setenv("HOME", str(tmp_path))
    config = load_daemon_config(text="[server]\nstate_dir = ~/db\n[auth]\nusers_file = ~/u\n")
    assert config.state_dir == str(tmp_path / "db")
    assert config.path("auth", "users_file") == str(tmp_path / "u")


def test_default_state_dir_is_absolute():
    """The built-in state_dir needs no base directory."""
    assert load_daemon_config().state_dir == os.path.normpath(schema.SERVER["state_dir"].default)


# find_default_config


def test_find_default_config_returns_first_existing(tmp_path):
    """The first candidate that exists wins."""
    first, second, third = tmp_path / "a.ini", tmp_path / "b.ini", tmp_path / "c.ini"
    second.write_text("")
    third.write_text("")
    assert find_default_config([str(first), str(second), str(third)]) == str(second)


def test_find_default_config_none_when_nothing_exists(tmp_path):
    """No candidate file: built-in defaults (None)."""
    assert find_default_config([str(tmp_path / "a.ini"), str(tmp_path / "b.ini")]) is None
    assert find_default_config([]) is None
