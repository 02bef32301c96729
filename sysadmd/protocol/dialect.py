"""The two wire dialects a client's channel may speak.

``spec`` is events.rst as the README describes it, for every client by default.
``original`` is what the original SysAdm server sent, for its deployed clients (the Qt
client sends ``Origin: sysadm-client``, an original server linking to a bridge
``Origin: sysadm-server``)::

                    spec                                  original
    event frame     "name": "system_state", "id": "none"  "name": "system-state", "id": ""
    error code      "code": 401                           "code": "401"
    subscribe       {"subscribe": ["a", "b"]}; an         {"subscribe": "b"} (the last known
                    unknown name is a 400                 name); unknown names are skipped

``[server] dialect = auto`` picks ``original`` for those two Origins, ``spec`` otherwise;
``spec`` or ``original`` force one for every WebSocket connection.
"""

AUTO = "auto"
SPEC = "spec"
ORIGINAL = "original"

#: What a channel may speak.
DIALECTS = (SPEC, ORIGINAL)
#: What ``[server] dialect`` accepts.
SETTINGS = (AUTO, SPEC, ORIGINAL)

#: The Origin values the original client and server send (never a browser's: not URLs).
ORIGINAL_ORIGINS = frozenset({"sysadm-client", "sysadm-server"})

#: The ``id`` of every event frame in each dialect.
EVENT_IDS = {SPEC: "none", ORIGINAL: ""}


def choose(setting, origin):
    """The dialect of a connection whose handshake had ``origin`` (None: none), under
    the ``[server] dialect`` ``setting``."""
    if setting != AUTO:
        return setting
    return ORIGINAL if origin is not None and origin.strip() in ORIGINAL_ORIGINS else SPEC


def check(dialect):
    """``dialect`` itself when a channel may speak it, else ValueError."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r} (known: {', '.join(DIALECTS)})")
    return dialect


class WithOriginal(dict):
    """Event args (a dict, encoded exactly as one) that carry, in :attr:`original`, the
    different args the original dialect sends for the same event (a source publishes
    one of these; the hub encodes ``original`` only if an original-dialect subscriber
    asks)."""

    __slots__ = ("original",)

    def __init__(self, args, original):
        super().__init__(args)
        self.original = original


def original_frame(frame):
    """A reply or notice (an envelope dict) as the original server sent it: an error's
    ``code`` is a string ("401"). Other frames are returned as they are."""
    if frame.get("namespace") != "error":
        return frame
    args = frame.get("args")
    if not isinstance(args, dict) or not isinstance(args.get("code"), int):
        return frame
    return dict(frame, args=dict(args, code=str(args["code"])))
