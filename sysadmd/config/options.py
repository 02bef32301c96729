"""Typed ini options: each knows its default, how to parse a value, and its documentation.

A parser takes the raw string and returns the value, or raises ``ValueError`` with a short
sentence that the loader prefixes with the file, section and key.
"""

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Option:
    """One ini key: its textual default, its parser and a one-line description."""

    default: str
    parse: Callable[[str], Any]
    doc: str

    def default_value(self):
        """The parsed default."""
        return self.parse(self.default)


def integer(minimum=None, maximum=None):
    """A parser for whole numbers within optional bounds."""

    def parse(text):
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
        if minimum is not None and value < minimum:
            raise ValueError(f"{value} is below the minimum of {minimum}")
        if maximum is not None and value > maximum:
            raise ValueError(f"{value} is above the maximum of {maximum}")
        return value

    return parse


def number(minimum=None):
    """A parser for (possibly fractional) numbers such as seconds."""

    def parse(text):
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{text!r} is not a finite number")
        if minimum is not None and value < minimum:
            raise ValueError(f"{value:g} is below the minimum of {minimum:g}")
        return value

    return parse


_TRUE = {"yes", "true", "on", "1"}
_FALSE = {"no", "false", "off", "0"}


def boolean(text):
    """``yes``/``no`` (also true/false, on/off, 1/0)."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{text!r} is not yes or no")


def choice(*allowed):
    """A parser accepting exactly one of ``allowed``."""

    def parse(text):
        word = text.strip()
        if word not in allowed:
            raise ValueError(f"{word!r} is not one of: {', '.join(allowed)}")
        return word

    return parse


def words(text):
    """A whitespace-separated list (possibly empty)."""
    return text.split()


def string(text):
    """Free text, surrounding whitespace removed."""
    return text.strip()
