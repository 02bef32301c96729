"""Frame a payload once so it can be sent on any number of server connections."""

from autobahn.websocket.protocol import PreparedMessage


def prepare_text(payload):
    """A server-side (unmasked) text frame of ``payload`` bytes, ready for
    ``sendPreparedMessage`` on every connection."""
    return PreparedMessage(payload, isBinary=False, applyMask=False, doNotCompress=False)


def prepare_message(payload, is_binary):
    """The same for a text or binary message (conformance echo)."""
    return PreparedMessage(payload, isBinary=is_binary, applyMask=False, doNotCompress=False)
