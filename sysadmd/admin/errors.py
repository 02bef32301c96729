"""The error a ``sysadmd-admin`` command raises for a user's mistake."""


class AdminError(Exception):
    """A mistake the user can fix; shown as one line, without a traceback."""
