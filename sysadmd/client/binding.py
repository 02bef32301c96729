"""The server a client reaches through a bridge is named by its key, and the client's
``rpc/auth_ssl`` signature through the relay is bound to that key and to the encrypted
tunnel's handshake, so it is useless to anyone else.

The format is the tunnel's (:func:`sysadmd.protocol.tunnel.binding_text`): the client
imports the wire format rather than keeping a copy of it.
"""

import re

from sysadmd.client.errors import ClientError
from sysadmd.protocol import tunnel

# As ssh-keygen prints it and the bridge's keys files show it: unpadded base64 of SHA-256.
_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")

WHERE = (
    "pass the server's key fingerprint, --server SHA256:... (on the server, "
    "'sysadmd-admin bridge export-key' prints it as 'fingerprint SHA256:...')"
)


def parse_server_fingerprint(value):
    """``value`` if it is a key fingerprint (``SHA256:`` and 43 base64 characters, compared
    exactly: base64 is case-sensitive), else a :class:`ClientError` saying what to pass."""
    text = value.strip() if isinstance(value, str) else ""
    if _FINGERPRINT.fullmatch(text):
        return text
    raise ClientError(f"--server {value!r} (or [client] server) is not a key fingerprint: {WHERE}")


class ChallengeBinding:
    """What a client signs inside the encrypted tunnel to the server pinned as
    ``server_fingerprint``, whose handshake hash is ``handshake_hash`` (both known to the
    client from the pin and its own handshake, never taken from the server's reply)."""

    def __init__(self, server_fingerprint, handshake_hash):
        self.server_fingerprint = server_fingerprint
        self.handshake_hash = handshake_hash

    def expected(self):
        """The ``bind`` entry the server's stage 1 reply must carry."""
        return tunnel.binding_description(self.server_fingerprint, self.handshake_hash)

    def check(self, described):
        """Raise :class:`ClientError` unless the server's stage 1 ``bind`` entry is
        exactly :meth:`expected` (another server, another tunnel, or no binding at all:
        do not sign)."""
        if described == self.expected():
            return
        if not isinstance(described, dict):
            raise ClientError(
                "the server behind the bridge did not bind its rpc/auth_ssl challenge to the "
                "encrypted tunnel; refusing to sign it"
            )
        raise ClientError(
            f"the server's rpc/auth_ssl challenge is bound to server {described.get('server')!r}, "
            f"handshake {described.get('handshake')!r} ({described.get('scheme')!r}), not to the "
            f"pinned server {self.server_fingerprint} and this tunnel's handshake "
            f"{self.handshake_hash.hex()}; refusing to sign it"
        )

    def text(self, test_string):
        """The string to sign for ``test_string`` (ValueError when it cannot be bound)."""
        return tunnel.binding_text(self.server_fingerprint, self.handshake_hash, test_string)
