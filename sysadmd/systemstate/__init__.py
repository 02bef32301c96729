"""The ``system-state`` event source: hostname, ZFS pool health and updates, polled.

- :mod:`.zpool` parses ``zpool list`` output by its header line.
- :mod:`.rules` gives each pool and the whole state a priority.
- :mod:`.source` polls, compares and publishes (the :class:`IEventSource`).
- :mod:`.updates` is the ``updates`` field and the backend interface; :mod:`.checker`
  runs the checks in the background; :mod:`.backends` picks :mod:`.apt` (with
  :mod:`.dpkglock`), :mod:`.pkg` or the administrator's ``updates_command``.
"""
