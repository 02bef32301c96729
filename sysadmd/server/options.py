"""The ``[server]`` ini section: listening, message limits, timeouts, web pages."""

import ipaddress

from sysadmd.config.options import Option, boolean, choice, integer, number, string, words
from sysadmd.protocol.dialect import SETTINGS as DIALECT_SETTINGS


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
        "256",
        integer(1),
        "Open connections (WebSocket and plain HTTP) allowed from one address; more get "
        "HTTP 503.",
    ),
    "http_request_timeout": Option(
        "10",
        number(0.1),
        "Seconds a plain HTTP request (headers and body) has to arrive whole, counted "
        "from the connection's start or the end of the previous answer; a request still "
        "incomplete then is dropped, however steadily its bytes trickle in.",
    ),
    "reserved_descriptors": Option(
        "320",
        integer(32),
        "File descriptors kept out of reach of client connections: connections are capped "
        "at the descriptor limit (RLIMIT_NOFILE) minus this; beyond, they are closed at "
        "once, except 8 kept back that may only GET /health. The default covers two pipes "
        "and an output file for each of [dispatcher] max_processes (64) jobs, 16 finished "
        "jobs' output files kept open for readers, about 40 for the daemon itself (log, "
        "database and its journal, ports, event sources, bridge links, file rewrites), the "
        "8 /health connections, and a margin.",
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
    "allowed_hosts": Option(
        "",
        words,
        "Host names and addresses clients may name in the Host header (ports ignored); "
        "other Hosts get 403 (DNS rebinding). Empty means the listen addresses, localhost "
        "and this machine's host names; an IP wildcard (0.0.0.0 or ::) allows every IP "
        "address; * allows any Host.",
    ),
    "dialect": Option(
        "auto",
        choice(*DIALECT_SETTINGS),
        "Wire dialect of WebSocket clients: spec (events.rst, as documented here), "
        "original (what the original SysAdm server sent: event frames named after the "
        "subscription with id \"\", error codes as strings, its subscribe replies), or "
        "auto: original for the Origins sysadm-client and sysadm-server (the original Qt "
        "client and server), spec for every other client.",
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
