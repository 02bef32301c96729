"""``sysadmd-admin bridge ...``: the bridges sysadmd connects out to (``[bridge]``).

``add``, ``list`` and ``remove`` edit ``[bridge] connections`` in the daemon's config file
in place: comments and the rest of the file are kept, the file is replaced atomically
with its mode kept, and sysadmd reads it at its next start. ``export-key`` prints the
public half of ``[bridge] key`` (generating the key when missing) for the bridges'
``server_keys_file`` on stdout, and its fingerprint (``fingerprint SHA256:...``, what
clients pass as ``sysadm --server``) on stderr, so ``> web1.pub`` keeps only the key.
"""

import configparser
import os
import re
import stat
import sys

from sysadmd.admin.errors import AdminError
from sysadmd.bridge.keys import (
    BridgeKeyError,
    ensure_private_key,
    key_fingerprint,
    public_line,
)
from sysadmd.bridge.urls import check_nick, parse_connections, parse_url
from sysadmd.config import ConfigErrors, find_default_config
from sysadmd.taps.sections import load_daemon_config
from sysadmd.util.files import atomic_write

_SECTION = re.compile(r"^\s*\[([^\]]*)\]")
_KEY = re.compile(r"^connections\s*[=:]\s?(.*)$", re.IGNORECASE)
_COMMENTED_KEY = re.compile(r"^[#;]\s*connections\s*[=:]", re.IGNORECASE)


def add_commands(groups):
    """Register ``bridge add|list|remove|export-key`` on the ``groups`` subparsers."""
    parser = groups.add_parser("bridge", help="manage the bridges sysadmd connects out to")
    commands = parser.add_subparsers(dest="command", metavar="ACTION", required=True)

    add = commands.add_parser("add", help="add a bridge to [bridge] connections")
    add.add_argument("nick", metavar="NICK", help="a short name for the bridge")
    add.add_argument("url", metavar="URL", help="ws://HOST[:PORT] or wss://HOST[:PORT]")
    _add_config_option(add)
    add.set_defaults(run=_add)

    list_ = commands.add_parser("list", help="list the bridges: nick url")
    _add_config_option(list_)
    list_.set_defaults(run=_list)

    remove = commands.add_parser("remove", help="remove a bridge from [bridge] connections")
    remove.add_argument("nick", metavar="NICK")
    _add_config_option(remove)
    remove.set_defaults(run=_remove)

    export = commands.add_parser(
        "export-key",
        help="print the public half of [bridge] key (OpenSSH) for the bridges' server keys "
        "files, and its fingerprint (for sysadm --server) on stderr",
    )
    _add_config_option(export)
    export.add_argument("--comment", default=None, help="the key's comment (default sysadmd@HOST)")
    export.set_defaults(run=_export_key)


def _add_config_option(parser):
    parser.add_argument(
        "--config", metavar="PATH", default=None,
        help="sysadmd's config file (default /usr/local/etc/sysadmd.ini, else /etc/sysadmd.ini)",
    )


def _config_path(args):
    path = args.config or find_default_config()
    if path is None:
        raise AdminError("no sysadmd config file found; pass --config PATH")
    return path


def _read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _write(path, text):
    atomic_write(path, text, stat.S_IMODE(os.stat(path).st_mode))


class _Connections:
    """Where ``[bridge] connections`` is in a config file's lines, and its entries."""

    def __init__(self, text):
        self.lines = text.splitlines()
        self.section = None  # index of the [bridge] header
        self.end = len(self.lines)  # index after the section
        self.key = None  # (first, after) line indexes of the key and its continuation
        self.commented = None  # index of a commented-out "#connections =" line
        for index, line in enumerate(self.lines):
            match = _SECTION.match(line)
            if match:
                if self.section is not None:
                    self.end = index
                    break
                if match.group(1).strip() == "bridge":
                    self.section = index
        if self.section is not None:
            self._find_key()
        try:
            self.bridges = parse_connections(self.value())
        except ValueError as e:
            raise AdminError(f"[bridge] connections: {e}") from None

    def _find_key(self):
        index = self.section + 1
        while index < self.end:
            line = self.lines[index]
            if _KEY.match(line):
                after = index + 1
                while after < self.end and self.lines[after][:1] in (" ", "\t") and self.lines[after].strip():
                    after += 1
                self.key = (index, after)
                return
            if self.commented is None and _COMMENTED_KEY.match(line):
                self.commented = index
            index += 1

    def value(self):
        """The key's current text (all its lines)."""
        if self.key is None:
            return ""
        first, after = self.key
        parts = [_KEY.match(self.lines[first]).group(1)] + self.lines[first + 1:after]
        return " ".join(part.strip() for part in parts)

    def render(self):
        """The file text with the key rewritten for ``self.bridges``."""
        entries = [f"{b.nick}={b.url}" for b in self.bridges.values()]
        if len(entries) <= 1:
            new = [("connections = " + " ".join(entries)).rstrip()]
        else:
            new = ["connections ="] + [f"    {entry}" for entry in entries]
        lines = list(self.lines)
        if self.key is not None:
            lines[self.key[0]:self.key[1]] = new
        elif self.section is not None:
            at = (self.commented if self.commented is not None else self.section) + 1
            lines[at:at] = new
        else:
            if lines and lines[-1].strip():
                lines.append("")
            lines += ["[bridge]"] + new
        return "\n".join(lines) + "\n"


def _add(args):
    path = _config_path(args)
    address = _checked(lambda: parse_url(check_nick(args.nick), args.url))
    connections = _Connections(_read(path))
    if args.nick in connections.bridges:
        raise AdminError(f"bridge {args.nick!r} is already configured in {path}")
    connections.bridges[args.nick] = address
    _write(path, connections.render())
    print(f"added bridge {args.nick}; restart sysadmd to connect")


def _list(args):
    for bridge in _Connections(_read(_config_path(args))).bridges.values():
        print(f"{bridge.nick} {bridge.url}")


def _remove(args):
    path = _config_path(args)
    connections = _Connections(_read(path))
    if connections.bridges.pop(args.nick, None) is None:
        raise AdminError(f"no bridge {args.nick!r} in {path}")
    _write(path, connections.render())
    print(f"removed bridge {args.nick}; restart sysadmd to disconnect")


def _checked(function):
    try:
        return function()
    except ValueError as e:
        raise AdminError(str(e)) from None


def _key_path(path):
    from sysadmd.taps.discovery import discover_sources

    try:
        options = {name: f.options for name, f in discover_sources().items()}
        config = load_daemon_config(path, source_options=options)
    except ConfigErrors as e:
        raise AdminError(f"fix the configuration first:\n{e}") from None
    except configparser.Error as e:
        raise AdminError(str(e)) from None
    return config.path("bridge", "key", "bridge_key")


def _export_key(args):
    key_path = _key_path(_config_path(args))
    try:
        key, generated = ensure_private_key(key_path)
    except BridgeKeyError as e:
        raise AdminError(str(e)) from None
    fingerprint = key_fingerprint(key)
    if generated:
        sys.stderr.write(f"generated a new bridge key {key_path} ({fingerprint})\n")
    # stderr, so that "> web1.pub" holds the public line only
    sys.stderr.write(f"fingerprint {fingerprint}\n")
    print(public_line(key, args.comment))
