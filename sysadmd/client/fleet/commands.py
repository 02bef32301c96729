"""``sysadm fleet setup``, ``hosts``, ``state`` and ``watch`` (``run`` is in :mod:`run`).

Every command is ``async command(connection, options, out)`` returning the exit status;
failures are :class:`sysadmd.client.errors.ClientError`, shown as one line.
"""

import asyncio
import json
import time

from nats.js import api
from nats.js import errors as js_errors

from sysadmd.client.fleet import tables
from sysadmd.client.fleet.arguments import host_matches, subject_host
from sysadmd.client.fleet.connection import API_SUBJECTS, StreamMissing, api_failure
from sysadmd.client.fleet.feed import OrderedFeed, last_per_subject
from sysadmd.protocol import fleet as wire

SYSTEM_STATE = "system-state"


def stream_configs(options):
    """The two streams ``setup`` makes, from its options."""
    events = api.StreamConfig(
        name=wire.EVENTS_STREAM, subjects=[wire.EVENTS_SUBJECTS], retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE, discard=api.DiscardPolicy.OLD, max_age=options.max_age,
        max_bytes=options.max_bytes, duplicate_window=options.duplicate_window, allow_direct=True,
    )
    presence = api.StreamConfig(
        name=wire.PRESENCE_STREAM, subjects=[wire.PRESENCE_SUBJECTS], retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE, discard=api.DiscardPolicy.OLD, max_msgs_per_subject=1, allow_direct=True,
    )
    return events, presence


def describe_stream(config):
    """What ``setup`` says a stream keeps."""
    parts = [", ".join(config.subjects), f"{config.storage.value} storage"]
    if config.max_age:
        parts.append(f"max age {config.max_age:g} s")
    if config.max_bytes and config.max_bytes > 0:
        parts.append(f"max {config.max_bytes} bytes")
    if config.max_msgs_per_subject and config.max_msgs_per_subject > 0:
        parts.append(f"the last {config.max_msgs_per_subject} message(s) per subject")
    if config.duplicate_window:
        parts.append(f"duplicate window {config.duplicate_window:g} s")
    return ", ".join(parts)


async def setup(connection, options, out):
    """Create the streams, or bring an existing one to this configuration."""
    js = connection.js
    for config in stream_configs(options):
        try:
            await connection.api(js.stream_info(config.name), config.name)
        except StreamMissing:
            await connection.api(js.add_stream(config), config.name)
            out.line(f"created stream {config.name}: {describe_stream(config)}")
        else:
            await connection.api(js.update_stream(config), config.name)
            out.line(f"updated stream {config.name}: {describe_stream(config)}")
    return 0


async def read_presence(connection):
    """``{host: presence message}``: the last presence of every machine that sent one
    (an unreadable one counts as an empty message: the machine is then down)."""
    messages = await last_per_subject(connection, wire.PRESENCE_STREAM, wire.PRESENCE_SUBJECTS)
    machines = {}
    for subject, msg in messages.items():
        host = wire.host_of(subject)
        if host is None:
            continue
        try:
            presence = json.loads(msg.data)
        except ValueError:
            presence = None
        machines[host] = presence if isinstance(presence, dict) else {}
    return dict(sorted(machines.items()))


async def hosts(connection, options, out):
    """Every machine that ever sent presence, up or down."""
    presences = await read_presence(connection)
    now = time.time()
    machines = [tables.machine(host, presence, now) for host, presence in presences.items()]
    if options.json:
        out.line(json.dumps([dict(m, presence=presences[m["host"]]) for m in machines], indent=2,
                            sort_keys=True, ensure_ascii=False))
    else:
        out.line(tables.hosts_text(machines))
    return 0


async def last_event(connection, host, source):
    """The frame of ``host``'s last event of ``source`` still in the stream, or None."""
    subject = wire.events_subject(host, source)
    try:
        msg = await connection.guarded(connection.js.get_msg(wire.EVENTS_STREAM, subject=subject, direct=True),
                                       API_SUBJECTS)
    except js_errors.NotFoundError as e:
        if e.err_code == 10059:
            raise api_failure(e, wire.EVENTS_STREAM) from None
        return None
    except Exception as e:
        raise api_failure(e, wire.EVENTS_STREAM) from None
    try:
        frame = json.loads(msg.data or b"")
    except ValueError:
        return None
    return frame if isinstance(frame, dict) else None


async def state(connection, options, out):
    """Each machine's last system state: from its presence, else its last system-state
    event in the stream."""
    presences = await read_presence(connection)
    now = time.time()
    found = []
    for host, presence in presences.items():
        if not host_matches(host, options.hosts):
            continue
        current = presence.get("state")
        if not isinstance(current, dict):
            frame = await last_event(connection, host, SYSTEM_STATE)
            current = frame.get("args") if frame else None
        found.append((host, current if isinstance(current, dict) else None, wire.is_up(presence, now)))
    if options.json:
        out.line(json.dumps([{"host": h, "up": up, "state": s} for h, s, up in found], indent=2,
                            sort_keys=True, ensure_ascii=False))
    else:
        out.line(tables.state_text([tables.state_row(h, s, up) for h, s, up in found]))
    return 0


def watch_subjects(options):
    """The subjects ``watch`` follows: one per source (NATS 2.9 filters one subject per
    consumer), the host in the subject when ``--hosts`` names exactly one."""
    token = subject_host(options.hosts)
    return [wire.events_filter(token, source) for source in options.sources] or [wire.events_filter(token)]


def event_printer(options, out):
    """``show(msg)`` for ``watch``: one line per event message of a matching host."""

    def show(msg):
        host = wire.host_of(msg.subject) or "?"
        if not host_matches(host, options.hosts):
            return
        try:
            frame = json.loads(msg.data)
        except ValueError:
            frame = msg.data.decode("utf-8", "replace")
        metadata = msg.metadata
        if options.json:
            out.line(tables.watch_json(host, metadata.sequence.stream, frame))
        else:
            out.line(tables.watch_line(host, frame, metadata.timestamp.timestamp(), out.colour))

    return show


async def watch(connection, options, out):
    """Follow the events of many machines until Ctrl-C (or a failure NATS will not fix)."""
    show = event_printer(options, out)
    feeds = [OrderedFeed(connection, wire.EVENTS_STREAM, subject, options.since, show)
             for subject in watch_subjects(options)]
    try:
        for feed in feeds:
            await feed.open()
        done, _ = await asyncio.wait([feed.failed for feed in feeds], return_when=asyncio.FIRST_COMPLETED)
        raise done.pop().result()
    finally:
        for feed in feeds:
            await feed.close()
