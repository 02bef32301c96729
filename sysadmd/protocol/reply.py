"""What a call handler may return besides a plain JSON result."""

from dataclasses import dataclass
from typing import Any, Callable, Optional


@dataclass
class Reply:
    """A handler result with something to do right after the reply is sent (for
    example replaying cached events after a subscribe reply)."""

    result: Any
    after: Optional[Callable[[], None]] = None
