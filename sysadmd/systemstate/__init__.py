"""The ``system-state`` event source: hostname and ZFS pool health, polled.

- :mod:`.zpool` parses ``zpool list`` output by its header line.
- :mod:`.rules` gives each pool and the whole state a priority.
- :mod:`.source` polls, compares and publishes (the :class:`IEventSource`).
"""
