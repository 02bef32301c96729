"""Failures the ``sysadm`` command reports as one line on stderr and a non-zero exit."""


class ClientError(Exception):
    """Something the user must hear about: ``str(error)`` is the whole message, one line,
    and ``exit_code`` the status the command ends with."""

    def __init__(self, message, exit_code=1):
        super().__init__(message)
        self.exit_code = exit_code


class ErrorReply(ClientError):
    """The peer answered a request with an error frame (``{"code", "message", "details"}``)."""

    def __init__(self, call, code, message, details):
        self.call = call
        self.code = code
        self.reason = message
        self.details = details
        text = f"{call}: {code} {message}" if message else f"{call}: error {code}"
        if details:
            text += f": {details}"
        super().__init__(text)


class ConnectionClosed(ClientError):
    """The connection (or the relay to the server) ended."""


class CallTimeout(ClientError):
    """No reply came in time."""


class TunnelRefused(ClientError):
    """The server behind a bridge did not prove the pinned key, or would not open the
    encrypted tunnel: nothing was sent to it, and nothing is tried in plaintext."""


class TunnelBroken(ConnectionClosed):
    """The encrypted tunnel to the server behind a bridge broke (a message that did not
    decrypt, or the server's ``noise:error``): the command ends, never to go on in
    plaintext."""
