"""The bridge's wire protocol, shared by the bridge and the daemons that connect to it.

Every frame is text. A frame whose first non-blank character is ``{`` is an envelope
(``sysadmd.protocol.envelope``) exchanged with the bridge itself; any other frame is relayed
and its payload is never read by the bridge::

    peer -> bridge:   "<destination id>\\n<payload>"
    bridge -> dest:   "<sender id>\\n<payload>"

On every new connection the bridge asks who it is; the answer's ``hostname`` is kept as
a display label only, and its ``type`` decides nothing::

    <- {"namespace": "rpc", "name": "identify", "id": "sysadm_bridge_request_ident", "args": {}}
    -> {"namespace": "rpc", "name": "response", "id": "sysadm_bridge_request_ident",
        "args": {"type": "server", "hostname": "web1"}}

Both kinds sign in with ``rpc/auth_ssl`` (the two stages of the daemon's call); nothing
else signs in to a bridge. The key a connection proves decides its role, from the
bridge's own configuration: a key in ``[auth] server_keys_file`` makes a server, any
other key of ``[auth] keys_file`` a client. Once a server has signed in::

    <- {"namespace": "rpc", "name": "settings", "id": "bridge_request_list_keys",
        "args": {"action": "list_ssl_checksums"}}
    -> {"namespace": "rpc", "name": "response", "id": "bridge_request_list_keys",
        "args": {"sha256_keys": ["SHA256:...", ...], "md5_keys": ["<base64>", ...]}}

Either list may be missing (an original SysAdm server sends only ``md5_keys``: base64 of
the MD5 of each public key PEM, see ``sysadmd.protocol.keydigests``). A server may send
that response again, unasked, when the keys it accepts change; the same answer from a
client is ignored (the original Qt client sends its own key's). A client can reach exactly
the servers whose lists name the key it signed in with, by either digest (and those
servers can reach it).
Each signed-in connection receives, right after signing in and whenever the list
changes::

    <- {"id": "", "namespace": "events", "name": "bridge",
        "args": {"available_connections": ["<id>", ...],
                 "connection_id": "<the receiver's own id>",
                 "connections": {"<id>": {"role": "server", "fingerprint": "SHA256:...",
                                          "hostname": "web1"}, ...}}}

``available_connections`` is what original SysAdm clients read. ``connections`` has an
entry for each of those ids: its role, the fingerprint of the key it proved at sign-in
(what clients pick a server by, and what a daemon counts failed logins of a relayed client
on) and, when known, its label (``hostname``, said by the peer itself: never trust it).

The bridge's own errors have ``"id": null``: 401 for a relay before signing in, 400 for a
frame without an id line, 404 (with ``"destination"`` in ``args``) for an id the sender
cannot reach.
"""

from sysadmd.protocol import envelope
from sysadmd.protocol.keydigests import MD5_KEYS, SHA256_KEYS

IDENTIFY_ID = "sysadm_bridge_request_ident"
CHECKSUMS_ID = "bridge_request_list_keys"
CHECKSUMS_KEY = SHA256_KEYS
# How the registry tells an MD5 name from a SHA256: fingerprint (never on the wire).
MD5_PREFIX = "MD5:"
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
    # One word: not empty and no whitespace (split() does it in C; a per-character check
    # was 5 % of a saturated bridge).
    if connection_id.split() != [connection_id]:
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


def checksums_reply(checksums):
    """A server's answer to :func:`checksums_request`; ``checksums`` is its ``args``
    (``{"sha256_keys": [...], "md5_keys": [...]}``) or a list of ``SHA256:`` fingerprints."""
    if not isinstance(checksums, dict):
        checksums = {CHECKSUMS_KEY: list(checksums)}
    return {"namespace": "rpc", "name": "response", "id": CHECKSUMS_ID, "args": dict(checksums)}


def md5_name(md5):
    """The registry's name for the ``md5_keys`` entry ``md5``."""
    return MD5_PREFIX + md5


def parse_checksums(args):
    """The key names in a checksums reply's ``args``: its ``sha256_keys`` as they are and
    its ``md5_keys`` as :func:`md5_name`; raises ValueError if neither list is there or
    one is not a list of strings."""
    if not isinstance(args, dict) or not (SHA256_KEYS in args or MD5_KEYS in args):
        raise ValueError(f'expected {{"{SHA256_KEYS}": [...]}} and/or {{"{MD5_KEYS}": [...]}}')
    names = []
    for field, name in ((SHA256_KEYS, str), (MD5_KEYS, md5_name)):
        keys = args.get(field, [])
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValueError(f'"{field}" must be a list of strings')
        names.extend(name(k) for k in keys)
    return names


# A label longer than a DNS name, or with control characters, is not shown at all.
MAX_LABEL = 253


def parse_label(args):
    """The ``hostname`` of an identify answer's ``args`` if it is a printable string of at
    most ``MAX_LABEL`` characters, else None."""
    label = args.get("hostname") if isinstance(args, dict) else None
    if isinstance(label, str) and 0 < len(label) <= MAX_LABEL and label.isprintable():
        return label
    return None


def bridge_event(ids, connection_id=None, connections=None):
    """The ``events/bridge`` frame listing ``ids`` to ``connection_id``, with
    ``connections`` (``{id: {"role", "fingerprint"[, "hostname"]}}``)."""
    args = {"available_connections": list(ids)}
    if connection_id is not None:
        args["connection_id"] = connection_id
        args["connections"] = dict(connections or {})
    return envelope.event("bridge", args, frame_id="")


def connection_keys(args):
    """``{id: fingerprint}`` from a bridge event's ``args`` (entries that are not
    well formed are left out)."""
    connections = args.get("connections") if isinstance(args, dict) else None
    if not isinstance(connections, dict):
        return {}
    keys = {}
    for connection_id, entry in connections.items():
        fingerprint = entry.get("fingerprint") if isinstance(entry, dict) else None
        if isinstance(fingerprint, str) and fingerprint:
            keys[connection_id] = fingerprint
    return keys
