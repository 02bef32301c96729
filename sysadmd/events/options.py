"""The ``[events]`` ini section: which sources run, slow subscribers, retention."""

from sysadmd.config.options import Option, choice, integer, number, words

EVENTS = {
    "sources": Option(
        "all", words, "Enabled event sources by name, or 'all' for every installed source."
    ),
    "subscriber_buffer_bytes": Option(
        "1048576", integer(4096), "Bytes of events queued for a subscriber that is not reading."
    ),
    "slow_subscriber": Option(
        "drop",
        choice("drop", "disconnect"),
        "What happens when that buffer is full: drop events (then a gap event names them) or "
        "disconnect with code 1008.",
    ),
    "retain_events": Option(
        "10000", integer(1), "Events kept per source for clients that resume after a reconnect."
    ),
    "retain_seconds": Option("3600", number(1), "How long a kept event is kept at most."),
    "retain_bytes": Option(
        "8388608", integer(65536), "Bytes of kept events per source at most (in memory, and about as much on disk)."
    ),
    "heads_interval": Option(
        "30", number(0), "Seconds between heads events (each source's newest seq) to subscribers; 0: none."
    ),
}
