"""Small JSON state files under ``state_dir``, replaced atomically."""

import json

from sysadmd.util.files import atomic_write
from sysadmd.util.log import Logger

log = Logger()


def load(path):
    """The JSON object in ``path``, or None when it is missing or unreadable (logged)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warn("ignoring unreadable state file {path}: {problem}", path=path, problem=str(e))
        return None
    return data if isinstance(data, dict) else None


def save(path, data):
    """Replace ``path`` with ``data`` as JSON (:func:`sysadmd.util.files.atomic_write`),
    so a crash leaves either the old or the new state. Raises OSError."""
    atomic_write(path, json.dumps(data, separators=(",", ":")), mode=0o640)
