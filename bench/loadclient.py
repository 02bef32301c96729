"""The load client of ``make bench`` as seen from the driver: bench/client/load.js run as
one or several Node processes, and the latency histograms they report, merged.

Several processes share the subscribers of one measurement (``LoadGroup``) so that the
client is not what bounds the latency a subscriber sees: bench/README.md says how that
was checked.
"""

import json
import math
import os
import queue
import subprocess
import sys
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
CLIENT_DIR = os.path.join(BENCH, "client")
USER, PASSWORD = "bench", "bench-password-not-secret"


class LoadClient:
    """bench/client/load.js, talking JSON lines on stdin/stdout."""

    def __init__(self, mode, url, deadline, **options):
        argv = ["node", os.path.join(CLIENT_DIR, "load.js"), mode, "--url", url,
                "--deadline", str(int(deadline)), "--user", USER, "--password", PASSWORD]
        self._start(argv, options, CLIENT_DIR)

    def _start(self, argv, options, cwd):
        for key, value in options.items():
            argv += [f"--{key}", str(value)]
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=cwd)
        self.pid = self.process.pid
        self._lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def expect(self, event, timeout):
        """The next message ``event``, skipping others; RuntimeError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"load client: no {event!r} within {timeout:.0f} s") from None
            if line is None:
                raise RuntimeError(f"load client exited (status {self.process.wait()}) before {event!r}")
            message = json.loads(line)
            if message.get("event") == "error":
                raise RuntimeError("load client: " + message["error"])
            if message.get("event") == event:
                return message

    def send(self, **command):
        """One command line on the client's stdin."""
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def close(self):
        """Ask the client to quit; kill it if it does not."""
        if self.process.poll() is None:
            try:
                self.send(cmd="quit")
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


class RelayClient(LoadClient):
    """bench/relay_client.py (the relay section's subscribers, through a bridge): the
    same commands and answers as load.js's ``subscribe`` mode."""

    def __init__(self, url, deadline, **options):
        argv = [sys.executable, os.path.join(BENCH, "relay_client.py"), "--url", url,
                "--deadline", str(int(deadline)), "--user", USER, "--password", PASSWORD]
        self._start(argv, options, BENCH)


class LoadGroup:
    """``n`` subscribers shared by ``processes`` load clients, seen as one: ``ready`` and
    ``measured`` answers are merged (counts and rates added, latency histograms merged,
    client CPU added as a fraction of one core, the busiest process's beside it). The
    first process signs in with the password, the others with its token."""

    def __init__(self, url, deadline, n, processes=1, client=None):
        processes = max(1, min(processes, n))
        shares = [n // processes + (1 if i < n % processes else 0) for i in range(processes)]
        # client(n=..., token=...): another load client (RelayClient), by default load.js
        client = client or (lambda **options: LoadClient("subscribe", url, deadline, **options))
        self.clients = []
        try:
            first = client(n=shares[0])
            self.clients.append(first)
            ready = first.expect("ready", 120)
            for share in shares[1:]:
                self.clients.append(client(n=share, token=ready["token"]))
            self._ready = [ready] + [c.expect("ready", 120) for c in self.clients[1:]]
        except BaseException:
            self.close()
            raise

    def ready(self):
        """The merged ``ready`` answer."""
        return {"connections": sum(r["connections"] for r in self._ready),
                "setup_s": max(r["setup_s"] for r in self._ready), "processes": len(self.clients)}

    def start_measure(self, **command):
        """Send a ``measure`` command to every process."""
        for client in self.clients:
            client.send(cmd="measure", **command)

    def measured(self, wait):
        """The processes' merged answers to ``start_measure``, within ``wait`` seconds."""
        return merge_measured([c.expect("measured", wait) for c in self.clients])

    def measure(self, wait, **command):
        """``start_measure`` then ``measured``."""
        self.start_measure(**command)
        return self.measured(wait)

    def close(self):
        """Stop every process."""
        for client in self.clients:
            client.close()


def merge_measured(answers):
    """One ``measured`` answer for several processes' concurrent windows."""
    if len(answers) == 1:
        answer = dict(answers[0])
    else:
        answer = {
            "event": "measured", "subscribers": sum(a["subscribers"] for a in answers),
            "elapsed_s": max(a["elapsed_s"] for a in answers), "active_s": max(a["active_s"] for a in answers),
            "delivered": sum(a["delivered"] for a in answers), "rate": sum(a["rate"] for a in answers),
            "per_subscriber_min": min(a["per_subscriber_min"] for a in answers),
            "per_subscriber_max": max(a["per_subscriber_max"] for a in answers),
            "dropped": sum(a["dropped"] for a in answers),
            "errors": sum(a["errors"] for a in answers), "closed": sum(a["closed"] for a in answers),
            "client_cpu": sum(a["client_cpu"] for a in answers),
            "buckets": merge_buckets(a["buckets"] for a in answers),
            "latency": merge_latency([a["latency"] for a in answers], [a["buckets"] for a in answers]),
        }
    if all("starved" in a for a in answers):  # relay_client.py: subscribers that got no event
        answer["starved"] = sum(a["starved"] for a in answers)
    answer["client_cpu_max"] = max(a["client_cpu"] for a in answers)
    answer["client_processes"] = len(answers)
    return answer


# -- the client's latency histogram (load.js Histogram), in microseconds ---------------


def bucket_value(i):
    """The value a bucket stands for (load.js ``value``): exact below 1024 us, then 64
    sub-buckets per power of two."""
    if i < 1024:
        return i
    e = (i - 1024) // 64 + 10
    return (64 + (i - 1024) % 64 + 0.5) * 2 ** (e - 6)


def merge_buckets(bucket_lists):
    """Several ``[[index, count], ...]`` lists as one, sorted by index."""
    counts = {}
    for buckets in bucket_lists:
        for i, c in buckets:
            counts[i] = counts.get(i, 0) + c
    return sorted(counts.items())


def quantile(buckets, q):
    """The ``q`` quantile (us) of sorted buckets, as load.js computes it."""
    total = sum(c for _, c in buckets)
    if not total:
        return None
    target, seen = q * total, 0
    for i, c in buckets:
        seen += c
        if seen >= target:
            return bucket_value(i)
    return bucket_value(buckets[-1][0])


def merge_latency(summaries, bucket_lists):
    """A latency summary (load.js ``summary`` shape, ms) over several histograms:
    percentiles from the merged buckets, the exact max and mean from the summaries."""
    buckets = merge_buckets(bucket_lists)
    count = sum(s["count"] for s in summaries)

    def ms(us):
        return None if us is None else round(us) / 1000

    maxes = [s["max_ms"] for s in summaries if s["count"]]
    mean = sum(s["mean_ms"] * s["count"] for s in summaries if s["count"]) / count if count else None
    return {
        "count": count, "p50_ms": ms(quantile(buckets, 0.5)), "p90_ms": ms(quantile(buckets, 0.9)),
        "p99_ms": ms(quantile(buckets, 0.99)), "p999_ms": ms(quantile(buckets, 0.999)),
        "max_ms": max(maxes) if maxes else None,
        "mean_ms": None if mean is None or math.isnan(mean) else round(mean, 3),
    }
