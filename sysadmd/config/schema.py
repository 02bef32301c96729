"""The daemon's ini sections and keys: the one place each default is written down.

``etc/sysadmd.ini`` and the README document the same keys; a unit test checks they agree.
Event sources bring their own keys for their ``[source:NAME]`` section (see
``sysadmd.events.interfaces``).
"""

import ipaddress

from sysadmd.config.options import Option, boolean, choice, integer, number, string, words
from sysadmd.bridge.urls import parse_connections
from sysadmd.dispatcher.queue import parse_queues

_AUTH_BACKENDS = ("pam", "users")


def _backends(text):
    names = words(text)
    if not names:
        raise ValueError("at least one backend is needed (pam, users)")
    for name in names:
        if name not in _AUTH_BACKENDS:
            raise ValueError(f"unknown backend {name!r} (known: {', '.join(_AUTH_BACKENDS)})")
    return names


def _networks(text):
    networks = []
    for item in words(text):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network (e.g. 192.0.2.7 or 10.1.0.0/16)") from None
    return networks


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
    "dashboard": Option(
        "yes",
        boolean,
        "Serve the web dashboard at / (plain HTTP GET); the WebSocket stays at / and /ws.",
    ),
    "compression": Option(
        "no",
        boolean,
        "Accept permessage-deflate compression. Off by default: a compressed connection "
        "compresses every event itself instead of sharing the one frame made per event.",
    ),
    "conformance_echo": Option(
        "no",
        boolean,
        "Test mode for the Autobahn|Testsuite (make conformance): echo every message, "
        "no authentication. Refused unless every listen endpoint is on a loopback address.",
    ),
    "metrics": Option(
        "yes", boolean, "Serve Prometheus metrics at GET /metrics (no authentication)."
    ),
    "metrics_allow": Option(
        "",
        _networks,
        "Addresses or networks (e.g. 192.0.2.7 10.1.0.0/16) besides loopback allowed to "
        "read /metrics; others get 403.",
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

DISPATCHER = {
    "queues": Option(
        "no_queue:0 pkg_queue:1 iocage_queue:1",
        parse_queues,
        "Job queues as NAME:MAX_RUNNING pairs (0 = unlimited), each first in, first out; "
        "jobs that name no queue go to no_queue (else the first listed).",
    ),
    "default_timeout": Option(
        "0", number(0), "Seconds a job may run before it is stopped (0 = no limit); a job's own timeout wins."
    ),
    "kill_grace": Option(
        "5", number(0), "Seconds from SIGTERM to SIGKILL when a job is killed, times out or the daemon stops."
    ),
    "update_interval": Option(
        "1", number(0), "Least seconds between two running events of one job caused by its output."
    ),
    "event_log_bytes": Option(
        "65536", integer(0), "Bytes of each command's log in events: the tail, after a marker saying how much was left out."
    ),
    "store_log_bytes": Option(
        "10485760", integer(1), "Bytes of each command's log kept in history and returned by the log action (the tail)."
    ),
    "history_days": Option("30", number(0), "Days finished jobs stay in history (0 = forever)."),
    "env_passthrough": Option(
        "", words, "Daemon environment variables passed to commands besides PATH, LANG and HOME."
    ),
    "cwd": Option("/", string, "Working directory of commands."),
}

BRIDGE = {
    "connections": Option(
        "",
        parse_connections,
        "Bridges to connect out to, as whitespace-separated NICK=URL entries (ws:// or "
        "wss://host[:port], default port 12149); sysadmd-admin bridge add/remove edit it.",
    ),
    "key": Option(
        "",
        string,
        "Private key this server signs in to bridges with (default <state_dir>/bridge_key, "
        "an Ed25519 key generated when missing); sysadmd-admin bridge export-key prints "
        "the public half for the bridges' keys files.",
    ),
    "ca_file": Option(
        "",
        string,
        "PEM certificates trusted for wss:// bridges (e.g. a bridge's self-signed "
        "certificate); empty means the system's trusted CAs.",
    ),
    "keepalive": Option(
        "60",
        number(0),
        "Seconds between keepalive requests on each bridge link, so the bridge's "
        "idle_timeout never closes it; a changed keys file is re-announced then (0 = off).",
    ),
}

SECTIONS = {
    "server": SERVER,
    "auth": AUTH,
    "events": EVENTS,
    "dispatcher": DISPATCHER,
    "bridge": BRIDGE,
}

SOURCE_PREFIX = "source:"
