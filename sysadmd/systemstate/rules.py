"""Priorities of a system state, by the rules of issue 5.

- a pool whose health is not ONLINE: 9 (Urgent) (a zpool without a HEALTH column
  gives no evidence either way);
- a pool above ``capacity_critical`` percent full: 6 (Critical); above
  ``capacity_warning``: 3 (Warning);
- a hostname different from the previous poll: at least 3;
- updates (the ``updates`` field, see :mod:`.updates`) available or running: at least
  2 (Information, as the original server had it); a reboot required: 9 (Urgent);
- the top-level priority is the highest of all.
"""

from dataclasses import dataclass

from sysadmd.events import priority
from sysadmd.systemstate.updates import (
    REBOOT_REQUIRED,
    UPDATE_RUNNING,
    UPDATES_AVAILABLE,
)
from sysadmd.systemstate.zpool import MISSING, capacity_percent

#: The level each ``updates`` status raises the state to (the original server's).
UPDATE_LEVELS = {
    UPDATES_AVAILABLE: 2,
    UPDATE_RUNNING: 2,
    REBOOT_REQUIRED: priority.URGENT,
}


@dataclass(frozen=True)
class Thresholds:
    """Capacity percentages above which a pool is a warning, or critical."""

    warning: float = 80
    critical: float = 90


def pool_level(pool, thresholds):
    """The priority level (0-10) of one parsed pool."""
    level = priority.INFORMATION
    health = pool.get("health", MISSING).upper()
    # "-" means this zpool does not report health: no evidence of a problem.
    if health not in ("ONLINE", MISSING):
        level = max(level, priority.URGENT)
    capacity = capacity_percent(pool)
    if capacity is not None:
        if capacity > thresholds.critical:
            level = max(level, priority.CRITICAL)
        elif capacity > thresholds.warning:
            level = max(level, priority.WARNING)
    return level


def update_level(updates):
    """The level an ``updates`` field raises the state to (0 when it does not)."""
    return UPDATE_LEVELS.get(updates.get("status"), priority.INFORMATION)


def build_state(hostname, pools, hostname_changed, thresholds, updates=None):
    """The ``system_state`` event args for one poll.

    ``pools`` is the output of :func:`sysadmd.systemstate.zpool.parse_zpool_list`; each
    pool gets its own ``priority`` and the state gets the maximum. ``updates`` is the
    ``updates`` field (None: update checks are off, and the event has none).
    """
    zpools = {}
    top = priority.INFORMATION
    for name in sorted(pools):
        level = pool_level(pools[name], thresholds)
        zpools[name] = dict(pools[name], priority=priority.display(level))
        top = max(top, level)
    state = {"hostname": hostname}
    if hostname_changed:
        state["hostnamechanged"] = "true"
        top = max(top, priority.WARNING)
    state["zpools"] = zpools
    if updates is not None:
        state["updates"] = dict(updates)
        top = max(top, update_level(updates))
    state["priority"] = priority.display(top)
    return state
