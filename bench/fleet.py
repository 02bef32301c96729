"""The ``fleet`` section of ``make bench`` (issue 19): 20 simulated machines publishing
50 events/s each into NATS JetStream through the fleet agent's own code, the end-to-end
latency from daemon to fleet watcher, and the agent's CPU per 1,000 events, against a
bare nats-py publisher of the same events measured in the same run.

One real nats-server, configured from etc/nats-server-fleet.conf (each machine its own
user in account MACHINES, as ``sysadmd-admin fleet init`` prints it; the stream
SYSADM_EVENTS in account SYSADM, made by fleet-admin). Then, round after round, each
variant in turn (the order alternates between rounds), each with a fresh watcher
(bench/fleet_watcher.py ``watch``, user ops) and a fresh publisher process:

- ``agent``: this file's ``agent`` mode, ONE process on Twisted's asyncio reactor with,
  per machine, a real :class:`~sysadmd.fleet.natslink.NatsLink` (its own NATS user and
  connection) and a real :class:`~sysadmd.fleet.publisher.EventPublisher`. In place of a
  WebSocket to a sysadmd, a :class:`FakeDaemon` hands it the daemon's dispatcher event
  frames (already decoded, as the client's session passes them to ``on_event``) on the
  reactor's timers: the real plugin code path minus the daemon's socket, its WebSocket
  framing and its JSON decoding, and minus the agent's presence and requests.
- ``baseline``: bench/fleet_watcher.py ``publish``: ``js.publish`` of the same frames and
  headers on one plain-asyncio connection per machine, nothing else.

The publisher's CPU (``/proc/PID/stat``) is sampled over the window after the warm-up;
the watcher reports every message's latency and whether each machine's events came
once, in order, none missing. See bench/README.md.
"""

import argparse
import asyncio
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

# (twisted.internet.defer installs no reactor: the agent's process installs asyncio's.)
from fleet_watcher import (
    SOURCE,
    START_DELAY_NS,
    Schedule,
    event_frame,
    machine_names,
    new_epoch,
    password_of,
)
from loadclient import LoadClient
from servers import BENCH, CLK_TCK, Server
from twisted.internet import defer

ROOT = os.path.dirname(BENCH)
TEMPLATE = os.path.join(ROOT, "etc", "nats-server-fleet.conf")
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
MACHINES, RATE = 20, 50  # the fleet: 20 machines, 50 events/s each
WARMUP = 3.0
VARIANTS = ("agent", "baseline")
ADMIN_PASSWORD, OPS_PASSWORD = "bench-fleet-admin-not-secret", "bench-fleet-ops-not-secret"
WATCHER = ("ops", OPS_PASSWORD)  # who reads the fleet's events: an operator


def log(message):
    print(message, file=sys.stderr, flush=True)


# -- the driver ------------------------------------------------------------------------


def nats_config(directory, hosts):
    """The template with the machines' entries, a random loopback port, the store here."""
    from sysadmd.admin.fleet import machine_user_entry

    with open(TEMPLATE, encoding="utf-8") as f:
        text = f.read()
    entries = "\n".join(machine_user_entry(h, password_of(h)) for h in hosts)
    text = re.sub(r"^[ \t]*#@machines[ \t]*$", lambda m: entries, text, count=1, flags=re.M)
    text = re.sub(r"^listen:.*$", "listen: 127.0.0.1:-1", text, count=1, flags=re.M)
    text = re.sub(r"^([ \t]*)store_dir:.*$", lambda m: f'{m.group(1)}store_dir: "{directory}/jetstream"', text,
                  count=1, flags=re.M)
    path = os.path.join(directory, "nats-server.conf")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def start_nats(ws, hosts):
    d = ws.new("nats")
    env = dict(os.environ, FLEET_ADMIN_PASSWORD=ADMIN_PASSWORD, FLEET_OPS_PASSWORD=OPS_PASSWORD)
    server = Server("nats-server", [NATS_SERVER, "-c", nats_config(d, hosts)], env, d,
                    os.path.join(d, "nats-server.log"), r"Listening for client connections on (\S+:\d+)",
                    r"Server is ready")
    server.url = "nats://" + server.url
    return server


async def create_stream(url):
    """SYSADM_EVENTS as ``sysadm fleet setup`` makes it (file storage, direct gets), by
    fleet-admin."""
    import nats
    from nats.js import api

    from sysadmd.protocol import fleet as wire

    nc = await nats.connect(url, user="fleet-admin", password=ADMIN_PASSWORD, allow_reconnect=False)
    try:
        await nc.jetstream().add_stream(api.StreamConfig(
            name=wire.EVENTS_STREAM, subjects=[wire.EVENTS_SUBJECTS], retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE, discard=api.DiscardPolicy.OLD, allow_direct=True))
    finally:
        await nc.close()


class Child(LoadClient):
    """A child process talking JSON lines (``{"event": ...}``) as load.js does, its
    stderr in a file; bounded by its own ``--deadline``, killed by ``close`` if need be."""

    def __init__(self, name, argv, log_path):
        self.name, self.log_path = name, log_path
        self._log = open(log_path, "w")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                        text=True, cwd=BENCH, env=env)
        self.pid = self.process.pid
        self._lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def expect(self, event, timeout):
        try:
            return super().expect(event, timeout)
        except RuntimeError as e:
            with open(self.log_path) as f:
                raise RuntimeError(f"{self.name}: {e}; its log ends:\n{f.read()[-2000:]}") from None

    def close(self):
        super().close()
        self._log.close()


def proc_times(pid):
    """(user, system) CPU seconds of ``pid`` so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def sleep_until(t_ns):
    time.sleep(max(0.0, (t_ns - time.time_ns()) / 1e9))


def start_watcher(d, nats, cfg, deadline):
    """The watcher, ready: as ops, or as fleet-admin if ops may not consume (the
    template's ops permissions are being worked on; the table says which was used)."""
    for user, password in (WATCHER, ("fleet-admin", ADMIN_PASSWORD)):
        if cfg.fleet_watcher not in (None, user):
            continue
        watcher = Child("fleet watcher", [sys.executable, os.path.join(BENCH, "fleet_watcher.py"), "watch", "--url",
                                          nats.url, "--user", user, "--password", password, "--deadline", deadline],
                        os.path.join(d, f"watcher-{user}.log"))
        try:
            watcher.expect("ready", 30)
        except RuntimeError as e:
            watcher.close()
            lines = str(e).splitlines()
            log(f"  the watcher cannot consume as {user}: "
                + next((line for line in lines if "permissions violation" in line), lines[0]))
            continue
        cfg.fleet_watcher = user
        return watcher
    raise RuntimeError("the fleet watcher could not create its consumer as ops nor as fleet-admin")


def run_variant(ws, nats, cfg, variant, round_):
    """One variant once: a fresh watcher, then the publisher for warm-up + window."""
    d = ws.new(f"fleet-{variant}")
    python, deadline = sys.executable, str(cfg.fleet_warmup + cfg.fleet_window + 120)
    common = ["--url", nats.url, "--machines", str(MACHINES), "--rate", str(RATE),
              "--duration", str(cfg.fleet_warmup + cfg.fleet_window), "--deadline", deadline]
    argv = ([python, os.path.join(BENCH, "fleet.py"), "agent"] if variant == "agent"
            else [python, os.path.join(BENCH, "fleet_watcher.py"), "publish"]) + common
    watcher = start_watcher(d, nats, cfg, deadline)
    publisher = None
    try:
        publisher = Child(f"fleet {variant}", argv, os.path.join(d, f"{variant}.log"))
        ready = publisher.expect("ready", 60)
        t0 = publisher.expect("started", 30)["t0_ns"]
        start, end = t0 + int(cfg.fleet_warmup * 1e9), t0 + int((cfg.fleet_warmup + cfg.fleet_window) * 1e9)
        pids = {"publisher": publisher.pid, "nats": nats.pid, "watcher": watcher.pid}
        sleep_until(start)
        cpu0 = {k: proc_times(p) for k, p in pids.items()}
        sleep_until(end)
        cpu1 = {k: proc_times(p) for k, p in pids.items()}
        done = publisher.expect("done", 90)
        watcher.send(cmd="finish", expect=done["sent"], from_ns=start, to_ns=end, quiet=5)
        report = watcher.expect("report", 60)
        del report["event"]
        report["watcher_cpu_total_s"] = report.pop("cpu_s")
        events = MACHINES * RATE * cfg.fleet_window  # due in the window, all made (Schedule)
        cpu = {k: sum(cpu1[k]) - sum(cpu0[k]) for k in pids}
        system = {k: (cpu1[k][1] - cpu0[k][1]) / max(cpu[k], 1e-9) for k in pids}
        result = {"variant": variant, "round": round_, "setup_s": ready["setup_s"], "window_events": events,
                  "cpu_s": cpu, "system_share": system, "cpu_of_core": {k: c / cfg.fleet_window for k, c in cpu.items()},
                  "cpu_per_1000": {k: c / events * 1000 for k, c in cpu.items()},
                  "sent": sum(done["sent"].values()), "unacked": sum(done["unacked"].values()),
                  "failed": done.get("failed", []), "restarts": sum(done["restarts"].values()),
                  "publisher_cpu_total_s": done["cpu_s"], **report}
    finally:
        for child in (publisher, watcher):
            if child is not None:
                child.close()
    with open(os.path.join(d, f"{variant}.log")) as f:
        text = f.read()
    # Twisted's text log: "[<namespace>#warn] ..."
    result["log_warnings"] = len(re.findall(r"#(?:warn|error|critical)\]|Traceback", text))
    return result


def fleet(ws, cfg):
    """Both variants, interleaved over the rounds (the first variant alternates)."""
    cfg.fleet_warmup = WARMUP
    cfg.fleet_window = 8.0 if cfg.quick else 20.0
    cfg.fleet_watcher = None
    if not os.access(NATS_SERVER, os.X_OK):
        raise RuntimeError(f"the fleet section needs nats-server ({NATS_SERVER}; tests/setup.sh installs it)")
    nats = start_nats(ws, machine_names(MACHINES))
    try:
        asyncio.run(create_stream(nats.url))
        runs = []
        for round_ in range(cfg.rounds):
            for variant in VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]:
                log(f"fleet: round {round_ + 1}/{cfg.rounds}, {variant}, {MACHINES} machines x {RATE} events/s, "
                    f"{cfg.fleet_warmup:g} s + {cfg.fleet_window:g} s")
                r = run_variant(ws, nats, cfg, variant, round_ + 1)
                lat = r["latency"]
                log(f"  p50 {lat['p50_ms']} p99 {lat['p99_ms']} max {lat['max_ms']} ms over {lat['count']:,} events; "
                    f"CPU per 1,000 events: {variant} {r['cpu_per_1000']['publisher']:.3f} s, nats-server "
                    f"{r['cpu_per_1000']['nats']:.3f} s; {r['received']:,} of {r['sent']:,} received, once in "
                    f"order: {r['once_in_order']}; restarts {r['restarts']}")
                runs.append(r)
        return {"machines": MACHINES, "rate": RATE, "warmup_s": cfg.fleet_warmup, "window_s": cfg.fleet_window,
                "watcher_user": cfg.fleet_watcher, "runs": runs}
    finally:
        nats.stop()


# -- the agent's process ---------------------------------------------------------------


class FakeLink:
    """What :meth:`FakeDaemon.open` gives the publisher in place of a
    :class:`~sysadmd.client.connection.DirectLink`: ``session``, ``closed``, ``close()``."""

    def __init__(self, daemon):
        self._daemon = daemon
        self.session = self
        self.on_event = self.on_unsolicited_error = lambda *a: None
        self.closed = defer.Deferred()

    def call(self, namespace, name, args=None):
        if (namespace, name) != ("events", "subscribe"):
            return defer.fail(RuntimeError(f"the fake daemon only subscribes, not {namespace}/{name}"))
        self._daemon.subscribed(self, args)
        return defer.succeed({"subscribed": [s["name"] for s in args]})

    def close(self):
        if not self.closed.called:
            self.closed.callback("closed by the agent")
        return defer.succeed(None)


class FakeDaemon:
    """Machine ``host``'s daemon as the agent sees it: ``open()`` a link at once, send its
    ``dispatcher`` events as they fall due (:meth:`start`). Like the daemon it keeps its
    log: a subscription in its epoch after ``since`` gets what followed first (the
    frames are made again: they depend on the number only)."""

    def __init__(self, reactor, host):
        self._reactor, self.host = reactor, host
        self.url = f"fake://{host}"
        self.epoch = new_epoch()
        self.link = self.schedule = None
        self.made = self.opens = 0
        self.subscribed_once = defer.Deferred()

    def open(self, user="", access="limited"):
        self.opens += 1
        return defer.succeed(FakeLink(self))

    def subscribed(self, link, subscriptions):
        self.link = link
        [wanted] = [s for s in subscriptions if s["name"] == SOURCE]
        since = wanted["since"] if wanted.get("epoch") == self.epoch else 0
        for seq in range(since + 1, self.made + 1):
            self._send(seq)
        if not self.subscribed_once.called:
            self.subscribed_once.callback(None)

    def start(self, schedule):
        self.schedule = schedule
        self._tick()

    def _tick(self):
        due = self.schedule.due_by(time.time_ns())
        while self.made < due:
            self.made += 1
            self._send(self.made)
        if self.made < self.schedule.count:
            delay = (self.schedule.due(self.made + 1) - time.time_ns()) / 1e9
            self._reactor.callLater(max(0.0, delay), self._tick)

    def _send(self, seq):
        link = self.link
        if link is not None and not link.closed.called:
            link.on_event(event_frame(self.host, self.epoch, seq, self.schedule.due(seq)))


def agent_main(args):
    """The agent's process (see the module docstring); JSON lines on stdout."""
    from sysadmd.fleet.aio import install_asyncio_reactor

    reactor = install_asyncio_reactor()
    from twisted.internet import task
    from twisted.logger import globalLogBeginner, textFileLogObserver
    from twisted.python.failure import Failure

    from sysadmd.fleet.natslink import NatsLink
    from sysadmd.fleet.publisher import EventPublisher

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)

    def emit(event, **fields):
        print(json.dumps({"event": event, **fields}), flush=True)

    @defer.inlineCallbacks
    def run():
        t = time.monotonic()
        machines = []
        for host in machine_names(args.machines):
            nats = NatsLink(reactor, [args.url], host, password_of(host), host)
            daemon = FakeDaemon(reactor, host)
            # The [fleet] publish_window default, as FleetService passes it.
            publisher = EventPublisher(reactor, host, [SOURCE], nats, daemon, window=256)
            publisher.start()
            nats.start()
            machines.append((nats, daemon, publisher))
        yield defer.gatherResults([d.subscribed_once for _, d, _ in machines])
        emit("ready", setup_s=time.monotonic() - t, machines=len(machines))
        t0 = time.time_ns() + START_DELAY_NS
        emit("started", t0_ns=t0)
        for i, (_, daemon, _) in enumerate(machines):
            daemon.start(Schedule(t0, i, len(machines), args.rate, args.duration))
        wait_until = time.monotonic() + args.duration + 30  # then report what was not acknowledged

        def acked(daemon, publisher):
            return daemon.made == daemon.schedule.count and publisher.positions.get(SOURCE) == (
                daemon.epoch, daemon.made)

        while time.monotonic() < wait_until and not all(acked(d, p) for _, d, p in machines):
            yield task.deferLater(reactor, 0.05, lambda: None)
        emit("done", sent={d.host: d.made for _, d, _ in machines},
             unacked={d.host: d.made - (p.positions.get(SOURCE) or ("", 0))[1] for _, d, p in machines},
             restarts={d.host: d.opens - 1 for _, d, _ in machines}, cpu_s=sum(os.times()[:2]))
        for nats, _, publisher in machines:
            yield publisher.stop()
        yield defer.gatherResults([nats.stop() for nats, _, _ in machines])

    def finished(result):
        if isinstance(result, Failure):
            emit("error", error=f"agent: {result.getErrorMessage()}")
            result.printTraceback(sys.stderr)
        reactor.stop()

    reactor.callWhenRunning(lambda: run().addBoth(finished))
    # Bounded whatever happens: the driver waits for nothing longer.
    reactor.callLater(args.deadline, lambda: (emit("error", error="agent: deadline"), os.kill(os.getpid(),
                                                                                              signal.SIGKILL)))
    reactor.run()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("agent",))
    parser.add_argument("--url", required=True)
    parser.add_argument("--machines", type=int, default=MACHINES)
    parser.add_argument("--rate", type=float, default=RATE)
    parser.add_argument("--duration", type=float, default=23)
    parser.add_argument("--deadline", type=float, default=300)
    agent_main(parser.parse_args())


if __name__ == "__main__":
    main()
