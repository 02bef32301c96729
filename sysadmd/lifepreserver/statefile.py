"""Small JSON state files under ``state_dir``, replaced atomically."""

import json
import os

from twisted.logger import Logger

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
    """Write ``data`` to ``path`` through a temporary file and a rename, so a crash
    leaves either the old or the new state. Raises OSError."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, separators=(",", ":"))
    os.replace(tmp, path)
