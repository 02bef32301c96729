"""The dispatcher: queued commands run as child processes, with events and history.

Parts, one module each:

- ``queue``: named FIFO queues with a ``max_running`` limit, and the ``[dispatcher] queues``
  parser;
- ``job``: the job model, per-command logs with byte caps, and the errors ``submit`` fails with;
- ``runner``: the chain of one job's commands (timeouts, kill), each a
  ``sysadmd.util.process.ChildProcess``, reported to an ``IJobObserver``;
- ``events``: the pending / running / finished event payloads and the update throttle;
- ``database``: the SQLite schema, the operations and the worker thread that runs them;
- ``store``: the ordered journal of writes to it (history and crash recovery); writes that
  fail (a full state directory) are kept in order and retried;
- ``lifecycle``: start (recovery), readiness, pruning and stop;
- ``scheduler``: which job starts when (queues, ``max_processes``, announcements);
- ``table``: the jobs in memory, by id;
- ``progress``: starts runs and turns what they report into events and records;
- ``core``: :class:`~sysadmd.dispatcher.core.Dispatcher`, which ties them together;
- ``api``: the ``rpc/dispatcher`` call;
- ``service``: the Service that starts and stops it, built from the configuration.

Submitting jobs from a plugin
-----------------------------

An event source gets the running dispatcher from its context, ``context.services["dispatcher"]``,
and calls::

    d = dispatcher.submit(
        "pkg-install-nginx",               # job id, unique among pending/running jobs
        ["pkg update", "pkg install -y nginx"],  # commands, run in order, no shell
        queue="pkg_queue",                 # default: no_queue (or the first configured queue)
        timeout=600,                       # seconds for the whole job (None: default_timeout)
        event_system="sysadm/pkg",         # "<namespace>/<name>": marks a class job
        extra={"action": "install"},       # the class's own fields, beside process_details
    )

``d`` fires with the job id once the job is queued and committed to the database, or fails
with :class:`~sysadmd.dispatcher.job.InvalidJob` (bad arguments),
:class:`~sysadmd.dispatcher.job.DuplicateJob` (the id is pending or running) or
:class:`~sysadmd.dispatcher.job.DispatcherUnavailable` (stopping, its database failed, or
the state directory cannot be written, e.g. full: the job is refused rather than run without
a record; records of jobs already running are kept and retried until they can be written).
Events of a class job carry ``event_system`` and the ``extra`` fields at the top level, in the
"Dispatcher Class Event Message" form.
"""
