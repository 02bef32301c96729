"""Access levels, and how a call's level is read. Every call says its level where it is
registered (``Router.register(..., access)``); ``rpc/query`` is derived from those.

Levels: ``PUBLIC`` works before authentication, ``LIMITED`` needs any authenticated user,
``FULL`` needs a user with full access. A call with an ``action`` argument may give each
action its own level: ``{"list": LIMITED, "run": FULL}``.
"""

PUBLIC = "public"
LIMITED = "limited"
FULL = "full"

_RANK = {PUBLIC: 0, LIMITED: 1, FULL: 2}

# What an unknown call needs: it answers 404, but only to an authenticated user, so the
# call table is not revealed before authentication.
UNKNOWN_CALL = LIMITED


def check_access(access):
    """Raise ValueError unless ``access`` is a level or a non-empty {action: level} dict."""
    levels = list(access.values()) if isinstance(access, dict) else [access]
    if not levels or any(not isinstance(level, str) or level not in _RANK for level in levels):
        raise ValueError(
            f"access must be {PUBLIC!r}, {LIMITED!r}, {FULL!r} or a non-empty "
            f"{{action: level}} dict, not {access!r}"
        )
    if isinstance(access, dict) and not all(isinstance(a, str) and a for a in access):
        raise ValueError(f"actions must be non-empty strings, not {list(access)!r}")


def _lowest(levels):
    return min(levels, key=_RANK.__getitem__)


def required_level(access, args):
    """The level a request with ``args`` needs from a call registered with ``access``. An
    unknown or missing action needs the call's lowest level (its handler answers 400/404)."""
    if isinstance(access, dict):
        action = args.get("action") if isinstance(args, dict) else None
        if isinstance(action, str) and action in access:
            return access[action]
        return _lowest(access.values())
    return access


def allows(access, level):
    """Whether a session with ``access`` (None, 'limited' or 'full') meets ``level``."""
    return _RANK.get(access, 0) >= _RANK[level]


def query(access, table):
    """``rpc/query``'s answer: ``{"namespace/name": "read" | "read/write"}`` for the calls
    of ``table`` (``{(namespace, name): access}``) this session's ``access`` may use. A
    call is "read/write" when the session may use a part of it that needs full access."""
    result = {}
    for key in sorted(table):
        entry = table[key]
        levels = list(entry.values()) if isinstance(entry, dict) else [entry]
        usable = [level for level in levels if allows(access, level)]
        if usable:
            result["/".join(key)] = "read/write" if FULL in usable else "read"
    return result
