"""What a client relayed by a bridge signs for ``rpc/auth_ssl``.

A relayed client does not sign the daemon's bare test string: it signs the test string
bound to the server it meant to reach (the fingerprint of that server's bridge key, pinned
by the client) and to its own connection id on the bridge::

    sysadm-relay-v1
    <server key fingerprint>
    <relayed connection id>
    <test string>

(lines joined by ``\\n``, no trailing newline, UTF-8). A signature made for one server, or
for one connection, therefore verifies nowhere else: a peer that collects a victim's
signature by posing as a server cannot use it at a real one. Stage 1 of a relayed
``rpc/auth_ssl`` says what the daemon will check::

    {"test_string": "...", "bind": {"scheme": "sysadm-relay-v1", "server": "SHA256:...",
                                   "connection": "<id>"}}

A client builds the text from what *it* knows (its pinned server fingerprint and the id
the bridge gave it), never from that reply; it only compares the two before signing.
This binding is for relayed sessions outside the encrypted tunnel (``[bridge]
legacy_clients``); the ``sysadm`` client speaks the tunnel, whose binding covers the
handshake instead (:func:`sysadmd.protocol.tunnel.binding_text`).
"""

RELAY_SCHEME = "sysadm-relay-v1"


def relay_challenge_text(server_fingerprint, connection_id, test_string):
    """The text a relayed client signs for ``test_string`` (see the module docstring).

    Raises ValueError when a part is not a non-empty string or holds a line break (which
    would let one binding pose as another).
    """
    parts = (server_fingerprint, connection_id, test_string)
    for part in parts:
        if not isinstance(part, str) or not part or "\n" in part or "\r" in part:
            raise ValueError("relay binding parts must be non-empty strings on one line")
    return "\n".join((RELAY_SCHEME,) + parts)


def relay_binding_description(server_fingerprint, connection_id):
    """The ``bind`` entry stage 1 of a relayed ``rpc/auth_ssl`` adds to its reply."""
    return {
        "bind": {"scheme": RELAY_SCHEME, "server": server_fingerprint, "connection": connection_id}
    }
