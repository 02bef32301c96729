"""``sysadm fleet run``: one job on many machines, each followed to its end.

For each machine that is up and matches ``--hosts`` (concurrently): follow its
dispatcher events first (a consumer delivering what is stored after its creation, so
the job's events cannot slip by), then send the ``rpc/dispatcher`` ``run`` request
through NATS to ``sysadm.<host>.rpc`` (its agent hands it to the daemon as the local
user this NATS user maps to), then wait for the job's ``finished`` event. Exit status 0
only when every machine finished the job with every return code 0.
"""

import asyncio
import json
import time

from nats import errors as nats_errors

from sysadmd.client.commands import run_request
from sysadmd.client.errors import ClientError
from sysadmd.client.fleet import tables
from sysadmd.client.fleet.arguments import Start, host_matches
from sysadmd.client.fleet.commands import read_presence
from sysadmd.client.fleet.connection import Refused
from sysadmd.client.fleet.feed import OrderedFeed
from sysadmd.protocol import fleet as wire

#: Seconds the agent and its daemon have to accept (or refuse) the job.
REQUEST_TIMEOUT = 15.0
REQUEST_ID = "fleet-run"
NO_ANSWER = "no answer"


def request_envelope(options):
    """The request sent to each machine: ``rpc/dispatcher`` ``run`` with the job's id,
    commands, queue and timeout, as ``sysadm run`` sends it."""
    return {"namespace": "rpc", "name": "dispatcher", "id": REQUEST_ID,
            "args": dict(run_request(options), action="run")}


def reply_error(data):
    """The text of an error frame in a reply (``error 409: ...``), None for a response."""
    try:
        frame = json.loads(data)
    except ValueError:
        return "unreadable reply"
    if not isinstance(frame, dict):
        return "unreadable reply"
    if frame.get("namespace") != "error" and frame.get("name") != "error":
        return None
    args = frame.get("args") if isinstance(frame.get("args"), dict) else {}
    text = f"error {args.get('code', '?')}"
    detail = args.get("details") or args.get("message")
    return f"{text}: {detail}" if detail else text


def finished_details(frame, job_id):
    """The ``process_details`` of ``job_id``'s finished event, or None for another frame."""
    if not isinstance(frame, dict) or frame.get("name") != "dispatcher" or not isinstance(frame.get("args"), dict):
        return None
    args = frame["args"]
    details = args.get("process_details") if isinstance(args.get("process_details"), dict) else {}
    if args.get("process_id", details.get("process_id")) != job_id:
        return None
    if args.get("state", details.get("state")) != "finished":
        return None
    return details


async def run_on(connection, host, options, payload):
    """``(result, return codes, seconds)`` of the job on ``host``."""
    loop = asyncio.get_running_loop()
    finished = loop.create_future()

    def on_event(msg):
        try:
            details = finished_details(json.loads(msg.data), options.job_id)
        except ValueError:
            return
        if details is not None and not finished.done():
            finished.set_result(details)

    feed = OrderedFeed(connection, wire.EVENTS_STREAM, wire.events_subject(host, "dispatcher"), Start("new"), on_event)
    started = time.monotonic()
    try:
        try:
            await feed.open()
        except ClientError as e:
            return f"cannot follow its events: {e}", [], None
        subject = wire.rpc_subject(host)
        try:
            reply = await connection.guarded(connection.nc.request(subject, payload, timeout=REQUEST_TIMEOUT),
                                             (subject, "_INBOX."))
        except Refused as e:
            return str(e), [], None
        except (nats_errors.NoRespondersError, nats_errors.TimeoutError, asyncio.TimeoutError):
            return NO_ANSWER, [], None
        except nats_errors.Error as e:
            return f"{NO_ANSWER} ({str(e).removeprefix('nats: ')})", [], None
        error = reply_error(reply.data)
        if error is not None:
            return error, [], None
        remaining = max(options.wait_timeout - (time.monotonic() - started), 0)
        waiting = [finished, feed.failed]
        done, _ = await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        if finished.done():
            result, codes = tables.finished_outcome(finished.result())
            return result, codes, time.monotonic() - started
        if done:
            return f"lost its events: {feed.failed.result()}", [], None
        return f"not finished after {options.wait_timeout:g} s (see: sysadm fleet watch --hosts {host} dispatcher)", [], None
    finally:
        await feed.close()


def succeeded(outcome):
    """Whether a machine's job finished with every return code 0."""
    result, codes, _ = outcome
    return result == "finished" and bool(codes) and all(code == 0 for code in codes)


async def run(connection, options, out):
    """Run the job on every machine that is up and matches ``--hosts``; print the table."""
    presences = await read_presence(connection)
    now = time.time()
    machines = [host for host, presence in presences.items()
                if host_matches(host, options.hosts) and wire.is_up(presence, now)]
    if not machines:
        raise ClientError(f"no machine that is up matches --hosts {','.join(options.hosts)} (see: sysadm fleet hosts)")
    payload = json.dumps(request_envelope(options), separators=(",", ":")).encode("utf-8")
    outcomes = await asyncio.gather(*(run_on(connection, host, options, payload) for host in machines))
    results = dict(zip(machines, outcomes))
    out.line(tables.run_text(results))
    return 0 if all(succeeded(outcome) for outcome in outcomes) else 1
