"""What a machine's fleet agent signs for ``rpc/auth_fleet``.

The ``sysadm-fleet`` agent beside the daemon signs in with a key of the daemon's
``[auth] fleet_keys_file`` and asks to act as a local user::

    > {"namespace": "rpc", "name": "auth_fleet", "id": 1, "args": {}}
    < {"namespace": "rpc", "name": "response", "id": 1, "args": {"test_string": "..."}}
    > {"namespace": "rpc", "name": "auth_fleet", "id": 2,
       "args": {"signature": "<base64>", "user": "alice", "access": "full"}}
    < {"namespace": "rpc", "name": "response", "id": 2, "args": ["<token>", 900]}

The signature (:mod:`sysadmd.protocol.keysign`) covers the UTF-8 of :func:`signed_text`:
the scheme, the test string, the user ('' for none) and the access, one a line. Binding
the user and the access into the signed text means whoever relays or alters stage 2
cannot turn the agent's sign-in into another user's, nor limited access into full; the
scheme's name keeps the signature from ever being valid for ``rpc/auth_ssl``, which
signs a bare test string.

Both ends import this module (the daemon's :mod:`sysadmd.auth.fleet` and the agent).
"""

import base64

from sysadmd.protocol import keysign

SCHEME = "sysadm-fleet-v1"
ACCESS_LEVELS = ("limited", "full")


def signed_text(test_string, user, access):
    """The exact text signed for ``rpc/auth_fleet``: ``SCHEME``, ``test_string``,
    ``user`` (None or '' for the key's own limited identity) and ``access``, joined by
    newlines."""
    return "\n".join((SCHEME, test_string, user or "", access))


def sign(private_key, test_string, user, access):
    """The base64 ``signature`` of stage 2 (ValueError for a key that cannot sign)."""
    data = signed_text(test_string, user, access).encode("utf-8")
    return base64.b64encode(keysign.sign(private_key, data)).decode("ascii")
