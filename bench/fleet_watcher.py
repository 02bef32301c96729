"""The plain-asyncio side of ``make bench``'s ``fleet`` section (bench/fleet.py): the
fleet watcher, the baseline publisher, and the events both publishers send.

    python bench/fleet_watcher.py watch --url URL --user USER --password PW --deadline S
    python bench/fleet_watcher.py publish --url URL --machines 20 --rate 50 --duration S --deadline S

Each talks JSON lines on stdout (``{"event": ...}``, as bench/client/load.js) and reads
commands on stdin. No Twisted and no sysadmd code here but the wire format
(:mod:`sysadmd.protocol.fleet`): nats-py on a plain asyncio loop, as NATS documents it.

``watch``: an ordered JetStream consumer on SYSADM_EVENTS (deliver policy *new*). For
every message: receipt time (``time.time_ns()``) minus the event's ``sent_ns``, and the
machine's position (``Sysadm-Seq`` of one ``Sysadm-Epoch``), which must go 1, 2, 3...
with nothing missing, repeated or out of order. ``finish`` (the publisher's counts and
the measurement window) waits for the last events and reports.

``publish``: the baseline. The same machines, events, subjects and headers as the agent,
each machine on its own connection as its own NATS user, ``js.publish`` for every event
as it falls due (not waiting for the previous acknowledgement, as the agent does not
within its window), and nothing else.
"""

import argparse
import asyncio
import json
import math
import os
import secrets
import sys
import time

from sysadmd.protocol import fleet as wire

SOURCE = "dispatcher"
START_DELAY_NS = 200_000_000  # "started" reaches the driver before the first event is due
ACK_WAIT_S = 30
COMMANDS = ["zfs snapshot -r tank/home@auto-1200", "zfs list -H -t snapshot tank/home"]


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


def machine_names(n):
    """``m01`` ... : the machines' fleet names, which are also their NATS users."""
    return [f"m{i:02d}" for i in range(1, n + 1)]


def password_of(machine):
    return "p" + machine[1:]


def new_epoch():
    """A fresh log, as a daemon's (``secrets.token_hex(8)``, sysadmd.events.retention)."""
    return secrets.token_hex(8)


def event_frame(host, epoch, seq, sent_ns):
    """Event ``seq`` of machine ``host``: a running job's ``dispatcher`` event as the daemon
    sends it (sysadmd.dispatcher.events; 560 bytes of JSON, 460 of them ``args``), plus ``sent_ns``, when it
    was due (see :class:`Schedule`), and ``made_ns``, when it was made."""
    job = f"{host}-{epoch[:6]}-{seq // 3:06d}"
    details = {"state": "running", "process_id": job, "time_started": "2024-05-01T12:00:00.125+02:00",
               "cmd_list": COMMANDS, "current_cmd": COMMANDS[1], COMMANDS[0]: "",
               "return_codes/" + COMMANDS[0]: "0"}
    args = {"state": "running", "process_id": job, "process_details": details,
            "sent_ns": sent_ns, "made_ns": time.time_ns()}
    return {"namespace": "events", "name": SOURCE, "id": "none", "args": args, "seq": seq, "epoch": epoch}


class Schedule:
    """When machine ``index`` of ``machines`` has its events due: ``rate`` a second from
    ``t0_ns`` for ``duration`` s, the machines evenly spread over each interval.

    An event's latency counts from when it was due, not from when a late timer got round
    to making it: a busy publisher falls behind its schedule and that wait is counted
    (bench/README.md, "coordinated omission")."""

    def __init__(self, t0_ns, index, machines, rate, duration):
        self.interval = 1e9 / rate
        self.start = t0_ns + round(index * self.interval / machines)
        self.count = round(duration * rate)

    def due(self, seq):
        """When event ``seq`` (from 1) is due, in ``time.time_ns()`` terms."""
        return self.start + round((seq - 1) * self.interval)

    def due_by(self, now_ns):
        """How many events are due by ``now_ns``."""
        if now_ns < self.start:
            return 0
        return min(self.count, int((now_ns - self.start) // self.interval) + 1)


# -- the baseline publisher ------------------------------------------------------------


async def publish_machine(js, host, schedule, epoch, counts):
    """Publish machine ``host``'s events as they fall due; wait for every acknowledgement."""
    loop = asyncio.get_running_loop()
    pending = set()
    failed = []

    def acked(task):
        pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            failed.append(repr(task.exception()))

    made = 0
    while made < schedule.count:
        due = schedule.due_by(time.time_ns())
        while made < due:
            made += 1
            frame = event_frame(host, epoch, made, schedule.due(made))
            payload = json.dumps(frame, separators=(",", ":")).encode("utf-8")
            headers = wire.event_headers(host, SOURCE, epoch, made)
            task = loop.create_task(js.publish(wire.events_subject(host, SOURCE), payload, headers=headers))
            pending.add(task)
            task.add_done_callback(acked)
        if made < schedule.count:
            await asyncio.sleep(max(0.0, (schedule.due(made + 1) - time.time_ns()) / 1e9))
    if pending:
        await asyncio.wait(pending, timeout=ACK_WAIT_S)
    counts["sent"][host] = made
    counts["unacked"][host] = len(pending) + len(failed)
    counts["failed"].extend(failed[:3])


async def publish_main(args):
    import nats

    hosts = machine_names(args.machines)
    t = time.monotonic()
    connections = []
    try:
        for host in hosts:
            connections.append(await nats.connect(
                args.url, user=host, password=password_of(host), inbox_prefix=f"_INBOX_{host}".encode(),
                name=f"bench baseline {host}", allow_reconnect=False))
        streams = [nc.jetstream(timeout=5.0) for nc in connections]
        emit("ready", setup_s=time.monotonic() - t, machines=len(hosts))
        t0 = time.time_ns() + START_DELAY_NS
        emit("started", t0_ns=t0)
        counts = {"sent": {}, "unacked": {}, "epochs": {}, "failed": []}
        jobs = []
        for i, (host, js) in enumerate(zip(hosts, streams)):
            epoch = counts["epochs"][host] = new_epoch()
            jobs.append(publish_machine(js, host, Schedule(t0, i, len(hosts), args.rate, args.duration), epoch, counts))
        await asyncio.gather(*jobs)
        emit("done", sent=counts["sent"], unacked=counts["unacked"], failed=counts["failed"],
             restarts={h: 0 for h in hosts}, cpu_s=sum(os.times()[:2]))
    finally:
        for nc in connections:
            await nc.close()


# -- the watcher -----------------------------------------------------------------------


class Watch:
    """What the watcher saw of each machine (see the module docstring)."""

    def __init__(self):
        self.samples = []  # (sent_ns, latency_ns, latency from made_ns)
        self.last = {}  # host -> (epoch, seq)
        self.received = {}
        self.problems = {"first_not_1": 0, "gaps": 0, "missing": 0, "repeated_or_back": 0, "epoch_changes": 0,
                         "header_mismatch": 0}
        self.last_at = time.monotonic()

    async def message(self, msg):
        now = time.time_ns()
        self.last_at = time.monotonic()
        headers = msg.headers or {}
        host, epoch, seq = headers.get(wire.HOST), headers.get(wire.EPOCH), int(headers.get(wire.SEQ, 0))
        frame = json.loads(msg.data)
        args = frame["args"]
        self.samples.append((args["sent_ns"], now - args["sent_ns"], now - args["made_ns"]))
        if frame.get("seq") != seq or frame.get("epoch") != epoch or wire.host_of(msg.subject) != host:
            self.problems["header_mismatch"] += 1
        self.received[host] = self.received.get(host, 0) + 1
        last = self.last.get(host)
        if last is None:
            self.problems["first_not_1"] += seq != 1
        elif last[0] != epoch:
            self.problems["epoch_changes"] += 1
        elif seq == last[1] + 1:
            pass
        elif seq > last[1] + 1:
            self.problems["gaps"] += 1
            self.problems["missing"] += seq - last[1] - 1
        else:
            self.problems["repeated_or_back"] += 1
        self.last[host] = (epoch, seq)

    def complete(self, expect):
        return all(self.received.get(h, 0) >= n for h, n in expect.items())

    def report(self, expect, from_ns, to_ns):
        """Latency over the events due in [from_ns, to_ns); every event checked."""
        window = sorted(lat for sent, lat, _ in self.samples if from_ns <= sent < to_ns)
        made = sorted(lat for sent, _, lat in self.samples if from_ns <= sent < to_ns)
        last_seq = {h: self.last[h][1] for h in self.last}
        short = {h: n - self.received.get(h, 0) for h, n in expect.items() if self.received.get(h, 0) != n}
        in_order = (not any(self.problems.values()) and not short
                    and all(last_seq.get(h) == n for h, n in expect.items()))
        return {"latency": summary(window), "latency_from_made": summary(made),
                "sent": sum(expect.values()), "received": sum(self.received.values()),
                "short_by": short, "unexpected_hosts": sorted(set(self.received) - set(expect)),
                "problems": self.problems, "once_in_order": in_order, "cpu_s": sum(os.times()[:2])}


def summary(values_ns):
    """p50 / p99 / max (ms, nearest rank) of sorted nanosecond values."""
    if not values_ns:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}

    def q(p):
        return round(values_ns[max(0, math.ceil(p * len(values_ns)) - 1)] / 1e6, 3)

    return {"count": len(values_ns), "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": round(values_ns[-1] / 1e6, 3),
            "mean_ms": round(sum(values_ns) / len(values_ns) / 1e6, 3)}


async def commands():
    """The driver's JSON lines on stdin."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        yield json.loads(line)


async def watch_main(args):
    import nats
    from nats.js.api import DeliverPolicy

    nc = await nats.connect(args.url, user=args.user, password=args.password, name="bench fleet watcher",
                            allow_reconnect=False)
    try:
        js = nc.jetstream(timeout=5.0)
        watch = Watch()
        await js.subscribe(wire.EVENTS_SUBJECTS, stream=wire.EVENTS_STREAM, cb=watch.message,
                           ordered_consumer=True, deliver_policy=DeliverPolicy.NEW)
        emit("ready")
        async for command in commands():
            if command["cmd"] == "quit":
                return
            if command["cmd"] == "finish":
                # Until every event counted has come, or nothing came for `quiet` s.
                while not watch.complete(command["expect"]) and time.monotonic() - watch.last_at < command["quiet"]:
                    await asyncio.sleep(0.05)
                emit("report", **watch.report(command["expect"], command["from_ns"], command["to_ns"]))
    finally:
        await nc.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("watch", "publish"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--machines", type=int, default=20)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--duration", type=float, default=23)
    parser.add_argument("--deadline", type=float, default=300, help="exit after this many seconds, whatever happens")
    args = parser.parse_args()

    async def bounded():
        try:
            await asyncio.wait_for((watch_main if args.mode == "watch" else publish_main)(args), args.deadline)
        except Exception as e:
            emit("error", error=f"{args.mode}: {type(e).__name__}: {e}")
            raise

    asyncio.run(bounded())


if __name__ == "__main__":
    main()
