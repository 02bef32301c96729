"""The ``[events]`` ini section: which sources run, and slow subscribers."""

from sysadmd.config.options import Option, choice, integer, words

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
        "What happens when that buffer is full: drop events (then report the count) or "
        "disconnect with code 1008.",
    ),
}
