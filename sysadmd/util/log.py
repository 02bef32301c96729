"""The daemon's :class:`Logger`: peer-supplied strings cannot forge log lines.

Origins, Host headers, user names, job ids and paths come from the network. Written raw
into a text log, a value holding a newline starts what looks like a line of its own, and
an escape sequence (``\\x1b[...``) can rewrite what a terminal shows. :class:`Logger`
escapes control characters in every str and bytes field of an event before any observer
sees it; the format string (``log_format``, written by us) is left alone, and so are the
``log_*`` keys Twisted adds (a failure's traceback stays multi-line).
"""

import re

from twisted.logger import Logger as _TwistedLogger

__all__ = ["Logger", "escape_controls"]

# C0 controls, DEL, C1 controls, and the Unicode line and paragraph separators.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_one(match):
    char = match.group(0)
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(value):
    """``value`` with control characters written as escapes (``\\n``, ``\\x1b``...):
    str and bytes (decoded as UTF-8, undecodable bytes escaped) become a safe str,
    lists and tuples are escaped item by item, anything else is returned as it is."""
    if isinstance(value, str):
        return _CONTROLS.sub(_escape_one, value) if _CONTROLS.search(value) else value
    if isinstance(value, (bytes, bytearray)):
        return escape_controls(bytes(value).decode("utf-8", "backslashreplace"))
    if isinstance(value, (list, tuple)):
        return type(value)(escape_controls(item) for item in value)
    return value


class Logger(_TwistedLogger):
    """:class:`twisted.logger.Logger` whose events carry escaped field values (see the
    module docstring). Use it like Twisted's: ``log = Logger()`` at module or class level."""

    def emit(self, level, format=None, **kwargs):
        """Escape every field but Twisted's own ``log_*`` keys, then emit."""
        for key, value in kwargs.items():
            if not key.startswith("log_"):
                kwargs[key] = escape_controls(value)
        super().emit(level, format, **kwargs)
