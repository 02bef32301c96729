"""The bridge's ini sections and keys (``etc/sysadm-bridge.ini``).

``[server]`` and ``[auth]`` take exactly the daemon's keys, so a section can be copied from
one file to the other; keys that mean nothing to a bridge are accepted and say so.
"""

from dataclasses import replace

from sysadmd.auth.options import AUTH as DAEMON_AUTH
from sysadmd.config.options import Option, integer, string
from sysadmd.server.options import SERVER as DAEMON_SERVER

DEFAULT_PATHS = ("/usr/local/etc/sysadm-bridge.ini", "/etc/sysadm-bridge.ini")

# The keys the bridge reads; every other key of the daemon's sections (present or added
# later) is accepted and documented as unused.
_USED = {
    "server": {
        "listen", "state_dir", "max_message_bytes", "idle_timeout", "ping_interval",
        "handshake_timeout", "max_connections_per_ip", "max_inflight_requests",
        "allowed_origins", "allowed_hosts", "tls_cert", "tls_key", "tls_generate",
        "reserved_descriptors", "dialect",
    },
    "auth": {
        "keys_file", "max_failures", "failure_window", "ban_seconds", "ban_loopback",
        "auth_timeout", "preauth_max_message_bytes", "failure_delay", "ban_ipv6_prefix",
    },
}

_OWN_DOCS = {
    ("server", "state_dir"): "Directory for the bridge's keys file and generated TLS files "
    "(created if missing).",
    ("server", "max_message_bytes"): "Largest incoming message, a relayed one's id line "
    "included; a bigger one closes with 1009.",
    ("server", "max_inflight_requests"): "Requests to the bridge itself (identify, auth_ssl) "
    "of one connection handled at once; beyond, reading pauses.",
    ("auth", "keys_file"): "Public keys of the clients that may sign in with rpc/auth_ssl, "
    "managed with sysadmd-admin key (default <state_dir>/keys).",
    ("auth", "token_ttl"): "Unused by the bridge: a sign-in lasts as long as its connection.",
}

_OWN_DEFAULTS = {
    ("server", "listen"): "tcp:12149:interface=127.0.0.1",
    ("server", "state_dir"): "/var/db/sysadm-bridge",
}


def _bridge_section(name, daemon_options):
    section = {}
    for key, option in daemon_options.items():
        doc = _OWN_DOCS.get((name, key))
        if doc is None and key not in _USED[name]:
            doc = f"Unused by the bridge (accepted so a daemon's [{name}] section can be reused)."
        section[key] = replace(
            option,
            default=_OWN_DEFAULTS.get((name, key), option.default),
            doc=doc or option.doc,
        )
    return section


SERVER = _bridge_section("server", DAEMON_SERVER)
# A bridge-only option, next to keys_file: only a key listed there may act as a server.
SERVER_KEYS_FILE = Option(
    "",
    string,
    "Public keys of the servers (each daemon's sysadmd-admin bridge export-key), one "
    "'username <OpenSSH key>' a line like keys_file: a connection signed in with one of "
    "them is a server, with any other key a client (default <state_dir>/server_keys).",
)


def _with_server_keys(section):
    options = {}
    for key, option in section.items():
        options[key] = option
        if key == "keys_file":
            options["server_keys_file"] = SERVER_KEYS_FILE
    return options


AUTH = _with_server_keys(_bridge_section("auth", DAEMON_AUTH))

RELAY = {
    "buffer_bytes": Option(
        "1048576",
        integer(4096),
        "Bytes of relayed messages and bridge events waiting for a connection that is not "
        "reading; beyond, it is closed with code 1008.",
    ),
}

SECTIONS = {
    "server": SERVER,
    "auth": AUTH,
    "relay": RELAY,
}
