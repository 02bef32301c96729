"""The server a client reaches through a bridge is named by its key, and the client's
``rpc/auth_ssl`` signature through the relay is bound to that key and to its own
connection, so it is useless to anyone else.

The format is the daemon's (``sysadmd.protocol.relay``, where it is described); this is
the client's copy, because the client is packaged on its own and imports nothing outside
``sysadmd.client``. A unit test pins both to the same output.
"""

import re

from sysadmd.client.errors import ClientError

RELAY_SCHEME = "sysadm-relay-v1"

# As ssh-keygen prints it and the bridge's keys files show it: unpadded base64 of SHA-256.
_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")

WHERE = (
    "pass the server's key fingerprint, --server SHA256:... (on the server, "
    "'sysadmd-admin bridge export-key' prints it as 'fingerprint SHA256:...')"
)


def relay_challenge_text(server_fingerprint, connection_id, test_string):
    """The text a relayed client signs for ``test_string``: ``sysadm-relay-v1``, the
    server's key fingerprint, the client's connection id and the test string, one a line.
    Raises ValueError for an empty part or one with a line break."""
    parts = (server_fingerprint, connection_id, test_string)
    for part in parts:
        if not isinstance(part, str) or not part or "\n" in part or "\r" in part:
            raise ValueError("relay binding parts must be non-empty strings on one line")
    return "\n".join((RELAY_SCHEME,) + parts)


def parse_server_fingerprint(value):
    """``value`` if it is a key fingerprint (``SHA256:`` and 43 base64 characters, compared
    exactly: base64 is case-sensitive), else a :class:`ClientError` saying what to pass."""
    text = value.strip() if isinstance(value, str) else ""
    if _FINGERPRINT.fullmatch(text):
        return text
    raise ClientError(f"--server {value!r} (or [client] server) is not a key fingerprint: {WHERE}")


class ChallengeBinding:
    """What a client relayed to the server with key ``server_fingerprint`` signs, being
    ``connection_id`` on the bridge (both known to the client, never taken from the
    server)."""

    def __init__(self, server_fingerprint, connection_id):
        self.server_fingerprint = server_fingerprint
        self.connection_id = connection_id

    def expected(self):
        """The ``bind`` entry the server's stage 1 reply must carry."""
        return {
            "scheme": RELAY_SCHEME,
            "server": self.server_fingerprint,
            "connection": self.connection_id,
        }

    def check(self, described):
        """Raise :class:`ClientError` unless the server's stage 1 ``bind`` entry is
        exactly :meth:`expected` (another server, another connection, or no binding at
        all: do not sign)."""
        expected = self.expected()
        if described == expected:
            return
        if not isinstance(described, dict):
            raise ClientError(
                "the server behind the bridge did not bind its rpc/auth_ssl challenge to its "
                "key; refusing to sign it (is it an older sysadmd?)"
            )
        raise ClientError(
            f"the server's rpc/auth_ssl challenge is bound to server {described.get('server')!r}, "
            f"connection {described.get('connection')!r}, not to the pinned server "
            f"{self.server_fingerprint} and this connection {self.connection_id}; refusing to sign it"
        )

    def text(self, test_string):
        """The string to sign for ``test_string``."""
        return relay_challenge_text(self.server_fingerprint, self.connection_id, test_string)
