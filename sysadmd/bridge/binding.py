"""The daemon's side of the relay binding of ``rpc/auth_ssl`` (format in
``sysadmd.protocol.relay``).

Each client relayed by a bridge gets a :class:`RelayBinding` as its session's
``challenge_binding``: the daemon then verifies a signature over the test string bound to
this server's bridge key and to that client's connection id, so a signature obtained by
another server (or by a peer posing as one) is refused here.
"""

from sysadmd.protocol.relay import relay_binding_description, relay_challenge_text


class RelayBinding:
    """Binds ``rpc/auth_ssl`` challenges to ``server_fingerprint`` (the ``SHA256:...`` of
    the bridge key this daemon signed in to the bridge with) and ``connection_id`` (the
    client's id on that bridge). Provides what ``Session.challenge_binding`` expects."""

    def __init__(self, server_fingerprint, connection_id):
        self.server_fingerprint = server_fingerprint
        self.connection_id = connection_id

    def text(self, test_string):
        """The string the client must have signed for ``test_string``."""
        return relay_challenge_text(self.server_fingerprint, self.connection_id, test_string)

    def describe(self):
        """What stage 1 adds to its reply, so the client can check the binding before
        signing."""
        return relay_binding_description(self.server_fingerprint, self.connection_id)
