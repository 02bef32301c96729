"""The ``[fleet]`` section of ``sysadm-fleet.ini``, and reading it."""

import os
import socket

from sysadmd.config import ConfigError, ConfigErrors, find_default_config, load_config
from sysadmd.config.options import Option, integer, number, string, words
from sysadmd.protocol import fleet as wire

DEFAULT_PATHS = ("/usr/local/etc/sysadm-fleet.ini", "/etc/sysadm-fleet.ini")
SECTION = "fleet"
ROLES = ("limited", "full")


def _host(text):
    text = text.strip()
    return wire.check_host(text) if text else wire.host_from_hostname(socket.gethostname())


def _users(text):
    """``NATSUSER=LOCALUSER:ROLE ...`` -> {nats user: (local user, role)}."""
    mapping = {}
    for item in text.split():
        nats_user, sep, target = item.partition("=")
        local, colon, role = target.partition(":")
        if not sep or not nats_user or not local or not colon or role not in ROLES:
            raise ValueError(
                f"{item!r} is not NATSUSER=LOCALUSER:ROLE (ROLE limited or full)"
            )
        if nats_user in mapping:
            raise ValueError(f"NATS user {nats_user!r} is mapped twice")
        mapping[nats_user] = (local, role)
    return mapping


def _sources(text):
    names = words(text)
    if not names:
        raise ValueError("at least one event source is needed")
    for name in names:
        wire.check_source(name)
    return names


def _servers(text):
    urls = words(text)
    if not urls:
        raise ValueError("at least one NATS server URL is needed")
    for url in urls:
        if not url.startswith(("nats://", "tls://")):
            raise ValueError(f"{url!r} is not a nats:// or tls:// URL")
    return urls


FLEET = {
    "host": Option(
        "",
        _host,
        "This machine's name in the fleet, one NATS subject token (letters, digits, _ "
        "and -; default: the host name's first label).",
    ),
    "daemon": Option("ws://127.0.0.1:12150", string, "The local sysadmd's WebSocket URL."),
    "key": Option(
        "/var/db/sysadmd/fleet/key",
        string,
        "The fleet key's private half (sysadmd-admin fleet init), for rpc/auth_fleet.",
    ),
    "servers": Option("nats://127.0.0.1:4222", _servers, "NATS server URLs (nats:// or tls://)."),
    "credentials": Option(
        "/var/db/sysadmd/fleet/nats-credentials",
        string,
        "File with this machine's NATS user and password (sysadmd-admin fleet init).",
    ),
    "tls_ca": Option("", string, "CA certificates that sign the NATS servers' (tls:// URLs)."),
    "tls_cert": Option("", string, "Client certificate for NATS servers that ask for one."),
    "tls_key": Option("", string, "Its private key."),
    "users": Option(
        "",
        _users,
        "Who may send requests: NATSUSER=LOCALUSER:ROLE ... (ROLE limited or full, never "
        "more than LOCALUSER has here); requests of other NATS users are refused.",
    ),
    "sources": Option(
        "dispatcher life-preserver system-state",
        _sources,
        "The daemon's event sources published to SYSADM_EVENTS.",
    ),
    "presence_interval": Option(
        "10", number(1), "Seconds between presence messages (down after three missed)."
    ),
    "publish_window": Option(
        "256", integer(1), "Events published to JetStream and not yet acknowledged, at most."
    ),
    "max_inflight_requests": Option(
        "64", integer(1), "Requests forwarded to the daemon at once; more get 429."
    ),
    "request_timeout": Option(
        "30", number(1), "Seconds the daemon has to answer a forwarded request."
    ),
}
SECTIONS = {SECTION: FLEET}


def load(path=None, overrides=(), text=None):
    """The configuration (``--config`` path, else the first of DEFAULT_PATHS, else the
    defaults); raises :class:`ConfigErrors` naming file, section and key."""
    if path is None and text is None:
        path = find_default_config(DEFAULT_PATHS)
    config = load_config(SECTIONS, path, text=text, overrides=overrides)
    section = config[SECTION]
    errors = []
    for key in ("key", "credentials", "tls_ca", "tls_cert", "tls_key"):
        if section[key]:
            section[key] = os.path.normpath(os.path.join(config.base_dir, os.path.expanduser(section[key])))
    if bool(section["tls_cert"]) != bool(section["tls_key"]):
        errors.append(ConfigError(config.source, SECTION, "tls_cert", "tls_cert and tls_key go together"))
    if errors:
        raise ConfigErrors(errors)
    return config
