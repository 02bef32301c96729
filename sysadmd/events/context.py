"""What an event source gets when it is built."""

from dataclasses import dataclass, field
from typing import Any, Dict


@dataclass
class SourceContext:
    """Everything a source may use; a plugin should touch nothing else of the daemon.

    - ``reactor``: use it for timers and processes (never import the global one), so tests
      can pass a clock.
    - ``config``: the parsed keys of its ``[source:NAME]`` section.
    - ``state_dir``: a directory the source may keep state under (its own file names
      should start with its name).
    - ``services``: the daemon's shared parts by name (for example ``"dispatcher"``).
    """

    reactor: Any
    config: Dict[str, Any]
    state_dir: str
    services: Dict[str, Any] = field(default_factory=dict)
