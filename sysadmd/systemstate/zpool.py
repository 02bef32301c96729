"""Parse ``zpool list`` by its header, so any implementation's column set works.

OpenZFS prints ``NAME SIZE ALLOC FREE CKPOINT EXPANDSZ FRAG CAP DEDUP HEALTH ALTROOT``;
older ones (FreeBSD 9, zfs-fuse) print fewer, e.g. ``NAME SIZE ALLOC FREE CAP DEDUP HEALTH
ALTROOT``, and older still ``USED``/``AVAIL`` for ``ALLOC``/``FREE``. Every pool gets all
of :data:`FIELDS`; a column the implementation does not print is ``"-"``.
"""

#: The keys of one pool in a system_state event, in the specification's order.
FIELDS = ("size", "alloc", "free", "frag", "expandsz", "dedup", "altroot", "capacity", "health")

MISSING = "-"

#: Header names (upper case) -> event keys. Columns not listed here are ignored.
COLUMNS = {
    "SIZE": "size",
    "ALLOC": "alloc",
    "USED": "alloc",
    "FREE": "free",
    "AVAIL": "free",
    "FRAG": "frag",
    "FRAGMENTATION": "frag",
    "EXPANDSZ": "expandsz",
    "DEDUP": "dedup",
    "DEDUPRATIO": "dedup",
    "ALTROOT": "altroot",
    "CAP": "capacity",
    "CAPACITY": "capacity",
    "HEALTH": "health",
}


class ZpoolParseError(ValueError):
    """Output that is not a ``zpool list`` table."""


def parse_zpool_list(text):
    """Pools by name, each a dict with every key of :data:`FIELDS`.

    ``text`` is the stdout of ``zpool list`` (with its header). Output without a table,
    such as "no pools available", is no pools. Raises :class:`ZpoolParseError` when the
    first line is not a header with a NAME column.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or lines[0].strip().lower() == "no pools available":
        return {}
    header = lines[0].split()
    upper = [column.upper() for column in header]
    if "NAME" not in upper:
        raise ZpoolParseError(f"no NAME column in the header line {lines[0].strip()!r}")
    pools = {}
    for line in lines[1:]:
        values = line.split()
        if len(values) > len(upper):
            # Only a trailing free-text column (ALTROOT) could hold spaces.
            values = values[: len(upper) - 1] + [" ".join(values[len(upper) - 1 :])]
        values += [MISSING] * (len(upper) - len(values))
        row = dict(zip(upper, values))
        pool = {key: MISSING for key in FIELDS}
        for column, value in row.items():
            key = COLUMNS.get(column)
            if key is not None:
                pool[key] = value
        pools[row["NAME"]] = pool
    return pools


def capacity_percent(pool):
    """The pool's capacity as a number (``"85%"`` -> 85.0), or None when unknown."""
    text = pool.get("capacity", MISSING).strip().rstrip("%")
    try:
        return float(text)
    except ValueError:
        return None
