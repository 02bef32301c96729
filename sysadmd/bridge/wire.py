"""The bridge's wire protocol, shared by the bridge and the daemons that connect to it.

Every frame is text. A frame whose first non-blank character is ``{`` is an envelope
(``sysadmd.protocol.envelope``) exchanged with the bridge itself; any other frame is relayed
and its payload is never read by the bridge::

    peer -> bridge:   "<destination id>\\n<payload>"
    bridge -> dest:   "<sender id>\\n<payload>"

On every new connection the bridge asks (and records whether the peer is a server or a
client; an unanswered or other type counts as a client)::

    <- {"namespace": "rpc", "name": "identify", "id": "sysadm_bridge_request_ident", "args": {}}
    -> {"namespace": "rpc", "name": "response", "id": "sysadm_bridge_request_ident",
        "args": {"type": "server", "hostname": "web1"}}

Both kinds sign in with ``rpc/auth_ssl`` (the two stages of the daemon's call) against the
bridge's keys file; nothing else signs in to a bridge. Once a server has signed in::

    <- {"namespace": "rpc", "name": "settings", "id": "bridge_request_list_keys",
        "args": {"action": "list_ssl_checksums"}}
    -> {"namespace": "rpc", "name": "response", "id": "bridge_request_list_keys",
        "args": {"sha256_keys": ["SHA256:...", ...]}}

A server may send that response again, unasked, when the keys it accepts change. A client
can reach exactly the servers whose list holds the fingerprint of the key it signed in
with (and those servers can reach it). Each signed-in connection receives, right after
signing in and whenever the list changes::

    <- {"id": "", "namespace": "events", "name": "bridge",
        "args": {"available_connections": ["<id>", ...]}}

The bridge's own errors have ``"id": null``: 401 for a relay before signing in, 400 for a
frame without an id line, 404 (with ``"destination"`` in ``args``) for an id the sender
cannot reach.
"""

from sysadmd.protocol import envelope

IDENTIFY_ID = "sysadm_bridge_request_ident"
CHECKSUMS_ID = "bridge_request_list_keys"
CHECKSUMS_KEY = "sha256_keys"
SERVER = "server"
CLIENT = "client"


class RelayFrameError(ValueError):
    """A relayed frame without a usable ``<id>\\n`` line."""


def is_for_bridge(payload):
    """True when the frame (bytes or str) is an envelope for the bridge itself, not a relay."""
    stripped = payload.lstrip()
    return stripped[:1] in (b"{", "{")


def split_relay(payload):
    """``(id, body)`` of a relayed frame (bytes): the id decoded, the body untouched."""
    head, newline, body = payload.partition(b"\n")
    if not newline:
        raise RelayFrameError("a relayed frame is '<id>\\n<payload>'")
    try:
        connection_id = head.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise RelayFrameError("the id line is not UTF-8") from None
    if not connection_id or any(c.isspace() for c in connection_id):
        raise RelayFrameError("the id line must be one connection id")
    return connection_id, body


def address(connection_id, body):
    """The relayed frame ``"<id>\\n<body>"`` as bytes (``body`` is bytes)."""
    return connection_id.encode("utf-8") + b"\n" + body


def is_reply(message):
    """Whether a decoded envelope (a dict) answers a request rather than making one."""
    return message.get("name") == "response" or message.get("namespace") == "error"


def identify_request():
    """The bridge's question to every new connection."""
    return {"namespace": "rpc", "name": "identify", "id": IDENTIFY_ID, "args": {}}


def checksums_request():
    """The bridge's question to a server that signed in."""
    return {
        "namespace": "rpc",
        "name": "settings",
        "id": CHECKSUMS_ID,
        "args": {"action": "list_ssl_checksums"},
    }


def checksums_reply(fingerprints):
    """A server's answer to :func:`checksums_request`."""
    return {
        "namespace": "rpc",
        "name": "response",
        "id": CHECKSUMS_ID,
        "args": {CHECKSUMS_KEY: list(fingerprints)},
    }


def parse_checksums(args):
    """The fingerprints in a checksums reply's ``args``; raises ValueError if malformed."""
    keys = args.get(CHECKSUMS_KEY) if isinstance(args, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ValueError(f'expected {{"{CHECKSUMS_KEY}": [fingerprints]}}')
    return keys


def bridge_event(ids):
    """The ``events/bridge`` frame listing ``ids``."""
    return envelope.event("bridge", {"available_connections": list(ids)}, frame_id="")
