"""Who may call what: the one access table. ``rpc/query`` is derived from it.

Levels: ``PUBLIC`` works before authentication, ``LIMITED`` needs any authenticated user,
``FULL`` needs a user with full access. Calls with an ``action`` argument may give each
action its own level.
"""

PUBLIC = "public"
LIMITED = "limited"
FULL = "full"

_RANK = {PUBLIC: 0, LIMITED: 1, FULL: 2}

# (namespace, name) -> level, or {action: level} for calls that take "action".
POLICY = {
    ("rpc", "identify"): PUBLIC,
    ("rpc", "auth"): PUBLIC,
    ("rpc", "auth_token"): PUBLIC,
    ("rpc", "auth_ssl"): PUBLIC,
    ("rpc", "auth_clear"): PUBLIC,
    ("rpc", "query"): LIMITED,
    ("events", "subscribe"): LIMITED,
    ("events", "unsubscribe"): LIMITED,
    # The bridge asks list_ssl_checksums of a server over its own link; a client may ask too.
    ("rpc", "settings"): {"list_ssl_checksums": LIMITED},
    ("rpc", "dispatcher"): {
        "list": LIMITED,
        "log": LIMITED,
        "history": LIMITED,
        "run": FULL,
        "kill": FULL,
    },
}


def _lowest(levels):
    return min(levels, key=_RANK.__getitem__)


def required_level(namespace, name, args):
    """The level a request needs. Unknown calls need LIMITED (and then answer 404); an
    unknown or missing action needs the call's lowest level (its handler answers 400/404)."""
    entry = POLICY.get((namespace, name), LIMITED)
    if isinstance(entry, dict):
        action = args.get("action") if isinstance(args, dict) else None
        if isinstance(action, str) and action in entry:
            return entry[action]
        return _lowest(entry.values())
    return entry


def allows(access, level):
    """Whether a session with ``access`` (None, 'limited' or 'full') meets ``level``."""
    return _RANK.get(access, 0) >= _RANK[level]


def query(access, available):
    """``rpc/query``'s answer: ``{"namespace/name": "read" | "read/write"}`` for the
    calls among ``available`` (registered (namespace, name) pairs) this access may use.
    A call is "read/write" when the session may use a part of it that needs full access."""
    result = {}
    for key in sorted(available):
        entry = POLICY.get(key, LIMITED)
        levels = list(entry.values()) if isinstance(entry, dict) else [entry]
        usable = [level for level in levels if allows(access, level)]
        if usable:
            result["/".join(key)] = "read/write" if FULL in usable else "read"
    return result
