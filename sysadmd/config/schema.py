"""The daemon's ini sections and keys: the one place each default is written down.

``etc/sysadmd.ini`` and the README document the same keys; a unit test checks they agree.
Event sources bring their own keys for their ``[source:NAME]`` section (see
``sysadmd.events.interfaces``).
"""

from sysadmd.config.options import Option, boolean, choice, integer, number, string, words

_AUTH_BACKENDS = ("pam", "users")


def _backends(text):
    names = words(text)
    if not names:
        raise ValueError("at least one backend is needed (pam, users)")
    for name in names:
        if name not in _AUTH_BACKENDS:
            raise ValueError(f"unknown backend {name!r} (known: {', '.join(_AUTH_BACKENDS)})")
    return names


def _endpoints(text):
    endpoints = words(text)
    if not endpoints:
        raise ValueError("at least one endpoint is needed, e.g. tcp:12150:interface=127.0.0.1")
    return endpoints


SERVER = {
    "listen": Option(
        "tcp:12150:interface=127.0.0.1",
        _endpoints,
        "Twisted server endpoint strings separated by whitespace; ssl: endpoints serve wss.",
    ),
    "state_dir": Option(
        "/var/db/sysadmd", string, "Directory for persistent state (created if missing)."
    ),
    "max_message_bytes": Option(
        "65536", integer(1024), "Largest incoming message; a bigger one closes with 1009."
    ),
    "idle_timeout": Option(
        "1800", number(0), "Seconds without an incoming message before closing (0 = never)."
    ),
    "ping_interval": Option(
        "30", number(0), "Seconds between WebSocket pings that detect dead peers (0 = off)."
    ),
    "handshake_timeout": Option(
        "10", number(0), "Seconds a TCP client has to complete the WebSocket handshake."
    ),
    "max_connections_per_ip": Option(
        "256", integer(1), "Open connections allowed from one address; more get HTTP 503."
    ),
    "max_inflight_requests": Option(
        "20", integer(1), "Requests of one connection handled at once; beyond, reading pauses."
    ),
    "allowed_origins": Option(
        "",
        words,
        "Browser Origins allowed to connect (e.g. https://dash.example.org); empty means the "
        "daemon's own host only, * means any. Handshakes without Origin are always accepted.",
    ),
    "tls_cert": Option(
        "", string, "Certificate (PEM) for ssl: endpoints without certKey= (default <state_dir>/tls/cert.pem)."
    ),
    "tls_key": Option(
        "", string, "Private key (PEM) for ssl: endpoints without privateKey= (default <state_dir>/tls/key.pem)."
    ),
    "tls_generate": Option(
        "no", boolean, "Generate a self-signed certificate and key when they are missing."
    ),
}

AUTH = {
    "backends": Option("pam", _backends, "Password backends tried in order: pam, users."),
    "pam_service": Option("login", string, "PAM service for the pam backend (never su)."),
    "full_groups": Option("wheel", words, "Groups whose members get full access (root always does)."),
    "limited_groups": Option("operator", words, "Groups whose members get limited (read-only) access."),
    "users_file": Option("", string, "Users file for the users backend (default <state_dir>/users)."),
    "keys_file": Option("", string, "Public keys for rpc/auth_ssl (default <state_dir>/keys)."),
    "token_ttl": Option("900", number(1), "Seconds a token lives, extended on every request."),
    "max_failures": Option("5", integer(1), "Failed logins from one address before a ban."),
    "failure_window": Option("600", number(1), "Seconds over which failed logins are counted."),
    "ban_seconds": Option("3600", number(1), "Length of a ban."),
    "ban_loopback": Option("no", boolean, "Also ban loopback addresses (tests use it)."),
    "auth_timeout": Option("30", number(0), "Seconds an unauthenticated connection may stay open."),
    "preauth_max_message_bytes": Option(
        "8192", integer(256), "Largest message accepted before authentication."
    ),
    "failure_delay": Option(
        "1", number(0), "Failed logins are answered no sooner than this many seconds."
    ),
}

EVENTS = {
    "sources": Option(
        "all", words, "Enabled event sources by name, or 'all' for every installed source."
    ),
    "subscriber_buffer_bytes": Option(
        "1048576", integer(4096), "Bytes of events queued for a subscriber that is not reading."
    ),
    "slow_subscriber": Option(
        "drop",
        choice("drop", "disconnect"),
        "What happens when that buffer is full: drop events (then report the count) or "
        "disconnect with code 1008.",
    ),
}

DISPATCHER = {}

SECTIONS = {
    "server": SERVER,
    "auth": AUTH,
    "events": EVENTS,
    "dispatcher": DISPATCHER,
}

SOURCE_PREFIX = "source:"
