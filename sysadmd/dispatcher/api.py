"""``rpc/dispatcher``: run, list, kill, log and history (run and kill need full access:
``ACCESS``, which the router enforces before the handler runs).

    {"action": "run", "<job id>": "<command>" | ["<cmd1>", "<cmd2>"], ...,
     "queue": <optional>, "timeout": <optional seconds>}      -> {"started": [ids]}
    {"action": "list"}       -> {"jobs": {"<queue>": {"<id>": {"commands": [...],
                                 "state": "pending" | "running", "queue_position": "<n>"}}}}
    {"action": "kill", "job_id": <id or list>}                 -> {"killed": {"jobs": [ids found]}}
    {"action": "log", "job_id": <id>}                          -> the job's full process_details
    {"action": "output", "job_id": <id>, "offset": <n, default 0>, "limit": <bytes, default
     1 MiB, at most 4 MiB>}
        -> {"job_id", "offset", "next_offset", "chunks": [{"command", "stream", "offset",
            "data"}], "eof", "dropped_bytes", "state"} (see ``sysadmd.dispatcher.follow``)
    {"action": "history", "limit": <n, default 50, at most 1000>}
        -> {"history": [{"process_id", "queue", "state", "time_started", "time_finished",
                         "cmd_list", "return_codes/<command>": "<n>", ...}, ...]} newest first

Errors: 400 for bad types, an unknown queue or an empty command (nothing starts); 409 when a
job id is already pending or running (nothing starts); 404 for an unknown action or a job id
``log`` or ``output`` does not know; 503 when the dispatcher is unavailable (stopping, or the state directory
cannot be written, e.g. full: the job is refused, not run without a record).
"""

from twisted.internet import defer

from sysadmd.auth.policy import FULL, LIMITED
from sysadmd.dispatcher.follow import OutputFollowers, check_offset
from sysadmd.dispatcher.job import DispatcherUnavailable, DuplicateJob, InvalidJob
from sysadmd.protocol.envelope import RequestError
from sysadmd.util.log import Logger

RUN_OPTIONS = ("action", "queue", "timeout")
HISTORY_DEFAULT = 50
HISTORY_MAX = 1000
OUTPUT_LIMIT = 1024 * 1024
OUTPUT_LIMIT_MAX = 4 * 1024 * 1024
ACTIONS = ("run", "list", "kill", "log", "output", "history")
# Reading is for any user; running and killing commands needs full access. A job's output
# is read as its log is (the job-output stream declares the same level).
ACCESS = {"list": LIMITED, "log": LIMITED, "output": OutputFollowers.access, "history": LIMITED,
          "run": FULL, "kill": FULL}
# Ids named in one audit line; the rest are counted.
LOGGED_IDS = 10

log = Logger()


def register(router, dispatcher):
    """Add ``rpc/dispatcher`` to ``router``."""
    router.register("rpc", "dispatcher", DispatcherCall(dispatcher), ACCESS)


def _translate(failure):
    if failure.check(InvalidJob):
        code = 409 if failure.check(DuplicateJob) else 400
        raise RequestError(code, str(failure.value).rstrip(".") + ". Nothing was started.")
    if failure.check(DispatcherUnavailable):
        raise RequestError(503, str(failure.value))
    return failure


def _job_id(args):
    job_id = args.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        raise RequestError(400, '"job_id" must be a job id (a non-empty string).')
    return job_id


def _ids_text(ids):
    shown = ", ".join(ids[:LOGGED_IDS])
    rest = len(ids) - LOGGED_IDS
    return shown + (f" and {rest} more" if rest > 0 else "")


def _audit(session, verb, ids, where=""):
    """One log line per request that runs or kills jobs: who, from where, which jobs
    (each job's own lines are only for the ones that fail: see ``Dispatcher``)."""
    log.info(
        "{user} from {peer} {verb} {count} job(s){where}: {ids}",
        user=session.user,
        peer=session.peer_host,
        verb=verb,
        count=len(ids),
        where=where,
        ids=_ids_text(ids),
    )
    return ids


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class DispatcherCall:
    """The ``rpc/dispatcher`` handler."""

    def __init__(self, dispatcher):
        self._dispatcher = dispatcher

    def __call__(self, session, args):
        """Answer one request by its ``action``."""
        if not isinstance(args, dict):
            raise RequestError(400, 'args must be an object with an "action".')
        action = args.get("action")
        if not isinstance(action, str):
            raise RequestError(400, '"action" is required: ' + ", ".join(ACTIONS) + ".")
        if action not in ACTIONS:
            raise RequestError(404, f"Unknown action {action!r}; known: " + ", ".join(ACTIONS) + ".")
        d = defer.maybeDeferred(getattr(self, "_" + action), session, args)
        return d.addErrback(_translate)

    def _run(self, session, args):
        queue = args.get("queue")
        if queue is not None:
            if not isinstance(queue, str):
                raise RequestError(400, '"queue" must be a queue name.')
            if queue not in self._dispatcher.queues:
                known = ", ".join(self._dispatcher.queues)
                raise RequestError(400, f"Unknown queue {queue!r} (known: {known}). Nothing was started.")
        timeout = args.get("timeout")
        if timeout is not None and (not _is_number(timeout) or not 0 <= timeout < float("inf")):
            raise RequestError(400, '"timeout" must be a number of seconds (0 = none).')
        jobs = [(key, value) for key, value in args.items() if key not in RUN_OPTIONS]
        if not jobs:
            raise RequestError(400, 'Nothing to run: add "<job id>": "<command>" or a list of commands.')
        d = self._dispatcher.submit_many(jobs, queue, timeout)
        where = f" in {queue or self._dispatcher.default_queue}"
        d.addCallback(lambda ids: _audit(session, "queued", ids, where))
        return d.addCallback(lambda ids: {"started": ids})

    def _list(self, session, args):
        d = self._dispatcher.when_ready()
        return d.addCallback(lambda _: {"jobs": self._dispatcher.list_jobs()})

    def _kill(self, session, args):
        ids = args.get("job_id")
        if isinstance(ids, str):
            ids = [ids]
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
            raise RequestError(400, '"job_id" must be a job id or a non-empty list of job ids.')
        d = self._dispatcher.when_ready()
        d.addCallback(lambda _: _audit(session, "killed", self._dispatcher.kill(ids)))
        return d.addCallback(lambda found: {"killed": {"jobs": found}})

    def _log(self, session, args):
        job_id = _job_id(args)

        def found(details):
            if details is None:
                raise RequestError(404, f"No job {job_id!r} is known (running or in history).")
            return details

        d = self._dispatcher.when_ready()
        d.addCallback(lambda _: self._dispatcher.details(job_id))
        return d.addCallback(found)

    def _output(self, session, args):
        job_id = _job_id(args)
        offset = check_offset(args)
        limit = args.get("limit", OUTPUT_LIMIT)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise RequestError(400, '"limit" must be a number of bytes (at least 1).')

        def found(result):
            if result is None:
                raise RequestError(404, f"No job {job_id!r} is known (running or in history).")
            return result

        def past_end(failure):
            failure.trap(ValueError)
            raise RequestError(400, str(failure.value).capitalize() + ".")

        d = self._dispatcher.when_ready()
        d.addCallback(lambda _: self._dispatcher.read_output(job_id, offset, min(limit, OUTPUT_LIMIT_MAX)))
        return d.addCallbacks(found, past_end)

    def _history(self, session, args):
        limit = args.get("limit", HISTORY_DEFAULT)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise RequestError(400, '"limit" must be a whole number of at least 1.')
        d = self._dispatcher.when_ready()
        d.addCallback(lambda _: self._dispatcher.history(min(limit, HISTORY_MAX)))
        return d.addCallback(lambda jobs: {"history": jobs})
