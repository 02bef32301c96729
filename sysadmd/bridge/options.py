"""The daemon's ``[bridge]`` ini section: the bridges it connects out to."""

from sysadmd.bridge.urls import parse_connections
from sysadmd.config.options import Option, boolean, integer, number, string

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
        "no",
        boolean,
        "Relay sessions that do not use the encrypted tunnel: the dashboard through a "
        "bridge, and the original SysAdm clients (their rpc/auth_ssl with md5_key is not "
        "bound to this server, their messages are only base64). The bridge reads and can "
        "alter everything in such a session: passwords, tokens, commands, output. With no, "
        "only sysadm's encrypted tunnel is relayed.",
    ),
    "rekey_messages": Option(
        "100000",
        integer(1),
        "Messages sent one way in a relayed client's encrypted tunnel before its keys are "
        "changed (Noise rekey, both sides in step).",
    ),
    "keepalive": Option(
        "60",
        number(0),
        "Seconds between keepalive requests on each bridge link, so the bridge's "
        "idle_timeout never closes it; a changed keys file is re-announced then (0 = off).",
    ),
}
