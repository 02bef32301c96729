"""Defaults for the command-line options from ``~/.config/sysadm/client.ini``.

::

    [client]
    url = wss://nas1.example.org:12150
    user = alice
    token_file = ~/.cache/sysadm/nas1.token
    key = ~/.ssh/id_ed25519
    fingerprint = SHA256:AB:CD:...
    bridge = wss://bridge.example.org:12149
    server = SHA256:<the server's bridge key fingerprint>

Options given on the command line win. The file is ``$XDG_CONFIG_HOME/sysadm/client.ini``
when ``XDG_CONFIG_HOME`` is set; ``--config`` names another one (which must then exist).
Unknown sections and keys are errors that name the file, section and key, so a typo
does not silently fall back to a default. ``[fleet]`` belongs to ``sysadm fleet``
(:mod:`sysadmd.client.fleet.settings`).
"""

import configparser
import os

from sysadmd.client.errors import ClientError

SECTION = "client"
KEYS = ("url", "user", "token_file", "key", "fingerprint", "bridge", "server")
PATH_KEYS = ("token_file", "key")
#: Every section of the file: ``[fleet]`` is read by sysadmd.client.fleet.settings.
SECTIONS = ("client", "fleet")


def default_path(environ=None):
    """Where the per-user file lives."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".config"
    )
    return os.path.join(base, "sysadm", "client.ini")


def parse_section(text, source, section, keys, path_keys=()):
    """The values of ``[section]`` in ini ``text`` as a dict (empty ones left out, those
    of ``path_keys`` with ``~`` expanded). The other :data:`SECTIONS` are skipped;
    :class:`ClientError` naming ``source``, section and key for a syntax error, an
    unknown section or an unknown key."""
    parser = configparser.ConfigParser(interpolation=None, default_section="\0none")
    try:
        parser.read_string(text, source=source)
    except configparser.Error as e:
        raise ClientError(f"{source}: {_one_line(e)}") from None
    values = {}
    for name in parser.sections():
        if name not in SECTIONS:
            known = ", ".join(f"[{known}]" for known in SECTIONS)
            raise ClientError(f"{source}: unknown section [{name}] (known: {known})")
        if name != section:
            continue
        for key, value in parser.items(name):
            if key not in keys:
                raise ClientError(f"{source}: [{section}] {key}: unknown key (known: {', '.join(keys)})")
            value = value.strip()
            if value:
                values[key] = os.path.expanduser(value) if key in path_keys else value
    return values


def parse_defaults(text, source="<string>"):
    """The ``[client]`` values of ini ``text`` (see :func:`parse_section`)."""
    return parse_section(text, source, SECTION, KEYS, PATH_KEYS)


def _one_line(error):
    return " ".join(str(error).split())


def read_defaults_file(path=None, environ=None):
    """``(text, path)`` of ``path`` (which must exist) or of :func:`default_path` (None
    when it does not exist); :class:`ClientError` when it cannot be read."""
    explicit = path is not None
    path = os.path.expanduser(path) if explicit else default_path(environ)
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read(), path
    except FileNotFoundError:
        if explicit:
            raise ClientError(f"--config: {path} does not exist") from None
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise ClientError(f"{path}: cannot read it: {getattr(e, 'strerror', None) or e}") from None


def load_defaults(path=None, environ=None):
    """The defaults from ``path`` (which must exist), or from :func:`default_path` (which
    may not)."""
    found = read_defaults_file(path, environ)
    return parse_defaults(*found) if found else {}
