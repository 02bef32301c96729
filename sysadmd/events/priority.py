"""Event priorities as SysAdm shows them: the string ``"<N> - <Category>"``.

Levels run from 0 to 10: 0-2 Information, 3-5 Warning, 6-8 Critical, 9-10 Urgent. Every
source that reports a priority formats it here, so clients see one vocabulary.
"""

INFORMATION = 0
WARNING = 3
CRITICAL = 6
URGENT = 9
HIGHEST = 10

_CATEGORIES = ((2, "Information"), (5, "Warning"), (8, "Critical"), (10, "Urgent"))


def category(level):
    """The category name of ``level`` (an int from 0 to 10)."""
    level = _checked(level)
    for top, name in _CATEGORIES:
        if level <= top:
            return name
    raise AssertionError("unreachable")  # pragma: no cover


def display(level):
    """``level`` as the event string, e.g. ``display(9) == "9 - Urgent"``."""
    level = _checked(level)
    return f"{level} - {category(level)}"


def level_of(text):
    """The level of a string made by :func:`display` (``ValueError`` otherwise)."""
    number, sep, name = str(text).partition(" - ")
    if not sep or not number.isdigit():
        raise ValueError(f"{text!r} is not a priority string")
    level = int(number)
    if display(level) != text:
        raise ValueError(f"{text!r} is not a priority string")
    return level


def _checked(level):
    if isinstance(level, bool) or not isinstance(level, int):
        raise TypeError(f"a priority level is an int, not {type(level).__name__}")
    if not 0 <= level <= HIGHEST:
        raise ValueError(f"priority level {level} is outside 0-{HIGHEST}")
    return level
