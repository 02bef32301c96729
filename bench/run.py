"""``make bench``: sysadmd's speed and memory, as ratios to baselines run in the same
invocation on the same machine with the same load client.

    .venv/bin/python bench/run.py [--quick]
        [--only fanout,client_check,connections,slow,resume,dispatcher,output,relay,fleet,profile,relay_profile]
                                  [--rounds N] [--burst N] [--client-processes N] [--out FILE]
                                  [--relay-subscribers N] [--relay-client-processes N] [--relay-rate R]

``BENCH_QUICK=1`` (or ``--quick``) gives a shorter run. See bench/README.md for what each
figure means and how it is measured. Everything talks to 127.0.0.1 only; every child
process is bounded in time and stopped at the end.
"""

import argparse
import hashlib
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import threading
import time
import traceback

from fleet import fleet
from loadclient import CLIENT_DIR, LoadClient, LoadGroup
from relay import relay, relay_profile
from servers import (
    BENCH,
    KIB,
    PLUGINS,
    Workspace,
    nofile_limit,
    proc_status,
    reset_peak_rss,
    start_server,
    start_sysadmd,
    wait_for_log,
)
from table import CHECK_PROCESSES, LATENCY_RATES, SERVERS, best, print_table, summarize

sys.path.insert(0, os.path.join(PLUGINS, "sysadmd", "plugins"))
from bench_source import write_control  # noqa: E402


def log(message):
    """A progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


# -- the measurements -----------------------------------------------------------------


def measure_window(server, client, warmup, window, latency=True):
    """Ask the clients for a window of counting and sample the server's CPU over it."""
    client.start_measure(warmup=warmup, duration=window, latency=latency)
    time.sleep(warmup)
    cpu0, t0 = server.cpu(), time.monotonic()
    time.sleep(window)
    cpu1, t1 = server.cpu(), time.monotonic()
    result = client.measured(warmup + window + 60)
    result["server_cpu"] = (cpu1 - cpu0) / (t1 - t0)
    result["server_rss"] = server.rss()
    return result


def drain(client):
    """Wait until the previous phase's events stopped arriving."""
    client.measure(60, quiet=0.3, timeout=30, start_timeout=0.5)


def run_phase(server, client, cfg, name, window=None, **settings):
    """One measurement window with the source following ``settings``, then drained."""
    window = window or cfg.window
    write_control(server.control, run=name, duration=cfg.warmup + window + 1, **settings)
    result = measure_window(server, client, cfg.warmup, window, latency=settings.get("rate", 0) > 0)
    write_control(server.control, run=f"{name}-stop", rate=-1)
    drain(client)
    return result


def fanout_one(ws, kind, n, cfg, processes=None, phases=("sat", "sat1", "half") + tuple(f"rate{r}" for r in LATENCY_RATES),
               **server_options):
    """Saturation, latency at half of it, and latency at each of LATENCY_RATES, for one
    server and N subscribers."""
    server = start_server(ws, kind, **server_options)
    client = None
    try:
        client = LoadGroup(server.url, cfg.deadline, n, processes or cfg.client_processes)
        result = {"server": kind, "subscribers": n, "setup_s": client.ready()["setup_s"]}
        if "sat" in phases:
            # Counting only: the client must not be the bottleneck.
            result["saturation"] = run_phase(server, client, cfg, "sat", rate=0, burst=cfg.burst)
        if "sat1" in phases:
            # One event per reactor turn: the most a server delivers when every event is
            # sent on its own, as events published at a rate are until it falls behind.
            result["saturation_burst1"] = run_phase(server, client, cfg, "sat1", rate=0, burst=1)
        if "half" in phases:
            result["half_rate_events_per_s"] = half_rate = result["saturation_burst1"]["rate"] / 2 / n
            result["half"] = run_phase(server, client, cfg, "half", rate=half_rate)
        for rate in LATENCY_RATES:
            if f"rate{rate}" in phases:
                # At least cfg.rate_events events a round: a p99 over 40 events is the
                # worst event or two, whatever the server.
                window = max(cfg.window, cfg.rate_events / rate)
                result[f"rate{rate}"] = run_phase(server, client, cfg, f"rate{rate}", window=window, rate=rate)
        return result
    finally:
        if client is not None:
            client.close()
        server.stop()


def fanout(ws, cfg):
    """Every server, every size, in interleaved rounds."""
    runs = []
    for round_ in range(cfg.rounds):
        for n in cfg.subscribers:
            for kind in SERVERS:
                log(f"fan-out: round {round_ + 1}/{cfg.rounds}, {kind}, {n} subscribers")
                result = fanout_one(ws, kind, n, cfg)
                result["round"] = round_ + 1
                sat, half = result["saturation"], result["half"]
                lat = "; ".join(f"{r}/s p50 {result[f'rate{r}']['latency']['p50_ms']} p99 "
                                f"{result[f'rate{r}']['latency']['p99_ms']} ms" for r in LATENCY_RATES)
                log(
                    f"  saturation {sat['rate']:,.0f} ev/s (server cpu {sat['server_cpu']:.0%}, client cpu "
                    f"{sat['client_cpu']:.0%}, dropped {sat['dropped']}), one event per turn "
                    f"{result['saturation_burst1']['rate']:,.0f} ev/s; half of that: p99 "
                    f"{half['latency']['p99_ms']} ms; {lat}"
                )
                runs.append(result)
    return runs


def client_check(ws, cfg):
    """The latency phases with 1,000 subscribers on sysadmd, read by 1, 2 and 3 client
    processes, alternating: while more processes see less latency, the client is part of
    what is measured; the fan-out uses cfg.client_processes."""
    runs = []
    phases = tuple(f"rate{r}" for r in LATENCY_RATES)
    for round_ in range(cfg.rounds):
        for processes in CHECK_PROCESSES:
            log(f"client check: round {round_ + 1}/{cfg.rounds}, sysadmd, 1000 subscribers, {processes} client process(es)")
            result = fanout_one(ws, "sysadmd", 1000, cfg, processes=processes, phases=phases)
            result["processes"] = processes
            log("  " + "; ".join(f"{r}/s p99 {result[f'rate{r}']['latency']['p99_ms']} ms" for r in LATENCY_RATES))
            runs.append(result)
    return runs


def resume(ws, cfg):
    """The retained log at its defaults: the memory (RSS) and disk 10,000 bench events
    cost, then resuming clients replayed all of them (the newest 10,000), against the same
    10,000 events delivered live to one subscriber, alternating."""
    server = start_sysadmd(ws)
    try:
        time.sleep(0.5)
        rss0 = server.rss()
        write_control(server.control, run="fill", rate=0, burst=10, count=cfg.retained)
        wait_for_log(server, f"run ended after {cfg.retained} events", 120)
        time.sleep(0.5)
        rss1 = server.rss()
        log_file = os.path.join(os.path.dirname(server.control), "state", "events", "bench.log")
        result = {"retained": cfg.retained, "rss_before": rss0, "rss_after": rss1,
                  "file_bytes": os.path.getsize(log_file), "rounds": []}
        for round_ in range(cfg.rounds):
            # Each live round publishes cfg.retained more: resume after the older ones.
            replay = LoadClient("replay", server.url, cfg.deadline, since=cfg.retained * round_, expect=cfg.retained)
            try:
                replayed = replay.expect("replayed", 180)
            finally:
                replay.close()
            live = LoadGroup(server.url, cfg.deadline, 1)
            try:
                live.start_measure(quiet=0.5, timeout=120, start_timeout=30)
                time.sleep(0.2)
                write_control(server.control, run=f"live{round_}", rate=0, burst=10, count=cfg.retained)
                measured = live.measured(180)
            finally:
                live.close()
            log(f"resume: round {round_ + 1}: replayed {replayed['received']:,} events in "
                f"{replayed['elapsed_s']:.3f} s; live {measured['delivered']:,} in {measured['active_s']:.3f} s")
            result["rounds"].append({"replay": replayed, "live": measured})
        return result
    finally:
        server.stop()


def profile(ws, cfg):
    """The fan-out with 1,000 subscribers again, sysadmd under cProfile; the functions
    taking the most time go to stderr and bench/results/profile.txt."""
    import pstats

    os.makedirs(os.path.dirname(cfg.out), exist_ok=True)
    stats_path = os.path.join(os.path.dirname(cfg.out), "sysadmd.pstats")
    log("profile: sysadmd under cProfile, 1000 subscribers (figures are slower than unprofiled)")
    result = fanout_one(ws, "sysadmd", 1000, cfg, profile=stats_path)
    text_path = os.path.join(os.path.dirname(cfg.out), "profile.txt")
    with open(text_path, "w") as f:
        stats = pstats.Stats(stats_path, stream=f)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(40)
    with open(text_path) as f:
        log(f.read()[:6000])
    return {"saturation": result["saturation"]["rate"], "stats": stats_path, "text": text_path}


def slow_one(ws, stalled, rate, cfg):
    # No pings: a subscriber that never reads would not answer them either, and would be
    # dropped as dead after 2 x ping_interval, ending the test early.
    server = start_sysadmd(ws, buffer=cfg.buffer, ping_interval=0)
    client = None
    try:
        client = LoadClient("subscribe", server.url, cfg.deadline, n=100, stalled=stalled)
        client.expect("ready", 60)
        time.sleep(0.5)
        rss0 = server.rss()
        peak_reset = reset_peak_rss(server.pid)
        peak = rss0
        cpu0 = server.cpu()
        write_control(server.control, run="slow", rate=rate, count=cfg.slow_events)
        client.send(cmd="measure", quiet=1.0, timeout=cfg.slow_events / rate * 3 + 30, start_timeout=10)
        # Sample too, in case VmHWM cannot be reset.
        while True:
            try:
                result = client.expect("measured", 0.1)
                break
            except RuntimeError as e:
                if "within" not in str(e):
                    raise
                peak = max(peak, server.rss())
        if peak_reset:
            peak = max(peak, proc_status(server.pid, "VmHWM"))
        result["server_cpu_seconds"] = server.cpu() - cpu0
        result.update(rss_before=rss0, rss_peak=peak, rss_growth=peak - rss0, peak_from_vmhwm=peak_reset)
        if stalled:
            client.send(cmd="resume_stalled", duration=2)
            result["stalled_after_resume"] = client.expect("resumed", 30)
        return result
    finally:
        if client is not None:
            client.close()
        server.stop()


def slow_subscriber(ws, cfg, half_saturation):
    # The 100-subscriber half-saturation rate, unless that would take over 90 s.
    rate = max(half_saturation or 0, cfg.slow_events / 90)
    runs = {"rate_capped": rate > (half_saturation or 0) * 1.001, "half_saturation": half_saturation}
    for stalled in (0, 1):
        log(f"slow subscriber: 100 subscribers + {stalled} stalled, {cfg.slow_events:,} events at {rate:,.0f}/s")
        runs["stalled" if stalled else "baseline"] = result = slow_one(ws, stalled, rate, cfg)
        log(
            f"  delivered {result['delivered']:,} p99 {result['latency']['p99_ms']} ms, "
            f"rss growth {result['rss_growth'] / KIB:,.0f} KiB"
        )
    return {"rate_events_per_s": rate, "events": cfg.slow_events, "buffer_bytes": cfg.buffer, **runs}


def connections_one(ws, n, cfg):
    server = start_sysadmd(ws)
    client = None
    try:
        client = LoadClient("subscribe", server.url, cfg.deadline, n=1, concurrency=cfg.concurrency)
        client.expect("ready", 60)
        time.sleep(1.0)
        rss0 = server.rss()
        client.send(cmd="add", n=n)
        added = client.expect("added", 600)
        time.sleep(2.0)
        rss1 = server.rss()
        soft, hard = nofile_limit(server.pid)
        return {
            "connections": n, "opened": added["n"], "setup_s": added["setup_s"],
            "rss_before": rss0, "rss_after": rss1, "per_connection_bytes": (rss1 - rss0) / n,
            "daemon_nofile": [soft, hard],
        }
    finally:
        if client is not None:
            client.close()
        server.stop()


def connections(ws, cfg):
    results = []
    for n in cfg.connections:
        log(f"connections: {n:,} idle authenticated subscribers")
        result = connections_one(ws, n, cfg)
        log(f"  {result['per_connection_bytes'] / KIB:.1f} KiB each (setup {result['setup_s']:.1f} s)")
        results.append(result)
    return results


def dispatch_sysadmd(ws, cfg, cwd="/"):
    """One dispatcher run through sysadmd; also the daemon's open-file limits (it is
    started with a soft limit of 1024, to see whether it raises its own)."""

    def lower_nofile():
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))

    server = start_sysadmd(ws, sources="dispatcher", preexec_fn=lower_nofile, cwd=cwd)
    try:
        nofile = nofile_limit(server.pid)
        cpu0 = server.cpu()
        client = LoadClient("dispatch", server.url, cfg.deadline, jobs=cfg.jobs, queue="bench")
        try:
            result = client.expect("dispatched", 600)
        finally:
            client.close()
        result["server_cpu_seconds"] = server.cpu() - cpu0
        result["daemon_nofile"] = list(nofile)
        return result
    finally:
        server.stop()


def dispatcher(ws, cfg):
    """1,000 `true` jobs through rpc/dispatcher (queue bench:8) vs a bare spawnProcess
    loop, alternating. Both run in "/", the jobs' directory, so both can posix_spawn."""
    rounds = []
    for round_ in range(cfg.dispatch_rounds):
        log(f"dispatcher: round {round_ + 1}/{cfg.dispatch_rounds}, {cfg.jobs} jobs, bare spawnProcess loop")
        out = subprocess.run(
            [sys.executable, os.path.join(BENCH, "baselines", "spawn_loop.py"), "--jobs", str(cfg.jobs),
             "--concurrency", "8"], capture_output=True, text=True, timeout=600, check=True, cwd="/",
        )
        baseline = json.loads(out.stdout)
        log(f"  {baseline['jobs_per_s']:.0f} jobs/s; now through sysadmd")
        result = dispatch_sysadmd(ws, cfg)
        log(f"  {result['jobs_per_s']:.0f} jobs/s (max running seen {result['max_running_seen']})")
        rounds.append({"baseline": baseline, "sysadmd": result, "ratio": result["jobs_per_s"] / baseline["jobs_per_s"]})
    forked = None
    if not cfg.quick:
        log("dispatcher: once more with the daemon started elsewhere than the jobs' directory (fork, not posix_spawn)")
        forked = dispatch_sysadmd(ws, cfg, cwd=None)
        log(f"  {forked['jobs_per_s']:.0f} jobs/s")
    return {"rounds": rounds, "forked": forked}


# -- job output (issue 17) --------------------------------------------------------------

MIB = 1024 * 1024


def output_command(size):
    """The job: ``size`` bytes of numbered lines on stdout (output_gen.py)."""
    return [sys.executable, os.path.join(BENCH, "output_gen.py"), str(size)]


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def output_baseline(ws, cfg):
    """The same command with its stdout redirected to a file in the bench's temporary
    directory (``cmd > file``), timed; the file's size and sha256 are what each follower
    must receive."""
    path = os.path.join(ws.new("output-file"), "out")
    with open(path, "wb") as f:
        t0 = time.monotonic()
        subprocess.run(output_command(cfg.output_bytes), stdout=f, stdin=subprocess.DEVNULL, cwd="/",
                       check=True, timeout=300)
        elapsed = time.monotonic() - t0
    result = {"elapsed_s": elapsed, "mib_per_s": cfg.output_bytes / MIB / elapsed,
              "bytes": os.path.getsize(path), "sha256": file_sha256(path)}
    os.remove(path)
    return result


class RssSampler:
    """VmRSS of ``pid`` every ``interval`` seconds in a thread, until ``stop``."""

    def __init__(self, pid, interval=0.05):
        self.pid, self.interval = pid, interval
        self.peak, self.samples = 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, proc_status(self.pid, "VmRSS"))
                self.samples += 1
            except (OSError, KeyError):
                return
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.peak


def output_sysadmd(ws, cfg, job_id):
    """A fresh daemon, two followers (one load.js process each) signed in; the first one
    starts the job with rpc/dispatcher run, then both subscribe to its output from offset
    0 and check every byte until the eof event. Timed from the run request to the later
    eof; the daemon's RSS sampled every 50 ms (and VmHWM, reset before the run)."""
    server = start_sysadmd(ws, sources="dispatcher")
    followers = []
    try:
        for i in range(cfg.followers):
            followers.append(LoadClient("follow", server.url, cfg.deadline, dispatcher=1 if i == 0 else 0))
        for f in followers:
            f.expect("ready", 60)
        time.sleep(0.5)
        rss0 = server.rss()
        peak_reset = reset_peak_rss(server.pid)
        sampler = RssSampler(server.pid)
        cpu0 = server.cpu()
        followers[0].send(cmd="run", job_id=job_id, command=shlex.join(output_command(cfg.output_bytes)))
        started = followers[0].expect("started", 60)
        for f in followers:
            f.send(cmd="follow", job_id=job_id, offset=0)
        answers = [f.expect("followed", 600) for f in followers]
        cpu1 = server.cpu()
        peak = sampler.stop()
        if peak_reset:
            peak = max(peak, proc_status(server.pid, "VmHWM"))
        time.sleep(1.0)
        rss_after = server.rss()
        # The same job again with nobody following: what reading the pipe into the file
        # costs on its own, without the followers' reads and events.
        cpu2 = server.cpu()
        followers[0].send(cmd="run", job_id=job_id + "-alone", command=shlex.join(output_command(cfg.output_bytes)),
                          wait=True)
        alone = followers[0].expect("started", 600)
        alone_cpu = server.cpu() - cpu2
        alone_s = (alone["finished_ns"] - alone["t0_ns"]) / 1e9 if alone["finished_ns"] else None
        eof = max(a["eof_ns"] for a in answers)
        elapsed = (eof - started["t0_ns"]) / 1e9
        with open(server.log_path) as f:
            daemon_log = f.read()
        return {
            "job_id": job_id, "elapsed_s": elapsed, "mib_per_s": cfg.output_bytes / MIB / elapsed,
            "run_reply_s": (started["reply_ns"] - started["t0_ns"]) / 1e9,
            "first_byte_s": min((a["first_byte_ns"] - started["t0_ns"]) / 1e9 for a in answers if a["first_byte_ns"]),
            "job_finished_s": (answers[0]["job_finished_ns"] - started["t0_ns"]) / 1e9
            if answers[0].get("job_finished_ns") else None,
            "server_cpu_seconds": cpu1 - cpu0, "server_cpu": (cpu1 - cpu0) / elapsed,
            "rss_before": rss0, "rss_peak": peak, "rss_growth": peak - rss0, "rss_after": rss_after,
            "rss_samples": sampler.samples, "peak_from_vmhwm": peak_reset,
            "daemon_log_tracebacks": daemon_log.count("Traceback"),
            "alone_s": alone_s, "alone_mib_per_s": cfg.output_bytes / MIB / alone_s if alone_s else None,
            "alone_server_cpu_seconds": alone_cpu,
            "followers": answers,
        }
    finally:
        for f in followers:
            f.close()
        server.stop()


def output_check(result, expected):
    """Did this follower get every byte, in order, and nothing else? ``expected``: the
    baseline's size and sha256."""
    problems = []
    if result["bytes"] != expected["bytes"]:
        problems.append(f"{result['bytes']:,} bytes, not {expected['bytes']:,}")
    if result["sha256"] != expected["sha256"]:
        problems.append("sha256 differs")
    if result["bad_lines"]:
        problems.append(f"{result['bad_lines']:,} lines out of place (first at byte {result['first_bad_offset']:,})")
    gaps = len(result["jumps"]) + len(result["gap_frames"])
    if gaps:
        problems.append(f"{gaps} gap(s) ({result['unreported_jumps']} unannounced; dropped_bytes "
                        f"{result['dropped_bytes']:,})")
    for key in ("chunk_offset_mismatches", "next_offset_mismatches", "other_streams", "overlaps"):
        if result[key]:
            problems.append(f"{key} {result[key]}")
    eof = result["eof_event"]
    if eof["state"] != "finished" or (eof["return_codes"] or {}).get("0") != 0:
        problems.append(f"eof event {eof}")
    return problems


def output(ws, cfg):
    """Issue 17: a job writing cfg.output_bytes to stdout, followed live by two clients,
    against the same command writing to a file, alternating, cfg.rounds rounds."""
    rounds = []
    expected = None
    for round_ in range(cfg.rounds):
        log(f"output: round {round_ + 1}/{cfg.rounds}, `cmd > file`, {cfg.output_bytes / MIB:.0f} MiB")
        base = output_baseline(ws, cfg)
        if expected is None:
            expected = {"bytes": base["bytes"], "sha256": base["sha256"]}
        elif base["sha256"] != expected["sha256"]:
            raise RuntimeError("output_gen.py wrote different bytes in two rounds")
        log(f"  {base['mib_per_s']:,.0f} MiB/s; now through sysadmd to {cfg.followers} followers")
        result = output_sysadmd(ws, cfg, f"bench-output-{round_ + 1}")
        for f in result["followers"]:
            f["problems"] = output_check(f, expected)
        log(f"  {result['mib_per_s']:,.1f} MiB/s ({result['elapsed_s']:.2f} s; job finished at "
            f"{result['job_finished_s'] or float('nan'):.2f} s), daemon cpu {result['server_cpu_seconds']:.2f} s, "
            f"rss growth {result['rss_growth'] / MIB:.1f} MiB, followers' cpu "
            f"{', '.join(format(f['cpu'], '.0%') for f in result['followers'])}; "
            + "; ".join(", ".join(f["problems"]) or "every byte in order" for f in result["followers"])
            + f"; with no follower {result['alone_mib_per_s'] or float('nan'):.1f} MiB/s")
        rounds.append({"baseline": base, "sysadmd": result, "ratio": result["mib_per_s"] / base["mib_per_s"]})
    return {"bytes": cfg.output_bytes, "followers": cfg.followers, "expected": expected, "rounds": rounds}


# -- main -------------------------------------------------------------------------------


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def install_client():
    """npm ci, unless node_modules already matches package-lock.json."""
    lock = os.path.join(CLIENT_DIR, "package-lock.json")
    installed = os.path.join(CLIENT_DIR, "node_modules", ".package-lock.json")
    if os.path.exists(installed) and os.path.getmtime(installed) >= os.path.getmtime(lock):
        return
    log("installing the load client (npm ci)")
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=CLIENT_DIR, check=True)


def machine():
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return {"cpus": os.cpu_count(), "loadavg_at_start": load, "python": platform.python_version(),
            "node": node, "kernel": platform.release()}


def config(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1")
    parser.add_argument("--only", default="fanout,client_check,connections,slow,resume,dispatcher,output,relay,fleet")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--dispatch-rounds", type=int, help="dispatcher rounds (short ones: 5 by default)")
    parser.add_argument("--burst", type=int, default=10, help="events per reactor turn at saturation")
    parser.add_argument("--client-processes", type=int, default=2,
                        help="load client processes sharing the fan-out's subscribers")
    parser.add_argument("--relay-subscribers", type=int, default=20, help="relayed subscribers (relay section)")
    parser.add_argument("--relay-client-processes", type=int, default=2,
                        help="relay_client.py processes sharing them")
    parser.add_argument("--relay-rate", type=float, default=200,
                        help="events per second of the relay section's latency phase")
    parser.add_argument("--out", default=os.path.join(BENCH, "results", "latest.json"))
    cfg = parser.parse_args(argv)
    quick = cfg.quick
    cfg.only = set(cfg.only.split(","))
    cfg.rounds = cfg.rounds or (1 if quick else 3)
    cfg.dispatch_rounds = cfg.dispatch_rounds or (3 if quick else 5)
    cfg.warmup = 1.0
    cfg.window = 2.0 if quick else 4.0
    cfg.rate_events = 50 if quick else 100
    cfg.subscribers = (100, 1000)
    cfg.connections = (1000, 10000)
    cfg.concurrency = 50
    cfg.slow_events = 20000 if quick else 100000
    cfg.buffer = 1048576
    cfg.jobs = 1000
    cfg.retained = 10000  # [events] retain_events's default
    cfg.output_bytes = 200 * 1024 * 1024  # issue 17: "a job writing 200 MiB to stdout"
    cfg.followers = 2
    cfg.relay_processes = cfg.relay_client_processes
    cfg.deadline = 900
    return cfg


def main(argv=None):
    cfg = config(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    soft, hard = raise_nofile()
    install_client()
    results = {"machine": machine(), "nofile_bench": [soft, hard], "quick": cfg.quick,
               "rounds": cfg.rounds, "burst": cfg.burst}
    ws = Workspace()
    try:
        def section(name, measure, *args):
            if name not in cfg.only:
                return
            try:
                results[name] = measure(ws, cfg, *args)
            except Exception:
                log(f"{name}: FAILED\n{traceback.format_exc()}")
                results.setdefault("errors", {})[name] = traceback.format_exc()

        section("fanout", fanout)
        section("client_check", client_check)
        section("connections", connections)
        sat = best(r["saturation_burst1"]["rate"] for r in results.get("fanout", ())
                   if r["server"] == "sysadmd" and r["subscribers"] == 100)
        section("slow", slow_subscriber, (sat or 0) / 2 / 100)
        section("resume", resume)
        section("dispatcher", dispatcher)
        section("output", output)
        section("relay", relay)
        section("fleet", fleet)
        section("profile", profile)
        section("relay_profile", relay_profile)
    finally:
        ws.cleanup()
    results["elapsed_s"] = time.monotonic() - started
    rows = summarize(results, cfg)
    results["table"] = rows
    os.makedirs(os.path.dirname(cfg.out), exist_ok=True)
    with open(cfg.out, "w") as f:
        json.dump(results, f, indent=1)
    print_table(rows)
    print(f"{len([r for r in rows if r['met']])} of {len([r for r in rows if r['met'] is not None])} targets met; "
          f"{results['elapsed_s']:.0f} s; results in {os.path.relpath(cfg.out)}")
    if results.get("errors"):
        print("measurements that failed: " + ", ".join(results["errors"]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

