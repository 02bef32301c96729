"""What the ``sysadm fleet`` commands print: tables of machines and one line per event.

Event bodies are drawn by :mod:`sysadmd.client.render` (the same lines as ``sysadm
watch``), after the host they came from. Nothing here touches NATS.
"""

import json
import time

from sysadmd.client.render import event_line, system_state_priority, table
from sysadmd.protocol import fleet as wire

HOST_WIDTH = 12


def format_time(when):
    """A Unix time as local ``YYYY-MM-DD HH:MM:SS``, or ``-``."""
    if not isinstance(when, (int, float)) or isinstance(when, bool):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


def _state(presence):
    state = presence.get("state")
    return state if isinstance(state, dict) else None


def machine(host, presence, now):
    """The facts ``hosts`` shows of one machine from its last presence message."""
    up = wire.is_up(presence, now)
    state = _state(presence)
    return {
        "host": host,
        "up": up,
        # When it came up while up; when it was last heard of once down.
        "since": presence.get("since") if up else presence.get("time"),
        "priority": (system_state_priority(state) if state else "") or "-",
        "hostname": presence.get("hostname") or "-",
        "version": presence.get("version") or "-",
    }


def hosts_text(machines):
    """The ``hosts`` table from :func:`machine` dicts (sorted by host)."""
    if not machines:
        return "no machine has sent presence yet (is sysadm-fleet running on them?)"
    rows = [[m["host"], "up" if m["up"] else "down", format_time(m["since"]), m["priority"], m["hostname"],
             m["version"]] for m in sorted(machines, key=lambda m: m["host"])]
    return table(["HOST", "STATUS", "SINCE", "PRIORITY", "HOSTNAME", "VERSION"], rows)


def pools_text(state):
    """``tank ONLINE 12%, backup DEGRADED 92%``: each pool's name, health, capacity."""
    pools = state.get("zpools") if isinstance(state.get("zpools"), dict) else {}
    if not pools:
        return "no pools"
    parts = []
    for name, pool in sorted(pools.items()):
        pool = pool if isinstance(pool, dict) else {}
        capacity = str(pool.get("capacity", "?"))
        if capacity.isdigit():
            capacity += "%"
        parts.append(f"{name} {pool.get('health', '?')} {capacity}")
    return ", ".join(parts)


def state_row(host, state, up):
    """One ``state`` row: host, priority, host name, pools, up or down."""
    if not isinstance(state, dict):
        return [host, "-", "-", "no system state yet", "up" if up else "down"]
    return [host, system_state_priority(state) or "-", state.get("hostname", "-"), pools_text(state),
            "up" if up else "down"]


def state_text(rows):
    """The ``state`` table."""
    if not rows:
        return "no machine matches"
    return table(["HOST", "PRIORITY", "HOSTNAME", "POOLS", "STATUS"], sorted(rows))


def run_text(results):
    """The ``run`` table from ``{host: (result, return codes, seconds)}``."""
    rows = []
    for host, (result, codes, seconds) in sorted(results.items()):
        rows.append([host, result, " ".join(str(c) for c in codes) or "-",
                     "-" if seconds is None else f"{seconds:.1f}"])
    return table(["HOST", "RESULT", "RETURN CODES", "SECONDS"], rows)


def gap_message(args):
    """A ``gap`` frame's args (the daemon lost events before the agent read them)."""
    source = args.get("source", "?")
    missed_from = args.get("missed_from")
    until = args.get("missed_to", args.get("head"))
    numbers = f" {missed_from}-{until}" if isinstance(missed_from, int) and isinstance(until, int) else ""
    return f"{source}: events{numbers} were missed on the machine ({args.get('reason', '?')})"


def watch_line(host, frame, when=None, colour=False):
    """One ``watch`` line: the host, then the event as ``sysadm watch`` shows it."""
    if not isinstance(frame, dict):
        frame = {"name": "?", "args": {"message": f"unreadable event: {frame!r}"}}
    elif frame.get("name") == "gap" and isinstance(frame.get("args"), dict):
        args = frame["args"]
        frame = {"name": "gap", "args": {"message": gap_message(args)}}
    return f"{host.ljust(HOST_WIDTH)}  {event_line(frame, when, colour)}"


def watch_json(host, stream_seq, frame):
    """One ``watch --json`` line."""
    return json.dumps({"host": host, "stream_seq": stream_seq, "event": frame},
                      separators=(",", ":"), ensure_ascii=False)


def finished_outcome(details):
    """``(result, return codes)`` of a finished job's ``process_details``: the codes of
    the commands that ran, in order; the result ``finished`` and its flags."""
    details = details if isinstance(details, dict) else {}
    codes = []
    commands = details.get("cmd_list") if isinstance(details.get("cmd_list"), list) else []
    for command in commands:
        value = details.get("return_codes/" + str(command))
        if value is not None:
            try:
                codes.append(int(value))
            except (TypeError, ValueError):
                codes.append(value)
    flags = [flag.replace("_", " ") for flag in ("killed", "timed_out", "interrupted") if details.get(flag) in ("true", True)]
    if not codes:
        flags.append("no command ran")
    return ", ".join(["finished"] + flags), codes
