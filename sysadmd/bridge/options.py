"""The daemon's ``[bridge]`` ini section: the bridges it connects out to."""

from sysadmd.bridge.urls import parse_connections
from sysadmd.config.options import Option, boolean, number, string

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
    "legacy_clients": Option(
        "yes",
        boolean,
        "Let clients relayed by a bridge sign in the original SysAdm way (the Qt client's "
        "rpc/auth_ssl with md5_key): its signature is not bound to this server, and the "
        "session's messages are only base64-encoded, so the bridge can read and replay "
        "them. With no, relayed clients must use the bound rpc/auth_ssl (sysadm).",
    ),
    "keepalive": Option(
        "60",
        number(0),
        "Seconds between keepalive requests on each bridge link, so the bridge's "
        "idle_timeout never closes it; a changed keys file is re-announced then (0 = off).",
    ),
}
