"""What ``sysadm`` prints: one line per event, and tables.

An event line is ``TIME  SOURCE  PRIORITY  MESSAGE``; the priority ("6 - Critical") is
coloured by its category when colour is on (stdout is a terminal and ``NO_COLOR`` is
unset): Information green, Warning yellow, Critical red, Urgent white on red.
"""

import json
import re
import time

from sysadmd.client.follow import return_code_of

COLOURS = {
    "information": "32",
    "warning": "33",
    "critical": "31",
    "urgent": "1;37;41",
}
CATEGORIES = (("Information", 2), ("Warning", 5), ("Critical", 8), ("Urgent", 10))
#: Frame names whose source is spelled differently when subscribing.
SOURCE_NAMES = {"life_preserver": "life-preserver", "system_state": "system-state"}
_PRIORITY = re.compile(r"\A\s*(\d+)\s*(?:[-/]\s*([A-Za-z]+))?\s*\Z")
SOURCE_WIDTH = 14
PRIORITY_WIDTH = 15


def category(priority):
    """The category of a priority string (``"9 - Urgent"``, ``"3/Warning"``, ``"6"``), or
    None when it is not one."""
    match = _PRIORITY.match(str(priority)) if priority is not None else None
    if not match:
        return None
    if match.group(2):
        name = match.group(2).capitalize()
        return name if name in dict(CATEGORIES) else None
    level = int(match.group(1))
    for name, top in CATEGORIES:
        if level <= top:
            return name
    return None


def level(priority):
    """The number of a priority string, or -1."""
    match = _PRIORITY.match(str(priority)) if priority is not None else None
    return int(match.group(1)) if match else -1


def paint(text, priority, colour):
    """``text`` wrapped in the ANSI colour of ``priority``'s category when ``colour``."""
    name = category(priority)
    if not colour or name is None:
        return text
    return f"\x1b[{COLOURS[name.lower()]}m{text}\x1b[0m"


def source_name(frame_name):
    """The source a frame name belongs to (``system_state`` -> ``system-state``)."""
    return SOURCE_NAMES.get(frame_name, frame_name)


def _text(value):
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def dispatcher_message(args):
    """``job ID STATE ...``: the current command while running, the outcome when finished."""
    details = args.get("process_details")
    details = details if isinstance(details, dict) else {}
    job_id = args.get("process_id", details.get("process_id", "?"))
    state = args.get("state", details.get("state", "?"))
    parts = [f"job {job_id} {state}"]
    if args.get("event_system"):
        parts.insert(0, f"[{args['event_system']}]")
    current = details.get("current_cmd")
    commands = details.get("cmd_list") if isinstance(details.get("cmd_list"), list) else []
    if state == "running" and current:
        position = f" ({commands.index(current) + 1}/{len(commands)})" if current in commands and len(commands) > 1 else ""
        parts.append(f"{current}{position}")
    elif state == "finished":
        code = return_code_of(details)
        outcome = [f"exit {code}"] if code is not None else ["no command ran"]
        outcome += [flag.replace("_", " ") for flag in ("killed", "timed_out", "interrupted")
                    if details.get(flag) == "true"]
        parts.append("(" + ", ".join(outcome) + ")")
    return " ".join(parts)


def system_state_message(args):
    """Host name, then each pool with health and capacity."""
    host = args.get("hostname", "?")
    text = f"host {host}" + (" (host name changed)" if args.get("hostnamechanged") == "true" else "")
    pools = args.get("zpools") if isinstance(args.get("zpools"), dict) else {}
    if pools:
        text += ": " + ", ".join(
            f"{name} {pool.get('health', '?')} {pool.get('capacity', '?')}"
            for name, pool in sorted(pools.items()) if isinstance(pool, dict)
        )
    else:
        text += ": no pools"
    return text


def system_state_priority(args):
    """The state's priority, or the highest of its pools' when it has none of its own."""
    if args.get("priority"):
        return args["priority"]
    pools = args.get("zpools") if isinstance(args.get("zpools"), dict) else {}
    priorities = [pool.get("priority") for pool in pools.values() if isinstance(pool, dict) and pool.get("priority")]
    return max(priorities, key=level) if priorities else ""


def event_parts(frame):
    """``(source, priority, message)`` of an event frame."""
    name = frame.get("name", "?")
    args = frame.get("args")
    if not isinstance(args, dict):
        return source_name(name), "", _text(args)
    if name == "dispatcher":
        return "dispatcher", "", dispatcher_message(args)
    if name == "system_state":
        return "system-state", system_state_priority(args), system_state_message(args)
    if name == "life_preserver":
        message = str(args.get("message", ""))
        if args.get("class"):
            message = f"[{args['class']}] {message}"
        return "life-preserver", str(args.get("priority", "")), message
    if name == "bridge":
        available = args.get("available_connections")
        listed = ", ".join(map(str, available)) if isinstance(available, list) and available else "none"
        return "bridge", "", f"available connections: {listed}"
    if name == "dropped":
        return "sysadmd", "", f"{args.get('count', '?')} events were dropped (this client read too slowly)"
    priority = args.get("priority") if isinstance(args.get("priority"), str) else ""
    message = args["message"] if isinstance(args.get("message"), str) else _text(args)
    return source_name(name), priority, message


def event_line(frame, when=None, colour=False):
    """One readable line for an event frame received at ``when`` (epoch seconds)."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() if when is None else when))
    source, priority, message = event_parts(frame)
    shown = paint((priority or "-").ljust(PRIORITY_WIDTH), priority, colour)
    return f"{stamp}  {source.ljust(SOURCE_WIDTH)}  {shown}  {message}"


def table(headers, rows, colours=None):
    """A plain-text table; ``colours[i]`` (a priority string or None) colours row ``i``'s
    last column. Widths are measured without escape codes."""
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(headers[i])] + [len(row[i]) for row in rows]) for i in range(len(headers))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for index, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        if colours and colours[index]:
            cells[-1] = paint(row[-1], colours[index], True)
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


POOL_COLUMNS = ("health", "capacity", "size", "alloc", "free", "priority")


def state_text(args, colour=False):
    """The ``state`` command's output: host, overall priority, then a pool table."""
    priority = system_state_priority(args)
    lines = [f"hostname: {args.get('hostname', '?')}"
             + (" (changed)" if args.get("hostnamechanged") == "true" else "")]
    lines.append(f"priority: {paint(priority or '-', priority, colour)}")
    pools = args.get("zpools") if isinstance(args.get("zpools"), dict) else {}
    if not pools:
        lines.append("no ZFS pools")
        return "\n".join(lines)
    rows, colours = [], []
    for name, pool in sorted(pools.items()):
        pool = pool if isinstance(pool, dict) else {}
        rows.append([name] + [pool.get(column, "-") for column in POOL_COLUMNS])
        colours.append(pool.get("priority") if colour else None)
    lines.append("")
    lines.append(table(["POOL"] + [c.upper() for c in POOL_COLUMNS], rows, colours))
    return "\n".join(lines)


def jobs_text(reply):
    """The ``jobs`` table from a dispatcher ``list`` reply."""
    queues = reply.get("jobs") if isinstance(reply, dict) else None
    rows = []
    for queue, jobs in sorted((queues or {}).items()):
        for job_id, job in (jobs or {}).items():
            job = job if isinstance(job, dict) else {}
            commands = job.get("commands") if isinstance(job.get("commands"), list) else []
            rows.append([job_id, queue, job.get("state", "?"), job.get("queue_position", "-"), "; ".join(commands)])
    if not rows:
        return "no jobs pending or running"
    rows.sort(key=lambda row: (row[1], row[2] != "running", _position(row[3])))
    return table(["ID", "QUEUE", "STATE", "POSITION", "COMMANDS"], rows)


def _position(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return 0


def history_text(reply):
    """The ``history`` table from a dispatcher ``history`` reply (newest first)."""
    jobs = reply.get("history") if isinstance(reply, dict) else None
    if not jobs:
        return "no finished jobs"
    rows = []
    for job in jobs:
        code = return_code_of(job)
        flags = [flag.replace("_", " ") for flag in ("killed", "timed_out", "interrupted") if job.get(flag) == "true"]
        commands = job.get("cmd_list") if isinstance(job.get("cmd_list"), list) else []
        rows.append([
            job.get("process_id", "?"), job.get("queue", "-"), job.get("time_started", "-"),
            job.get("time_finished", "-"), "-" if code is None else code, ", ".join(flags) or "-",
            "; ".join(commands),
        ])
    return table(["ID", "QUEUE", "STARTED", "FINISHED", "EXIT", "NOTE", "COMMANDS"], rows)


def log_text(details):
    """A job's full log (the dispatcher ``log`` reply): each command with its output and
    return code."""
    lines = [f"job {details.get('process_id', '?')}: {details.get('state', '?')}"]
    for key in ("time_started", "time_finished"):
        if details.get(key):
            lines.append(f"{key.replace('_', ' ')}: {details[key]}")
    for flag in ("killed", "timed_out", "interrupted"):
        if details.get(flag) == "true":
            lines.append(flag.replace("_", " "))
    for command in details.get("cmd_list") or []:
        lines.append(f"$ {command}")
        output = details.get(command)
        if isinstance(output, str) and output:
            lines.append(output[:-1] if output.endswith("\n") else output)
        code = details.get("return_codes/" + command)
        if code is not None:
            lines.append(f"[exit {code}]")
        elif details.get("state") == "finished" and not output:
            lines.append("[not run]")
    return "\n".join(lines)


def identify_text(reply):
    """``rpc/identify``'s answer, one ``key: value`` a line."""
    if not isinstance(reply, dict):
        return _text(reply)
    return "\n".join(f"{key}: {_text(value)}" for key, value in reply.items())
