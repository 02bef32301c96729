"""Read ini files against the schema, collecting every error before reporting."""

import configparser
import os

from sysadmd.config.errors import ConfigError, ConfigErrors

DEFAULT_PATHS = ("/usr/local/etc/sysadmd.ini", "/etc/sysadmd.ini")
# Each event source has its own section, [source:NAME].
SOURCE_PREFIX = "source:"


def find_default_config(candidates=DEFAULT_PATHS):
    """The first existing file of ``candidates``, or None for built-in defaults."""
    for candidate in candidates:
        if os.path.exists(candidate):
            return candidate
    return None


class Config:
    """A parsed configuration: ``config["server"]["listen"]`` and friends.

    Every known section is present with its defaults filled in. Relative paths are
    resolved against the directory of the file they came from.
    """

    def __init__(self, sections, source, base_dir):
        self._sections = sections
        self.source = source
        self.base_dir = base_dir

    def __getitem__(self, section):
        return self._sections[section]

    def __contains__(self, section):
        return section in self._sections

    def source_section(self, name):
        """The parsed keys of ``[source:NAME]`` (defaults when the section is absent)."""
        return self._sections.get(SOURCE_PREFIX + name, {})

    def path(self, section, key, default_name=None):
        """An absolute path from ``[section] key``; empty means ``<state_dir>/<default_name>``."""
        value = self._sections[section][key]
        if not value:
            if default_name is None:
                return None
            return os.path.join(self.state_dir, default_name)
        return os.path.normpath(os.path.join(self.base_dir, os.path.expanduser(value)))

    @property
    def state_dir(self):
        """The absolute state directory."""
        return os.path.normpath(
            os.path.join(self.base_dir, os.path.expanduser(self._sections["server"]["state_dir"]))
        )


def _parse_section(source, section, raw, options, errors):
    parsed = {}
    for key, option in options.items():
        text = raw.get(key, option.default)
        try:
            parsed[key] = option.parse(text)
        except ValueError as e:
            errors.append(ConfigError(source, section, key, str(e)))
    for key in raw:
        if key not in options:
            known = ", ".join(sorted(options)) or "none"
            errors.append(ConfigError(source, section, key, f"unknown key (known keys: {known})"))
    return parsed


def _read(path, text, source):
    parser = configparser.ConfigParser(interpolation=None, default_section="__no_default__")
    try:
        if text is not None:
            parser.read_string(text, source=source)
        elif path is not None:
            with open(path, encoding="utf-8") as f:
                parser.read_file(f, source=source)
    except OSError as e:
        raise ConfigErrors([ConfigError(source, None, None, f"cannot read: {e.strerror}")])
    except UnicodeDecodeError:
        raise ConfigErrors([ConfigError(source, None, None, "is not valid UTF-8")])
    except configparser.DuplicateOptionError as e:
        raise ConfigErrors(
            [ConfigError(source, e.section, e.option, f"is set twice (line {e.lineno})")]
        )
    except configparser.DuplicateSectionError as e:
        raise ConfigErrors([ConfigError(source, e.section, None, f"appears twice (line {e.lineno})")])
    except configparser.Error as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigErrors([ConfigError(source, None, None, f"is not a valid ini file: {first}")])
    return {name: dict(parser[name]) for name in parser.sections()}


def _apply_overrides(raw, overrides, errors):
    for item in overrides:
        name, sep, value = item.partition("=")
        section, dot, key = name.strip().rpartition(".")
        if not sep or not dot or not section or not key:
            errors.append(
                ConfigError("--set", None, None, f"{item!r} is not SECTION.KEY=VALUE")
            )
            continue
        raw.setdefault(section, {})[key.lower()] = value


def load_config(
    sections, path=None, text=None, overrides=(), source_options=None, source=None,
    event_sources=False,
):
    """Parse a configuration file (or ``text``) and ``--set`` overrides.

    ``sections`` is the program's schema (section name -> key -> Option), which each
    part contributes (see ``sysadmd.taps.sections``). With ``event_sources``,
    ``source_options`` maps each installed event source's name to its option schema and
    ``[source:NAME]`` for an unknown NAME is an error. Raises :class:`ConfigErrors` with
    every problem found; returns a :class:`Config`.
    """
    source_options = source_options or {}
    daemon = event_sources
    if source is None:
        source = path if path is not None else ("<string>" if text is not None else "<defaults>")
    raw = _read(path, text, source)
    errors = []
    _apply_overrides(raw, overrides, errors)

    parsed = {}
    for name, options in sections.items():
        parsed[name] = _parse_section(source, name, raw.pop(name, {}), options, errors)
    for name, options in source_options.items():
        section = SOURCE_PREFIX + name
        parsed[section] = _parse_section(source, section, raw.pop(section, {}), options, errors)
    for section in raw:
        if daemon and section.startswith(SOURCE_PREFIX):
            message = "no event source of that name is installed"
        else:
            message = "unknown section"
        known = ", ".join(list(sections) + ([SOURCE_PREFIX + "NAME"] if daemon else []))
        errors.append(ConfigError(source, section, None, f"{message} (known: {known})"))
    if errors:
        raise ConfigErrors(errors)
    base_dir = os.path.dirname(os.path.abspath(path)) if path else os.getcwd()
    return Config(parsed, source, base_dir)
