"""The ``life-preserver`` event source: snapshots and replications, as events.

Two backends feed it:

- ``lpreserver``: follows Life Preserver's own logs (:mod:`.follower`), maps their lines as
  the original SysAdm did (:mod:`.mapping`) and reports replication progress from the
  ``zfs send -v`` log a replication writes (:mod:`.progress`); see :mod:`.lpreserver`.
- ``zfs``: lists snapshots periodically and reports new and destroyed ones
  (:mod:`.snapshots`).

:mod:`.source` is the :class:`sysadmd.interfaces.IEventSource` that picks a backend.
"""
